"""fastlinear._softmax: the row softmax of fastlinear.sklearn's classifier output."""
import numpy as np
import pytest
from _helpers import DTYPES

from fastlinear import _softmax

# Rows per task are 2**14 // columns: shapes one row below, at and above a task's
# end, one column, and rows wider than a task.
SHAPES = [(1, 1), (5, 3), (1638, 10), (1639, 10), (1640, 10), (4097, 4), (3, 1),
          (2, 20000), (0, 5), (6, 0)]


def _reference(a):
    """The softmax of each row in float64."""
    z = a.astype(np.float64)
    if z.shape[1] == 0:
        return z
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_against_float64_math(rng, dtype, shape):
    a = (4 * rng.standard_normal(shape)).astype(dtype)
    expected = _reference(a)
    _softmax.softmax(a, 2)
    np.testing.assert_allclose(a, expected, rtol=4 * np.finfo(dtype).eps,
                               atol=4 * np.finfo(dtype).eps)
    if a.size:
        np.testing.assert_allclose(a.sum(axis=1), 1, rtol=16 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 2, 3, 8])
def test_large_values_do_not_overflow(dtype, width):
    """The row's largest value, wherever it is, is taken off before exp: no inf / inf."""
    rows = []
    for top in range(width):  # the largest at each place, the others far below it
        row = np.linspace(-2000, -1000, width)
        row[top] = 1000
        rows += [row, row - 3000]
    a = np.array(rows, dtype)
    expected = _reference(np.array(rows))
    _softmax.softmax(a, 1)
    np.testing.assert_allclose(a, expected, rtol=4 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_nan_or_inf_makes_its_row_nan_as_numpys(dtype):
    rows = [[1, np.nan, 2], [np.nan, 1, 2], [np.inf, 1, 2], [1, 2, np.inf], [-np.inf] * 3,
            [1, 2, 3]]
    a = np.array(rows, dtype)
    with np.errstate(invalid="ignore"):
        expected = _reference(a)
    _softmax.softmax(a, 2)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(expected))
    np.testing.assert_allclose(a[-1], expected[-1], rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_same_bits_for_any_thread_count(rng, dtype):
    a = (4 * rng.standard_normal((5000, 10))).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        b = a.copy()
        _softmax.softmax(b, threads)
        results.append(b)
    for b in results[1:]:
        np.testing.assert_array_equal(b, results[0])


def _one_hot(rng, n, m, dtype):
    y = np.zeros((n, m), dtype)
    if m:
        y[np.arange(n), rng.integers(0, m, n)] = 1
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("target", ["bool", "same"])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_loss_against_float64_math(rng, dtype, shape, target, weighted):
    """p = softmax(z) in place, each row's cross-entropy with p clipped to
    [eps, 1 - eps], and delta = (p - y) s, against float64 math."""
    n, m = shape
    z = (4 * rng.standard_normal(shape)).astype(dtype)
    z[:, :1] += 40  # some p of 1 and of ~0, where the clip matters
    y = _one_hot(rng, n, m, bool if target == "bool" else dtype)
    scales = rng.random(n).astype(dtype) if weighted else None
    p64 = _reference(z)
    eps = np.finfo(dtype).eps
    row_loss64 = -(y * np.log(np.clip(p64, eps, 1 - eps))).sum(axis=1)
    delta64 = (p64 - y) * (scales[:, None] if weighted else 1 / max(n, 1))
    y_before = y.copy()
    delta, row_loss = np.full(shape, np.nan, dtype), np.full(n, np.nan)
    _softmax.softmax_loss(z, y, delta, scales, 1 / max(n, 1), row_loss, 2)
    tol = 8 * np.finfo(dtype).eps
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_allclose(z, p64, rtol=tol, atol=tol)
    np.testing.assert_allclose(row_loss, row_loss64, rtol=tol, atol=tol if m else 0)
    np.testing.assert_allclose(delta, delta64, rtol=tol, atol=tol)


def test_softmax_loss_is_scikit_learns(rng):
    """The mean of the row losses is scikit-learn's log_loss, and delta its p - y over n."""
    base = pytest.importorskip("sklearn.neural_network._base")
    for dtype in DTYPES:
        z = (3 * rng.standard_normal((300, 7))).astype(dtype)
        y = _one_hot(rng, 300, 7, bool)
        p = z.copy()
        base.inplace_softmax(p)
        expected = base.log_loss(y, p)
        delta, row_loss = np.empty_like(z), np.empty(300)
        _softmax.softmax_loss(z, y, delta, None, 1 / 300, row_loss, 3)
        np.testing.assert_allclose(row_loss.mean(), expected, rtol=4 * np.finfo(dtype).eps)
        # p - y cancels where p is near 1: an ulp or two of p, as an absolute error.
        np.testing.assert_allclose(delta, (p - y) * dtype(1 / 300), rtol=8 * np.finfo(dtype).eps,
                                   atol=4 * np.finfo(dtype).eps / 300)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_loss_of_a_nan_row_is_nan(dtype):
    """As scipy's xlogy, 0 log p is 0 but for a NaN p: a row of no class is NaN too."""
    z = np.array([[1, np.nan, 2], [np.nan, 1, 2], [1, 2, 3]], dtype)
    y = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]], bool)
    delta, row_loss = np.empty_like(z), np.empty(3)
    _softmax.softmax_loss(z, y, delta, None, 0.5, row_loss, 1)
    assert np.isnan(row_loss[:2]).all() and np.isfinite(row_loss[2])
    assert np.isnan(delta[:2]).all() and np.isfinite(delta[2]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_loss_the_same_bits_for_any_thread_count(rng, dtype):
    z = (4 * rng.standard_normal((5000, 10))).astype(dtype)
    y = _one_hot(rng, 5000, 10, bool)
    results = []
    for threads in (1, 2, 3):
        out = (z.copy(), np.empty_like(z), np.empty(5000))
        _softmax.softmax_loss(out[0], y, out[1], None, 1 / 5000, out[2], threads)
        results.append(out)
    for out in results[1:]:
        for a, b in zip(out, results[0]):
            np.testing.assert_array_equal(a, b)
