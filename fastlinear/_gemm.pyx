# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A GEMM parallelised over tasks fixed by the shape.

BLAS threads its own GEMM by splitting C according to the thread count, so
its results change in the last bits when the thread count does.  Here the
product is cut into tasks that depend on (m, n, k) only, a prange hands them
to the threads, and each task is one single-threaded BLAS call; partial
products over slices of k are added in a fixed order.  Every element is thus
computed by the same instructions whatever num_threads is.
"""
from cython.parallel cimport prange
from libc.string cimport memcpy
cimport fastlinear._parallel as par
from fastlinear._blas cimport gemm, row, col

# A task is at least this many multiply-adds and this many rows, columns and
# k: each BLAS call repacks its panels of A and B, which must stay small next
# to its arithmetic.
cdef enum:
    MIN_TASK_WORK = 1 << 22
    MIN_SIDE = 64


cdef struct Tiles:
    Py_ssize_t tm, tn, tk


cdef Tiles _tiles(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """How many slices of m, n and k: each split where it costs least.

    Splitting m repacks op(B) once more per new slice (k * n/tn elements),
    splitting n repacks op(A) (k * m/tm), and splitting k writes and then
    re-reads a partial C (2 * m/tm * n/tn).  Halving the cheapest keeps the
    extra memory traffic lowest.  Products get 4 tasks, plus one doubling per
    8x more work past 2**32 multiply-adds (more tasks cost more repacking:
    16 tasks of a 4096 x 1024 x 1024 product ran 5-15% slower than 4 on two
    cores); powers of two keep the tasks even on the usual core counts.
    """
    cdef Tiles t
    cdef Py_ssize_t most = 4, big = 1LL << 35, mt, nt, kt, cost_m, cost_n, cost_k, best
    t.tm = t.tn = t.tk = 1
    while m * n * k >= big and most < 64:
        most *= 2
        big *= 8
    while t.tm * t.tn * t.tk < most:
        mt, nt, kt = m // t.tm, n // t.tn, k // t.tk
        if mt * nt * kt < 2 * MIN_TASK_WORK:
            break
        cost_m = kt * nt if mt >= 2 * MIN_SIDE else -1
        cost_n = kt * mt if nt >= 2 * MIN_SIDE else -1
        # A slice of k also costs an OpenMP pass to add the partials, which
        # only pays off when k dominates (dW = x^T dy over many rows).
        cost_k = 2 * mt * nt if kt >= 2 * MIN_SIDE and kt >= 4 * max(mt, nt) else -1
        best = cost_m
        if cost_n >= 0 and (best < 0 or cost_n < best):
            best = cost_n
        if cost_k >= 0 and (best < 0 or cost_k < best):
            best = cost_k
        if best < 0:
            break
        if best == cost_m:
            t.tm *= 2
        elif best == cost_n:
            t.tn *= 2
        else:
            t.tk *= 2
    return t


cdef Py_ssize_t tiled_gemm_workspace(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Elements of workspace tiled_gemm needs: one partial C per extra slice of k."""
    return (_tiles(m, n, k).tk - 1) * m * n


cdef void _task(Py_ssize_t t, Tiles s, char transA, char transB,
                Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                const floating* A, Py_ssize_t ldA, const floating* B, Py_ssize_t ldB,
                const floating* bias, bint accumulate, floating* C, Py_ssize_t ldC,
                floating* work) noexcept nogil:
    cdef Py_ssize_t tile = t % (s.tm * s.tn), kk = t // (s.tm * s.tn)
    cdef Py_ssize_t i0 = par.chunk_start(tile // s.tn, m, s.tm)
    cdef Py_ssize_t i1 = par.chunk_start(tile // s.tn + 1, m, s.tm)
    cdef Py_ssize_t j0 = par.chunk_start(tile % s.tn, n, s.tn)
    cdef Py_ssize_t j1 = par.chunk_start(tile % s.tn + 1, n, s.tn)
    cdef Py_ssize_t k0 = par.chunk_start(kk, k, s.tk), k1 = par.chunk_start(kk + 1, k, s.tk)
    cdef Py_ssize_t i, ld = ldC
    cdef floating* out = C
    cdef floating beta = accumulate or bias != NULL
    if kk > 0:  # a later slice of k: its own partial C, added in order afterwards
        out = work + (kk - 1) * m * n
        ld = n
        beta = 0
    elif bias != NULL:
        for i in range(i0, i1):
            memcpy(C + i * ldC + j0, bias + j0, (j1 - j0) * sizeof(floating))
    gemm(transA, transB, i1 - i0, j1 - j0, k1 - k0,
         col(row(A, transA, ldA, i0), transA, ldA, k0), ldA,
         col(row(B, transB, ldB, k0), transB, ldB, j0), ldB,
         beta, out + i0 * ld + j0, ld)


cdef void _add_partials(Py_ssize_t i, Py_ssize_t n, Py_ssize_t parts,
                        floating* C, Py_ssize_t ldC, const floating* work,
                        Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t j, p
    cdef double s
    for j in range(n):
        s = C[i * ldC + j]
        for p in range(parts):
            s = s + work[p * size + i * n + j]
        C[i * ldC + j] = <floating>s


cdef void tiled_gemm(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const floating* A, Py_ssize_t ldA, const floating* B, Py_ssize_t ldB,
                     const floating* bias, bint accumulate, floating* C, Py_ssize_t ldC,
                     floating* work, int num_threads) noexcept nogil:
    """C (m x n) = op(A) op(B), plus C if ``accumulate``, plus ``bias`` (length n) if given.

    The bias is written into each tile just before its product is added onto
    it with beta = 1, while the tile is in cache.  ``work`` holds
    tiled_gemm_workspace(m, n, k) elements.
    """
    cdef Tiles s = _tiles(m, n, k)
    cdef Py_ssize_t tasks = s.tm * s.tn * s.tk, t, i
    cdef int threads = par.threads_for(num_threads, tasks)
    if threads == 1:  # not even a one-thread OpenMP team: it costs microseconds
        for t in range(tasks):
            _task(t, s, transA, transB, m, n, k, A, ldA, B, ldB, bias, accumulate, C, ldC, work)
    else:
        for t in prange(tasks, num_threads=threads, schedule='dynamic'):
            _task(t, s, transA, transB, m, n, k, A, ldA, B, ldB, bias, accumulate, C, ldC, work)
    if s.tk > 1:
        threads = par.threads_for(num_threads, m)
        if threads == 1:
            for i in range(m):
                _add_partials(i, n, s.tk - 1, C, ldC, work, m * n)
        else:
            for i in prange(m, num_threads=threads, schedule='static'):
                _add_partials(i, n, s.tk - 1, C, ldC, work, m * n)
