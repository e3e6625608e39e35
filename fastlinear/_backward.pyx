# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Backward kernels: dx = dy W^T, dW = x^T dy, db = column sums of dy.

Two strategies, chosen from the shape alone by the caller:

* TILED (and SERIAL): dx and dW as tiled GEMMs sharing one pool of tasks,
  then the column-sum reduction.  Fastest when the products are large.
* BLOCKED, for narrow W: the rows are cut into chunks fixed by the shape and a
  ``prange`` runs over them; each chunk walks its rows in cache-sized blocks
  and, while a block of dy is in cache, computes that block of dx, adds its
  share of dW to the chunk's partial dW and its column sums to the chunk's
  partial db.  The partials are then added in chunk order.  This reads dy and
  x once instead of three times and parallelises the long reduction over N
  that BLAS would run on one thread, which is what tall, narrow shapes need.

Transposes are BLAS transpose flags, except one: below the TILED size, dx
reads a copy of W^T, which BLAS's small-matrix kernels multiply faster.
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
cimport fastlinear._parallel as par
from fastlinear._blas cimport gemm, row, layout, c_array, blas_int_max, scratch, data
from fastlinear._gemm cimport (Product, MAX_PRODUCTS, product, gemm_products, product_workspace,
                               TaskSetting, setting_of)
from fastlinear._colsum cimport colsum_add, column_sums, column_sums_workspace, combine

cnp.import_array()

# Upper bounds on the chunks of the fused path: enough to balance many cores,
# few enough that the partial dW stay small next to x.
cdef enum:
    MAX_CHUNKS = 64
    MAX_PARTIAL = 1 << 21
    # db's partial sums of up to this many elements live on the stack.
    SMALL_DB_WORK = 512
    # From this many rows on, dx = dy W^T of a problem that is not TILED
    # reads a transposed copy of W (see backward).
    TRANSPOSE_MIN_ROWS = 16
    # ... and a copy of up to this many elements lives on the stack.
    SMALL_WT = 2048


cdef inline char flip(char t) noexcept nogil:
    return b'T' if t == b'N' else b'N'


cdef struct Operands:
    # dy, x and W^T (the right operand of dx = dy W^T) as BLAS reads them;
    # outputs are C-contiguous.
    char tdy, tx, tWT
    Py_ssize_t lddy, ldx, ldWT
    Py_ssize_t N, M_in, M_out


cdef extern from "_transpose.h":
    void fl_transpose_double(const double* W, Py_ssize_t ldW, Py_ssize_t M_in,
                             Py_ssize_t M_out, double* WT) noexcept nogil
    void fl_transpose_float(const float* W, Py_ssize_t ldW, Py_ssize_t M_in,
                            Py_ssize_t M_out, float* WT) noexcept nogil


cdef inline void _transpose(const floating* W, Py_ssize_t ldW, Py_ssize_t M_in, Py_ssize_t M_out,
                            floating* WT) noexcept nogil:
    """WT (M_out x M_in, C-contiguous) = W^T for a row-major W (see _transpose.h)."""
    if floating is double:
        fl_transpose_double(W, ldW, M_in, M_out, WT)
    else:
        fl_transpose_float(W, ldW, M_in, M_out, WT)


cdef Py_ssize_t fused_chunks(Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out,
                             Py_ssize_t rows) noexcept nogil:
    return max(1, min(par.ceil_div(N, rows), MAX_CHUNKS,
                      MAX_PARTIAL // max(1, M_in * M_out)))


cdef void _fused_chunk(Py_ssize_t c, Py_ssize_t chunks, Py_ssize_t rows, const Operands* o,
                       const floating* x, const floating* WT, const floating* dy,
                       floating* dx, floating* dW, floating* db, const bint* accumulate,
                       floating* parts_dW, double* parts_db) noexcept nogil:
    """Rows of chunk c, block by block: dx, the chunk's partial dW and partial db."""
    cdef Py_ssize_t M_in = o.M_in, M_out = o.M_out, j, n
    cdef Py_ssize_t first = par.chunk_start(c, o.N, chunks), i = first
    cdef Py_ssize_t end = par.chunk_start(c + 1, o.N, chunks)
    cdef Py_ssize_t s0 = o.lddy if o.tdy == b'N' else 1
    cdef Py_ssize_t s1 = 1 if o.tdy == b'N' else o.lddy
    cdef double* pb = NULL
    if db != NULL:
        pb = parts_db + c * M_out
        for j in range(M_out):
            pb[j] = 0
    while i < end:
        n = min(rows, end - i)
        if dx != NULL:
            gemm(o.tdy, o.tWT, n, M_in, M_out, row(dy, o.tdy, o.lddy, i), o.lddy,
                 WT, o.ldWT, <floating>accumulate[0], dx + i * M_in, M_in)
        if dW != NULL:
            gemm(flip(o.tx), o.tdy, M_in, M_out, n, row(x, o.tx, o.ldx, i), o.ldx,
                 row(dy, o.tdy, o.lddy, i), o.lddy,
                 <floating>(i != first), parts_dW + c * M_in * M_out, M_out)
        if db != NULL:
            colsum_add(dy + i * s0, s0, s1, n, M_out, pb)
        i += n


cdef void _fused(const Operands* o, const floating* x, const floating* WT, const floating* dy,
                 floating* dx, floating* dW, floating* db, const bint* accumulate,
                 Py_ssize_t rows, Py_ssize_t chunks, floating* parts_dW, double* parts_db,
                 int num_threads) noexcept nogil:
    cdef Py_ssize_t c
    for c in prange(chunks, num_threads=par.threads_for(num_threads, chunks),
                    schedule='dynamic'):
        _fused_chunk(c, chunks, rows, o, x, WT, dy, dx, dW, db, accumulate, parts_dW, parts_db)
    if dW != NULL:
        combine(parts_dW, chunks, o.M_in * o.M_out, dW, accumulate[1], num_threads)
    if db != NULL:
        combine(parts_db, chunks, o.M_out, db, accumulate[2], num_threads)


cdef void _separate(const Operands* o, const floating* x, const floating* WT, const floating* dy,
                    floating* dx, floating* dW, floating* db, const bint* accumulate,
                    floating* work, double* db_work, TaskSetting setting, int num_threads) noexcept nogil:
    # dx and dW share one pool of tasks (see gemm_products); dx's workspace
    # comes first in ``work``.
    cdef Product p[MAX_PRODUCTS]
    cdef Py_ssize_t count = 0
    if dx != NULL:
        p[count] = product(o.tdy, o.tWT, o.N, o.M_in, o.M_out, dy, o.lddy, WT, o.ldWT,
                           <floating*>NULL, accumulate[0], dx, o.M_in, work, setting)
        work += product_workspace(o.N, o.M_in, o.M_out, setting)
        count += 1
    if dW != NULL:
        p[count] = product(flip(o.tx), o.tdy, o.M_in, o.M_out, o.N, x, o.ldx, dy, o.lddy,
                           <floating*>NULL, accumulate[1], dW, o.M_out, work, setting)
        count += 1
    gemm_products(p, count, num_threads)
    if db != NULL:
        column_sums(dy, o.lddy if o.tdy == b'N' else 1, 1 if o.tdy == b'N' else o.lddy,
                    o.N, o.M_out, db, accumulate[2], db_work, num_threads)


cpdef backward(object x, object W, object dy, object dx, object dW, object db,
               bint add_dx, bint add_dW, bint add_db, int plan, int num_threads):
    """Write the requested gradients, or add them where add_dx, add_dW, add_db say so.

    x (N, M_in), W (M_in, M_out) and dy (N, M_out) are 2-D arrays that BLAS
    reads in place; dx, dW and db are None (not wanted) or C-contiguous
    arrays of the gradient's shape; all of one dtype.  ``plan``'s path is BLOCKED
    for the fused row-block kernel, else one tiled product per gradient.
    """
    cdef Operands o
    cdef bint acc[3]
    acc[0], acc[1], acc[2] = add_dx, add_dW, add_db
    cdef char tW
    cdef Py_ssize_t ldW
    if not (layout(x, &o.tx, &o.ldx) and layout(W, &tW, &ldW)
            and layout(dy, &o.tdy, &o.lddy)):
        raise ValueError("x, W and dy must be 2-D, aligned and readable by BLAS in place")
    o.N = cnp.PyArray_DIM(<cnp.ndarray>dy, 0)
    o.M_in = cnp.PyArray_DIM(<cnp.ndarray>W, 0)
    o.M_out = cnp.PyArray_DIM(<cnp.ndarray>W, 1)
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>dy)
    if (typenum not in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE)
            or cnp.PyArray_TYPE(<cnp.ndarray>x) != typenum
            or cnp.PyArray_TYPE(<cnp.ndarray>W) != typenum
            or cnp.PyArray_DIM(<cnp.ndarray>x, 0) != o.N
            or cnp.PyArray_DIM(<cnp.ndarray>x, 1) != o.M_in
            or cnp.PyArray_DIM(<cnp.ndarray>dy, 1) != o.M_out
            or not (dx is None or c_array(dx, typenum, o.N, o.M_in, True))
            or not (dW is None or c_array(dW, typenum, o.M_in, o.M_out, True))
            or not (db is None or c_array(db, typenum, o.M_out, -1, True))):
        raise ValueError("backward: x, W, dy, dx, dW and db must agree in dtype and shape")
    cdef bint is_double = typenum == cnp.NPY_DOUBLE
    cdef TaskSetting setting = setting_of(plan)
    cdef int path = par.plan_path(plan)
    cdef void* xp = data(x)
    cdef void* Wp = data(W)
    cdef void* dyp = data(dy)
    cdef void* dxp = data(dx)
    cdef void* dWp = data(dW)
    cdef void* dbp = data(db)
    cdef Py_ssize_t rows, chunks, size = 0
    cdef void* wp
    cdef void* WTp
    cdef double* dbw
    cdef double db_small[SMALL_DB_WORK]
    cdef double WT_small[SMALL_WT]  # room for as many float64 or float32 elements
    o.tWT, o.ldWT = flip(tW), ldW
    # BLAS computes dy W^T faster from W^T stored row by row than from W (its
    # small-matrix kernels by about a quarter), by more than a copy of W costs
    # once there are this many rows; products big enough to be TILED run
    # BLAS's packing path, where the two are alike.
    cdef bint transpose = (path != par.TILED and dx is not None and tW == b'N'
                           and o.N >= TRANSPOSE_MIN_ROWS and o.M_in > 0 and o.M_out > 0)
    cdef bint fused = path == par.BLOCKED and o.N > 0
    if transpose:
        WTp = WT_small
        if o.M_in * o.M_out > SMALL_WT:
            WT = scratch(o.M_in * o.M_out, typenum)
            WTp = data(WT)
    if fused:
        # The chunking is decided here, once, and the scratch sized from it.
        rows = par.block_rows(2 * o.M_in + o.M_out, 8 if is_double else 4, blas_int_max())
        chunks = fused_chunks(o.N, o.M_in, o.M_out, rows)
        work = scratch(chunks * o.M_in * o.M_out if dW is not None else 0, typenum)
        db_work = scratch(chunks * o.M_out if db is not None else 0, cnp.NPY_DOUBLE)
        wp, dbw = data(work), <double*>data(db_work)
    else:
        if dx is not None:
            size = product_workspace(o.N, o.M_in, o.M_out, setting)
        if dW is not None:
            size += product_workspace(o.M_in, o.M_out, o.N, setting)
        work = scratch(size, typenum)
        wp, dbw = data(work), db_small
        size = column_sums_workspace(o.N, o.M_out) if db is not None else 0
        if size > SMALL_DB_WORK:  # small calls allocate nothing for db
            db_work = scratch(size, cnp.NPY_DOUBLE)
            dbw = <double*>data(db_work)
    # A SERIAL call keeps the GIL: it runs for microseconds, less than handing
    # the GIL over and back costs.
    cdef par.PyThreadState* released = par.release_gil(path != par.SERIAL)
    if transpose:
        if is_double:
            _transpose(<double*>Wp, ldW, o.M_in, o.M_out, <double*>WTp)
        else:
            _transpose(<float*>Wp, ldW, o.M_in, o.M_out, <float*>WTp)
        Wp, o.tWT, o.ldWT = WTp, b'N', o.M_in
    if fused and is_double:
        _fused(&o, <double*>xp, <double*>Wp, <double*>dyp, <double*>dxp, <double*>dWp,
               <double*>dbp, acc, rows, chunks, <double*>wp, dbw, num_threads)
    elif fused:
        _fused(&o, <float*>xp, <float*>Wp, <float*>dyp, <float*>dxp, <float*>dWp,
               <float*>dbp, acc, rows, chunks, <float*>wp, dbw, num_threads)
    elif is_double:
        _separate(&o, <double*>xp, <double*>Wp, <double*>dyp, <double*>dxp,
                  <double*>dWp, <double*>dbp, acc, <double*>wp, dbw, setting, num_threads)
    else:
        _separate(&o, <float*>xp, <float*>Wp, <float*>dyp, <float*>dxp,
                  <float*>dWp, <float*>dbp, acc, <float*>wp, dbw, setting, num_threads)
    par.restore_gil(released)
