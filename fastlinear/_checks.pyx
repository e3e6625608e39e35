# cython: language_level=3
"""The checks of the public functions' inputs.

Every check runs before any output is touched.  They read the arrays' headers
at C level: on small arrays they are most of a call's time.
"""
import math
import numbers

import numpy as np
cimport numpy as cnp
from cpython.object cimport PyObject

cimport fastlinear._parallel as parallel
from fastlinear._blas cimport BLAS_INT_MAX, extent
from fastlinear._blas import has_backend
from fastlinear._problem cimport NEED_DX, NEED_DW
from fastlinear._epilogue cimport NO_ACTIVATION, RELU, TANH, SIGMOID, GELU, GELU_TANH
from fastlinear._threads import MAX_THREADS, check_threads

cnp.import_array()

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
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


cdef int check_plan(int plan) except -1:
    """Raise unless ``plan`` is one fastlinear._parallel.make_plan makes."""
    if not (parallel.plan_path(plan) <= parallel.TILED and parallel.plan_tasks(plan) >= 1
            and has_backend(parallel.plan_backend(plan))):
        raise ValueError(f"no such plan: {plan}")
    return 0


cpdef float_array(a, str name):
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


cdef bint _one_type(x, W, c) noexcept:
    """Whether x, W and c (None allowed) are native-order ndarrays of one type.

    Then they share a dtype and _same_dtype, a Python-level loop, is not needed.
    """
    if not (isinstance(x, cnp.ndarray) and isinstance(W, cnp.ndarray)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>x)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>W)
            and typenum_of(W) == typenum_of(x)):
        return False
    return c is None or (isinstance(c, cnp.ndarray) and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>c)
                         and typenum_of(c) == typenum_of(x))


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


cdef int check_forward_arrays(x, W, b, Py_ssize_t* dims) except -1:
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


cdef int check_backward_arrays(x, W, dy, saved, str saved_name, Py_ssize_t* dims) except -1:
    """_check_backward, and dy and ``saved`` (None without an activation) of x's rows."""
    _check_backward(x, W, dy, dims)
    if not (cnp.PyArray_NDIM(<cnp.ndarray>x) == 2 and cnp.PyArray_NDIM(<cnp.ndarray>dy) == 2
            and cnp.PyArray_DIM(<cnp.ndarray>dy, 0) == cnp.PyArray_DIM(<cnp.ndarray>x, 0)):
        lead = x.shape[:-1]
        if dy.shape[:-1] != lead:
            raise ValueError(f"dy must have shape {lead + (dims[1],)} to match x of shape "
                             f"{x.shape}, got {dy.shape}")
    if saved is None:
        return 0
    if saved.shape != dy.shape:
        raise ValueError(f"{saved_name} must have the shape of dy, {dy.shape}, "
                         f"got {saved.shape}")
    if typenum_of(saved) != typenum_of(x) or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>saved):
        _same_dtype((("x", x), (saved_name, saved)))
    return 0


cdef object check_saved(activation, int act, y, z):
    """The array the backward of ``act`` takes f' from (None without an
    activation); raises unless y= and z= give exactly that one."""
    cdef bint gelu = act == GELU or act == GELU_TANH
    saved = z if gelu else y
    if (not act and saved is not None) or (y if gelu else z) is not None or (act and saved is None):
        raise ValueError(f"activation {activation!r} takes f' from "
                         + ("no array" if not act else ("z= (the forward's pre-activation z"
                            if gelu else "y= (the forward's output y") + ")")
                         + f"; got y={'None' if y is None else 'an array'}, "
                         f"z={'None' if z is None else 'an array'}")
    return saved


def check_forward(x, W, b=None):
    """The dtype of a forward problem; raises naming what does not fit.

    Any arrays with .dtype and .shape (dask's too); fastlinear.dask checks with it.
    """
    cdef Py_ssize_t dims[2]
    check_forward_arrays(x, W, b, dims)
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


cdef void set_operands(CallArrays* o, tuple names, a0, a1, a2, a3, a4, a5) noexcept:
    """The arrays an output is checked against, named by ``names``; None for none."""
    o.arrays[0], o.arrays[1], o.arrays[2] = _ref(a0), _ref(a1), _ref(a2)
    o.arrays[3], o.arrays[4], o.arrays[5] = _ref(a3), _ref(a4), _ref(a5)
    o.names = <PyObject*>names


cdef inline PyObject* _ref(a) noexcept:
    return NULL if a is None else <PyObject*>a


cdef int check_out(out, str name, like, Py_ssize_t last, int typenum,
                   const CallArrays* others) except -1:
    """Raise unless ``out`` can receive a result of type ``typenum`` and shape
    _shape_like(like, last), overlapping none of ``others``.
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
    return check_apart_all(o, name, others)


cdef int check_apart_all(cnp.ndarray a, str name, const CallArrays* others) except -1:
    """Raise if ``a`` shares memory with one of ``others``."""
    # a's memory span is found once: found again for each array, it would
    # cost more than the checks.
    cdef char* lo
    cdef char* hi
    extent(a, &lo, &hi)
    cdef int i
    for i in range(6):
        if others.arrays[i] != NULL and _overlaps(a, lo, hi, <object>others.arrays[i]):
            _refuse_overlap(name, (<tuple>others.names)[i])
    return 0


cdef int check_apart(cnp.ndarray a, str name, other, str other_name) except -1:
    """Raise if ``a`` shares memory with ``other`` (None: nothing to check)."""
    cdef char* lo
    cdef char* hi
    if other is None:
        return 0
    extent(a, &lo, &hi)
    if _overlaps(a, lo, hi, other):
        _refuse_overlap(name, other_name)
    return 0


cdef bint _overlaps(cnp.ndarray o, char* lo, char* hi, a) except -1:
    """Whether ``a`` shares memory with ``o``, whose bytes span lo:hi."""
    cdef char* alo
    cdef char* ahi
    extent(<cnp.ndarray?>a, &alo, &ahi)
    return alo < hi and lo < ahi and _overlap(o, a)


cdef int _refuse_overlap(str name, str other_name) except -1:
    raise ValueError(f"{name} overlaps {other_name}; results would be corrupted")


def _overlap(a, b):
    try:
        return np.shares_memory(a, b, max_work=100_000)
    except np.exceptions.TooHardError:
        return True  # too costly to tell: refuse rather than risk it


cdef int threads_of(num_threads, int path) except 0:
    """Threads for a call on ``path``: SERIAL runs on this thread alone."""
    cdef int n = 1
    if path != parallel.SERIAL:
        n = check_threads(num_threads)
    elif not (num_threads is None
              or type(num_threads) is int and 1 <= num_threads <= MAX_THREADS):
        check_threads(num_threads)  # other integer types; raises naming a bad value
    return n


cdef double check_step(lr, b, W, bias, need_dW, dW, db, accumulate) except? -1:
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




cdef int check_gradient_buffers(CallArrays* others, dx, dW, db, dz, int kind, bint bias,
                                int typenum) except -1:
    """Raise unless each buffer given is for a gradient computed and fits
    (see check_out), overlapping no input nor another buffer.  ``others``
    holds x, W, dy, None, None and the saved activation; dx and dW are added."""
    x, W, dy = <object>others.arrays[0], <object>others.arrays[1], <object>others.arrays[2]
    cdef Py_ssize_t M_in = cnp.PyArray_DIM(<cnp.ndarray>W, 0)
    cdef Py_ssize_t M_out = cnp.PyArray_DIM(<cnp.ndarray>W, 1)
    if dx is not None:
        _check_wanted("dx", kind & NEED_DX)
        check_out(dx, "dx", x, M_in, typenum, others)
        others.arrays[3] = <PyObject*>dx
    if dW is not None:
        _check_wanted("dW", kind & NEED_DW)
        check_out(dW, "dW", W, M_out, typenum, others)
        others.arrays[4] = <PyObject*>dW
    if db is not None:
        _check_wanted("db", bias)
        check_out(db, "db", None, M_out, typenum, others)
    if dz is not None:
        check_out(dz, "dz", dy, M_out, typenum, others)
        check_apart(dz, "dz", db, "db")
    return 0


cdef int _check_wanted(str name, bint computed) except -1:
    if not computed:
        raise ValueError(f"a {name} buffer was given but {name} is not computed")
    return 0


cdef int check_dz_wanted(int act, overwrite_dy) except -1:
    """A dz buffer: only with an activation and without overwrite_dy."""
    if not act:
        raise ValueError("a dz buffer was given but there is no activation: dz would be dy")
    if overwrite_dy:
        raise ValueError("dz is written into dy with overwrite_dy=True; give dz or "
                         "overwrite_dy=True, not both")
    return 0


cdef int check_stepped(CallArrays* others, W, b, dz, int typenum) except -1:
    """With lr: W and b are written, so they are checked as the dW and db
    buffers would be (``others`` as check_gradient_buffers leaves it)."""
    cdef Py_ssize_t M_out = cnp.PyArray_DIM(<cnp.ndarray>W, 1)
    others.arrays[1] = NULL
    check_out(W, "W (stepped by lr)", W, M_out, typenum, others)
    others.arrays[1] = <PyObject*>W
    if b is not None:
        check_out(b, "b", None, M_out, typenum, others)
        check_apart(b, "b", dz, "dz")
    return 0
