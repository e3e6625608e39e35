# cython: language_level=3
"""Validation and dispatch: the functional API over the compiled kernels.

Every check runs before any output is touched, inputs are never written, and
a layout BLAS cannot read in place costs exactly one copy.  The checks read
the arrays' headers at C level: on small arrays they are most of a call's
time.
"""
import math
import numbers
from collections import namedtuple

import numpy as np
cimport numpy as cnp
from cpython.object cimport PyObject, PyTypeObject

cdef extern from "Python.h":
    PyTypeObject PyTuple_Type

cimport fastlinear._parallel as parallel
from fastlinear._backward cimport backward
from fastlinear._blas cimport SCIPY_BLAS, BLAS_INT_MAX, extent, layout
from fastlinear._blas import has_backend
from fastlinear._forward cimport forward
from fastlinear._epilogue cimport NO_ACTIVATION, RELU, TANH, SIGMOID, GELU, GELU_TANH
from fastlinear._threads import MAX_THREADS, blas_threads, check_threads

cnp.import_array()

__all__ = ["Grads", "linear_forward", "linear_backward"]

Grads = namedtuple("Grads", ["dx", "dW", "db"], module="fastlinear")
cdef type _Grads = Grads
Grads.__doc__ = """Gradients of a linear layer: dx (..., M_in), dW (M_in, M_out), db (M_out,).

A field is None when that gradient was not asked for."""

cdef enum:
    # The built-in plans' rules, used when planning is off; the planner times
    # these choices on the user's machine instead (docs/design.md, "Built-in
    # rules", has the measurements).  Below SERIAL_WORK multiply-adds (plus
    # adds of db and elements of dx and dW, which count on their own because
    # with M_out or N zero they are zero-filled at no multiply-add) a call runs
    # on the calling thread, keeping the GIL: starting threads costs more than
    # it saves.
    SERIAL_WORK = 1 << 18
    # W of at most NARROW_WEIGHTS weights makes GEMMs too thin to tile, so from
    # NARROW_ROWS rows on (enough blocks to share between threads) the rows are
    # cut into cache-sized blocks instead.
    NARROW_WEIGHTS = 1 << 12
    NARROW_ROWS = 1 << 11

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# The activations a call may apply, by name (codes of fastlinear._epilogue).
ACTIVATIONS = {None: NO_ACTIVATION, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID,
               "gelu": GELU, "gelu_tanh": GELU_TANH}


_ACTIVATION_NAMES = sorted(name for name in ACTIVATIONS if name)
# Activations whose derivative is taken from the pre-activation z rather than y.
NEEDS_Z = frozenset({"gelu", "gelu_tanh"})


cpdef int activation_code(activation) except -1:
    """The code of an activation name; raises naming the valid ones."""
    if activation is None:
        return NO_ACTIVATION
    if isinstance(activation, str) and activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise (ValueError if isinstance(activation, str) else TypeError)(
        f"activation must be None or one of {_ACTIVATION_NAMES}, "
        f"got {activation!r}")


cpdef int default_path(Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out):
    """The built-in plans' path for this shape (see fastlinear._plans).

    SERIAL: on the calling thread.  BLOCKED: threads over cache-sized row
    blocks, the backward fused per block.  TILED: threads over the tasks of
    each product.
    """
    # In floating point: the product of three sizes can pass 2**63.
    if (<double>N * M_out * (M_in + 1)  # + 1: the bias row of the work
            + <double>N * M_in + <double>M_in * M_out < SERIAL_WORK):
        return parallel.SERIAL
    if <double>M_in * M_out <= NARROW_WEIGHTS and N >= NARROW_ROWS:
        return parallel.BLOCKED
    return parallel.TILED


# The plans of this process's calls, by class of problem: a C-level table in
# front of fastlinear._plans, which is asked on a miss.  Problems too small to
# plan skip both.
cdef enum:
    TABLE_SIZE = 1024  # a power of two
    PROBES = 8
    # Keep in step with fastlinear._plans.MIN_PLANNED_WORK.
    MIN_PLANNED_WORK = 1 << 15

cdef struct PlanEntry:
    Py_ssize_t M_in, M_out
    int tag   # 0: empty; else 1 + (kind, dtype, bit length of N) packed
    int plan

cdef PlanEntry _table[TABLE_SIZE]
cdef int _serial_plan = -1
cdef object _planner = None


def set_planner(planner):
    """The object whose choose(kind, dtype, N, M_in, M_out) gives plans on a miss."""
    global _planner
    _planner = planner
    forget_plans()


def forget_plans():
    """Empty the table: plans are asked of the planner again."""
    global _serial_plan
    cdef Py_ssize_t i
    for i in range(TABLE_SIZE):
        _table[i].tag = 0
    _serial_plan = -1


cdef int _plan_for(int kind, int typenum, Py_ssize_t N, Py_ssize_t M_in,
                   Py_ssize_t M_out) except -1:
    """The plan of a call: kind 0 is a forward, 4 | dx << 1 | dW a backward."""
    global _serial_plan
    if (<double>N * M_out * (M_in + 1) + <double>N * M_in + <double>M_in * M_out
            < MIN_PLANNED_WORK):
        if _serial_plan < 0:
            _serial_plan = _planner.choose("f", "float64", 0, 0, 0)
        return _serial_plan
    cdef Py_ssize_t bits = 0, n = N, i, slot
    while n:
        bits += 1
        n >>= 1
    cdef int tag = 1 + (kind << 16 | (typenum == cnp.NPY_DOUBLE) << 8 | bits)
    cdef size_t h = (<size_t>tag * 0x9E3779B97F4A7C15ULL) ^ (<size_t>M_in * 0xC2B2AE3D27D4EB4FULL) \
        ^ (<size_t>M_out * 0x165667B19E3779F9ULL)
    for i in range(PROBES):
        slot = (h + i) & (TABLE_SIZE - 1)
        if _table[slot].tag == tag and _table[slot].M_in == M_in and _table[slot].M_out == M_out:
            return _table[slot].plan
        if _table[slot].tag == 0:
            break
    cdef int plan = _planner.choose(
        "f" if kind == 0 else f"b{(kind >> 1) & 1}{kind & 1}",
        "float64" if typenum == cnp.NPY_DOUBLE else "float32", N, M_in, M_out)
    for i in range(PROBES):  # a full neighbourhood is asked again next time
        slot = (h + i) & (TABLE_SIZE - 1)
        if _table[slot].tag == 0:
            _table[slot].M_in, _table[slot].M_out = M_in, M_out
            _table[slot].tag, _table[slot].plan = tag, plan
            break
    return plan


cdef int _check_plan(int plan) except -1:
    """Raise unless ``plan`` is one fastlinear._parallel.make_plan makes."""
    if not (parallel.plan_path(plan) <= parallel.TILED and parallel.plan_tasks(plan) >= 1
            and has_backend(parallel.plan_backend(plan))):
        raise ValueError(f"no such plan: {plan}")
    return 0


cpdef _float_array(a, str name):
    """``a`` as a float32 or float64 ndarray in native byte order."""
    if type(a) is not cnp.ndarray:
        a = np.asarray(a)
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>a)
    if (t == cnp.NPY_DOUBLE or t == cnp.NPY_FLOAT) and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a):
        return a
    dt = a.dtype
    if dt.kind == "f" and dt.itemsize in (4, 8):  # non-native byte order
        return a.astype(dt.newbyteorder("="))
    raise TypeError(f"{name} must be float32 or float64, got {dt}"
                    + (" (cast explicitly; the imaginary part would be lost)"
                       if dt.kind == "c" else ""))


def _same_dtype(named):
    """The dtype of (name, array) pairs (None arrays skipped); raises unless they agree."""
    dtype = named[0][1].dtype
    for _, a in named:
        if a is not None and a.dtype != dtype:
            desc = ", ".join(f"{n} is {a.dtype}" for n, a in named if a is not None)
            raise TypeError(f"inputs must share one dtype, but {desc}; cast explicitly "
                            "(e.g. x.astype(W.dtype))")
    return dtype


cdef inline int _typenum(a):
    return cnp.PyArray_TYPE(<cnp.ndarray>a)


cdef bint _one_type(x, W, c) noexcept:
    """Whether x, W and c (None allowed) are native-order ndarrays of one type.

    Then they share a dtype and _same_dtype, a Python-level loop, is not needed.
    """
    if not (isinstance(x, cnp.ndarray) and isinstance(W, cnp.ndarray)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>x)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>W)
            and _typenum(W) == _typenum(x)):
        return False
    return c is None or (isinstance(c, cnp.ndarray) and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>c)
                         and _typenum(c) == _typenum(x))


cdef int _check_weights(W, b, Py_ssize_t* dims) except -1:
    """Raise unless W is 2-D with sizes BLAS takes and b is None or of shape (M_out,).

    Sets dims to (M_in, M_out).  NumPy arrays are read from their headers,
    other arrays (dask) through .shape.
    """
    cdef bint fits
    dims[0] = dims[1] = 0
    if isinstance(W, cnp.ndarray):
        fits = cnp.PyArray_NDIM(<cnp.ndarray>W) == 2
        if fits:
            dims[0], dims[1] = cnp.PyArray_DIM(<cnp.ndarray>W, 0), cnp.PyArray_DIM(<cnp.ndarray>W, 1)
    else:
        fits = W.ndim == 2
        if fits:
            dims[0], dims[1] = W.shape
    if not fits:
        raise ValueError(f"W must be 2-D (M_in, M_out), got shape {W.shape}")
    if max(dims[0], dims[1]) > BLAS_INT_MAX:
        raise ValueError(f"W of shape {W.shape} has a dimension above {BLAS_INT_MAX}, "
                         "the largest a row of a BLAS matrix can have")
    if b is None:
        return 0
    if isinstance(b, cnp.ndarray):
        fits = (cnp.PyArray_NDIM(<cnp.ndarray>b) == 1
                and cnp.PyArray_DIM(<cnp.ndarray>b, 0) == dims[1])
    else:
        fits = b.shape == (dims[1],)
    if not fits:
        raise ValueError(f"b must have shape (M_out,) = ({dims[1]},) for W of shape "
                         f"{W.shape}, got {b.shape}")
    return 0


cdef int _check_features(a, str name, Py_ssize_t size, str what, W) except -1:
    """Raise unless ``a`` (an ndarray or any array with a shape) is (..., size)."""
    cdef int nd
    cdef bint fits
    if isinstance(a, cnp.ndarray):
        nd = cnp.PyArray_NDIM(<cnp.ndarray>a)
        fits = nd >= 1 and cnp.PyArray_DIM(<cnp.ndarray>a, nd - 1) == size
    else:
        fits = a.ndim >= 1 and a.shape[-1] == size
    if not fits:
        raise ValueError(f"{name} must have shape (..., {what}) = (..., {size}) for W of "
                         f"shape {W.shape}, got {a.shape}")
    return 0


cdef int _check_forward(x, W, b, Py_ssize_t* dims) except -1:
    """Raise naming what does not fit in a forward problem; dims = (M_in, M_out)."""
    if not _one_type(x, W, b):
        _same_dtype((("x", x), ("W", W), ("b", b)))
    _check_weights(W, b, dims)
    return _check_features(x, "x", dims[0], "M_in", W)


cdef int _check_backward(x, W, dy, Py_ssize_t* dims) except -1:
    """Raise naming what does not fit in a backward problem; dims = (M_in, M_out)."""
    if not _one_type(x, W, dy):
        _same_dtype((("x", x), ("W", W), ("dy", dy)))
    _check_weights(W, None, dims)
    _check_features(x, "x", dims[0], "M_in", W)
    return _check_features(dy, "dy", dims[1], "M_out", W)


def check_forward(x, W, b=None):
    """The dtype of a forward problem; raises naming what does not fit.

    Any arrays with .dtype and .shape (dask's too); fastlinear.dask checks with it.
    """
    cdef Py_ssize_t dims[2]
    _check_forward(x, W, b, dims)
    return x.dtype


def check_backward(x, W, dy):
    """(dtype, M_in, M_out) of a backward problem; raises naming what does not fit."""
    cdef Py_ssize_t dims[2]
    _check_backward(x, W, dy, dims)
    return x.dtype, dims[0], dims[1]


cdef tuple _shape_like(like, Py_ssize_t last):
    """The shape of ``like`` with its last dimension set to ``last``; (last,) for None."""
    return (last,) if like is None else like.shape[:-1] + (last,)


cdef bint _has_shape_like(cnp.ndarray a, like, Py_ssize_t last) noexcept:
    """Whether ``a`` has the shape _shape_like(like, last), read from the headers."""
    cdef int nd = 1 if like is None else cnp.PyArray_NDIM(<cnp.ndarray>like), i
    if cnp.PyArray_NDIM(a) != nd:
        return False
    for i in range(nd - 1):
        if cnp.PyArray_DIM(a, i) != cnp.PyArray_DIM(<cnp.ndarray>like, i):
            return False
    return cnp.PyArray_DIM(a, nd - 1) == last


# Names of the arrays an output is checked against, in the order they are passed.
cdef tuple _FORWARD_NAMES = ("x", "W", "b", "out")
cdef tuple _BACKWARD_NAMES = ("x", "W", "dy", "dx", "dW", "y")
cdef tuple _BACKWARD_NAMES_Z = ("x", "W", "dy", "dx", "dW", "z")


cdef int _check_out(out, str name, like, Py_ssize_t last, int typenum, tuple names,
                    a0, a1, a2, a3=None, a4=None, a5=None) except -1:
    """Raise unless ``out`` can receive a result of type ``typenum`` and shape
    _shape_like(like, last), overlapping none of a0 ... a5 (named by ``names``).
    """
    if not isinstance(out, cnp.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    cdef cnp.ndarray o = out
    if not _has_shape_like(o, like, last):
        raise ValueError(f"{name} must have shape {_shape_like(like, last)}, got {out.shape}")
    if cnp.PyArray_TYPE(o) != typenum or not cnp.PyArray_ISNOTSWAPPED(o):
        raise ValueError(f"{name} must have dtype {cnp.PyArray_DescrFromType(typenum)} in "
                         "native byte order, got "
                         f"{out.dtype.str if out.dtype.kind == 'f' else out.dtype}")
    if not cnp.PyArray_ISWRITEABLE(o):
        raise ValueError(f"{name} is read-only")
    # One call per array, with out's memory span found once: a tuple of the
    # arrays, or the span found again for each, would cost more than the checks.
    cdef char* lo
    cdef char* hi
    extent(o, &lo, &hi)
    _apart(o, lo, hi, name, a0, names, 0)
    _apart(o, lo, hi, name, a1, names, 1)
    _apart(o, lo, hi, name, a2, names, 2)
    _apart(o, lo, hi, name, a3, names, 3)
    _apart(o, lo, hi, name, a4, names, 4)
    return _apart(o, lo, hi, name, a5, names, 5)


cdef int _apart(cnp.ndarray o, char* lo, char* hi, str name, a, tuple names,
                int i) except -1:
    """Raise if ``a`` shares memory with ``o``, whose bytes span lo:hi."""
    cdef char* alo
    cdef char* ahi
    if a is None:
        return 0
    extent(<cnp.ndarray?>a, &alo, &ahi)
    if alo < hi and lo < ahi and _overlap(o, a):
        raise ValueError(f"{name} overlaps {names[i]}; results would be corrupted")
    return 0


def _overlap(a, b):
    try:
        return np.shares_memory(a, b, max_work=100_000)
    except np.exceptions.TooHardError:
        return True  # too costly to tell: refuse rather than risk it


cdef Py_ssize_t _rows_of(a) except -1:
    """N: the product of all but the last dimension."""
    if cnp.PyArray_NDIM(<cnp.ndarray>a) == 2:
        return cnp.PyArray_DIM(<cnp.ndarray>a, 0)
    return math.prod(a.shape[:-1])  # raises OverflowError past 2**63


cdef _as_rows(a, Py_ssize_t N, Py_ssize_t M):
    """``a`` (..., M) as an (N, M) array BLAS reads in place: a view when possible."""
    cdef char trans
    cdef Py_ssize_t ld
    if cnp.PyArray_NDIM(<cnp.ndarray>a) != 2:
        a = a.reshape(N, M)
    if layout(a, &trans, &ld):
        return a
    return np.array(a, order="C")  # a copy: aligned too


cdef _target(out, Py_ssize_t rows, Py_ssize_t cols, int typenum, bint keep, bint *copy_back):
    """A C-contiguous (rows, cols) array (or 1-D when cols < 0) for the kernel to write.

    ``copy_back`` is set when the result must then be copied into ``out``.
    ``keep``: the kernel adds onto the array, so it must start with out's values.
    """
    cdef cnp.npy_intp dims[2]
    dims[0], dims[1] = rows, cols
    cdef int nd = 1 if cols < 0 else 2
    copy_back[0] = False
    if out is None:
        return cnp.PyArray_EMPTY(nd, dims, typenum, 0)
    cdef cnp.ndarray o = out
    if cnp.PyArray_ISCARRAY(o):
        return o if cnp.PyArray_NDIM(o) == nd else o.reshape(rows, cols)
    copy_back[0] = True
    if keep:
        o = np.array(o, order="C")
    else:
        o = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(o), cnp.PyArray_DIMS(o), typenum, 0)
    return o.reshape(rows) if nd == 1 else o.reshape(rows, cols)


cdef bint _holds_blas(int plan, Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out) noexcept:
    """Whether SciPy's BLAS is held at one thread for a call: always while fastlinear's
    threads call it, and on the calling thread alone from the size where OpenBLAS
    would start threads of its own (2**18 multiply-adds), for a serial plan the
    planner chose there.  Below it, the hold's microseconds are saved; an
    optional backend is loaded single-threaded and needs none."""
    if parallel.plan_backend(plan) != SCIPY_BLAS:
        return False
    return parallel.plan_path(plan) != parallel.SERIAL or <double>N * M_in * M_out >= SERIAL_WORK


cdef int _hold_blas(bint hold) except -1:
    if hold:
        blas_threads.enter()
    return 0


cdef int _release_blas(bint hold) except -1:
    if hold:
        blas_threads.exit()
    return 0


cdef int _threads(num_threads, int path) except 0:
    """Threads for a call on ``path``: SERIAL runs on this thread alone."""
    cdef int n = 1
    if path != parallel.SERIAL:
        n = check_threads(num_threads)
    elif not (num_threads is None
              or type(num_threads) is int and 1 <= num_threads <= MAX_THREADS):
        check_threads(num_threads)  # other integer types; raises naming a bad value
    return n


def linear_forward(x, W, b=None, *, activation=None, out=None, z=None, num_threads=None):
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
    return forward_planned(x, W, b, activation, out, z, num_threads, -1)


cpdef forward_planned(x, W, b, activation, out, z, num_threads, int plan):
    """linear_forward with a given plan (see fastlinear._plans), or the planner's if -1."""
    cdef int act = activation_code(activation)
    x = _float_array(x, "x")
    W = _float_array(W, "W")
    if b is not None:
        b = _float_array(b, "b")
    cdef Py_ssize_t dims[2]
    _check_forward(x, W, b, dims)
    cdef int typenum = _typenum(x)
    cdef Py_ssize_t M_in = dims[0], M_out = dims[1]
    cdef bint flat = cnp.PyArray_NDIM(<cnp.ndarray>x) == 2
    if out is not None:
        _check_out(out, "out", x, M_out, typenum, _FORWARD_NAMES, x, W, b)
    if z is not None:
        _check_out(z, "z", x, M_out, typenum, _FORWARD_NAMES, x, W, b, out)
    cdef Py_ssize_t N = _rows_of(x)
    if plan < 0:
        plan = _plan_for(0, typenum, N, M_in, M_out)
    else:
        _check_plan(plan)
    cdef int path = parallel.plan_path(plan)
    cdef int threads = _threads(num_threads, path)
    x2 = _as_rows(x, N, M_in)
    W = _as_rows(W, M_in, M_out)
    if b is not None and not cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>b):
        b = np.array(b, order="C")
    cdef bint copy_back, copy_z = False
    y = _target(out, N, M_out, typenum, False, &copy_back)
    tz = _target(z, N, M_out, typenum, False, &copy_z) if z is not None else None
    cdef bint hold = _holds_blas(plan, N, M_in, M_out)
    _hold_blas(hold)
    try:
        forward(x2, W, b, y, act, tz, plan, threads)
    finally:
        _release_blas(hold)
    if copy_back:
        np.copyto(out, y.reshape(out.shape))
    if copy_z:
        np.copyto(z, tz.reshape(z.shape))
    if out is not None:
        return out
    return y if flat else y.reshape(x.shape[:-1] + (M_out,))


def linear_backward(x, W, dy, *, activation=None, y=None, z=None, overwrite_dy=False,
                    bias=True, need_dx=True, need_dW=True, dx=None, dW=None, db=None,
                    dz=None, accumulate=False, lr=None, b=None, num_threads=None):
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
    return backward_planned(x, W, dy, activation, y, z, overwrite_dy, bias, need_dx, need_dW,
                            dx, dW, db, dz, accumulate, num_threads, -1, lr, b)


cpdef backward_planned(x, W, dy, activation, y, z, overwrite_dy, bias, need_dx, need_dW,
                       dx, dW, db, dz, accumulate, num_threads, int plan, lr=None, b=None):
    """linear_backward with a given plan (see fastlinear._plans), or the planner's if -1."""
    cdef double scale = 1
    if lr is not None or b is not None:
        scale = _check_step(lr, b, W, bias, need_dW, dW, db, accumulate)
    cdef int act = activation_code(activation)
    cdef bint gelu = act == GELU or act == GELU_TANH
    saved = z if gelu else y
    cdef str saved_name = "z" if gelu else "y"
    if (not act and saved is not None) or (y if gelu else z) is not None or (act and saved is None):
        raise ValueError(f"activation {activation!r} takes f' from "
                         + ("no array" if not act else f"{saved_name}= (the forward's "
                            + ("pre-activation z" if gelu else "output y") + ")")
                         + f"; got y={'None' if y is None else 'an array'}, "
                         f"z={'None' if z is None else 'an array'}")
    x = _float_array(x, "x")
    W = _float_array(W, "W")
    dy = _float_array(dy, "dy")
    if act:
        saved = _float_array(saved, saved_name)
    cdef Py_ssize_t dims[2]
    _check_backward(x, W, dy, dims)
    cdef int typenum = _typenum(x)
    cdef Py_ssize_t M_in = dims[0], M_out = dims[1]
    cdef bint flat = cnp.PyArray_NDIM(<cnp.ndarray>x) == 2
    cdef bint want_dx = need_dx, want_dW = need_dW, want_db = bias, add = accumulate
    if not (flat and cnp.PyArray_NDIM(<cnp.ndarray>dy) == 2
            and cnp.PyArray_DIM(<cnp.ndarray>dy, 0) == cnp.PyArray_DIM(<cnp.ndarray>x, 0)):
        lead = x.shape[:-1]
        if dy.shape[:-1] != lead:
            raise ValueError(f"dy must have shape {lead + (M_out,)} to match x of shape "
                             f"{x.shape}, got {dy.shape}")
    cdef tuple names = _BACKWARD_NAMES_Z if gelu else _BACKWARD_NAMES
    if act:
        if saved.shape != dy.shape:
            raise ValueError(f"{saved_name} must have the shape of dy, {dy.shape}, "
                             f"got {saved.shape}")
        if _typenum(saved) != typenum or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>saved):
            _same_dtype((("x", x), (saved_name, saved)))
    if dx is not None:
        _check_grad(dx, "dx", want_dx, x, M_in, typenum, names, x, W, dy, None, None, saved)
    if dW is not None:
        _check_grad(dW, "dW", want_dW, W, M_out, typenum, names, x, W, dy, dx, None, saved)
    if db is not None:
        _check_grad(db, "db", want_db, None, M_out, typenum, names, x, W, dy, dx, dW, saved)
    if dz is not None:
        _check_dz(dz, act, overwrite_dy, typenum, names, x, W, dy, dx, dW, db, saved)
    cdef char* lo
    cdef char* hi
    if lr is not None:  # W and b are written: checked as the dW and db buffers would be
        _check_out(W, "W (stepped by lr)", W, M_out, typenum, names, x, None, dy, dx, None, saved)
        if b is not None:
            _check_out(b, "b", None, M_out, typenum, names, x, W, dy, dx, None, saved)
            extent(b, &lo, &hi)
            _apart(b, lo, hi, "b", dz, ("dz",), 0)
    cdef Py_ssize_t N = _rows_of(x)
    if plan < 0:
        plan = _plan_for(4 | want_dx << 1 | want_dW, typenum, N, M_in, M_out)
    else:
        _check_plan(plan)
    cdef int path = parallel.plan_path(plan)
    cdef int threads = _threads(num_threads, path)
    x2 = _as_rows(x, N, M_in)
    W = _as_rows(W, M_in, M_out)
    dy2 = _as_rows(dy, N, M_out)
    cdef bint overwrite = act and overwrite_dy and cnp.PyArray_ISWRITEABLE(<cnp.ndarray>dy2)
    if act:
        saved = _as_rows(saved, N, M_out)
        if not cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>saved):
            saved = np.array(saved, order="C")
        if overwrite:  # dz goes into dy, which the other inputs must then not share
            _apart_all(dy2, "dy (overwrite_dy=True)", names, x, W, saved)
    cdef bint copy_dx = False, copy_dW = False, copy_db = False
    tdx = _target(dx, N, M_in, typenum, add, &copy_dx) if want_dx else None
    if lr is None:
        tdW = _target(dW, M_in, M_out, typenum, add, &copy_dW) if want_dW else None
        tdb = _target(db, M_out, -1, typenum, add, &copy_db) if want_db else None
    else:  # dW and db are added into W and b, scaled by -lr
        tdW = W
        tdb = _target(b, M_out, -1, typenum, True, &copy_db) if want_db else None
    cdef bint copy_dz = False
    cdef char tdy
    cdef Py_ssize_t lddy
    tdz = None
    if dz is not None:  # laid out as BLAS reads dy (see _backward)
        layout(dy2, &tdy, &lddy)
        if tdy == b'N':
            tdz = _target(dz, N, M_out, typenum, False, &copy_dz)
        else:
            tdz = _target(dz.T, M_out, N, typenum, False, &copy_dz).T
    cdef bint hold = _holds_blas(plan, N, M_in, M_out)
    _hold_blas(hold)
    try:
        backward(x2, W, dy2, tdx, tdW, tdb,
                 add and dx is not None, add and dW is not None or lr is not None,
                 add and db is not None or lr is not None,
                 act, saved, overwrite, tdz, plan, threads, scale)
    finally:
        _release_blas(hold)
    if copy_dz:
        np.copyto(dz, tdz.reshape(dz.shape))  # dz is 2-D wherever dy2 is read transposed
    cdef tuple args
    if lr is None:
        args = ((_result(tdx, dx, copy_dx, x, flat), _result(tdW, dW, copy_dW, None, True),
                 _result(tdb, db, copy_db, None, True)),)
    else:
        _result(tdb, b, copy_db, None, True)  # a strided b gets its copy back
        args = ((_result(tdx, dx, copy_dx, x, flat), None, None),)
    # What Grads(...) returns, without the call through its Python-level __new__.
    return PyTuple_Type.tp_new(_Grads, <PyObject*>args, NULL)


cdef double _check_step(lr, b, W, bias, need_dW, dW, db, accumulate) except? -1:
    """-lr, once lr= and b= are checked against the rest of an SGD-step call."""
    if lr is None:
        raise ValueError("b= is stepped only with lr=; without lr, db is returned "
                         "(or written into db=)")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a real number, got {lr!r}")
    if not math.isfinite(lr):
        raise ValueError(f"lr must be finite, got {lr!r}")
    if dW is not None or db is not None or accumulate or not need_dW:
        raise ValueError("lr steps W (and b) in place with dW and db: give no dW= or db= "
                         "buffer, and keep accumulate=False and need_dW=True")
    if not (isinstance(W, cnp.ndarray) and cnp.PyArray_ISCARRAY(<cnp.ndarray>W)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>W)):
        raise ValueError("with lr, W is stepped in place: it must be a writeable, "
                         "C-contiguous ndarray in native byte order")
    if bias and b is None:
        raise ValueError("with lr and bias=True, give the bias as b= to step it "
                         "(or bias=False)")
    if not bias and b is not None:
        raise ValueError("b= was given but bias=False: there is no db to step it with")
    return -<double>lr


cdef int _check_grad(buf, str name, bint need, like, Py_ssize_t last, int typenum,
                     tuple names, a0, a1, a2, a3, a4, a5) except -1:
    """A gradient buffer: it must be asked for, and fit (see _check_out)."""
    if not need:
        raise ValueError(f"a {name} buffer was given but {name} is not computed")
    return _check_out(buf, name, like, last, typenum, names, a0, a1, a2, a3, a4, a5)


cdef int _check_dz(dz, int act, overwrite_dy, int typenum, tuple names, x, W, dy, dx, dW,
                   db, saved) except -1:
    """A dz buffer: only with an activation and without overwrite_dy, the shape
    and dtype of dy, sharing memory with no other array of the call."""
    if not act:
        raise ValueError("a dz buffer was given but there is no activation: dz would be dy")
    if overwrite_dy:
        raise ValueError("dz is written into dy with overwrite_dy=True; give dz or "
                         "overwrite_dy=True, not both")
    _check_out(dz, "dz", dy, cnp.PyArray_DIM(<cnp.ndarray>W, 1), typenum, names,
               x, W, dy, dx, dW, saved)
    cdef char* lo
    cdef char* hi
    extent(dz, &lo, &hi)
    return _apart(dz, lo, hi, "dz", db, ("db",), 0)


cdef int _apart_all(cnp.ndarray a, str name, tuple names, x, W, saved) except -1:
    """Raise if ``a`` shares memory with x, W or saved (named as in ``names``)."""
    cdef char* lo
    cdef char* hi
    extent(a, &lo, &hi)
    _apart(a, lo, hi, name, x, names, 0)
    _apart(a, lo, hi, name, W, names, 1)
    return _apart(a, lo, hi, name, saved, names, 5)


cdef _result(t, buf, bint copy_back, x, bint flat):
    """What the caller gets for one gradient: its buffer, or the kernel's array shaped."""
    if buf is not None:
        if copy_back:
            np.copyto(buf, t.reshape(buf.shape))
        return buf
    if t is None or flat:
        return t
    return t.reshape(x.shape)
