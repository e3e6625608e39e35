"""Fused activations against a float64 NumPy reference, finite differences and PyTorch."""
import os
import platform
import subprocess

import numpy as np
import pytest
from _helpers import DTYPES, assert_close, c_compiler_fails, make, planner_problem
from scipy.special import erf

import fastlinear
from fastlinear import _plans
from fastlinear import linear_backward, linear_forward

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ACTIVATIONS = ["relu", "tanh", "sigmoid", "gelu", "gelu_tanh"]
NEEDS_Z = {"gelu", "gelu_tanh"}
SQRT_2_PI = np.sqrt(2 / np.pi)


def f_ref(name, z):
    """f(z) in float64."""
    if name == "relu":
        return np.where(z < 0, 0.0, z)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "gelu":
        return 0.5 * z * (1 + erf(z / np.sqrt(2)))
    return 0.5 * z * (1 + np.tanh(SQRT_2_PI * (z + 0.044715 * z ** 3)))


def df_ref(name, z):
    """f'(z) in float64, from z."""
    if name == "relu":
        return (z > 0).astype(float)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s)
    if name == "gelu":
        return 0.5 * (1 + erf(z / np.sqrt(2))) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    t = np.tanh(SQRT_2_PI * (z + 0.044715 * z ** 3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * SQRT_2_PI * (1 + 3 * 0.044715 * z * z)


def problem(rng, shape, dtype, bias):
    """x, W, b, dy, and the float64 reference (z, y, dx, dW, db) for each activation.

    dy is zero where z is within rounding of 0 (relu's kink), so that the
    reference's side of the kink and the kernel's cannot differ there.
    """
    N, M_in, M_out = shape
    x = make(rng, (N, M_in), dtype)
    W = (make(rng, (M_in, M_out), dtype) / np.sqrt(max(M_in, 1))).astype(dtype)
    b = make(rng, M_out, dtype) if bias else None
    z = x.astype(float) @ W.astype(float) + (0 if b is None else b.astype(float))
    dy = make(rng, (N, M_out), dtype)
    dy[np.abs(z) < 1e-3] = 0
    return x, W, b, dy, z


def expected(name, x, W, dy, z):
    dz = dy.astype(float) * df_ref(name, z)
    return f_ref(name, z), dz @ W.astype(float).T, x.astype(float).T @ dz, dz.sum(0)


def check(name, dtype, got, want, M_in, M_out, N, x, W, dy):
    """Within rounding of each sum: its length times the sum of its terms' magnitudes,
    since a BLAS may add them in any order (f' is at most 1.13 for every activation)."""
    y, dx, dW, db = got
    ry, rdx, rdW, rdb = want
    x, W, dy = (np.abs(a.astype(float)) for a in (x, W, dy))
    assert_close(y, ry, dtype, M_in + 8)
    assert_close(dx, rdx, dtype, M_out + 8, scale=np.maximum(1.13 * dy @ W.T, 1))
    assert_close(dW, rdW, dtype, N + 8, scale=np.maximum(1.13 * x.T @ dy, 1))
    if db is not None:
        assert_close(db, rdb, dtype, N + 8)


def run(name, x, W, b, dy, plan=None, num_threads=None, **kw):
    """y, dx, dW, db of one forward and backward with activation ``name``."""
    N, M_out = dy.shape
    z = np.empty((N, M_out), x.dtype) if name in NEEDS_Z else None
    y = linear_forward(x, W, b, activation=name, z=z, num_threads=num_threads, _plan=plan)
    saved = {"z": z} if name in NEEDS_Z else {"y": y}
    g = linear_backward(x, W, dy, activation=name, overwrite_dy=kw.get("overwrite_dy", False),
                        bias=b is not None, dz=kw.get("dz"), num_threads=num_threads, _plan=plan,
                        **saved)
    return y, g.dx, g.dW, g.db


# Serial, blocked, tiles, a tiled forward whose k is split.
SHAPES = [(7, 13, 5), (64, 784, 256), (2049, 33, 7), (300, 200, 150), (64, 20000, 64)]


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_plan_matches_the_reference(rng, shape, bias, dtype, name):
    """Every plan the planner may choose, C and Fortran layouts, identical for any thread count."""
    N, M_in, M_out = shape
    x, W, b, dy, z = problem(rng, shape, dtype, bias)
    want = expected(name, x, W, dy, z)
    plans = sorted({p for kind in ("f", "b11") for p in _plans.candidates(planner_problem(kind, N, M_in, M_out))})
    for plan in plans:
        for xs, Ws, dys in [(x, W, dy), (np.asfortranarray(x), np.asfortranarray(W), np.asfortranarray(dy))]:
            got = run(name, xs, Ws, b, dys, plan, 2)
            check(name, dtype, got, want, M_in, M_out, N, x, W, dy)
            dz = np.full((N, M_out), np.nan, dtype)
            for a, c in zip(run(name, xs, Ws, b, dys, plan, 2, dz=dz), got):
                if c is not None:
                    np.testing.assert_array_equal(a, c)
            assert_close(dz, dy.astype(float) * df_ref(name, z), dtype, M_in + 8,
                         scale=np.maximum(np.abs(dy.astype(float)), 1))
            for t in (1, 3):
                for a, c in zip(run(name, xs, Ws, b, dys, plan, t), got):
                    if c is not None:
                        np.testing.assert_array_equal(a, c)


def test_a_split_k_forward_applies_the_activation_after_the_sum(rng):
    """(64, 20000, 64) tiled splits the forward's k; the activation must see the whole sum."""
    from fastlinear._parallel import PATHS, make_plan
    from fastlinear._testing import task_grid
    assert task_grid(64, 64, 20000, "N", "N", False, 2)[2] > 1
    x, W, b, dy, z = problem(rng, (64, 20000, 64), np.float64, True)
    got = run("tanh", x, W, b, dy, make_plan(PATHS["tiled"], False, 2), 2)
    check("tanh", np.float64, got, expected("tanh", x, W, dy, z), 20000, 64, 64, x, W, dy)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_finite_differences(rng, name):
    """dL/dx, dW, db of L = sum(r * f(x W + b)) against central differences."""
    x, W, b = make(rng, (5, 4), np.float64), make(rng, (4, 3), np.float64), make(rng, 3, np.float64)
    r = make(rng, (5, 3), np.float64)

    def loss(x, W, b):
        return float((r * fastlinear.linear_forward(x, W, b, activation=name)).sum())

    z = np.empty((5, 3))
    y = fastlinear.linear_forward(x, W, b, activation=name, z=z)
    saved = {"z": z} if name in NEEDS_Z else {"y": y}
    g = fastlinear.linear_backward(x, W, r, activation=name, **saved)
    h = 1e-6
    for arr, grad in ((x, g.dx), (W, g.dW), (b, g.db)):
        numeric = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            up = loss(x, W, b)
            arr[i] = old - h
            down = loss(x, W, b)
            arr[i] = old
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_pytorch(rng, name, dtype):
    torch = pytest.importorskip("torch")
    functional = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                  "gelu": torch.nn.functional.gelu,
                  "gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh")}[name]
    x, W, b, dy, _ = problem(rng, (64, 100, 30), dtype, True)
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    ty = functional(tx @ tW + tb)
    ty.backward(torch.tensor(dy))
    got = run(name, x, W, b, dy)
    for a, t in zip(got, (ty, tx.grad, tW.grad, tb.grad)):
        assert_close(a, t.detach().numpy().astype(np.float64), dtype, 100 + 64)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_nan_and_inf_propagate_as_in_pytorch(name):
    """z = 0 @ 0 + b puts NaN and infinities in z; db is then dz itself."""
    b = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0, 2.0])
    x, W = np.zeros((1, 1)), np.zeros((1, 6))
    z = np.empty((1, 6))
    y = fastlinear.linear_forward(x, W, b, activation=name, z=z)
    with np.errstate(all="ignore"):
        want = f_ref(name, b[None])
    np.testing.assert_allclose(y, want)  # NaN where the reference has NaN, equal elsewhere
    torch = pytest.importorskip("torch")
    t = torch.tensor(b, requires_grad=True)
    functional = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                  "gelu": torch.nn.functional.gelu,
                  "gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh")}[name]
    ty = functional(t)
    dy = np.array([1.0, np.inf, 1.0, np.nan, np.inf, 1.0])
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y[0], ty.detach().numpy())
    saved = {"z": z} if name in NEEDS_Z else {"y": y}
    g = fastlinear.linear_backward(x, W, dy[None], activation=name, **saved)
    np.testing.assert_allclose(g.db, t.grad.numpy())


@pytest.mark.parametrize("name", ["relu", "gelu"])
@pytest.mark.parametrize("shape", [(64, 784, 256), (2049, 33, 7), (20, 30, 30)], ids=str)
def test_accumulates_over_two_backward_calls(rng, shape, name):
    N, M_in, M_out = shape
    x, W, b, dy, z = problem(rng, shape, np.float64, True)
    _, rdx, rdW, rdb = expected(name, x, W, dy, z)
    start = [make(rng, a.shape, np.float64) for a in (x, W, b)]
    dx, dW, db = (a.copy() for a in start)
    zbuf = np.empty((N, M_out))
    y = fastlinear.linear_forward(x, W, b, activation=name, z=zbuf)
    saved = {"z": zbuf} if name in NEEDS_Z else {"y": y}
    for _ in range(2):
        fastlinear.linear_backward(x, W, dy, activation=name, **saved, dx=dx, dW=dW, db=db,
                                   accumulate=True)
    assert_close(dx, start[0] + 2 * rdx, np.float64, M_out, 2)
    assert_close(dW, start[1] + 2 * rdW, np.float64, N, 2)
    assert_close(db, start[2] + 2 * rdb, np.float64, N, 2)


@pytest.mark.parametrize("name", ["relu", "gelu_tanh"])
@pytest.mark.parametrize("shape", [(64, 784, 256), (2049, 33, 7), (20, 30, 30)], ids=str)
def test_overwrite_dy(rng, shape, name):
    """dy is written (with dz) only when allowed; the gradients are the same bits either way."""
    x, W, b, dy, _ = problem(rng, shape, np.float32, True)
    for order in "CF":
        dy0 = np.array(dy, order=order)
        kept = dy0.copy()
        got = run(name, x, W, b, dy0)
        np.testing.assert_array_equal(dy0, kept)
        overwritten = run(name, x, W, b, dy0, overwrite_dy=True)
        for a, c in zip(got, overwritten):
            np.testing.assert_array_equal(a, c)
        N, M_out = dy.shape
        z = x.astype(float) @ W.astype(float) + b
        assert_close(dy0, dy.astype(float) * df_ref(name, z), np.float32, x.shape[1] + 8)
        ro = np.array(kept, order=order)
        ro.flags.writeable = False
        for a, c in zip(run(name, x, W, b, ro, overwrite_dy=True), got):
            np.testing.assert_array_equal(a, c)  # read-only dy: scratch instead


@pytest.mark.parametrize("dy_order", ["C", "F"])
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_dz_buffer(rng, order, dy_order):
    """dz= receives dy * f'(.), in any layout, dy is left as it was, and the gradients
    are the bits of a call without it."""
    x, W, b, dy, z = problem(rng, (300, 40, 24), np.float64, True)
    dy = np.array(dy, order=dy_order)
    kept = dy.copy()
    for plan in sorted(set(_plans.candidates(planner_problem("f", 300, 40, 24)) + _plans.candidates(planner_problem("b11", 300, 40, 24)))):
        got = run("gelu", x, W, b, dy, plan)
        dz = np.full((300, 48), np.nan)[:, ::2] if order == "strided" else np.full_like(dy, np.nan, order=order)
        for a, c in zip(run("gelu", x, W, b, dy, plan, dz=dz), got):
            np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(dy, kept)
        assert_close(dz, dy * df_ref("gelu", z), np.float64, 48)


def test_dz_buffer_errors(rng):
    x, W, dy = make(rng, (6, 4), np.float64), make(rng, (4, 3), np.float64), make(rng, (6, 3), np.float64)
    y = fastlinear.linear_forward(x, W, activation="relu")
    with pytest.raises(ValueError, match="no activation"):
        fastlinear.linear_backward(x, W, dy, dz=np.empty_like(dy))
    with pytest.raises(ValueError, match="not both"):
        fastlinear.linear_backward(x, W, dy, activation="relu", y=y, overwrite_dy=True,
                                   dz=np.empty_like(dy))
    with pytest.raises(ValueError, match=r"dz must have shape \(6, 3\)"):
        fastlinear.linear_backward(x, W, dy, activation="relu", y=y, dz=np.empty((6, 4)))
    with pytest.raises(ValueError, match="dz must have dtype float64"):
        fastlinear.linear_backward(x, W, dy, activation="relu", y=y, dz=np.empty((6, 3), np.float32))
    with pytest.raises(TypeError, match="dz must be a NumPy array"):
        fastlinear.linear_backward(x, W, dy, activation="relu", y=y, dz=[[0.0] * 3] * 6)
    for shared, name in ((dy, "dy"), (y, "y")):
        with pytest.raises(ValueError, match=f"dz overlaps {name}"):
            fastlinear.linear_backward(x, W, dy, activation="relu", y=y, dz=shared)
    both = np.empty(21)
    with pytest.raises(ValueError, match="dz overlaps db"):
        fastlinear.linear_backward(x, W, dy, activation="relu", y=y, db=both[16:19],
                                   dz=both[:18].reshape(6, 3))
    kept = [a.copy() for a in (x, W, dy, y)]
    for a, c in zip((x, W, dy, y), kept):
        np.testing.assert_array_equal(a, c)


def test_overwrite_dy_refuses_a_dy_that_shares_y(rng):
    x, W = make(rng, (10, 8), np.float64), make(rng, (8, 8), np.float64)
    y = fastlinear.linear_forward(x, W, activation="relu")
    with pytest.raises(ValueError, match="overlaps y"):
        fastlinear.linear_backward(x, W, y, activation="relu", y=y, overwrite_dy=True)
    before = y.copy()
    fastlinear.linear_backward(x, W, y, activation="relu", y=y)  # reading both is fine
    np.testing.assert_array_equal(y, before)


def test_errors(rng):
    x, W, dy = make(rng, (6, 4), np.float64), make(rng, (4, 3), np.float64), make(rng, (6, 3), np.float64)
    y = fastlinear.linear_forward(x, W, activation="relu")
    with pytest.raises(ValueError, match="gelu_tanh.*relu.*sigmoid.*tanh"):
        fastlinear.linear_forward(x, W, activation="softplus")
    with pytest.raises(TypeError, match="activation"):
        fastlinear.linear_forward(x, W, activation=np.tanh)
    with pytest.raises(ValueError, match="y="):
        fastlinear.linear_backward(x, W, dy, activation="relu")
    with pytest.raises(ValueError, match="z="):
        fastlinear.linear_backward(x, W, dy, activation="gelu", y=y)
    with pytest.raises(ValueError, match="no array"):
        fastlinear.linear_backward(x, W, dy, y=y)
    with pytest.raises(ValueError, match="y must have the shape of dy"):
        fastlinear.linear_backward(x, W, dy, activation="tanh", y=y[:5])
    with pytest.raises(TypeError, match="dtype"):
        fastlinear.linear_backward(x, W, dy, activation="tanh", y=y.astype(np.float32))
    with pytest.raises(ValueError, match="z must have shape"):
        fastlinear.linear_forward(x, W, activation="gelu", z=np.empty((6, 4)))
    out = np.empty((6, 3))
    with pytest.raises(ValueError, match="z overlaps out"):
        fastlinear.linear_forward(x, W, activation="gelu", out=out, z=out)
    dx = np.zeros((6, 4))
    with pytest.raises(ValueError, match="dx overlaps y"):
        fastlinear.linear_backward(x, W, dy, activation="relu", y=dx[:, :3], dx=dx)
    np.testing.assert_array_equal(dx, 0)  # nothing written before the error


@pytest.mark.parametrize("name", [None] + ACTIVATIONS)
@pytest.mark.parametrize("give_y, give_z", [(False, False), (True, False), (False, True),
                                            (True, True)])
def test_backward_takes_exactly_the_saved_array_of_its_activation(rng, name, give_y, give_z):
    """No activation takes neither y= nor z=; GELU takes z= alone, the others y= alone.
    Every other combination is refused before anything is written."""
    x, W, dy = make(rng, (6, 4), np.float64), make(rng, (4, 3), np.float64), make(rng, (6, 3), np.float64)
    z = np.empty((6, 3))
    y = linear_forward(x, W, activation=name, z=z)
    wants = (False, False) if name is None else (False, True) if name.startswith("gelu") else (True, False)
    dx = np.zeros((6, 4))
    call = lambda: linear_backward(x, W, dy, activation=name, y=y if give_y else None,  # noqa: E731
                                   z=z if give_z else None, dx=dx)
    if (give_y, give_z) == wants:
        call()
        assert not np.all(dx == 0)
    else:
        with pytest.raises(ValueError, match="takes f' from"):
            call()
        np.testing.assert_array_equal(dx, 0)


def test_z_receives_the_pre_activation(rng):
    x, W, b = make(rng, (9, 5), np.float32), make(rng, (5, 4), np.float32), make(rng, 4, np.float32)
    z = np.empty((4, 9), np.float32).T  # not C-contiguous: written through a copy
    y = fastlinear.linear_forward(x, W, b, activation="sigmoid", z=z)
    np.testing.assert_array_equal(z, fastlinear.linear_forward(x, W, b))
    assert_close(y, f_ref("sigmoid", z.astype(float)), np.float32, 8)


@pytest.mark.parametrize("name", [None] + ACTIVATIONS)
def test_linear_layer(rng, name):
    layer = fastlinear.Linear(6, 4, activation=name, seed=0)
    assert (f"activation={name!r}" in repr(layer)) == (name is not None)
    assert set(layer.state_dict()) == {"W", "b"}
    x = make(rng, (3, 2, 6), np.float64)
    dy = make(rng, (3, 2, 4), np.float64)
    z = x.reshape(6, 6) @ layer.W + layer.b
    y = layer.forward(x)
    dx = layer.backward(dy)
    ref = "relu" if name is None else name
    df = np.ones_like(z) if name is None else df_ref(ref, z)
    f = z if name is None else f_ref(ref, z)
    dz = dy.reshape(6, 4) * df
    assert_close(y, f.reshape(3, 2, 4), np.float64, 8)
    assert_close(dx, (dz @ layer.W.T).reshape(3, 2, 6), np.float64, 8)
    assert_close(layer.dW, x.reshape(6, 6).T @ dz, np.float64, 8)
    assert_close(layer.db, dz.sum(0), np.float64, 8)
    with pytest.raises(ValueError, match="relu"):
        fastlinear.Linear(6, 4, activation="ReLU")


@pytest.mark.parametrize("shape", [(64, 784, 256), (2049, 33, 7), (64, 20000, 64)], ids=str)
def test_z_is_written_without_an_activation_too(rng, shape):
    """With no activation, z= still receives x @ W + b, on every plan."""
    N, M_in, M_out = shape
    x, W, b = make(rng, (N, M_in), np.float64), make(rng, (M_in, M_out), np.float64), make(rng, M_out, np.float64)
    for plan in _plans.candidates(planner_problem("f", N, M_in, M_out)):
        z = np.full((N, M_out), np.nan)
        y = linear_forward(x, W, b, z=z, num_threads=2, _plan=plan)
        np.testing.assert_array_equal(z, y)
        assert_close(y, x @ W + b, np.float64, M_in)


@pytest.mark.parametrize("name", ["sigmoid", "gelu", "gelu_tanh", "tanh"])
def test_float32_activations_over_their_whole_range(name):
    """float32's own exp and erf: f and f' on a dense grid of z in [-100, 100],
    within 4e-7 max(1, |z|) of float64 (the documented bound), NaN, Inf and the
    ends of exp's range as float64's."""
    z = np.concatenate([np.linspace(-100, 100, 400_001), np.linspace(-6, 6, 400_001)])
    z = z.astype(np.float32)
    x, W = z.reshape(-1, 1), np.ones((1, 1), np.float32)
    saved = np.empty_like(x)
    y = fastlinear.linear_forward(x, W, activation=name, z=saved)
    g = fastlinear.linear_backward(x, W, np.ones_like(x), activation=name, bias=False,
                                   need_dW=False, **({"z": saved} if name in NEEDS_Z else {"y": y}))
    z64 = z.astype(float)
    bound = 4e-7 * np.maximum(1, np.abs(z64))
    assert np.all(np.abs(y.ravel() - f_ref(name, z64)) <= bound)
    assert np.all(np.abs(g.dx.ravel() - df_ref(name, z64)) <= bound)
    special = np.array([[np.nan], [np.inf], [-np.inf], [88.8], [-88.8], [-1e30]], np.float32)
    with np.errstate(all="ignore"):
        want = f_ref(name, special.astype(float)).astype(np.float32)
    want[np.abs(want) < 2.0 ** -124] = 0  # exp's results under 2**-124 are 0 (documented)
    np.testing.assert_array_equal(fastlinear.linear_forward(special, W, activation=name), want)
    ends = np.array([[np.nan], [88.8], [-88.8], [-100]], np.float32)  # f' of 0 or 1, exactly
    saved = np.empty_like(ends)
    y = fastlinear.linear_forward(ends, W, activation=name, z=saved)
    g = fastlinear.linear_backward(ends, W, np.ones_like(ends), activation=name, bias=False,
                                   need_dW=False, **({"z": saved} if name in NEEDS_Z else {"y": y}))
    with np.errstate(all="ignore"):
        want = df_ref(name, ends.astype(float)).astype(np.float32)
    want[np.abs(want) < 2.0 ** -124] = 0
    np.testing.assert_array_equal(g.dx, want)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                    or not os.path.exists(os.path.join(REPO, "tools", "activation_clones.c")),
                    reason="needs x86-64 and the source tree")
def test_avx2_and_baseline_loops_give_the_same_bits(tmp_path):
    """The loader picks the AVX2 or the baseline build of the activation loops by CPU;
    both must compute every activation, in both types, to the same bits."""
    why = c_compiler_fails()
    if why:
        pytest.skip(f"needs a working C compiler: {why}")
    outputs = []
    for name, clones in [("base", ""), ("avx2", '__attribute__((target("avx2")))')]:
        exe = str(tmp_path / name)
        subprocess.run(["cc", "-O3", "-fno-trapping-math", f"-DFL_CLONES={clones}",
                        "-I", os.path.join(REPO, "fastlinear"),
                        os.path.join(REPO, "tools", "activation_clones.c"), "-lm", "-o", exe],
                       check=True)
        outputs.append(subprocess.run([exe], check=True, capture_output=True).stdout)
    assert len(outputs[0]) > 10 ** 6 and outputs[0] == outputs[1]
