"""Results against an independent float64 NumPy reference and finite differences."""
import os

import numpy as np
import pytest
from _helpers import DTYPES, PATH_SHAPES, assert_close, make, reference, zero_strides

import fastlinear
from fastlinear._problem import KINDS, Problem
from fastlinear._parallel import PATHS

SHAPES = [
    (0, 3, 4), (3, 0, 4), (3, 4, 0), (0, 0, 0), (1, 1, 1), (1, 5, 3), (5, 1, 3), (5, 3, 1),
    (7, 13, 5), (33, 17, 65), (64, 784, 256), (300, 200, 150), (2049, 33, 7),
    (20000, 16, 8), (1500, 300, 120), (5000, 64, 16), (3000, 200, 200),
    # Row blocks in 64 chunks of several cache-sized blocks each: a chunk's partial
    # dW is written by its first block and added to by the others.
    (25000, 64, 64),
]


def check_all(x, W, b, dy, nan_buffers=False, **kw):
    """Forward and backward against the reference; ``nan_buffers``: written into
    NaN-filled buffers, so that a result BLAS never wrote cannot pass."""
    dtype = W.dtype
    out, bufs = None, {}
    if nan_buffers:
        out = np.full(x.shape[:-1] + (W.shape[1],), np.nan, dtype)
        bufs = {"dx": np.full(x.shape, np.nan, dtype), "dW": np.full(W.shape, np.nan, dtype)}
        if b is not None:
            bufs["db"] = np.full(W.shape[1], np.nan, dtype)
    y = fastlinear.linear_forward(x, W, b, out=out, **kw)
    g = fastlinear.linear_backward(x, W, dy, bias=b is not None, **bufs, **kw)
    ry, rdx, rdW, rdb = reference(x, W, b, dy)
    N = int(np.prod(x.shape[:-1]))
    assert_close(y, ry, dtype, W.shape[0])
    assert_close(g.dx, rdx, dtype, W.shape[1])
    assert_close(g.dW, rdW, dtype, N)
    if b is None:
        assert g.db is None
    else:
        assert_close(g.db, rdb, dtype, N)
    return y, g


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(rng, shape, bias, dtype):
    N, M_in, M_out = shape
    x, W, dy = make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, (N, M_out), dtype)
    b = make(rng, M_out, dtype) if bias else None
    check_all(x, W, b, dy)


def layouts(a):
    """The same matrix in layouts BLAS reads in place and ones it cannot."""
    yield "C", np.ascontiguousarray(a)
    yield "F", np.asfortranarray(a)
    big = np.zeros((a.shape[0] * 2 + 1, a.shape[1] * 3 + 2), a.dtype)
    big[1::2, 2::3] = a
    yield "strided", big[1::2, 2::3]
    big = np.zeros((a.shape[0] + 3, a.shape[1] + 5), a.dtype)
    big[:a.shape[0], :a.shape[1]] = a
    yield "padded rows", big[:a.shape[0], :a.shape[1]]
    yield "negative", np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    yield "transposed view", np.ascontiguousarray(a.T).T
    ro = a.copy()
    ro.flags.writeable = False
    yield "read-only", ro


@pytest.mark.parametrize("shape", [(1003, 7), (4099, 600)], ids=str)
def test_db_has_the_same_bits_in_every_layout(rng, shape):
    """dy's column sums add its rows in one order whether dy is read by rows or
    by columns (a dz of either layout gives db these bits too)."""
    dy = make(rng, shape, np.float64) * np.exp(rng.uniform(-20, 20, shape))
    x, W = np.zeros((shape[0], 3)), np.zeros((3, shape[1]))
    want = fastlinear.linear_backward(x, W, dy, need_dx=False, need_dW=False).db
    got = fastlinear.linear_backward(x, W, np.asfortranarray(dy), need_dx=False, need_dW=False).db
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9, 7, 5), (1, 7, 5), (20, 30, 30), (2049, 33, 7), (300, 40, 30),
                                   (600, 300, 200)], ids=str)
def test_layouts(rng, shape, dtype):
    """Every layout, against the reference; (20, 30, 30) (serial) and (2049, 33, 7)
    (blocked) copy W^T for dx, from W at any row stride."""
    N, M_in, M_out = shape
    x0, W0, dy0 = make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, (N, M_out), dtype)
    b = make(rng, M_out, dtype)
    expected = check_all(x0, W0, b, dy0)
    for (lx, x), (lW, W), (ld, dy) in zip(layouts(x0), layouts(W0), layouts(dy0)):
        before = [a.copy() for a in (x, W, dy)]
        y, g = check_all(x, W, b, dy)
        if all(a.flags.c_contiguous or a.strides[-1] == a.itemsize for a in (x, W, dy)):
            # Row-major storage at any row stride is the same BLAS call.
            for got, want in zip((y,) + tuple(g), (expected[0],) + tuple(expected[1])):
                np.testing.assert_array_equal(got, want, err_msg=f"{lx}/{lW}/{ld}")
        for a, a0 in zip((x, W, dy), before):
            np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_broadcast_inputs(rng, dtype):
    row = make(rng, (1, 6), dtype)
    x = np.broadcast_to(row, (50, 6))
    W = make(rng, (6, 4), dtype)
    dy = np.broadcast_to(make(rng, (1, 4), dtype), (50, 4))
    check_all(x, W, None, dy)
    check_all(x, np.broadcast_to(make(rng, (1, 4), dtype), (6, 4)), make(rng, 4, dtype), dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 5, 3), (4, 1, 3), (4, 5, 1), (1, 1, 1), (1, 300, 200),
                                   (2048, 1, 1)], ids=str)
def test_size_one_axes_with_zero_strides(rng, shape, dtype):
    """The stride of a size-1 axis means nothing (np.newaxis and broadcast views make
    it 0): each operand with such axes must be read with the leading dimension of its
    other axis."""
    N, M_in, M_out = shape
    x, W, dy = make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, (N, M_out), dtype)
    b = make(rng, M_out, dtype)
    for operands in [(zero_strides(x), W, dy), (x, zero_strides(W), dy), (x, W, zero_strides(dy)),
                     (zero_strides(x), zero_strides(W), zero_strides(dy))]:
        check_all(*operands[:2], b, operands[2], nan_buffers=True)


def test_rows_that_share_memory_are_read_right(rng):
    """A sliding-window view has rows one element apart: no leading dimension
    describes it, so it must be copied, not handed to BLAS."""
    x = np.lib.stride_tricks.sliding_window_view(make(rng, 40, np.float64), 6)[:30]
    W, dy = make(rng, (6, 4), np.float64), make(rng, (30, 4), np.float64)
    check_all(x, W, make(rng, 4, np.float64), dy)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", [(), (3,), (2, 5), (4, 0, 3), (2, 1, 3, 2)], ids=str)
def test_leading_dimensions(rng, lead, dtype):
    x = make(rng, lead + (6,), dtype)
    W = make(rng, (6, 5), dtype)
    b = make(rng, 5, dtype)
    dy = make(rng, lead + (5,), dtype)
    y, g = check_all(x, W, b, dy)
    assert y.shape == lead + (5,)
    assert g.dx.shape == x.shape


def test_leading_dimensions_no_copy(rng):
    x = make(rng, (4, 5, 6), np.float64)
    W = make(rng, (6, 3), np.float64)
    out = np.empty((4, 5, 3))
    y = fastlinear.linear_forward(x, W, out=out)
    assert y is out
    assert_close(out, x @ W, np.float64, 6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_finite_differences(dtype):
    """L = sum(y * R): each gradient matches a central difference of L in float64."""
    rng = np.random.default_rng(7)
    N, M_in, M_out = 4, 3, 5
    x, W, b = rng.standard_normal((N, M_in)), rng.standard_normal((M_in, M_out)), rng.standard_normal(M_out)
    R = rng.standard_normal((N, M_out))

    def loss(x, W, b):
        return float(np.sum(fastlinear.linear_forward(x, W, b) * R))

    g = fastlinear.linear_backward(x.astype(dtype), W.astype(dtype), R.astype(dtype))
    h = 1e-6
    for name, arr, grad in (("x", x, g.dx), ("W", W, g.dW), ("b", b, g.db)):
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            args = {"x": x, "W": W, "b": b}
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += h
            minus[idx] -= h
            numeric[idx] = (loss(**{**args, name: plus}) - loss(**{**args, name: minus})) / (2 * h)
        tol = 1e-6 if dtype == np.float64 else 1e-4
        np.testing.assert_allclose(grad, numeric, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_inf_propagate(dtype):
    x = np.ones((3, 2), dtype)
    W = np.ones((2, 2), dtype)
    b = np.zeros(2, dtype)
    x[1, 0] = np.nan
    W[0, 1] = np.inf
    y = fastlinear.linear_forward(x, W, b)
    assert np.isnan(y[1]).all()
    assert np.isinf(y[0, 1]) and np.isinf(y[2, 1]) and y[0, 0] == 2
    dy = np.ones((3, 2), dtype)
    dy[2, 1] = np.inf
    g = fastlinear.linear_backward(x, W, dy)
    assert np.isinf(g.db[1]) and g.db[0] == 3
    assert np.isnan(g.dW[0]).all()
    assert np.isinf(g.dx[0, 0]) and np.isinf(g.dx[2, 1])


def test_outputs_not_read_when_overwriting(rng):
    """NaN garbage in an out= buffer never leaks into a result (beta = 0)."""
    x, W, dy = make(rng, (40, 30), np.float64), make(rng, (30, 20), np.float64), make(rng, (40, 20), np.float64)
    y = np.full((40, 20), np.nan)
    dx, dW, db = np.full((40, 30), np.nan), np.full((30, 20), np.nan), np.full(20, np.nan)
    fastlinear.linear_forward(x, W, out=y)
    fastlinear.linear_backward(x, W, dy, dx=dx, dW=dW, db=db)
    ry, rdx, rdW, rdb = reference(x, W, None, dy)
    for got, want in ((y, ry), (dx, rdx), (dW, rdW), (db, rdb)):
        assert_close(got, want, np.float64, 40)


def test_empty_sums_are_zero_whatever_the_buffers_held():
    """With nothing to sum over (M_in = 0 for y, M_out = 0 for dx, N = 0 for dW and
    db) each result is 0, not what the buffer held."""
    y = np.full((5, 3), np.nan)
    fastlinear.linear_forward(np.ones((5, 0)), np.ones((0, 3)), out=y)
    dx = np.full((5, 4), np.nan)
    fastlinear.linear_backward(np.ones((5, 4)), np.ones((4, 0)), np.ones((5, 0)), dx=dx)
    dW, db = np.full((4, 3), np.nan), np.full(3, np.nan)
    fastlinear.linear_backward(np.ones((0, 4)), np.ones((4, 3)), np.ones((0, 3)), dW=dW, db=db)
    for a in (y, dx, dW, db):
        np.testing.assert_array_equal(a, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(30, 20, 10), (20000, 16, 8), (600, 300, 200)], ids=str)
def test_out_and_accumulate(rng, shape, dtype):
    N, M_in, M_out = shape
    x, W, dy = make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, (N, M_out), dtype)
    b = make(rng, M_out, dtype)
    ry, rdx, rdW, rdb = reference(x, W, b, dy)
    out = np.empty((N, M_out), dtype, order="F")   # not C-contiguous: written through a copy
    assert fastlinear.linear_forward(x, W, b, out=out) is out
    assert_close(out, ry, dtype, M_in)
    bufs = dict(dx=np.ones((N, M_in), dtype), dW=np.ones((M_in, M_out), dtype, order="F"),
                db=np.ones(2 * M_out, dtype)[::2])
    g = fastlinear.linear_backward(x, W, dy, accumulate=True, **bufs)
    assert g.dx is bufs["dx"] and g.dW is bufs["dW"] and g.db is bufs["db"]
    assert_close(g.dx, rdx + 1, dtype, M_out, scale=2)
    assert_close(g.dW, rdW + 1, dtype, N, scale=2)
    assert_close(g.db, rdb + 1, dtype, N, scale=2)
    g2 = fastlinear.linear_backward(x, W, dy, accumulate=True, **bufs)
    assert_close(g2.dW, 2 * rdW + 1, dtype, 2 * N, scale=2)


def test_skip_gradients(rng):
    x, W, dy = make(rng, (10, 4), np.float64), make(rng, (4, 3), np.float64), make(rng, (10, 3), np.float64)
    g = fastlinear.linear_backward(x, W, dy, need_dx=False, bias=False)
    assert g.dx is None and g.db is None
    assert_close(g.dW, x.T @ dy, np.float64, 10)
    g = fastlinear.linear_backward(x, W, dy, need_dW=False)
    assert g.dW is None
    assert_close(g.dx, dy @ W.T, np.float64, 3)
    assert_close(g.db, dy.sum(0), np.float64, 10)


def test_float32_db_is_summed_in_float64():
    # 2**24 + 1 ones: a float32 running sum would stall at 2**24.
    dy = np.ones((2 ** 24 + 2, 1), np.float32)
    g = fastlinear.linear_backward(np.zeros((dy.shape[0], 0), np.float32), np.zeros((0, 1), np.float32), dy)
    assert g.db[0] == np.float32(2 ** 24 + 2)


@pytest.mark.parametrize("path", PATH_SHAPES)
@pytest.mark.parametrize("given", ["dx", "dW", "db", "dx dW", "dx db", "dW db"])
def test_accumulate_into_some_buffers(rng, given, path):
    """accumulate=True adds into the buffers given and returns the other gradients
    in new arrays: each gradient follows its own buffer, never another's."""
    N, M_in, M_out = PATH_SHAPES[path]
    x, W, dy = make(rng, (N, M_in), np.float64), make(rng, (M_in, M_out), np.float64), make(rng, (N, M_out), np.float64)
    _, rdx, rdW, rdb = reference(x, W, None, dy)
    start = {"dx": make(rng, (N, M_in), np.float64), "dW": make(rng, (M_in, M_out), np.float64),
             "db": make(rng, M_out, np.float64)}
    bufs = {name: start[name].copy() for name in given.split()}
    g = fastlinear.linear_backward(x, W, dy, accumulate=True, **bufs)
    for name, want, k in (("dx", rdx, M_out), ("dW", rdW, N), ("db", rdb, N)):
        if name in bufs:
            assert getattr(g, name) is bufs[name]
            want = want + start[name]
        assert_close(getattr(g, name), want, np.float64, k, scale=2)


@pytest.mark.parametrize("path", ["serial", "blocked", "tiled"])
def test_float32_db_is_rounded_once(path):
    """float32 db is summed in float64 and rounded once: a column [2**24, 1, 1, 1]
    sums to 2**24 + 3, which rounds to 16777220; float32 adds would give 16777218."""
    from fastlinear import linear_backward
    from fastlinear._parallel import make_plan
    N, M_in, M_out = {"serial": (4, 1, 1), "blocked": (4096, 16, 8), "tiled": (64, 64, 128)}[path]
    assert Problem(KINDS["b11"], "float32", N, M_in, M_out).builtin_path() == PATHS[path]
    dy = np.zeros((N, M_out), np.float32)
    dy[:4] = np.array([2 ** 24, 1, 1, 1], np.float32)[:, None]
    want = dy.astype(np.float64).sum(0).astype(np.float32)
    assert want[0] == 16777220
    x, W = np.zeros((N, M_in), np.float32), np.zeros((M_in, M_out), np.float32)
    np.testing.assert_array_equal(fastlinear.linear_backward(x, W, dy).db, want)
    for small_kernels in (False, True):  # the path's plans, whichever this machine picks
        g = linear_backward(x, W, dy, num_threads=2, _plan=make_plan(PATHS[path], small_kernels, 2))
        np.testing.assert_array_equal(g.db, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mnk", [(40, 30, 20), (7, 50, 9), (9, 7, 50), (50, 9, 7)], ids=str)
def test_blas_dimension_split(rng, mnk, dtype):
    """Sides past the BLAS integer limit are cut into several calls, partial
    products over k added: a limit lowered for the test, every layout."""
    from fastlinear._testing import split_product
    m, n, k = mnk
    A, B, C0 = make(rng, (m, k), dtype), make(rng, (k, n), dtype), make(rng, (m, n), dtype)
    want = A.astype(float) @ B.astype(float)
    for limit in (1, 6, 8, 64):
        for a, b in [(A, B), (np.asfortranarray(A), B), (A, np.asfortranarray(B)),
                     (np.asfortranarray(A), np.asfortranarray(B))]:
            C = np.full((m, n), np.nan, dtype)
            split_product(a, b, C, False, limit)
            assert_close(C, want, dtype, k)
            C = C0.copy()
            split_product(a, b, C, True, limit)
            assert_close(C, C0.astype(float) + want, dtype, k + 1)


def test_weights_past_the_blas_limit_are_refused():
    """A dimension of W above 2**31 - 1 (zero-strided views: nothing is allocated)."""
    big = 2 ** 31
    for M_in, M_out in ((big, 1), (1, big)):
        x = np.broadcast_to(np.zeros(1), (1, M_in))
        W = np.broadcast_to(np.zeros(1), (M_in, M_out))
        dy = np.broadcast_to(np.zeros(1), (1, M_out))
        for call in (lambda: fastlinear.linear_forward(x, W),
                     lambda: fastlinear.linear_backward(x, W, dy)):
            with pytest.raises(ValueError, match="has a dimension above 2147483647"):
                call()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", ["M_in", "M_out"])
def test_the_blas_limit_on_both_sides(side, dtype):
    """W with M_in or M_out of 2**31 - 1, the largest BLAS integer, is accepted, and
    of 2**31 refused naming the limit (zero-sized arrays: nothing is allocated)."""
    limit = 2 ** 31 - 1

    def arrays_with(size):
        M_in, M_out = (size, 0) if side == "M_in" else (0, size)
        return (np.empty((0, M_in), dtype), np.empty((M_in, M_out), dtype),
                np.empty((0, M_out), dtype))

    x, W, dy = arrays_with(limit)
    M_in, M_out = W.shape
    # A db of 2**31 - 1 elements would take 16 GiB: that side is checked without a bias.
    b = np.empty(M_out, dtype) if side == "M_in" else None
    y = fastlinear.linear_forward(x, W, b)
    g = fastlinear.linear_backward(x, W, dy, bias=b is not None)
    assert_close(y, np.zeros((0, M_out)), dtype, M_in)
    assert_close(g.dx, np.zeros((0, M_in)), dtype, M_out)
    assert_close(g.dW, np.zeros((M_in, M_out)), dtype, 0)
    if b is not None:
        assert_close(g.db, np.zeros(0), dtype, 0)
    x, W, dy = arrays_with(limit + 1)
    message = rf"W of shape \({W.shape[0]}, {W.shape[1]}\) has a dimension above {limit}"
    with pytest.raises(ValueError, match=message):
        fastlinear.linear_forward(x, W)
    with pytest.raises(ValueError, match=message):
        fastlinear.linear_backward(x, W, dy, bias=False)


@pytest.fixture(params=[(False, 2), (False, 8), (True, 2)],
                ids=["packed-tiles-2", "packed-tiles-8", "small-kernel-tiles"])
def tiled_plan(request):
    """The ways a plan may cut mid-size products into tasks, whatever this machine
    has: packed tiles as on 2 and on 8 CPUs, and tiles for small-matrix kernels."""
    from fastlinear._parallel import PATHS, make_plan
    small_kernels, tasks = request.param
    return make_plan(PATHS["tiled"], small_kernels, tasks)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 784, 256), (77, 301, 203), (33, 1000, 40), (130, 90, 700),
                                   (4000, 100, 330)], ids=str)
def test_mid_size_tilings(rng, tiled_plan, shape, dtype):
    """Each cut matches the reference in every BLAS layout, with and without
    accumulating, and gives the same bits for any thread count.  (4000, 100,
    330) has its dW split along k either way."""
    from fastlinear import linear_backward, linear_forward
    from fastlinear._parallel import plan_fields
    N, M_in, M_out = shape
    if shape == (4000, 100, 330):
        from fastlinear._testing import task_grid
        _, small_kernels, tasks, _ = plan_fields(tiled_plan)
        assert task_grid(M_in, M_out, N, "T", "N", small_kernels, tasks)[2] > 1

    def step(x, W, b, dy, num_threads, **buffers):
        y = linear_forward(x, W, b, num_threads=num_threads, _plan=tiled_plan)
        return y, linear_backward(x, W, dy, accumulate=bool(buffers), num_threads=num_threads,
                                  _plan=tiled_plan, **buffers)

    x0, W0, dy0 = make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, (N, M_out), dtype)
    b = make(rng, M_out, dtype)
    ry, rdx, rdW, rdb = reference(x0, W0, b, dy0)
    F = np.asfortranarray
    for x, W, dy in [(x0, W0, dy0), (F(x0), F(W0), dy0), (x0, F(W0), F(dy0)), (F(x0), W0, F(dy0))]:
        y, g = step(x, W, b, dy, 2)
        assert_close(y, ry, dtype, M_in)
        for got, want, k in zip(g, (rdx, rdW, rdb), (M_out, N, N)):
            assert_close(got, want, dtype, k)
        for t in (1, 3):
            y_t, g_t = step(x, W, b, dy, t)
            np.testing.assert_array_equal(y_t, y)
            for got, want in zip(g_t, g):
                np.testing.assert_array_equal(got, want)
    start = [make(rng, a.shape, dtype) for a in (x0, W0, b)]
    results = []
    for t in (1, 3):
        dx, dW, db = (a.copy() for a in start)
        step(x0, W0, b, dy0, t, dx=dx, dW=dW, db=db)
        assert_close(dx, rdx + start[0], dtype, M_out)
        assert_close(dW, rdW + start[1], dtype, N)
        assert_close(db, rdb + start[2], dtype, N)
        results.append((dx, dW, db))
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("trans", ["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("mnk", [(64, 256, 784), (784, 256, 64), (64, 784, 256), (8, 256, 100),
                                 (1000, 3000, 8), (33, 1000, 40)], ids=str)
def test_small_kernel_task_limits(mnk, trans):
    """Tasks cut for the small-matrix kernels stay within their limits (see _gemm)."""
    from fastlinear._testing import task_grid
    m, n, k = mnk
    slices_m, slices_n, slices_k = task_grid(m, n, k, trans[0], trans[1], True, 2)
    rows, cols = -(-m // slices_m), -(-n // slices_n)
    assert slices_k == 1
    assert rows * cols * k <= 10 ** 6
    # Row-major op(A) op(B) with only B transposed is BLAS's column-major A^T B.
    if trans == "NT" and k >= 32:
        assert rows * cols <= 1200
    assert slices_m <= m and slices_n <= n  # no empty tasks
    assert (task_grid(m, n, k, trans[0], trans[1], False, 2) != (slices_m, slices_n, slices_k)
            or m * n * k <= 10 ** 6)


@pytest.mark.parametrize("tasks", [1, 2, 4, 16])
@pytest.mark.parametrize("mnk", [(256, 1024, 1024), (1024, 1024, 4096), (4096, 1024, 1024),
                                 (20000, 300, 300), (2000, 3000, 10)], ids=str)
def test_packed_tiles_follow_cpu_count(mnk, tasks):
    """A product past the small-kernel range is cut into one task per CPU (the
    CPU count rounded up to a power of two) unless that would make tasks
    smaller than 2**22 multiply-adds: (2000, 3000, 10) stops at 8."""
    from fastlinear._testing import task_grid
    m, n, k = mnk
    slices_m, slices_n, slices_k = task_grid(m, n, k, "N", "N", False, tasks)
    assert slices_m * slices_n * slices_k == (min(tasks, 8) if mnk == (2000, 3000, 10) else tasks)
    assert (m // slices_m) * (n // slices_n) * (k // slices_k) >= 2 ** 22
    # Past 2**35 multiply-adds, twice as many.
    assert np.prod(task_grid(2048, 4096, 4096, "N", "N", False, tasks)) == 2 * tasks


def test_tasks_are_the_cpu_count():
    from fastlinear import _gemm
    tasks = _gemm.machine_tasks()
    cpus = os.cpu_count() or 1
    assert tasks >= cpus and tasks < 2 * cpus and tasks & (tasks - 1) == 0
