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
def test_large_values_do_not_overflow(dtype):
    """The row's largest value is taken off before exp: no inf / inf."""
    a = np.array([[1000, 999, 0], [-1000, -1001, -2000]], dtype)
    _softmax.softmax(a, 1)
    np.testing.assert_allclose(a, _reference(np.array([[1000, 999, 0], [-1000, -1001, -2000]])),
                               rtol=4 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)


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
