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

With an activation, y = f(z), the products read dz = dy * f'(.) instead of
dy: the row-block path computes each block of dz, and its partial db, while
the block is in cache, the tiled path in one parallel pass before the
products.  dz is written into dy where the caller allows it, else scratch.

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
from fastlinear._epilogue cimport activation_grad, GELU_TANH

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
    # With an activation: the saved y or z (C-contiguous), and dz's layout;
    # dz is dy itself when overwrite_dy, else C-contiguous scratch.
    int act
    const void* saved
    bint overwrite_dy


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
                       floating* parts_dW, double* parts_db, floating* dz_work) noexcept nogil:
    """Rows of chunk c, block by block: dz (with an activation), dx, the
    chunk's partial dW and partial db."""
    cdef Py_ssize_t M_in = o.M_in, M_out = o.M_out, j, n
    cdef Py_ssize_t first = par.chunk_start(c, o.N, chunks), i = first
    cdef Py_ssize_t end = par.chunk_start(c + 1, o.N, chunks)
    cdef Py_ssize_t s0 = o.lddy if o.tdy == b'N' else 1
    cdef Py_ssize_t s1 = 1 if o.tdy == b'N' else o.lddy
    cdef double* pb = NULL
    # What the products read: dy, or this block of dz.
    cdef const floating* g
    cdef char tg
    cdef Py_ssize_t ldg
    cdef floating* block
    if db != NULL:
        pb = parts_db + c * M_out
        for j in range(M_out):
            pb[j] = 0
    while i < end:
        n = min(rows, end - i)
        g, tg, ldg = row(dy, o.tdy, o.lddy, i), o.tdy, o.lddy
        if o.act and o.overwrite_dy:
            activation_grad(o.act, dy + i * s0, s0, s1, <const floating*>o.saved + i * M_out,
                            M_out, <floating*>dy + i * s0, s0, s1, n, M_out, pb)
        elif o.act:  # scratch laid out as dy is, so that BLAS reads it as it would dy
            block = dz_work + c * rows * M_out
            ldg = M_out if o.tdy == b'N' else n
            activation_grad(o.act, dy + i * s0, s0, s1, <const floating*>o.saved + i * M_out,
                            M_out, block, ldg if o.tdy == b'N' else 1,
                            1 if o.tdy == b'N' else ldg, n, M_out, pb)
            g = block
        elif db != NULL:
            colsum_add(dy + i * s0, s0, s1, n, M_out, pb)
        if dx != NULL:
            gemm(tg, o.tWT, n, M_in, M_out, g, ldg,
                 WT, o.ldWT, <floating>accumulate[0], dx + i * M_in, M_in)
        if dW != NULL:
            gemm(flip(o.tx), tg, M_in, M_out, n, row(x, o.tx, o.ldx, i), o.ldx, g, ldg,
                 <floating>(i != first), parts_dW + c * M_in * M_out, M_out)
        i += n


cdef void _fused(const Operands* o, const floating* x, const floating* WT, const floating* dy,
                 floating* dx, floating* dW, floating* db, const bint* accumulate,
                 Py_ssize_t rows, Py_ssize_t chunks, floating* parts_dW, double* parts_db,
                 floating* dz_work, int num_threads) noexcept nogil:
    cdef Py_ssize_t c
    for c in prange(chunks, num_threads=par.threads_for(num_threads, chunks),
                    schedule='dynamic'):
        _fused_chunk(c, chunks, rows, o, x, WT, dy, dx, dW, db, accumulate, parts_dW, parts_db,
                     dz_work)
    if dW != NULL:
        combine(parts_dW, chunks, o.M_in * o.M_out, dW, accumulate[1], num_threads)
    if db != NULL:
        combine(parts_db, chunks, o.M_out, db, accumulate[2], num_threads)


cdef void _separate(const Operands* o, const floating* x, const floating* WT, const floating* dy,
                    floating* dx, floating* dW, floating* db, const bint* accumulate,
                    floating* work, double* db_work, floating* dz_work, TaskSetting setting,
                    int num_threads) noexcept nogil:
    # With an activation, dz and db in one pass first; then dx and dW share
    # one pool of tasks (see gemm_products), dx's workspace first in ``work``.
    cdef Product p[MAX_PRODUCTS]
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t s0 = o.lddy if o.tdy == b'N' else 1, s1 = 1 if o.tdy == b'N' else o.lddy
    cdef const floating* g = dy
    cdef char tg = o.tdy
    cdef Py_ssize_t ldg = o.lddy
    if o.act and o.overwrite_dy:
        column_sums(dy, s0, s1, o.N, o.M_out, db, accumulate[2], db_work, num_threads,
                    o.act, <const floating*>o.saved, <floating*>dy, s0, s1)
    elif o.act:  # scratch laid out as dy is, so that BLAS reads it as it would dy
        ldg = o.M_out if o.tdy == b'N' else o.N
        column_sums(dy, s0, s1, o.N, o.M_out, db, accumulate[2], db_work, num_threads,
                    o.act, <const floating*>o.saved, dz_work, ldg if o.tdy == b'N' else 1,
                    1 if o.tdy == b'N' else ldg)
        g = dz_work
    if dx != NULL:
        p[count] = product(tg, o.tWT, o.N, o.M_in, o.M_out, g, ldg, WT, o.ldWT,
                           <floating*>NULL, accumulate[0], dx, o.M_in, work, setting, 0,
                           <floating*>NULL)
        work += product_workspace(o.N, o.M_in, o.M_out, setting)
        count += 1
    if dW != NULL:
        p[count] = product(flip(o.tx), tg, o.M_in, o.M_out, o.N, x, o.ldx, g, ldg,
                           <floating*>NULL, accumulate[1], dW, o.M_out, work, setting, 0,
                           <floating*>NULL)
        count += 1
    gemm_products(p, count, num_threads)
    if db != NULL and not o.act:
        column_sums(dy, s0, s1, o.N, o.M_out, db, accumulate[2], db_work, num_threads,
                    0, <const floating*>NULL, <floating*>NULL, 0, 0)


cpdef backward(object x, object W, object dy, object dx, object dW, object db,
               bint add_dx, bint add_dW, bint add_db, int act, object saved, bint overwrite_dy,
               int plan, int num_threads):
    """Write the requested gradients, or add them where add_dx, add_dW, add_db say so.

    x (N, M_in), W (M_in, M_out) and dy (N, M_out) are 2-D arrays that BLAS
    reads in place; dx, dW and db are None (not wanted) or C-contiguous
    arrays of the gradient's shape; all of one dtype.  ``plan``'s path is BLOCKED
    for the fused row-block kernel, else one tiled product per gradient.
    With an activation ``act``, ``saved`` is the forward's y (relu, tanh,
    sigmoid) or z (the gelus), C-contiguous like dy, and dz = dy * f'(.) is
    written into dy if ``overwrite_dy`` (dy must then be writeable).
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
            or not (db is None or c_array(db, typenum, o.M_out, -1, True))
            or not 0 <= act <= GELU_TANH
            or (act and not c_array(saved, typenum, o.N, o.M_out, False))
            or (act and overwrite_dy and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>dy))):
        raise ValueError("backward: x, W, dy, dx, dW, db and the saved activation must agree "
                         "in dtype and shape")
    o.act, o.saved, o.overwrite_dy = act, data(saved) if act else NULL, overwrite_dy
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
    cdef void* dzp = NULL
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
        dz_work = scratch(chunks * rows * o.M_out if act and not overwrite_dy else 0, typenum)
        wp, dbw, dzp = data(work), <double*>data(db_work), data(dz_work)
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
        dz_work = scratch(o.N * o.M_out if act and not overwrite_dy else 0, typenum)
        dzp = data(dz_work)
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
               <double*>dbp, acc, rows, chunks, <double*>wp, dbw, <double*>dzp, num_threads)
    elif fused:
        _fused(&o, <float*>xp, <float*>Wp, <float*>dyp, <float*>dxp, <float*>dWp,
               <float*>dbp, acc, rows, chunks, <float*>wp, dbw, <float*>dzp, num_threads)
    elif is_double:
        _separate(&o, <double*>xp, <double*>Wp, <double*>dyp, <double*>dxp,
                  <double*>dWp, <double*>dbp, acc, <double*>wp, dbw, <double*>dzp, setting,
                  num_threads)
    else:
        _separate(&o, <float*>xp, <float*>Wp, <float*>dyp, <float*>dxp,
                  <float*>dWp, <float*>dbp, acc, <float*>wp, dbw, <float*>dzp, setting,
                  num_threads)
    par.restore_gil(released)
