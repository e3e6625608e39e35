# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Forward kernel: y = x W + b.

The bias is broadcast into y first and the product added onto it by one GEMM
with beta = 1, so no temporary the size of y is ever made.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
cimport fastlinear._parallel as par
from fastlinear._blas cimport gemm, row, layout, blas_int_max
from fastlinear._gemm cimport tiled_gemm

cnp.import_array()


cdef void _rows(const floating* x, char tx, Py_ssize_t ldx,
                const floating* W, char tW, Py_ssize_t ldW, const floating* b,
                floating* y, Py_ssize_t i0, Py_ssize_t i1,
                Py_ssize_t M_in, Py_ssize_t M_out) noexcept nogil:
    """Rows i0:i1 of y: the bias, then x W added on top."""
    cdef Py_ssize_t i, j
    cdef floating* yi
    if b != NULL:
        for i in range(i0, i1):
            yi = y + i * M_out
            for j in range(M_out):
                yi[j] = b[j]
    gemm(tx, tW, i1 - i0, M_out, M_in, row(x, tx, ldx, i0), ldx, W, ldW,
         <floating>(1 if b != NULL else 0), y + i0 * M_out, M_out)


cdef void _forward(const floating* x, char tx, Py_ssize_t ldx,
                   const floating* W, char tW, Py_ssize_t ldW, const floating* b,
                   floating* y, Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out,
                   bint blocked, bint serial, int num_threads) noexcept nogil:
    cdef Py_ssize_t rows = par.block_rows(M_in + M_out, sizeof(floating), blas_int_max())
    cdef Py_ssize_t blocks = par.ceil_div(N, rows), blk
    if serial or N <= rows:
        _rows(x, tx, ldx, W, tW, ldW, b, y, 0, N, M_in, M_out)
    elif blocked:
        # Narrow W: each cache-sized block of rows gets its bias and its
        # product while it is in this core's cache.
        for blk in prange(blocks, num_threads=num_threads, schedule='dynamic'):
            _rows(x, tx, ldx, W, tW, ldW, b, y, blk * rows, min(N, (blk + 1) * rows),
                  M_in, M_out)
    else:
        tiled_gemm(tx, tW, N, M_out, M_in, x, ldx, W, ldW, b, False, y, M_out, num_threads)


def forward(x, W, b, y, bint blocked, bint serial, int num_threads):
    """y[:] = x @ W (+ b).

    x and W are 2-D arrays that BLAS reads in place (see blas_readable), b is
    None or contiguous 1-D, y is C-contiguous (N, M_out); all share a dtype.
    ``serial`` makes one BLAS call on this thread; ``blocked`` threads over
    cache-sized row blocks (narrow W); otherwise C is tiled for large GEMMs.
    """
    cdef char tx, tW
    cdef Py_ssize_t ldx, ldW
    cdef Py_ssize_t N = cnp.PyArray_DIM(<cnp.ndarray>x, 0)
    cdef Py_ssize_t M_in = cnp.PyArray_DIM(<cnp.ndarray>W, 0)
    cdef Py_ssize_t M_out = cnp.PyArray_DIM(<cnp.ndarray>W, 1)
    cdef void* xp = cnp.PyArray_DATA(<cnp.ndarray>x)
    cdef void* Wp = cnp.PyArray_DATA(<cnp.ndarray>W)
    cdef void* bp = NULL if b is None else cnp.PyArray_DATA(<cnp.ndarray>b)
    cdef void* yp = cnp.PyArray_DATA(<cnp.ndarray>y)
    if not (layout(x, &tx, &ldx) and layout(W, &tW, &ldW)):
        raise ValueError("x and W must be readable by BLAS in place")
    if cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_DOUBLE:
        with nogil:
            _forward(<double*>xp, tx, ldx, <double*>Wp, tW, ldW, <double*>bp,
                     <double*>yp, N, M_in, M_out, blocked, serial, num_threads)
    else:
        with nogil:
            _forward(<float*>xp, tx, ldx, <float*>Wp, tW, ldW, <float*>bp,
                     <float*>yp, N, M_in, M_out, blocked, serial, num_threads)
