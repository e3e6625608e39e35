# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""db = column sums of dy, as a deterministic parallel reduction, and with
an activation, dz = dy * f'(.) and db = column sums of dz in the same pass.

The rows are cut into a number of chunks and the columns into blocks, both
fixed by the shape; each (chunk, block) task sums its rows in order into a
float64 partial, and the partials are added chunk by chunk in order.  So the
result is bitwise the same for any thread count, and float32 input is summed
in float64 before the single rounding at the end.
"""
cimport fastlinear._parallel as parallel
from fastlinear._blas cimport typed_for
from fastlinear._epilogue cimport activation_grad

# A column block of 512 float64 accumulators (4 KiB) stays in L1 while a task
# streams its rows past it.
# Enough tasks to keep many cores busy; partial sums stay small.
cdef enum:
    COLS = 512
    TASKS = 64
    MIN_ROWS = 256


cdef inline void _add_rows(const floating* a, Py_ssize_t s0, Py_ssize_t s1,
                           Py_ssize_t rows, Py_ssize_t cols, double* acc) noexcept nogil:
    cdef Py_ssize_t i = 0, j
    cdef const floating *r0
    cdef const floating *r1
    cdef const floating *r2
    cdef const floating *r3
    while i + 4 <= rows:
        r0 = a + i * s0
        r1 = r0 + s0
        r2 = r1 + s0
        r3 = r2 + s0
        for j in range(cols):
            acc[j] += (<double>r0[j * s1] + <double>r1[j * s1]) + (<double>r2[j * s1] + <double>r3[j * s1])
        i += 4
    while i < rows:
        r0 = a + i * s0
        for j in range(cols):
            acc[j] += r0[j * s1]
        i += 1


cdef void colsum_add(const floating* a, Py_ssize_t s0, Py_ssize_t s1,
                     Py_ssize_t rows, Py_ssize_t cols, double* acc) noexcept nogil:
    """acc[j] += sum_i a[i, j] over the rows, element strides s0, s1.

    Rows are taken four at a time, (r0 + r1) + (r2 + r3) added onto acc: a
    fixed order whatever the layout, and a quarter of the loads and stores of
    acc that one row at a time costs, which is what bounds the speed of a
    wide sum.  The contiguous case is its own call so that it vectorises.
    """
    if s1 == 1:
        _add_rows(a, s0, 1, rows, cols, acc)
    else:
        _add_rows(a, s0, s1, rows, cols, acc)


cdef inline Py_ssize_t _chunks(Py_ssize_t N, Py_ssize_t M_out) noexcept nogil:
    cdef Py_ssize_t blocks = max(1, parallel.ceil_div(M_out, COLS))
    return max(1, min(parallel.ceil_div(N, MIN_ROWS), parallel.ceil_div(TASKS, blocks)))


cdef Py_ssize_t column_sums_workspace(Py_ssize_t N, Py_ssize_t M_out) noexcept nogil:
    """Number of float64 elements of workspace column_sums needs."""
    return _chunks(N, M_out) * M_out


cdef struct Combine:
    # The arguments of combine, for its tasks.
    const void* parts
    void* out
    Py_ssize_t chunks, width
    double scale
    bint accumulate


cdef inline void _combine_block(Py_ssize_t blk, const Combine* a, const partial_t* parts,
                                floating* out) noexcept nogil:
    cdef Py_ssize_t e, c, chunks = a.chunks, width = a.width
    cdef bint accumulate = a.accumulate
    cdef double scale = a.scale
    cdef double s
    for e in range(blk * COLS, min((blk + 1) * COLS, width)):
        s = out[e] if accumulate and scale == 1 else 0.0
        for c in range(chunks):
            s = s + parts[c * width + e]
        if scale != 1:
            s = scale * s + (out[e] if accumulate else 0.0)
        out[e] = <floating>s


# The tasks of combine, by the type of its partials: float64 (db's) or float32
# (float32 dW's); out's type is the body's.
cdef void _combine_double_parts(Py_ssize_t blk, void* arg, const floating* tag) noexcept nogil:
    cdef const Combine* a = <const Combine*>arg
    _combine_block(blk, a, <const double*>a.parts, <floating*>a.out)


cdef void _combine_float_parts(Py_ssize_t blk, void* arg, const floating* tag) noexcept nogil:
    cdef const Combine* a = <const Combine*>arg
    _combine_block(blk, a, <const float*>a.parts, <floating*>a.out)


cdef void combine(const partial_t* parts, Py_ssize_t chunks, Py_ssize_t width,
                  floating* out, bint accumulate, double scale, int num_threads) noexcept nogil:
    """out[e] = scale * (sum over c of parts[c, e]) (+ out[e] if ``accumulate``),
    added in chunk order in float64."""
    cdef Combine a
    a.parts, a.out, a.chunks, a.width, a.accumulate = parts, out, chunks, width, accumulate
    a.scale = scale
    typed_for(parallel.ceil_div(width, COLS), num_threads,
              _combine_double_parts[floating] if partial_t is double
              else _combine_float_parts[floating], &a)


cdef struct Sums:
    # The arguments of column_sums, for its tasks; with an activation
    # (act != 0), dz = dy * f'(saved) and the sums are taken of dz.
    const void* dy
    Py_ssize_t s0, s1, N, M_out, chunks, blocks
    double* work
    int act
    const void* saved   # C-contiguous, N x M_out
    void* dz
    Py_ssize_t t0, t1   # dz's element strides


cdef void _sum_task(Py_ssize_t t, void* arg, const floating* tag) noexcept nogil:
    """Rows of chunk t // blocks, columns of block t % blocks, into work[chunk]
    (work is NULL when only dz is wanted)."""
    cdef const Sums* g = <const Sums*>arg
    cdef const floating* dy = <const floating*>g.dy
    cdef Py_ssize_t chunks = g.chunks, blocks = g.blocks, N = g.N, M_out = g.M_out
    cdef Py_ssize_t s0 = g.s0, s1 = g.s1
    cdef double* work = g.work
    cdef Py_ssize_t c = t // blocks, j
    cdef Py_ssize_t j0 = (t % blocks) * COLS, j1 = min(j0 + COLS, M_out)
    cdef Py_ssize_t i0 = parallel.chunk_start(c, N, chunks), i1 = parallel.chunk_start(c + 1, N, chunks)
    cdef double* acc = NULL
    if work != NULL:
        acc = work + c * M_out + j0
        for j in range(j1 - j0):
            acc[j] = 0
    cdef floating* dz
    if g.act:
        dz = <floating*>g.dz + i0 * g.t0 + j0 * g.t1
        activation_grad(g.act, dy + i0 * s0 + j0 * s1, s0, s1,
                        <const floating*>g.saved + i0 * M_out + j0, M_out,
                        dz, g.t0, g.t1, i1 - i0, j1 - j0)
        if acc != NULL:
            colsum_add(dz, g.t0, g.t1, i1 - i0, j1 - j0, acc)
    else:
        colsum_add(dy + i0 * s0 + j0 * s1, s0, s1, i1 - i0, j1 - j0, acc)


cdef void column_sums(const floating* dy, Py_ssize_t s0, Py_ssize_t s1,
                      Py_ssize_t N, Py_ssize_t M_out, floating* db, bint accumulate,
                      double scale, double* work, int num_threads, int act, const floating* saved,
                      floating* dz, Py_ssize_t t0, Py_ssize_t t1) noexcept nogil:
    """db = scale * column sums of the N x M_out matrix dy (element strides s0,
    s1), plus db if ``accumulate``.

    With an activation ``act``, dz (element strides t0, t1; it may be dy)
    = dy * f'(saved) first, and db (if not NULL) sums dz.  ``work`` holds
    column_sums_workspace(N, M_out) float64 elements.
    """
    cdef Sums a
    a.chunks, a.blocks = _chunks(N, M_out), parallel.ceil_div(M_out, COLS)
    a.dy, a.s0, a.s1, a.N, a.M_out = dy, s0, s1, N, M_out
    a.work = work if db != NULL else NULL
    a.act, a.saved, a.dz, a.t0, a.t1 = act, saved, dz, t0, t1
    if M_out == 0:
        return
    typed_for(a.chunks * a.blocks, num_threads, _sum_task[floating], &a)
    if db != NULL:
        combine(work, a.chunks, M_out, db, accumulate, scale, num_threads)
