# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""db = column sums of dy, as a deterministic parallel reduction, and with
an activation, dz = dy * f'(.) and db = column sums of dz in the same pass.

The rows are cut into a number of chunks and the columns into blocks, both
fixed by the shape; each (chunk, block) task sums its rows in order into a
float64 partial, and the partials are added chunk by chunk in order.  So the
result is bitwise the same for any thread count, and float32 input is summed
in float64 before the single rounding at the end.
"""
from cython.parallel cimport prange
cimport fastlinear._parallel as parallel
from fastlinear._epilogue cimport activation_grad

# A column block of 512 float64 accumulators (4 KiB) stays in L1 while a task
# streams its rows past it.
# Enough tasks to keep many cores busy; partial sums stay small.
cdef enum:
    COLS = 512
    TASKS = 64
    MIN_ROWS = 256


cdef void colsum_add(const floating* a, Py_ssize_t s0, Py_ssize_t s1,
                     Py_ssize_t rows, Py_ssize_t cols, double* acc) noexcept nogil:
    """acc[j] += sum_i a[i, j] over the rows, element strides s0, s1.

    Rows are taken four at a time, (r0 + r1) + (r2 + r3) added onto acc: a
    fixed order, and a quarter of the loads and stores of acc that one row at
    a time costs, which is what bounds the speed of a wide sum.
    """
    cdef Py_ssize_t i = 0, j
    cdef const floating *r0
    cdef const floating *r1
    cdef const floating *r2
    cdef const floating *r3
    if s1 != 1:
        for i in range(rows):
            r0 = a + i * s0
            for j in range(cols):
                acc[j] += r0[j * s1]
        return
    while i + 4 <= rows:
        r0 = a + i * s0
        r1 = r0 + s0
        r2 = r1 + s0
        r3 = r2 + s0
        for j in range(cols):
            acc[j] += (<double>r0[j] + <double>r1[j]) + (<double>r2[j] + <double>r3[j])
        i += 4
    while i < rows:
        r0 = a + i * s0
        for j in range(cols):
            acc[j] += r0[j]
        i += 1


cdef inline Py_ssize_t _chunks(Py_ssize_t N, Py_ssize_t M_out) noexcept nogil:
    cdef Py_ssize_t blocks = max(1, parallel.ceil_div(M_out, COLS))
    return max(1, min(parallel.ceil_div(N, MIN_ROWS), parallel.ceil_div(TASKS, blocks)))


cdef Py_ssize_t column_sums_workspace(Py_ssize_t N, Py_ssize_t M_out) noexcept nogil:
    """Number of float64 elements of workspace column_sums needs."""
    return _chunks(N, M_out) * M_out


cdef void _combine_block(Py_ssize_t blk, const partial_t* parts, Py_ssize_t chunks,
                         Py_ssize_t width, floating* out, bint accumulate) noexcept nogil:
    cdef Py_ssize_t e, c
    cdef double s
    for e in range(blk * COLS, min((blk + 1) * COLS, width)):
        s = out[e] if accumulate else 0.0
        for c in range(chunks):
            s = s + parts[c * width + e]
        out[e] = <floating>s


cdef void combine(const partial_t* parts, Py_ssize_t chunks, Py_ssize_t width,
                  floating* out, bint accumulate, int num_threads) noexcept nogil:
    """out[e] (+)= sum over c of parts[c, e], added in chunk order in float64."""
    cdef Py_ssize_t blocks = parallel.ceil_div(width, COLS), blk
    cdef int threads = parallel.threads_for(num_threads, blocks)
    if threads == 1:
        for blk in range(blocks):
            _combine_block(blk, parts, chunks, width, out, accumulate)
    else:
        for blk in prange(blocks, num_threads=threads, schedule='static'):
            _combine_block(blk, parts, chunks, width, out, accumulate)


cdef struct Grad:
    # What _sum_task computes with an activation: dz = dy * f'(saved), the
    # sums taken of dz.
    int act
    const void* saved   # C-contiguous, N x M_out
    void* dz
    Py_ssize_t t0, t1   # dz's element strides


cdef void _sum_task(Py_ssize_t t, Py_ssize_t chunks, Py_ssize_t blocks,
                    const floating* dy, Py_ssize_t s0, Py_ssize_t s1,
                    Py_ssize_t N, Py_ssize_t M_out, double* work, const Grad* g) noexcept nogil:
    """Rows of chunk t // blocks, columns of block t % blocks, into work[chunk]
    (work is NULL when only dz is wanted)."""
    cdef Py_ssize_t c = t // blocks, j
    cdef Py_ssize_t j0 = (t % blocks) * COLS, j1 = min(j0 + COLS, M_out)
    cdef Py_ssize_t i0 = parallel.chunk_start(c, N, chunks), i1 = parallel.chunk_start(c + 1, N, chunks)
    cdef double* acc = NULL
    if work != NULL:
        acc = work + c * M_out + j0
        for j in range(j1 - j0):
            acc[j] = 0
    if g.act:
        activation_grad(g.act, dy + i0 * s0 + j0 * s1, s0, s1,
                        <const floating*>g.saved + i0 * M_out + j0, M_out,
                        <floating*>g.dz + i0 * g.t0 + j0 * g.t1, g.t0, g.t1,
                        i1 - i0, j1 - j0, acc)
    else:
        colsum_add(dy + i0 * s0 + j0 * s1, s0, s1, i1 - i0, j1 - j0, acc)


cdef void column_sums(const floating* dy, Py_ssize_t s0, Py_ssize_t s1,
                      Py_ssize_t N, Py_ssize_t M_out, floating* db, bint accumulate,
                      double* work, int num_threads, int act, const floating* saved,
                      floating* dz, Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """db (+)= column sums of the N x M_out matrix dy (element strides s0, s1).

    With an activation ``act``, dz (element strides t0, t1; it may be dy)
    = dy * f'(saved) first, and db (if not NULL) sums dz.  ``work`` holds
    column_sums_workspace(N, M_out) float64 elements.
    """
    cdef Py_ssize_t chunks = _chunks(N, M_out), blocks = parallel.ceil_div(M_out, COLS), t
    cdef int threads = parallel.threads_for(num_threads, chunks * blocks)
    cdef Grad g
    g.act, g.saved, g.dz, g.t0, g.t1 = act, saved, dz, t0, t1
    if db == NULL:
        work = NULL
    if M_out == 0:
        return
    if threads == 1:
        for t in range(chunks * blocks):
            _sum_task(t, chunks, blocks, dy, s0, s1, N, M_out, work, &g)
    else:
        for t in prange(chunks * blocks, num_threads=threads, schedule='static'):
            _sum_task(t, chunks, blocks, dy, s0, s1, N, M_out, work, &g)
    if db != NULL:
        combine(work, chunks, M_out, db, accumulate, num_threads)
