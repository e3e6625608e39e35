"""Property tests: any shape, layout, dtype and thread count against NumPy."""
import numpy as np
from _helpers import assert_close, reference
from hypothesis import given, settings
from strategies import problems

import fastlinear


def run_and_check(p):
    """One forward and backward of problem ``p``, every output against the reference."""
    x, W, b, dy, t = p["x"], p["W"], p["b"], p["dy"], p["num_threads"]
    dtype = W.dtype
    N, (M_in, M_out) = x.shape[0], W.shape
    before = [None if a is None else a.copy() for a in (x, W, b, dy)]
    ry, rdx, rdW, rdb = reference(x, W, b, dy)
    y = fastlinear.linear_forward(x, W, b, num_threads=t,
                                  out=np.empty((N, M_out), dtype) if p["use_out"] else None)
    assert_close(y, ry, dtype, M_in)
    shapes = {"dx": (N, M_in), "dW": (M_in, M_out), "db": (M_out,) if b is not None else None}
    bufs = {name: np.ones(shapes[name], dtype) for name in p["buffers"]
            if shapes[name] is not None}
    g = fastlinear.linear_backward(x, W, dy, bias=b is not None, accumulate=p["accumulate"],
                                   num_threads=t, **bufs)
    for name, want, k in (("dx", rdx, M_out), ("dW", rdW, N), ("db", rdb, N)):
        got = getattr(g, name)
        if name == "db" and b is None:
            assert got is None
            continue
        extra = 1 if p["accumulate"] and name in bufs else 0
        if name in bufs:
            assert got is bufs[name]
        assert_close(got, want + extra, dtype, k, scale=1 + extra)
    for a, a0 in zip((x, W, b, dy), before):
        if a is not None:
            np.testing.assert_array_equal(a, a0)


@settings(max_examples=150, deadline=None)
@given(problems())
def test_any_problem_matches_reference(p):
    run_and_check(p)


@settings(max_examples=20, deadline=None)
@given(problems(max_side=300, max_rows=3000))
def test_larger_problems_match_reference(p):
    run_and_check(p)
