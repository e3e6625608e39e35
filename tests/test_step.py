"""linear_backward(lr=, b=): an SGD step of W and b inside the backward."""
import numpy as np
import pytest
from _helpers import DTYPES, assert_close, make, planner_problem
from test_activations import df_ref, problem as activation_problem

import fastlinear
from fastlinear import _plans
from fastlinear import linear_backward

LR = 0.25
# Serial, row blocks, tiles (dx reading W in place), a k split, a wide W (N too small to tile).
SHAPES = [(7, 13, 5), (2049, 33, 7), (300, 200, 150), (64, 784, 256), (64, 20000, 64),
          (4096, 64, 64)]


def problem(rng, shape, dtype, activation):
    """x, W, b, dy, the saved y (relu) or z (gelu), and the float64 reference
    (W and b after the step, dx from W before it)."""
    x, W, b, dy, z = activation_problem(rng, shape, dtype, True)
    saved = {}
    if activation == "relu":
        saved["y"] = np.maximum(z, 0).astype(dtype)
    elif activation == "gelu":
        saved["z"] = z.astype(dtype)
    dz = dy.astype(float) * (1 if activation is None else df_ref(activation, z))
    want = (dz @ W.astype(float).T, W - LR * (x.astype(float).T @ dz), b - LR * dz.sum(0))
    return x, W, b, dy, saved, want


def step(x, W, b, dy, activation, saved, plan, threads, **kw):
    return linear_backward(x, W, dy, activation=activation, overwrite_dy=kw.get("overwrite_dy", False),
                           bias=b is not None, dz=kw.get("dz"), lr=LR, b=b, num_threads=threads,
                           _plan=plan, **saved)


def check(dx, W, b, want, x, dy, dtype):
    """dx, W and b (None: not checked) within rounding of the reference."""
    N, M_out = dy.shape
    ax, aW, ady = (np.abs(a.astype(float)) for a in (x, want[1], dy))
    if dx is not None:
        assert_close(dx, want[0], dtype, M_out + 8, scale=np.maximum(1.13 * ady @ aW.T, 1))
    assert_close(W, want[1], dtype, N + 8, scale=np.maximum(LR * 1.13 * ax.T @ ady + aW, 1))
    if b is not None:
        assert_close(b, want[2], dtype, N + 8, scale=np.maximum(LR * 1.13 * ady.sum(0), 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_plan_steps_W_and_b(rng, shape, dtype, activation):
    """Every plan the planner may choose: W and b stepped, dx from W before the step,
    the same bits for 1 to 4 threads and with a dz buffer or dy overwritten."""
    x, W0, b0, dy, saved, want = problem(rng, shape, dtype, activation)
    N, M_in, M_out = shape
    inputs = [a.copy() for a in (x, dy, *saved.values())]
    for plan in _plans.candidates(planner_problem("b11", N, M_in, M_out)):
        results = []
        for threads in (1, 2, 3, 4):
            W, b = W0.copy(), b0.copy()
            g = step(x, W, b, dy, activation, saved, plan, threads)
            assert g.dW is None and g.db is None
            results.append((g.dx, W, b))
        check(*results[0], want, x, dy, dtype)
        for other in results[1:]:
            for a, c in zip(results[0], other):
                np.testing.assert_array_equal(a, c)
        if activation:  # where dz goes changes no bit
            W, b = W0.copy(), b0.copy()
            step(x, W, b, dy, activation, saved, plan, 2, dz=np.empty_like(dy))
            np.testing.assert_array_equal(W, results[0][1])
            W, b, dy2 = W0.copy(), b0.copy(), dy.copy()
            step(x, W, b, dy2, activation, saved, plan, 2, overwrite_dy=True)
            np.testing.assert_array_equal(W, results[0][1])
            np.testing.assert_array_equal(b, results[0][2])
    for a, c in zip(inputs, (x, dy, *saved.values())):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype", DTYPES)
def test_public_call_no_dx_no_bias_and_a_strided_b(rng, dtype):
    """The first layer's call (no dx), a layer without bias, and b a strided view."""
    x, W0, b0, dy, _, want = problem(rng, (300, 200, 150), dtype, None)
    W, b_store = W0.copy(), np.zeros((150, 2), dtype)
    b_store[:, 0] = b0
    g = fastlinear.linear_backward(x, W, dy, need_dx=False, lr=LR, b=b_store[:, 0])
    assert g == (None, None, None)
    check(None, W, b_store[:, 0], want, x, dy, dtype)
    assert not b_store[:, 1].any()
    W = W0.copy()
    g = fastlinear.linear_backward(x, W, dy, bias=False, lr=LR)
    assert g.db is None
    check(g.dx, W, None, want, x, dy, dtype)


def test_leading_dimensions_and_integer_lr(rng):
    x, W0, b0, dy, _, _ = problem(rng, (60, 20, 10), np.float64, None)
    W, b = W0.copy(), b0.copy()
    g = fastlinear.linear_backward(x.reshape(3, 20, 20), W, dy.reshape(3, 20, 10), lr=1, b=b)
    assert g.dx.shape == (3, 20, 20)
    np.testing.assert_allclose(W, W0 - x.T @ dy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b, b0 - dy.sum(0), rtol=1e-12, atol=1e-12)


def bad_calls(x, W, b, dy):
    """(kwargs, error, words of the message) of calls that must be refused."""
    y = np.maximum(x @ W, 0)
    F = np.asfortranarray(W)
    read_only = W.copy()
    read_only.flags.writeable = False
    return [
        (dict(lr=LR), ValueError, "give the bias as b="),
        (dict(b=b), ValueError, "only with lr="),
        (dict(lr=LR, b=b, bias=False), ValueError, "bias=False"),
        (dict(lr=LR, b=b, dW=np.empty_like(W)), ValueError, "no dW= or db="),
        (dict(lr=LR, b=b, db=np.empty_like(b)), ValueError, "no dW= or db="),
        (dict(lr=LR, b=b, accumulate=True), ValueError, "accumulate=False"),
        (dict(lr=LR, b=b, need_dW=False), ValueError, "need_dW=True"),
        (dict(lr="0.1", b=b), TypeError, "real number"),
        (dict(lr=True, b=b), TypeError, "real number"),
        (dict(lr=float("nan"), b=b), ValueError, "finite"),
        (dict(lr=LR, b=b, W=F), ValueError, "C-contiguous"),
        (dict(lr=LR, b=b, W=read_only), ValueError, "writeable"),
        (dict(lr=LR, b=b, W=W.tolist()), ValueError, "ndarray"),
        (dict(lr=LR, b=b, W=W.astype(W.dtype.newbyteorder())), ValueError, "native"),
        (dict(lr=LR, b=b[:2]), ValueError, "b must have shape"),
        (dict(lr=LR, b=b.astype(np.float32)), ValueError, "dtype"),
        (dict(lr=LR, b=b.tolist()), TypeError, "NumPy array"),
        (dict(lr=LR, b=W[0]), ValueError, "b overlaps W"),
        (dict(lr=LR, b=b, dx=x), ValueError, "dx overlaps x"),
        (dict(lr=LR, b=b, activation="relu", y=y, dz=y), ValueError, "dz overlaps y"),
    ]


def test_refusals_touch_nothing():
    rng = np.random.default_rng(3)
    x, W, b, dy = (make(rng, s, np.float64) for s in ((6, 5), (5, 4), 4, (6, 4)))
    for kw, error, words in bad_calls(x, W, b, dy):
        args = (x, kw.pop("W", W), dy)
        before = [np.array(a, copy=True) for a in (x, W, b, dy)]
        with pytest.raises(error, match=words):
            fastlinear.linear_backward(*args, **kw)
        for a, c in zip(before, (x, W, b, dy)):
            np.testing.assert_array_equal(a, c)


def test_W_overlapping_an_input_is_refused():
    store = np.zeros((12, 4))
    W, x = store[2:6], store[:6]
    with pytest.raises(ValueError, match="W \\(stepped by lr\\) overlaps x"):
        fastlinear.linear_backward(x, W, np.ones((6, 4)), bias=False, lr=LR)
    W, dy = store[:4], store[2:8]
    with pytest.raises(ValueError, match="overlaps dy"):
        fastlinear.linear_backward(np.ones((6, 4)), W, dy, bias=False, lr=LR)
    W = np.zeros((4, 3))
    y = np.zeros((6, 3))
    dz = np.zeros((6, 3))
    b = dz[0]
    with pytest.raises(ValueError, match="b overlaps dz"):
        fastlinear.linear_backward(np.ones((6, 4)), W, np.ones((6, 3)), activation="relu", y=y,
                                   dz=dz, lr=LR, b=b)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_backward_with_lr(rng, bias):
    """Linear.backward(dy, lr=) steps W and b, leaves dW and db, and returns dx."""
    layer = fastlinear.Linear(20, 10, bias=bias, activation="relu", seed=0)
    x, dy = make(rng, (30, 20), np.float64), make(rng, (30, 10), np.float64)
    W0, b0 = layer.W.copy(), None if layer.b is None else layer.b.copy()
    z = x @ W0 + (0 if b0 is None else b0)
    dz = dy * (z > 0)
    layer.forward(x)
    dx = layer.backward(dy, lr=LR)
    np.testing.assert_allclose(dx, dz @ W0.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.W, W0 - LR * x.T @ dz, rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(layer.b, b0 - LR * dz.sum(0), rtol=1e-12, atol=1e-12)
        assert not layer.db.any()
    assert not layer.dW.any()
