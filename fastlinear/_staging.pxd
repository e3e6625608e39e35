# Arrays as the kernels take them, and results as the caller gets them.
cimport numpy as cnp
from cpython.pyport cimport PY_SSIZE_T_MAX


cdef inline Py_ssize_t rows_of(a) except -1:
    """N: the product of all but the last dimension (OverflowError past 2**63 - 1,
    which an empty array's other dimensions can reach)."""
    cdef int nd = cnp.PyArray_NDIM(<cnp.ndarray>a), i
    cdef Py_ssize_t N = 1, d
    for i in range(nd - 1):
        d = cnp.PyArray_DIM(<cnp.ndarray>a, i)
        if d and N > PY_SSIZE_T_MAX // d:
            raise OverflowError(f"the {a.shape[:-1]} rows of an array of shape {a.shape} "
                                "are more than an index can count")
        N *= d
    return N

cdef as_rows(a, Py_ssize_t N, Py_ssize_t M)
cdef target(out, Py_ssize_t rows, Py_ssize_t cols, int typenum, bint keep, bint* copy_back)
cdef result(t, buf, bint copy_back, x, bint flat)
cdef dz_target(dz, dy, Py_ssize_t N, Py_ssize_t M_out, int typenum, bint* copy_back)
