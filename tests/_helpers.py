"""Reference math, tolerances, shapes, a fresh interpreter and a check of the C
compiler, shared by the tests."""
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

DTYPES = [np.float32, np.float64]

# A shape (N, M_in, M_out) that each path takes (see fastlinear._problem.builtin_path).
PATH_SHAPES = {"serial": (30, 20, 10), "blocked": (20000, 16, 8), "tiled": (600, 300, 200)}

# Shapes (N, M_in, M_out) one below, at and one above each block width, chunk
# size and small-kernel limit of the kernels (constants named as in their sources),
# where an offset or a bound that is wrong only past the first block shows.
BLOCK_EDGE_SHAPES = [
    # _colsum: column blocks of COLS = 512 in the dz/db pass and in the sums of
    # partials; _backward: db's partial sums on the stack up to SMALL_DB_WORK = 512.
    (20, 3, 511), (20, 3, 512), (20, 3, 513), (20, 3, 1025),
    # _colsum: chunks of MIN_ROWS = 256 rows, over two column blocks.
    (255, 2, 513), (256, 2, 513), (257, 2, 513),
    # _colsum: at most TASKS = 64 chunks of rows.
    (16383, 1, 2), (16384, 1, 2), (16385, 1, 2),
    # _parallel.block_rows: blocks of at most 4096 rows (forward and fused backward).
    (4095, 1, 2), (4096, 1, 2), (4097, 1, 2),
    # _backward: at most MAX_CHUNKS = 64 chunks, so that past 64 blocks a chunk walks two.
    (262143, 1, 2), (262144, 1, 2), (262145, 1, 2),
    # _backward: dx reads a copy of W^T from TRANSPOSE_MIN_ROWS = 16 rows, on the stack up to
    # SMALL_WT = 2048 elements; _transpose.h: in one strip up to FL_TRANSPOSE_L1 = 8192
    # bytes (2048 float32, 1024 float64 elements), else in strips of 8 columns.
    (15, 32, 64), (16, 32, 64), (17, 32, 64), (16, 23, 89), (16, 3, 683),
    (16, 31, 33), (16, 32, 32), (16, 5, 205),
    # _gemm: small-kernel tiles of at most SMALL_KERNEL_WORK = 10**6 multiply-adds, and for
    # dx (BLAS's A^T B) of at most SMALL_KERNEL_TN_TILE = 1200 elements once k reaches
    # SMALL_KERNEL_TN_MIN_K = 32.
    (99, 100, 100), (100, 100, 100), (101, 100, 100),
    (39, 30, 32), (40, 30, 32), (41, 30, 32), (41, 30, 31), (41, 30, 33),
    # _gemm: packed tiles from 2 * MIN_TASK_WORK = 2**23 multiply-adds.
    (127, 256, 256), (128, 256, 256), (129, 256, 256),
    # _gemm: a product split along k adds its partials ADD_BLOCK = 256 columns at a time:
    # the forward's (k = M_in), and dW's (k = N) past one block.
    (17, 2056, 255), (17, 2056, 256), (17, 2056, 257), (2056, 17, 257),
    # _gemm: small-kernel tiles up to SMALL_TASKS_MAX_WORK = 2**25 multiply-adds and k up to
    # SMALL_TASKS_MAX_K = 1024 (dx's k is M_out); _backward: the fused chunks' partial dW bounded by
    # MAX_PARTIAL = 2**21 elements (two chunks up to M_in * M_out = 2**20, one past it).
    (32, 1024, 1023), (32, 1024, 1024), (32, 1024, 1025),
]


def reference(x, W, b, dy):
    """y, dx, dW, db in float64 NumPy, summing over all leading dimensions."""
    x64, W64 = np.asarray(x, np.float64), np.asarray(W, np.float64)
    y = x64 @ W64 + (0 if b is None else np.asarray(b, np.float64))
    N = int(np.prod(x.shape[:-1]))
    dy2 = np.asarray(dy, np.float64).reshape(N, W.shape[1])
    x2 = x64.reshape(N, W.shape[0])
    return y, (dy2 @ W64.T).reshape(x.shape), x2.T @ dy2, dy2.sum(0)


def assert_close(actual, expected, dtype, k, scale=1.0):
    """Within the rounding error of a length-k dot product in ``dtype``, whose
    terms are of magnitude ``scale`` (a number, or an array like ``expected``)."""
    assert actual.shape == expected.shape
    assert actual.dtype == np.dtype(dtype)
    eps = np.finfo(dtype).eps
    tol = 4 * eps * (k + 1) * (scale + np.abs(expected))
    bad = ~(np.abs(actual.astype(float) - expected) <= tol)
    assert not bad.any(), (f"{bad.sum()} of {bad.size} elements differ by more than the "
                           f"rounding of a length-{k} sum, at {np.argwhere(bad)[:5].tolist()}: "
                           f"{actual[bad][:5]} against {expected[bad][:5]}")


def make(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def arrays(N=4, M_in=3, M_out=2, dtype=np.float64):
    """x, W, b, dy of a small problem, the same on every call."""
    rng = np.random.default_rng(0)
    return (make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, M_out, dtype),
            make(rng, (N, M_out), dtype))


def zero_strides(a):
    """A read-only view of ``a`` with stride 0 on its size-1 axes: the values are
    the same, but BLAS must take a leading dimension from the other axis."""
    a = np.ascontiguousarray(a)
    strides = tuple(0 if n == 1 else s for n, s in zip(a.shape, a.strides))
    return np.lib.stride_tricks.as_strided(a, a.shape, strides, writeable=False)


def c_compiler_fails(*flags):
    """Why ``cc`` cannot compile and run a trivial C program with ``flags``, or None
    if it can: a compiler that is found is not always one that works."""
    with tempfile.TemporaryDirectory() as tmp:
        source, exe = os.path.join(tmp, "main.c"), os.path.join(tmp, "main")
        with open(source, "w") as f:
            f.write("int main(void) { return 0; }\n")
        for step in (["cc", *flags, source, "-o", exe], [exe]):
            try:
                proc = subprocess.run(step, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as e:
                return f"{' '.join(step)}: {e}"
            if proc.returncode != 0:
                return (f"{' '.join(step)} exited with {proc.returncode}: "
                        f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return None


def run_script(code, timeout=300):
    """Run ``code`` in a fresh interpreter (the installed fastlinear); return its stdout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def planner_problem(kind, N, M_in, M_out, dtype="float64"):
    """The planner's problem of a kind named as in plan file keys ("f", "b11", ...)."""
    from fastlinear._problem import KINDS, Problem
    return Problem(KINDS[kind], dtype, N, M_in, M_out)
