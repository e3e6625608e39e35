"""Reference math, tolerances and a fresh interpreter, shared by the tests."""
import os
import subprocess
import sys
import textwrap

import numpy as np

DTYPES = [np.float32, np.float64]

# A shape (N, M_in, M_out) that each way of running a call takes (see fastlinear._api.plan).
PATH_SHAPES = {"serial": (30, 20, 10), "blocked": (20000, 16, 8), "tiled": (600, 300, 200)}


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


def run_script(code, timeout=300):
    """Run ``code`` in a fresh interpreter (the installed fastlinear); return its stdout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
