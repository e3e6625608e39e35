"""Bad input: a clear TypeError or ValueError, raised before anything is written."""
import numpy as np
import pytest
from _helpers import DTYPES, arrays, assert_close, reference

import fastlinear
from fastlinear import linear_backward, linear_forward

F64 = np.float64


# ---- bad input -------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.int64, np.int32, np.bool_, np.complex128, np.float16, object,
                                 ">f2", ">c8", ">i8"])
def test_non_float_dtypes_are_type_errors(bad):
    x, W, b, dy = arrays()
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        linear_forward(x.astype(bad), W, b)
    with pytest.raises(TypeError, match="W must be float32 or float64"):
        linear_backward(x, W.astype(bad), dy)
    with pytest.raises(TypeError, match="dy must be float32 or float64"):
        linear_backward(x, W, dy.astype(bad))


def test_complex_message_mentions_imaginary_part():
    x, W, b, _ = arrays()
    with pytest.raises(TypeError, match="imaginary"):
        linear_forward(x, W.astype(np.complex128), b)


def test_mixed_precision_is_a_type_error():
    x, W, b, dy = arrays()
    with pytest.raises(TypeError, match="x is float32, W is float64"):
        linear_forward(x.astype(np.float32), W, b)
    with pytest.raises(TypeError, match="b is float32"):
        linear_forward(x, W, b.astype(np.float32))
    with pytest.raises(TypeError, match="dy is float32"):
        linear_backward(x, W, dy.astype(np.float32))


@pytest.mark.parametrize("call, match", [
    (lambda x, W, b, dy: linear_forward(x[:, :2], W, b), r"x must have shape \(\.\.\., M_in\) = \(\.\.\., 3\).*\(3, 2\).*\(4, 2\)"),
    (lambda x, W, b, dy: linear_forward(x, W[None], b), r"W must be 2-D.*\(1, 3, 2\)"),
    (lambda x, W, b, dy: linear_forward(x, W, b[:1]), r"b must have shape \(M_out,\) = \(2,\).*\(1,\)"),
    (lambda x, W, b, dy: linear_forward(x, W, b[None]), r"b must have shape.*\(1, 2\)"),
    (lambda x, W, b, dy: linear_forward(x[0, 0], W, b), r"x must have shape .*got \(\)"),
    (lambda x, W, b, dy: linear_backward(x, W, dy[:3]), r"dy must have shape \(4, 2\).*\(4, 3\).*\(3, 2\)"),
    (lambda x, W, b, dy: linear_backward(x, W, dy[:, :1]), r"dy must have shape \(\.\.\., M_out\)"),
    (lambda x, W, b, dy: linear_backward(x, W.T, dy), r"x must have shape"),
])
def test_shape_errors_name_the_shapes(call, match):
    with pytest.raises(ValueError, match=match):
        call(*arrays())


def test_out_errors_and_nothing_written():
    x, W, b, dy = arrays()
    ro = np.zeros((4, 2))
    ro.flags.writeable = False
    xw = x.copy()
    cases = [
        (np.zeros((4, 3)), ValueError, "out must have shape"),
        (np.zeros((4, 2), np.float32), ValueError, "out must have dtype float64"),
        (np.zeros((4, 2), ">f8"), ValueError, "native byte order, got >f8"),
        (ro, ValueError, "out is read-only"),
        ([[0.0, 0.0]] * 4, TypeError, "out must be a NumPy array"),
    ]
    for out, exc, match in cases:
        with pytest.raises(exc, match=match):
            linear_forward(x, W, b, out=out)
    big = np.zeros((4, 5))
    x_in_big = big[:, :3]
    x_in_big[:] = x
    with pytest.raises(ValueError, match="out overlaps x"):
        linear_forward(x_in_big, W, b, out=big[:, 1:3])
    np.testing.assert_array_equal(big[:, :3], x)
    with pytest.raises(ValueError, match="out overlaps W"):
        linear_forward(x[:2, :2], W[:2], out=W[:2])
    np.testing.assert_array_equal(x, xw)


def test_gradient_buffer_errors_and_nothing_written():
    x, W, b, dy = arrays()
    dW = np.full((3, 2), 7.0)
    db = np.full(2, 7.0)
    with pytest.raises(ValueError, match="dx must have shape"):
        linear_backward(x, W, dy, dx=np.zeros((4, 2)), dW=dW, db=db)
    with pytest.raises(ValueError, match="db overlaps dW"):
        linear_backward(x, W, dy, dW=dW, db=dW[0])
    with pytest.raises(ValueError, match="dW overlaps dy"):
        linear_backward(x, W, dy, dW=dy[:3])
    with pytest.raises(ValueError, match="db buffer was given but db is not computed"):
        linear_backward(x, W, dy, bias=False, db=db)
    np.testing.assert_array_equal(dW, 7.0)
    np.testing.assert_array_equal(db, 7.0)


# The arrays of a backward call in the order they are checked: each gradient
# buffer against the inputs and the buffers before it.
BACKWARD_ORDER = ["x", "W", "dy", "dx", "dW", "db"]
BACKWARD_SHAPES = {"x": (4, 3), "W": (3, 2), "dy": (4, 2), "dx": (4, 3), "dW": (3, 2), "db": (2,)}


def _carve(pool, placed, reverse):
    """Views of ``pool``: name -> an array of BACKWARD_SHAPES[name] over the elements
    from placed[name] on, in reverse memory order if ``reverse``."""
    views = {}
    for name, start in placed.items():
        shape = BACKWARD_SHAPES[name]
        flat = pool[start:start + int(np.prod(shape))]
        views[name] = (flat[::-1] if reverse else flat).reshape(shape)
    return views


@pytest.mark.parametrize("reverse", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("first, second", [(a, g) for i, g in enumerate(BACKWARD_ORDER) if i >= 3
                                           for a in BACKWARD_ORDER[:i]])
def test_every_gradient_overlap_is_refused(first, second, reverse):
    """A buffer sharing a single element with an input or another buffer (the last
    element of one, the first of the other) is refused, naming both; nothing is written."""
    placed = {name: 20 * i for i, name in enumerate(BACKWARD_ORDER)}
    placed[second] = placed[first] + int(np.prod(BACKWARD_SHAPES[first])) - 1
    pool = np.random.default_rng(0).standard_normal(20 * len(BACKWARD_ORDER))
    before = pool.copy()
    a = _carve(pool, placed, reverse)
    with pytest.raises(ValueError, match=f"{second} overlaps {first}"):
        linear_backward(a["x"], a["W"], a["dy"], dx=a["dx"], dW=a["dW"], db=a["db"])
    np.testing.assert_array_equal(pool, before)


@pytest.mark.parametrize("name", ["x", "W", "b"])
def test_out_overlapping_any_forward_input_is_refused(name):
    """out sharing its first element with the last of an input is refused; nothing is written."""
    x, W, b, _ = arrays()
    inputs = {"x": x, "W": W, "b": b}
    pool = np.zeros(inputs[name].size + 7)
    view = pool[:inputs[name].size].reshape(inputs[name].shape)
    view[...] = inputs[name]
    inputs[name] = view
    before = pool.copy()
    with pytest.raises(ValueError, match=f"out overlaps {name}"):
        linear_forward(**inputs, out=pool[view.size - 1:].reshape(4, 2))
    np.testing.assert_array_equal(pool, before)


def test_interleaved_arrays_that_share_no_element_are_accepted():
    """out and dW may lie between the elements of x (their byte ranges cross):
    only shared elements are refused."""
    x, W, b, dy = arrays()
    big = np.zeros((4, 6))
    big[:, ::2] = x
    y = linear_forward(big[:, ::2], W, b, out=big[:, 1::2][:, :2])
    assert_close(y, x @ W + b, F64, 3)
    pool = np.zeros(12)
    pool[::2] = W.ravel()
    g = linear_backward(x, pool[::2].reshape(3, 2), dy, dW=pool[1::2].reshape(3, 2))
    assert_close(g.dW, x.T @ dy, F64, 4)


@pytest.mark.parametrize("shape", [(5, 2), (3, 2), (4, 1, 2), (2,)], ids=str)
def test_out_with_other_leading_dimensions_is_refused(shape):
    x, W, b, dy = arrays()
    with pytest.raises(ValueError, match=r"out must have shape \(4, 2\)"):
        linear_forward(x, W, b, out=np.zeros(shape))
    with pytest.raises(ValueError, match=r"dx must have shape \(2, 2, 3\)"):
        linear_backward(x.reshape(2, 2, 3), W, dy.reshape(2, 2, 2), dx=np.zeros((4, 1, 3)))


@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError),
                                    (True, TypeError), (10 ** 6, ValueError), (2 ** 40, ValueError)])
def test_bad_num_threads(n, exc):
    x, W, b, dy = arrays()
    with pytest.raises(exc, match="num_threads"):
        linear_forward(x, W, b, num_threads=n)
    with pytest.raises(exc, match="num_threads"):
        linear_backward(x, W, dy, num_threads=n)
    with pytest.raises(exc, match="num_threads"):
        fastlinear.set_num_threads(n)


def test_inputs_not_modified_and_lists_accepted():
    x, W, b, dy = arrays()
    copies = [a.copy() for a in (x, W, b, dy)]
    y = linear_forward(x.tolist(), W.tolist(), b.tolist())
    assert_close(y, x @ W + b, F64, 3)
    linear_forward(x, W, b)
    linear_backward(x, W, dy)
    for a, c in zip((x, W, b, dy), copies):
        np.testing.assert_array_equal(a, c)


def misaligned(shape, dtype):
    """A C-contiguous, writeable array whose data is not aligned to its itemsize."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(int(np.prod(shape)) * itemsize + 1, np.uint8)
    a = raw[1:].view(dtype).reshape(shape)
    assert not a.flags.aligned
    return a


@pytest.mark.parametrize("dtype", DTYPES)
def test_misaligned_arrays(dtype):
    rng = np.random.default_rng(4)
    for N, M_in, M_out in [(7, 5, 3), (600, 300, 200), (5000, 64, 16)]:
        x, W, b, dy = (misaligned(s, dtype) for s in ((N, M_in), (M_in, M_out), (M_out,), (N, M_out)))
        for a in (x, W, b, dy):
            a[...] = rng.standard_normal(a.shape)
        y = misaligned((N, M_out), dtype)
        assert linear_forward(x, W, b, out=y) is y
        bufs = dict(dx=misaligned((N, M_in), dtype), dW=misaligned((M_in, M_out), dtype),
                    db=misaligned((M_out,), dtype))
        g = linear_backward(x, W, dy, **bufs)
        ry, rdx, rdW, rdb = reference(x, W, b, dy)
        assert_close(y, ry, dtype, M_in)
        assert_close(g.dx, rdx, dtype, M_out)
        assert_close(g.dW, rdW, dtype, N)
        assert_close(g.db, rdb, dtype, N)


def test_shape_checks_take_any_array():
    """The checks fastlinear.dask shares read shapes of non-NumPy arrays, never their memory."""
    from fastlinear._checks import check_backward, check_forward

    class Shaped:  # what the checks may read of a dask array: ndim, shape and dtype
        def __init__(self, *shape):
            self.shape, self.ndim, self.dtype = shape, len(shape), np.dtype(np.float64)

    W = np.ones((3, 2))
    check_forward(Shaped(5, 3), W, Shaped(2))
    check_forward(Shaped(5, 3), Shaped(3, 2), np.ones(2))
    assert check_backward(Shaped(5, 3), W, Shaped(5, 2))[1:] == (3, 2)
    with pytest.raises(ValueError, match="b must have shape"):
        check_forward(Shaped(5, 3), W, Shaped(3))
    with pytest.raises(ValueError, match="W must be 2-D"):
        check_forward(Shaped(5, 3), Shaped(3))
    with pytest.raises(ValueError, match="x must have shape"):
        check_forward(Shaped(5, 4), W)
    with pytest.raises(ValueError, match="dy must have shape"):
        check_backward(Shaped(5, 3), W, Shaped(5, 3))
    with pytest.raises(AttributeError):
        check_forward(np.ones((5, 3)), W, 1)


def test_kernels_refuse_inconsistent_arguments():
    """The compiled entry points check what they are given, whoever calls them."""
    from fastlinear import _backward, _forward
    from fastlinear._parallel import PATHS, make_plan
    x, W, b, dy = arrays(8, 4, 3)
    y = np.empty((8, 3))
    read_only = np.empty((8, 3))
    read_only.flags.writeable = False
    for args in [(x, W, b, np.empty((8, 3), np.float32)), (x, W, b, np.empty((3, 8)).T),
                 (x, W, b, np.empty((8, 4))), (x, W, b, read_only),
                 (x, W.astype(np.float32), b, y), ([[1.0]], W, b, y), (x, W, b[:2], y)]:
        with pytest.raises(ValueError):
            _forward.forward(*args, 0, None, make_plan(PATHS["tiled"], False, 2), 2)
    for bufs in [(np.empty((8, 3)), None, None), (None, np.empty((4, 3), np.float32), None),
                 (None, None, np.empty(4))]:
        with pytest.raises(ValueError):
            _backward.backward(x, W, dy, *bufs, None, None, dict(
                add_dx=False, add_dW=False, add_db=False, act=0, overwrite_dy=False,
                plan=make_plan(PATHS["blocked"], False, 2), num_threads=2, scale=1.0))


def test_non_native_byte_order():
    x, W, b, dy = arrays()
    y = linear_forward(x.astype(">f8"), W, b)
    assert y.dtype == F64
    assert_close(y, x @ W + b, F64, 3)


def test_each_gradient_buffer_is_checked_against_its_own_gradient():
    """A dx= buffer is refused where dx is not computed (need_dx=False, dW computed),
    and taken where dx is computed but dW is not; nothing is written when refused."""
    x, W, b, dy = arrays()
    _, rdx, rdW, rdb = reference(x, W, b, dy)
    dx = np.full((4, 3), 7.0)
    with pytest.raises(ValueError, match="a dx buffer was given but dx is not computed"):
        linear_backward(x, W, dy, need_dx=False, dx=dx)
    np.testing.assert_array_equal(dx, 7.0)
    dW = np.full((3, 2), 7.0)
    with pytest.raises(ValueError, match="a dW buffer was given but dW is not computed"):
        linear_backward(x, W, dy, need_dW=False, dW=dW)
    np.testing.assert_array_equal(dW, 7.0)
    g = linear_backward(x, W, dy, need_dW=False, dx=dx)
    assert g.dx is dx and g.dW is None
    assert_close(dx, rdx, F64, 2)
    assert_close(g.db, rdb, F64, 4)
    g = linear_backward(x, W, dy, need_dx=False, dW=dW)
    assert g.dx is None and g.dW is dW
    assert_close(dW, rdW, F64, 4)
