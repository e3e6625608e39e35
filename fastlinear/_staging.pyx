# cython: language_level=3
"""Arrays as the kernels take them, and results as the caller gets them.

A layout BLAS cannot read in place costs exactly one copy; an output buffer
the kernels cannot write in place gets the result copied back.
"""
import numpy as np
cimport numpy as cnp

from fastlinear._blas cimport layout

cnp.import_array()


cdef as_rows(a, Py_ssize_t N, Py_ssize_t M):
    """``a`` (..., M) as an (N, M) array BLAS reads in place: a view when possible."""
    cdef char trans
    cdef Py_ssize_t ld
    if cnp.PyArray_NDIM(<cnp.ndarray>a) != 2:
        a = a.reshape(N, M)
    if layout(a, &trans, &ld):
        return a
    return np.array(a, order="C")  # a copy: aligned too


cdef target(out, Py_ssize_t rows, Py_ssize_t cols, int typenum, bint keep, bint *copy_back):
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


cdef result(t, buf, bint copy_back, x, bint flat):
    """What the caller gets for one gradient: its buffer, or the kernel's array shaped."""
    if buf is not None:
        if copy_back:
            np.copyto(buf, t.reshape(buf.shape))
        return buf
    if t is None or flat:
        return t
    return t.reshape(x.shape)


cdef dz_target(dz, dy, Py_ssize_t N, Py_ssize_t M_out, int typenum, bint* copy_back):
    """What the kernel writes dz into: laid out as BLAS reads dy (see _backward)."""
    cdef char trans
    cdef Py_ssize_t ld
    layout(dy, &trans, &ld)
    if trans == b'N':
        return target(dz, N, M_out, typenum, False, copy_back)
    return target(dz.T, M_out, N, typenum, False, copy_back).T
