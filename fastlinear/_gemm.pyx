# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A GEMM parallelised over tiles of C fixed by the shape.

BLAS threads its own GEMM by splitting C according to the thread count, so
its results change in the last bits when the thread count does.  Here C is
cut into tiles that depend on (m, n, k) only, a prange hands them to the
threads, and each tile is one single-threaded BLAS call: every element is
computed by the same instructions whatever num_threads is.
"""
from cython.parallel cimport prange
cimport fastlinear._parallel as par
from fastlinear._blas cimport gemm, row, col

# A tile is at least this many multiply-adds and this many rows and columns,
# so that the repacking of A and B that each BLAS call does stays small next
# to its arithmetic.
cdef Py_ssize_t _min_tile_work = 1 << 21
cdef Py_ssize_t _min_side = 64


def _set_tiling(Py_ssize_t min_tile_work, Py_ssize_t min_side):
    """Change the tile bounds (for experiments); returns the previous ones."""
    global _min_tile_work, _min_side
    previous = (_min_tile_work, _min_side)
    _min_tile_work, _min_side = min_tile_work, min_side
    return previous


cdef void _tiles(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, Py_ssize_t* tm, Py_ssize_t* tn) noexcept nogil:
    """Number of tiles along m and n.

    Each extra tile repacks a panel of A or B, which cost 5-15% on the
    2-core reference machine at 16 tiles of a 4096 x 1024 x 1024 product,
    so products get 4 tiles, and one more doubling per 8x more work past
    2**32 multiply-adds for machines with more cores.  Halving the longer
    side keeps tiles square, which repacks least; powers of two keep the
    tiles even on the usual even core counts.
    """
    cdef Py_ssize_t mt = 1, nt = 1, max_tiles = 4
    cdef Py_ssize_t work = m * n * k, big = 1LL << 35
    while work >= big and max_tiles < 64:
        max_tiles *= 2
        big *= 8
    while mt * nt < max_tiles and (m // mt) * (n // nt) * k >= 2 * _min_tile_work:
        if m // mt >= n // nt and m // mt >= 2 * _min_side:
            mt *= 2
        elif n // nt >= 2 * _min_side:
            nt *= 2
        elif m // mt >= 2 * _min_side:
            mt *= 2
        else:
            break
    tm[0] = mt
    tn[0] = nt


cdef void _tile(Py_ssize_t t, Py_ssize_t tm, Py_ssize_t tn,
                char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                const floating* A, Py_ssize_t ldA, const floating* B, Py_ssize_t ldB,
                const floating* bias, bint accumulate, floating* C, Py_ssize_t ldC) noexcept nogil:
    cdef Py_ssize_t i0 = par.chunk_start(t // tn, m, tm), i1 = par.chunk_start(t // tn + 1, m, tm)
    cdef Py_ssize_t j0 = par.chunk_start(t % tn, n, tn), j1 = par.chunk_start(t % tn + 1, n, tn)
    cdef Py_ssize_t i, j
    cdef floating* Ci
    if bias != NULL:
        for i in range(i0, i1):
            Ci = C + i * ldC
            for j in range(j0, j1):
                Ci[j] = bias[j]
    gemm(transA, transB, i1 - i0, j1 - j0, k, row(A, transA, ldA, i0), ldA,
         col(B, transB, ldB, j0), ldB,
         <floating>(accumulate or bias != NULL), C + i0 * ldC + j0, ldC)


cdef void tiled_gemm(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const floating* A, Py_ssize_t ldA, const floating* B, Py_ssize_t ldB,
                     const floating* bias, bint accumulate, floating* C, Py_ssize_t ldC,
                     int num_threads) noexcept nogil:
    """C (m x n) = op(A) op(B), plus C if ``accumulate``, plus ``bias`` (length n) if given.

    The bias is written into each tile just before its product is added
    onto it with beta = 1, while the tile is in cache.
    """
    cdef Py_ssize_t tm, tn, t
    _tiles(m, n, k, &tm, &tn)
    if num_threads == 1:  # not even a one-thread OpenMP team: it costs microseconds
        for t in range(tm * tn):
            _tile(t, tm, tn, transA, transB, m, n, k, A, ldA, B, ldB, bias, accumulate, C, ldC)
    else:
        for t in prange(tm * tn, num_threads=num_threads, schedule='dynamic'):
            _tile(t, tm, tn, transA, transB, m, n, k, A, ldA, B, ldB, bias, accumulate, C, ldC)
