"""Every path, activation and dtype on shapes one below, at and one above each
internal block width (see _helpers.BLOCK_EDGE_SHAPES), against the float64 reference."""
import numpy as np
import pytest
from _helpers import BLOCK_EDGE_SHAPES, DTYPES, assert_close
from test_activations import ACTIVATIONS, NEEDS_Z, df_ref, f_ref, problem

from fastlinear import _gemm
from fastlinear import linear_backward, linear_forward
from fastlinear._parallel import PATHS, make_plan
from fastlinear._testing import task_grid

LR = 0.25
# (small_kernels, tasks) of the plans each path is forced onto: a serial backward and a
# tiled call cut their products into packed tiles or into small-kernel tiles.
CUTS = {"serial": [(False, 2), (True, 2)], "blocked": [(False, 2)],
        "tiled": [(False, 2), (True, 2)]}


def run(name, x, W, b, dy, plan, lr=None):
    """y, dx, dW, db of a forward and a backward on ``plan``; with ``lr`` the
    backward steps W and b in place instead of returning dW and db.  Results go
    into NaN-filled buffers: memory of an earlier call may hold the right values
    where a block is never written."""
    def nan(a):
        return np.full_like(a, np.nan)

    z = nan(dy) if name in NEEDS_Z else None
    y = linear_forward(x, W, b, activation=name, out=nan(dy), z=z, num_threads=2, _plan=plan)
    step = lr is not None
    g = linear_backward(x, W, dy, activation=name, y=y if name and name not in NEEDS_Z else None,
                        z=z, dx=nan(x), dW=None if step else nan(W), db=None if step else nan(b),
                        lr=lr, b=b if step else None, num_threads=2, _plan=plan)
    return (y,) + tuple(g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BLOCK_EDGE_SHAPES, ids=str)
def test_block_edges_match_the_reference(rng, shape, dtype):
    """y, dx, dW and db on every path with every activation, and dx, W and b of
    an SGD step: a block past the first that is skipped, read at a wrong offset
    or summed twice shows against the reference."""
    N, M_in, M_out = shape
    x, W, b, dy, z = problem(rng, shape, dtype, True)
    # Each sum within its length times the sum of its terms' magnitudes (f' <= 1.13).
    ax, aW, ady = (np.abs(a.astype(float)) for a in (x, W, dy))
    xdy = 1.13 * ax.T @ ady
    bounds = {"y": (M_in + 8, 1.0), "dx": (M_out + 8, np.maximum(1.13 * ady @ aW.T, 1)),
              "dW": (N + 8, np.maximum(xdy, 1)), "db": (N + 8, 1.0),
              "W": (N + 8, np.maximum(LR * xdy + aW, 1)),
              "b": (N + 8, np.maximum(LR * 1.13 * ady.sum(0), 1))}
    for name in [None] + ACTIVATIONS:
        dz = dy.astype(float) * (1 if name is None else df_ref(name, z))
        want = {"y": z if name is None else f_ref(name, z), "dx": dz @ W.astype(float).T,
                "dW": x.astype(float).T @ dz, "db": dz.sum(0)}
        want["W"], want["b"] = W - LR * want["dW"], b - LR * want["db"]
        for path, cuts in CUTS.items():
            for i, (small_kernels, tasks) in enumerate(cuts):
                plan = make_plan(PATHS[path], small_kernels, tasks)
                got = dict(zip(("y", "dx", "dW", "db"), run(name, x, W, b, dy, plan)))
                # The step once per path, taking f' from nothing, y or z as test_step does.
                if i == 0 and name in (None, "relu", "gelu"):
                    W1, b1 = W.copy(), b.copy()
                    got["step dx"] = run(name, x, W1, b1, dy, plan, lr=LR)[1]
                    got["W"], got["b"] = W1, b1
                for key, a in got.items():
                    k, scale = bounds[key.split()[-1]]
                    try:
                        assert_close(a, want[key.split()[-1]], dtype, k, scale)
                    except AssertionError as e:
                        raise AssertionError(f"{key} with activation {name!r} on {path} "
                                             f"{(small_kernels, tasks)}: {e}") from None


def test_the_shapes_reach_the_gemm_limits():
    """The products of the _gemm shapes fall on the sides of the limits they are
    there for, so that a change of a limit cannot leave them testing nothing."""
    for M_out, small in ((1023, True), (1024, True), (1025, False)):
        assert _gemm.in_small_kernel_range(32, M_out, 1024) == small  # the forward: 2**25
        assert _gemm.in_small_kernel_range(32, 1024, M_out) == small  # dx: k of 1024
    for M_out in (255, 256, 257):  # the forward's k and dW's k split in two
        assert task_grid(17, M_out, 2056, "N", "N", False, 2) == (1, 1, 2)
    assert task_grid(17, 257, 2056, "T", "N", False, 2) == (1, 1, 2)
    assert [task_grid(N, 256, 256, "N", "N", False, 2) for N in (127, 128, 129)] == \
        [(1, 1, 1), (1, 2, 1), (1, 2, 1)]
    assert [np.prod(task_grid(N, 100, 100, "N", "N", True, 2)) for N in (99, 100, 101)] == \
        [1, 1, 2]
    # dx = dz W^T is BLAS's A^T B: tiles of at most 1200 elements from k = 32.
    assert [task_grid(N, 30, M_out, "N", "T", True, 2)[:2] == (1, 1)
            for N, M_out in ((40, 32), (41, 31), (41, 32), (41, 33))] == [True, True, False, False]
