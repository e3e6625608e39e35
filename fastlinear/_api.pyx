# cython: language_level=3
"""The functional API: check the inputs, look up the plan of the problem, run
the kernel, return.

Every check runs before any output is touched and inputs are never written
(see _checks); arrays are laid out for BLAS and results handed back by
_staging; plans come from _problem.
"""
from collections import namedtuple

import numpy as np
cimport numpy as cnp
from cpython.object cimport PyObject, PyTypeObject

cdef extern from "Python.h":
    PyTypeObject PyTuple_Type

cimport fastlinear._parallel as parallel
from fastlinear._backward cimport Request, backward
from fastlinear._checks cimport (
    CallArrays, activation_code, check_apart_all, check_backward_arrays, check_dz_wanted,
    check_forward_arrays, check_gradient_buffers, check_out, check_plan, check_saved, check_step,
    check_stepped, float_array, set_operands, threads_of, typenum_of)
from fastlinear._epilogue cimport GELU, GELU_TANH
from fastlinear._forward cimport forward
from fastlinear._problem cimport BACKWARD, FORWARD, NEED_DW, NEED_DX, holds_blas, plan_of
from fastlinear._staging cimport as_rows, dz_target, result, rows_of, target
from fastlinear._threads import blas_threads

cnp.import_array()

__all__ = ["Grads", "linear_forward", "linear_backward"]

Grads = namedtuple("Grads", ["dx", "dW", "db"], module="fastlinear")
cdef type _Grads = Grads
Grads.__doc__ = """Gradients of a linear layer: dx (..., M_in), dW (M_in, M_out), db (M_out,).

A field is None when that gradient was not asked for."""

# Names of the arrays an output is checked against (see _checks.CallArrays).
cdef tuple _FORWARD_NAMES = ("x", "W", "b", "out", None, None)
cdef tuple _BACKWARD_NAMES = ("x", "W", "dy", "dx", "dW", "y")
cdef tuple _BACKWARD_NAMES_Z = ("x", "W", "dy", "dx", "dW", "z")


def linear_forward(x, W, b=None, *, activation=None, out=None, z=None, num_threads=None,
                   _plan=None):
    """y = f(x @ W + b) for x of shape (..., M_in), f an activation or none.

    Parameters
    ----------
    x : array_like, shape (..., M_in), float32 or float64
    W : array_like, shape (M_in, M_out), same dtype
    b : array_like, shape (M_out,), same dtype, or None for no bias
    activation : {None, "relu", "tanh", "sigmoid", "gelu", "gelu_tanh"}
        f, applied to each block of y while it is in cache.  "gelu" is
        x Phi(x) with the exact erf, "gelu_tanh" PyTorch's
        ``approximate="tanh"`` form.
    out : ndarray of shape (..., M_out) and the same dtype, optional
        Written with the result (and returned).  It must not overlap an input.
    z : ndarray of shape (..., M_out) and the same dtype, optional
        Written with the pre-activation x @ W + b, which
        :func:`linear_backward` needs for "gelu" and "gelu_tanh".
    num_threads : int, optional
        Threads for this call; default :func:`fastlinear.get_num_threads`.

    Returns
    -------
    y : ndarray, shape (..., M_out)

    Examples
    --------
    >>> import numpy as np, fastlinear
    >>> x = np.arange(6.0).reshape(3, 2)
    >>> W = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.5]])
    >>> fastlinear.linear_forward(x, W, np.array([0.0, 0.0, 1.0]))
    array([[ 0. ,  1. ,  1.5],
           [ 2. ,  3. ,  6.5],
           [ 4. ,  5. , 11.5]])
    """
    cdef int act = activation_code(activation)
    x = float_array(x, "x")
    W = float_array(W, "W")
    if b is not None:
        b = float_array(b, "b")
    cdef Py_ssize_t dims[2]
    check_forward_arrays(x, W, b, dims)
    cdef int typenum = typenum_of(x)
    cdef Py_ssize_t N = rows_of(x), M_in = dims[0], M_out = dims[1]
    cdef CallArrays others
    if out is not None or z is not None:
        set_operands(&others, _FORWARD_NAMES, x, W, b, None, None, None)
        if out is not None:
            check_out(out, "out", x, M_out, typenum, &others)
            others.arrays[3] = <PyObject*>out
        if z is not None:
            check_out(z, "z", x, M_out, typenum, &others)
    cdef int plan = _plan_of(_plan, FORWARD, typenum, N, M_in, M_out)
    cdef int threads = threads_of(num_threads, parallel.plan_path(plan))
    x2 = as_rows(x, N, M_in)
    W = as_rows(W, M_in, M_out)
    if b is not None and not cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>b):
        b = np.array(b, order="C")
    cdef bint copy_y, copy_z = False
    y = target(out, N, M_out, typenum, False, &copy_y)
    tz = target(z, N, M_out, typenum, False, &copy_z) if z is not None else None
    cdef bint hold = holds_blas(plan, N, M_in, M_out)
    _hold_blas(hold)
    try:
        forward(x2, W, b, y, act, tz, plan, threads)
    finally:
        _release_blas(hold)
    if copy_z:
        np.copyto(z, tz.reshape(z.shape))
    if out is not None:
        if copy_y:
            np.copyto(out, y.reshape(out.shape))
        return out
    return y if cnp.PyArray_NDIM(<cnp.ndarray>x) == 2 else y.reshape(x.shape[:-1] + (M_out,))


def linear_backward(x, W, dy, *, activation=None, y=None, z=None, overwrite_dy=False,
                    bias=True, need_dx=True, need_dW=True, dx=None, dW=None, db=None,
                    dz=None, accumulate=False, lr=None, b=None, num_threads=None, _plan=None):
    """Gradients of y = f(x @ W + b) given dy = dL/dy.

    With dz = dy * f'(x @ W + b) (dz = dy without an activation): dx = dz @ W.T,
    dW = x.T @ dz (summed over all leading dimensions) and db = dz summed over
    all but the last axis.

    Parameters
    ----------
    x : array_like, shape (..., M_in)
        The forward input.
    W : array_like, shape (M_in, M_out)
    dy : array_like, shape (..., M_out), same leading shape as x
        The gradient of the loss with respect to the forward's output.
    activation : {None, "relu", "tanh", "sigmoid", "gelu", "gelu_tanh"}
        The forward's activation f.
    y : array_like, shape of dy
        The forward's output, from which relu, tanh and sigmoid take f'.
    z : array_like, shape of dy
        The forward's pre-activation (its ``z=`` buffer), from which gelu and
        gelu_tanh take f'.
    overwrite_dy : bool
        Allow dz to be written into dy, saving a scratch array the size of dy
        (as SciPy's ``overwrite_a``; dy is left unchanged where it cannot be
        written in place).  Without an activation dy is never written.
    dz : ndarray of the shape and dtype of dy, optional
        With an activation: written with dz = dy * f'(.), which the products
        then read, so that a loop that keeps dy needs no scratch either.  Not
        with ``overwrite_dy=True``.
    bias : bool
        Whether the layer has a bias; if False ``db`` is None.
    need_dx, need_dW : bool
        Set False to skip a gradient (e.g. dx of a first layer); it is then
        None in the result.
    dx, dW, db : ndarray, optional
        Buffers of the gradients' shapes and dtype to write into.
    accumulate : bool
        Add the gradients into the given buffers (like PyTorch's ``.grad``)
        instead of overwriting them.  Gradients given no buffer are returned
        in new arrays either way.
    lr : float, optional
        Take one SGD step in place instead of returning dW and db:
        W -= lr * dW, and b -= lr * db.  The product that computes dW adds
        it into W directly (C := -lr x^T dz + C), so a training loop writes
        no dW and makes no pass of its own over W.  dx is computed from W as
        it was before the step.  W must then be a writeable C-contiguous
        ndarray; not with ``dW=``, ``db=``, ``accumulate=True`` or
        ``need_dW=False``.
    b : ndarray of shape (M_out,), optional
        With ``lr`` and ``bias=True``: the bias, stepped in place.
    num_threads : int, optional
        Threads for this call; default :func:`fastlinear.get_num_threads`.

    Returns
    -------
    Grads(dx, dW, db)
        With ``lr``, dW and db are None: they went into W and b.

    Examples
    --------
    >>> import numpy as np, fastlinear
    >>> x, W = np.ones((4, 3)), np.full((3, 2), 0.5)
    >>> g = fastlinear.linear_backward(x, W, np.ones((4, 2)))
    >>> g.dx.shape, g.dW.shape, g.db
    ((4, 3), (3, 2), array([4., 4.]))
    >>> dW = np.zeros((3, 2))
    >>> g = fastlinear.linear_backward(x, W, np.ones((4, 2)), need_dx=False, dW=dW,
    ...                                accumulate=True)
    >>> g.dx is None, g.dW is dW, float(dW.sum())
    (True, True, 24.0)
    >>> b = np.zeros(2)
    >>> g = fastlinear.linear_backward(x, W, np.ones((4, 2)), lr=0.1, b=b)
    >>> W[0], b, g.dW is None
    (array([0.1, 0.1]), array([-0.4, -0.4]), True)
    """
    cdef double scale = 1
    if lr is not None or b is not None:
        scale = check_step(lr, b, W, bias, need_dW, dW, db, accumulate)
    cdef int act = activation_code(activation)
    saved = check_saved(activation, act, y, z)
    cdef str saved_name = "z" if act == GELU or act == GELU_TANH else "y"
    x = float_array(x, "x")
    W = float_array(W, "W")
    dy = float_array(dy, "dy")
    if act:
        saved = float_array(saved, saved_name)
    cdef Py_ssize_t dims[2]
    check_backward_arrays(x, W, dy, saved, saved_name, dims)
    cdef int typenum = typenum_of(x)
    cdef Py_ssize_t N = rows_of(x), M_in = dims[0], M_out = dims[1]
    cdef int kind = BACKWARD | (NEED_DX if need_dx else 0) | (NEED_DW if need_dW else 0)
    cdef CallArrays others
    set_operands(&others, _BACKWARD_NAMES_Z if saved_name == "z" else _BACKWARD_NAMES,
                 x, W, dy, None, None, saved)
    if dz is not None:
        check_dz_wanted(act, overwrite_dy)
    if dx is not None or dW is not None or db is not None or dz is not None:
        check_gradient_buffers(&others, dx, dW, db, dz, kind, bias, typenum)
    if lr is not None:
        check_stepped(&others, W, b, dz, typenum)
    cdef int plan = _plan_of(_plan, kind, typenum, N, M_in, M_out)
    cdef int threads = threads_of(num_threads, parallel.plan_path(plan))
    x2, W, dy2 = as_rows(x, N, M_in), as_rows(W, M_in, M_out), as_rows(dy, N, M_out)
    cdef bint overwrite = act and overwrite_dy and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>dy2)
    if act:
        saved = as_rows(saved, N, M_out)
        if not cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>saved):
            saved = np.array(saved, order="C")
        if overwrite:  # dz goes into dy, which the other inputs must then not share
            set_operands(&others, <tuple>others.names, x, W, None, None, None, saved)
            check_apart_all(dy2, "dy (overwrite_dy=True)", &others)
    cdef bint add = accumulate, step = lr is not None
    cdef bint copy_dx = False, copy_dW = False, copy_db = False, copy_dz = False
    tdx = target(dx, N, M_in, typenum, add, &copy_dx) if need_dx else None
    tdW = W if step else target(dW, M_in, M_out, typenum, add, &copy_dW) if need_dW else None
    tdb = target(b if step else db, M_out, -1, typenum, add or step, &copy_db) if bias else None
    tdz = dz_target(dz, dy2, N, M_out, typenum, &copy_dz) if dz is not None else None
    cdef Request request
    request.add_dx, request.add_dW = add and dx is not None, add and dW is not None or step
    request.add_db = add and db is not None or step
    request.act, request.overwrite_dy, request.plan = act, overwrite, plan
    request.num_threads, request.scale = threads, scale
    cdef bint hold = holds_blas(plan, N, M_in, M_out)
    _hold_blas(hold)
    try:
        backward(x2, W, dy2, tdx, tdW, tdb, saved, tdz, request)
    finally:
        _release_blas(hold)
    if copy_dz:
        np.copyto(dz, tdz.reshape(dz.shape))  # dz is 2-D wherever dy2 is read transposed
    dx = result(tdx, dx, copy_dx, x, cnp.PyArray_NDIM(<cnp.ndarray>x) == 2)
    db = result(tdb, b if step else db, copy_db, None, True)  # a strided b gets its copy back
    cdef tuple args = ((dx, None, None) if step else (dx, result(tdW, dW, copy_dW, None, True), db),)
    # What Grads(...) returns, without the call through its Python-level __new__.
    return PyTuple_Type.tp_new(_Grads, <PyObject*>args, NULL)


cdef int _plan_of(plan, int kind, int typenum, Py_ssize_t N, Py_ssize_t M_in,
                  Py_ssize_t M_out) except -1:
    """The plan of a call: the one given (the planner's timing calls), else the problem's."""
    if plan is None:
        return plan_of(kind, typenum == cnp.NPY_DOUBLE, N, M_in, M_out)
    check_plan(plan)
    return plan


cdef int _hold_blas(bint hold) except -1:
    if hold:
        blas_threads.enter()
    return 0


cdef int _release_blas(bint hold) except -1:
    if hold:
        blas_threads.exit()
    return 0
