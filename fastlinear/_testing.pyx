# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Entry points into the kernels' internals, for the tests only.

Nothing here is used by fastlinear itself: the shipped kernel modules keep
only what a call runs.
"""
cimport numpy as cnp
from fastlinear._blas cimport SCIPY_BLAS, c_array, data, layout, split_gemm
from fastlinear._gemm cimport Product, Tiles, product_tiles

cnp.import_array()


def split_product(A, B, C, bint accumulate, Py_ssize_t limit):
    """C (+)= A @ B by gemm cut into calls whose m, n and k are at most ``limit``
    (the 32-bit limit itself takes arrays of 2**31 elements).

    A and B are 2-D arrays BLAS reads in place, C a C-contiguous one, all of
    one float dtype.
    """
    cdef char tA, tB
    cdef Py_ssize_t ldA, ldB, m = len(C), n = C.shape[1], k = A.shape[1]
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray?>C)
    if not (limit >= 1 and layout(A, &tA, &ldA) and layout(B, &tB, &ldB)
            and c_array(C, typenum, A.shape[0], B.shape[1], True) and B.shape[0] == k
            and typenum in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE) and A.dtype == B.dtype == C.dtype):
        raise ValueError("A (m, k), B (k, n) and C (m, n) of one float dtype, and limit >= 1")
    if typenum == cnp.NPY_DOUBLE:
        split_gemm(tA, tB, m, n, k, 1.0, <double*>data(A), ldA, <double*>data(B), ldB,
                   <double>accumulate, <double*>data(C), n, SCIPY_BLAS, limit)
    else:
        split_gemm(tA, tB, m, n, k, 1.0, <float*>data(A), ldA, <float*>data(B), ldB,
                   <float>accumulate, <float*>data(C), n, SCIPY_BLAS, limit)


def task_grid(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, str transA, str transB,
              bint small_kernels, Py_ssize_t tasks):
    """(slices of m, slices of n, slices of k): how a tiled product is cut into tasks."""
    cdef Product prod
    prod.m, prod.n, prod.k = m, n, k
    prod.setting.small_kernels, prod.setting.tasks = small_kernels, tasks
    prod.transA, prod.transB = ord(transA), ord(transB)
    cdef Tiles t = product_tiles(&prod)
    return t.slices_m, t.slices_n, t.slices_k
