"""fastlinear.optim: one-pass optimizer steps against scikit-learn's optimizers and NumPy."""
import numpy as np
import pytest
from _helpers import DTYPES

from fastlinear import optim

# Sizes around the task chunk (2**15 elements), and shapes of weights and biases.
SHAPES = [(7,), (3, 5), (1 << 15,), ((1 << 15) + 1,), (300, 257)]


def _state(rng, shape, dtype, steps=3):
    """A parameter and the gradients of ``steps`` steps."""
    param = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(steps)]
    return param, grads


def _sklearn_optimizers():
    return pytest.importorskip("sklearn.neural_network._stochastic_optimizers")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True), (0.5, True)])
def test_sgd_is_scikit_learns(rng, dtype, shape, momentum, nesterov):
    """Three steps, each the same as scikit-learn's SGDOptimizer to rounding."""
    stochastic = _sklearn_optimizers()
    param, grads = _state(rng, shape, dtype)
    theirs = param.copy()
    reference = stochastic.SGDOptimizer([theirs], 0.05, momentum=momentum, nesterov=nesterov)
    velocity = np.zeros_like(param)
    for grad in grads:
        before = grad.copy()
        optim.sgd_step(param, grad, velocity, lr=0.05, momentum=momentum, nesterov=nesterov)
        reference.update_params([theirs], [grad])
        np.testing.assert_array_equal(grad, before)  # the gradient is not modified
        np.testing.assert_allclose(param, theirs, rtol=2 * np.finfo(dtype).eps, atol=0)
        np.testing.assert_allclose(velocity, reference.velocities[0],
                                   rtol=2 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_adam_is_scikit_learns(rng, dtype, shape):
    """Three steps, each the same as scikit-learn's AdamOptimizer to rounding."""
    stochastic = _sklearn_optimizers()
    param, grads = _state(rng, shape, dtype)
    theirs = param.copy()
    reference = stochastic.AdamOptimizer([theirs], 0.01, 0.8, 0.95, 1e-7)
    m, v = np.zeros_like(param), np.zeros_like(param)
    eps = np.finfo(dtype).eps
    # The rounding of each step's addition, relative to its operands: scikit-learn's step is
    # float64 under NumPy 2 and float32 under NumPy 1's value-based casting.
    bound = np.zeros(shape)
    for step, grad in enumerate(grads, 1):
        before = theirs.astype(np.float64)
        optim.adam_step(param, grad, m, v, step=step, lr=0.01, beta1=0.8, beta2=0.95, eps=1e-7)
        reference.update_params([theirs], [grad])
        bound += 4 * eps * (np.abs(before) + np.abs(theirs - before))
        np.testing.assert_allclose(m, reference.ms[0], rtol=4 * eps, atol=0)
        np.testing.assert_allclose(v, reference.vs[0], rtol=4 * eps, atol=0)
        assert (np.abs(param.astype(np.float64) - theirs) <= bound).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_against_float64_math(rng, dtype):
    """The formulas, in float64 NumPy, without scikit-learn."""
    param, grads = _state(rng, (40, 33), dtype, steps=5)
    p64, m64, v64 = param.astype(np.float64), np.zeros((40, 33)), np.zeros((40, 33))
    m, v = np.zeros_like(param), np.zeros_like(param)
    for step, grad in enumerate(grads, 1):
        optim.adam_step(param, grad, m, v, step=step, lr=0.003)
        g = grad.astype(np.float64)
        m64 = 0.9 * m64 + 0.1 * g
        v64 = 0.999 * v64 + 0.001 * g * g
        p64 -= 0.003 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step) * m64 / (np.sqrt(v64) + 1e-8)
    np.testing.assert_allclose(param, p64, rtol=50 * np.finfo(dtype).eps, atol=1e-6 if dtype == np.float32 else 0)


def test_float32_adam_adds_its_step_in_float64(rng):
    """As NumPy 2 computes scikit-learn's float32 Adam: m, v and the root in float32, the
    step and the addition in float64, one rounding to float32 at the end; bit for bit."""
    param, grads = _state(rng, (50, 41), np.float32)
    m, v = np.zeros_like(param), np.zeros_like(param)
    want, wm, wv = param.copy(), m.copy(), v.copy()
    for step, grad in enumerate(grads, 1):
        optim.adam_step(param, grad, m, v, step=step, lr=0.01)
        wm = np.float32(0.9) * wm + np.float32(1 - 0.9) * grad
        wv = np.float32(0.999) * wv + np.float32(1 - 0.999) * (grad * grad)
        rate = 0.01 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
        den = (np.sqrt(wv) + np.float32(1e-8)).astype(np.float64)
        want = (want.astype(np.float64) + (-rate * wm.astype(np.float64)) / den).astype(np.float32)
    np.testing.assert_array_equal(m, wm)
    np.testing.assert_array_equal(param, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_without_velocity_is_a_plain_step(rng, dtype):
    param, (grad,) = _state(rng, (5, 4), dtype, steps=1)
    want = param.astype(np.float64) - 0.1 * grad.astype(np.float64)
    optim.sgd_step(param, grad, lr=0.1)
    np.testing.assert_allclose(param, want, rtol=2 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_same_bits_for_any_thread_count(rng, dtype):
    param, grads = _state(rng, (5 << 15) + 3, dtype)
    results = []
    for threads in (1, 2, 3, 4):
        p, m, v, velocity, q = param.copy(), np.zeros_like(param), np.zeros_like(param), \
            np.zeros_like(param), param.copy()
        for step, grad in enumerate(grads, 1):
            optim.adam_step(p, grad, m, v, step=step, num_threads=threads)
            optim.sgd_step(q, grad, velocity, lr=0.1, momentum=0.9, nesterov=True, num_threads=threads)
        results.append((p, m, v, q, velocity))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def _arrays(dtype=np.float64, shape=(4, 3)):
    return [np.zeros(shape, dtype) for _ in range(4)]


@pytest.mark.parametrize("call, error, match", [
    (lambda p, g, m, v: optim.sgd_step(p, g, lr=-1.0), ValueError, "lr"),
    (lambda p, g, m, v: optim.sgd_step(p, g, lr=float("nan")), ValueError, "lr"),
    (lambda p, g, m, v: optim.sgd_step(p, g, lr="0.1"), TypeError, "lr"),
    (lambda p, g, m, v: optim.sgd_step(p, g, lr=True), TypeError, "lr"),
    (lambda p, g, m, v: optim.sgd_step(p, g, m, lr=0.1, momentum=1.5), ValueError, "momentum"),
    (lambda p, g, m, v: optim.sgd_step(p, g, lr=0.1, momentum=0.9), ValueError, "velocity"),
    (lambda p, g, m, v: optim.sgd_step(p, g, lr=0.1, nesterov=True), ValueError, "velocity"),
    (lambda p, g, m, v: optim.sgd_step(p, g, m, lr=0.1, nesterov=1), TypeError, "nesterov"),
    (lambda p, g, m, v: optim.sgd_step(p, g.astype(np.float32), lr=0.1), TypeError, "one dtype"),
    (lambda p, g, m, v: optim.sgd_step(p.astype(np.int64), g.astype(np.int64), lr=0.1), TypeError, "float32"),
    (lambda p, g, m, v: optim.sgd_step(p, g[:, :2], lr=0.1), ValueError, "shape"),
    (lambda p, g, m, v: optim.sgd_step(p, np.asfortranarray(g), lr=0.1), ValueError, "C-contiguous"),
    (lambda p, g, m, v: optim.sgd_step(p.T, g.T, lr=0.1), ValueError, "C-contiguous"),
    (lambda p, g, m, v: optim.sgd_step(p, g.tolist(), lr=0.1), TypeError, "NumPy array"),
    (lambda p, g, m, v: optim.sgd_step(p, g, p, lr=0.1, momentum=0.9), ValueError, "shares memory"),
    (lambda p, g, m, v: optim.sgd_step(p, p, lr=0.1), ValueError, "shares memory"),
    (lambda p, g, m, v: optim.sgd_step(p.astype(">f8"), g.astype(">f8"), lr=0.1), TypeError, "byte order"),
    (lambda p, g, m, v: optim.adam_step(p, g, m, v, step=0), ValueError, "step"),
    (lambda p, g, m, v: optim.adam_step(p, g, m, v, step=1.0), TypeError, "step"),
    (lambda p, g, m, v: optim.adam_step(p, g, m, v, step=1, beta1=1.0), ValueError, "beta1"),
    (lambda p, g, m, v: optim.adam_step(p, g, m, v, step=1, beta2=-0.1), ValueError, "beta2"),
    (lambda p, g, m, v: optim.adam_step(p, g, m, v, step=1, eps=0), ValueError, "eps"),
    (lambda p, g, m, v: optim.adam_step(p, g, m, m, step=1), ValueError, "shares memory"),
    (lambda p, g, m, v: optim.adam_step(p, g, m, v[:2], step=1), ValueError, "shape"),
    (lambda p, g, m, v: optim.adam_step(p, g, m, v, step=1, num_threads=0), ValueError, "num_threads"),
])
def test_bad_input_is_refused_before_anything_is_written(call, error, match):
    p, g, m, v = _arrays()
    p[:], g[:], m[:], v[:] = 1.0, 2.0, 3.0, 4.0
    copies = [a.copy() for a in (p, g, m, v)]
    with pytest.raises(error, match=match):
        call(p, g, m, v)
    for a, b in zip((p, g, m, v), copies):
        np.testing.assert_array_equal(a, b)


def test_read_only_state_is_refused():
    p, g, m, v = _arrays()
    m.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.adam_step(p, g, m, v, step=1)
    g.flags.writeable = False  # a read-only gradient is fine
    optim.sgd_step(p, g, lr=0.1)


def test_empty_arrays():
    p, g, m, v = _arrays(shape=(0, 3))
    optim.adam_step(p, g, m, v, step=1)
    optim.sgd_step(p, g, m, lr=0.1, momentum=0.5)
