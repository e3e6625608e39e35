# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Backward kernels: dx = dy W^T, dW = x^T dy, db = column sums of dy.

Two strategies, chosen from the shape alone by the caller:

* TILED (and SERIAL): dx and dW as tiled GEMMs sharing one pool of tasks,
  then the column-sum reduction.  Fastest when the products are large.
* BLOCKED (the blocked path), for narrow W: the rows are cut into chunks
  fixed by the shape and a parallel loop runs over them; each chunk walks
  its rows in cache-sized blocks and, while a block of dy is in cache,
  computes that block of dx, adds its share of dW to the chunk's partial dW
  and its column sums to the chunk's partial db.  The partials are then
  added in chunk order.  This reads dy and x once instead of three times and
  parallelises the long reduction over N that BLAS would run on one thread,
  which is what tall, narrow shapes need.

With an activation, y = f(z), the products read dz = dy * f'(.) instead of
dy: the blocked path computes each block of dz, and its partial db, while
the block is in cache, the tiled path in one parallel pass before the
products.  dz is written into the caller's dz array if given, else into dy
where the caller allows it, else into scratch.

Transposes are BLAS transpose flags, except one: below the TILED size, dx
reads a copy of W^T, which BLAS's small-matrix kernels multiply faster.
"""
cimport numpy as cnp
from cython cimport floating
cimport fastlinear._parallel as parallel
from fastlinear._blas cimport (gemm, row, layout, c_array, BLAS_INT_MAX, scratch, data, typed_for,
                              run_typed)
from fastlinear._gemm cimport (Product, MAX_PRODUCTS, product, gemm_products, product_workspace,
                               TaskSetting, setting_of)
from fastlinear._colsum cimport colsum_add, column_sums, column_sums_workspace, combine
from fastlinear._epilogue cimport activation_grad, GELU_TANH

cnp.import_array()

# Upper bounds on the chunks of the blocked path: enough to balance many cores,
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


cdef inline char other_trans(char t) noexcept nogil:
    return b'T' if t == b'N' else b'N'


cdef struct Operands:
    # A backward's arrays, of one dtype, and how BLAS reads them: dy, x and
    # W^T (the right operand of dx = dy W^T; a copy of it in WT_copy where
    # ``transpose``); outputs are C-contiguous, NULL where not wanted.
    const void* x
    const void* WT
    const void* dy
    void* dx
    void* dW
    void* db
    void* WT_copy
    char tdy, tx, tWT
    Py_ssize_t lddy, ldx, ldWT
    Py_ssize_t N, M_in, M_out
    bint accumulate[3]  # add dx, dW, db into the arrays rather than write them
    bint transpose
    # With an activation: the saved y or z (C-contiguous), and where dz goes:
    # dy itself when overwrite_dy, else the caller's dz if not NULL, else
    # scratch; both laid out as dy is, so that BLAS reads dz as it would dy
    # and computes the same bits wherever dz is.
    int act
    const void* saved
    void* dz
    bint overwrite_dy
    double scale  # dW and db are scale times the gradients (plus themselves if accumulated)
    # Scratch: on the blocked path the chunks' partial dW, partial db and
    # blocks of dz; otherwise the products' workspace, column_sums's and dz.
    void* work
    double* db_work
    void* dz_work
    bint blocked  # the path: blocked, or products (serial or tiled)
    Py_ssize_t rows, chunks  # the blocked path's rows per block and chunks
    TaskSetting setting
    int num_threads


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


cdef Py_ssize_t blocked_chunks(Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out,
                               Py_ssize_t rows) noexcept nogil:
    return max(1, min(parallel.ceil_div(N, rows), MAX_CHUNKS,
                      MAX_PARTIAL // max(1, M_in * M_out)))


cdef void _blocked_task(Py_ssize_t c, void* arg, const floating* tag) noexcept nogil:
    """Rows of chunk c, block by block: dz (with an activation), dx, the
    chunk's partial dW and partial db."""
    cdef const Operands* ops = <const Operands*>arg
    cdef const floating* x = <const floating*>ops.x
    cdef const floating* WT = <const floating*>ops.WT
    cdef const floating* dy = <const floating*>ops.dy
    cdef floating* dx = <floating*>ops.dx
    cdef const bint* accumulate = &ops.accumulate[0]
    cdef Py_ssize_t rows = ops.rows
    cdef Py_ssize_t M_in = ops.M_in, M_out = ops.M_out, j, n
    cdef Py_ssize_t first = parallel.chunk_start(c, ops.N, ops.chunks), i = first
    cdef Py_ssize_t end = parallel.chunk_start(c + 1, ops.N, ops.chunks)
    cdef Py_ssize_t s0 = ops.lddy if ops.tdy == b'N' else 1
    cdef Py_ssize_t s1 = 1 if ops.tdy == b'N' else ops.lddy
    cdef double* pb = NULL
    # What the products read: dy, or this block of dz.
    cdef const floating* g
    cdef char tg
    cdef Py_ssize_t ldg
    cdef floating* dz
    cdef Py_ssize_t t0, t1
    if ops.db != NULL:
        pb = ops.db_work + c * M_out
        for j in range(M_out):
            pb[j] = 0
    while i < end:
        n = min(rows, end - i)
        g, tg, ldg = row(dy, ops.tdy, ops.lddy, i), ops.tdy, ops.lddy
        if ops.act:
            if ops.overwrite_dy:
                dz, t0, t1 = <floating*>dy + i * s0, s0, s1
            else:
                if ops.dz != NULL:
                    dz = <floating*>ops.dz + (i * M_out if ops.tdy == b'N' else i)
                    ldg = M_out if ops.tdy == b'N' else ops.N
                else:
                    dz = <floating*>ops.dz_work + c * rows * M_out
                    ldg = M_out if ops.tdy == b'N' else n
                t0 = ldg if ops.tdy == b'N' else 1
                t1 = 1 if ops.tdy == b'N' else ldg
                g = dz
            activation_grad(ops.act, dy + i * s0, s0, s1, <const floating*>ops.saved + i * M_out,
                            M_out, dz, t0, t1, n, M_out)
            if ops.db != NULL:
                colsum_add(dz, t0, t1, n, M_out, pb)
        elif ops.db != NULL:
            colsum_add(dy + i * s0, s0, s1, n, M_out, pb)
        if dx != NULL:
            gemm(tg, ops.tWT, n, M_in, M_out, 1, g, ldg,
                 WT, ops.ldWT, <floating>accumulate[0], dx + i * M_in, M_in, ops.setting.backend)
        if ops.dW != NULL:
            gemm(other_trans(ops.tx), tg, M_in, M_out, n, 1, row(x, ops.tx, ops.ldx, i), ops.ldx,
                 g, ldg, <floating>(i != first), <floating*>ops.work + c * M_in * M_out, M_out,
                 ops.setting.backend)
        i += n


cdef void _blocked(Operands* ops, const floating* tag) noexcept nogil:
    cdef floating* dW = <floating*>ops.dW
    cdef floating* db = <floating*>ops.db
    cdef const bint* accumulate = &ops.accumulate[0]
    cdef int num_threads = ops.num_threads
    typed_for(ops.chunks, num_threads, _blocked_task[floating], ops)
    if dW != NULL:
        combine(<const floating*>ops.work, ops.chunks, ops.M_in * ops.M_out, dW, accumulate[1],
                ops.scale, num_threads)
    if db != NULL:
        combine(ops.db_work, ops.chunks, ops.M_out, db, accumulate[2], ops.scale, num_threads)


cdef void _separate(Operands* ops, const floating* tag) noexcept nogil:
    # With an activation, dz and db in one pass first; then dx and dW share
    # one pool of tasks (see gemm_products), dx's workspace first in ``work``.
    cdef const floating* x = <const floating*>ops.x
    cdef const floating* WT = <const floating*>ops.WT
    cdef const floating* dy = <const floating*>ops.dy
    cdef floating* dx = <floating*>ops.dx
    cdef floating* dW = <floating*>ops.dW
    cdef floating* db = <floating*>ops.db
    cdef floating* work = <floating*>ops.work
    cdef double* db_work = ops.db_work
    cdef floating* dz_work = <floating*>ops.dz_work
    cdef const bint* accumulate = &ops.accumulate[0]
    cdef TaskSetting setting = ops.setting
    cdef int num_threads = ops.num_threads
    cdef Product products[MAX_PRODUCTS]
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t s0 = ops.lddy if ops.tdy == b'N' else 1, s1 = 1 if ops.tdy == b'N' else ops.lddy
    cdef const floating* g = dy
    cdef char tg = ops.tdy
    cdef Py_ssize_t ldg = ops.lddy
    if ops.act and ops.overwrite_dy:
        column_sums(dy, s0, s1, ops.N, ops.M_out, db, accumulate[2], ops.scale, db_work,
                    num_threads, ops.act, <const floating*>ops.saved, <floating*>dy, s0, s1)
    elif ops.act:  # the caller's dz or scratch
        if ops.dz != NULL:
            dz_work = <floating*>ops.dz
        ldg = ops.M_out if ops.tdy == b'N' else ops.N
        column_sums(dy, s0, s1, ops.N, ops.M_out, db, accumulate[2], ops.scale, db_work,
                    num_threads, ops.act, <const floating*>ops.saved, dz_work, ldg if ops.tdy == b'N' else 1,
                    1 if ops.tdy == b'N' else ldg)
        g = dz_work
    if dx != NULL:
        products[count] = product(tg, ops.tWT, ops.N, ops.M_in, ops.M_out, g, ldg, WT, ops.ldWT,
                           <floating*>NULL, accumulate[0], dx, ops.M_in, work, setting, 0,
                           <floating*>NULL)
        work += product_workspace(ops.N, ops.M_in, ops.M_out, setting)
        count += 1
    if dW != NULL:
        products[count] = product(other_trans(ops.tx), tg, ops.M_in, ops.M_out, ops.N, x, ops.ldx, g, ldg,
                           <floating*>NULL, accumulate[1], dW, ops.M_out, work, setting, 0,
                           <floating*>NULL, ops.scale)
        count += 1
    if count == 2 and <const void*>dW == <const void*>WT:
        # dW is W itself (an SGD step) and dx reads W: dx must be done first.
        gemm_products(products, 1, num_threads)
        gemm_products(products + 1, 1, num_threads)
    else:
        gemm_products(products, count, num_threads)
    if db != NULL and not ops.act:
        column_sums(dy, s0, s1, ops.N, ops.M_out, db, accumulate[2], ops.scale, db_work,
                    num_threads, 0, <const floating*>NULL, <floating*>NULL, 0, 0)


cdef void _run(void* arg, const floating* tag) noexcept nogil:
    """The gradients, once backward has checked the arrays and sized the
    scratch; with ``transpose`` dx reads W^T copied into WT_copy."""
    cdef Operands* ops = <Operands*>arg
    cdef floating* WT
    if ops.transpose:
        WT = <floating*>ops.WT_copy
        _transpose(<const floating*>ops.WT, ops.ldWT, ops.M_in, ops.M_out, WT)
        ops.WT, ops.tWT, ops.ldWT = WT, b'N', ops.M_in
    if ops.blocked:
        _blocked(ops, tag)
    else:
        _separate(ops, tag)


cpdef backward(object x, object W, object dy, object dx, object dW, object db, object saved,
               object dz, Request request):
    """Write the requested gradients, or add them where request.add_dx, add_dW,
    add_db say so; dW and db are multiplied by request.scale first.  dW may be
    W itself (then C-contiguous): dx is computed from W before dW is added into it.

    x (N, M_in), W (M_in, M_out) and dy (N, M_out) are 2-D arrays that BLAS
    reads in place; dx, dW and db are None (not wanted) or C-contiguous
    arrays of the gradient's shape; all of one dtype.  request.plan's path is
    BLOCKED for the blocked path, else one tiled product per gradient.
    With an activation request.act, ``saved`` is the forward's y (relu, tanh,
    sigmoid) or z (the gelus), C-contiguous like dy, and dz = dy * f'(.) is
    written into dy if request.overwrite_dy (dy must then be writeable), else
    into ``dz`` if not None: C-contiguous where BLAS reads dy as row-major,
    else Fortran-contiguous.
    """
    cdef Operands ops
    cdef char tW
    cdef Py_ssize_t ldW
    cdef int typenum = _check_arguments(&ops, x, W, dy, dx, dW, db, saved, dz, &request, &tW,
                                        &ldW)
    ops.accumulate[0], ops.accumulate[1], ops.accumulate[2] = \
        request.add_dx, request.add_dW, request.add_db
    ops.act, ops.overwrite_dy = request.act, request.overwrite_dy
    ops.saved, ops.dz = data(saved) if request.act else NULL, data(dz)
    ops.scale, ops.num_threads = request.scale, request.num_threads
    ops.setting = setting_of(request.plan)
    cdef int path = parallel.plan_path(request.plan)
    ops.x, ops.WT, ops.dy = data(x), data(W), data(dy)
    ops.dx, ops.dW, ops.db = data(dx), data(dW), data(db)
    ops.tWT, ops.ldWT = other_trans(tW), ldW
    # BLAS's small-matrix kernels compute dy W^T faster from W^T stored row by
    # row than from W, by more than a copy of W costs once there are this many
    # rows; products big enough to be TILED run BLAS's packing path, where the
    # two are alike.
    ops.transpose = (path != parallel.TILED and dx is not None and tW == b'N'
                     and ops.N >= TRANSPOSE_MIN_ROWS and ops.M_in > 0 and ops.M_out > 0)
    ops.blocked = path == parallel.BLOCKED and ops.N > 0
    cdef double db_small[SMALL_DB_WORK]
    cdef double WT_small[SMALL_WT]  # room for as many float64 or float32 elements
    ops.WT_copy, ops.db_work = WT_small, db_small
    scratch_owners = _scratch(&ops, typenum, cnp.PyArray_ITEMSIZE(<cnp.ndarray>dy),
                              request.act and not request.overwrite_dy and dz is None)
    # A SERIAL call keeps the GIL: it runs for microseconds, less than handing
    # the GIL over and back costs.
    run_typed(_run[float], _run[double], &ops, typenum, path != parallel.SERIAL)


cdef int _check_arguments(Operands* ops, x, W, dy, dx, dW, db, saved, dz,
                          const Request* request, char* tW, Py_ssize_t* ldW) except -1:
    """dy's type, once the arrays are checked to be what backward takes; sets
    ops's layouts and sizes, and W's layout in tW and ldW."""
    if not (layout(x, &ops.tx, &ops.ldx) and layout(W, tW, ldW)
            and layout(dy, &ops.tdy, &ops.lddy)):
        raise ValueError("x, W and dy must be 2-D, aligned and readable by BLAS in place")
    ops.N = cnp.PyArray_DIM(<cnp.ndarray>dy, 0)
    ops.M_in = cnp.PyArray_DIM(<cnp.ndarray>W, 0)
    ops.M_out = cnp.PyArray_DIM(<cnp.ndarray>W, 1)
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>dy), act = request.act
    cdef bint overwrite_dy = request.overwrite_dy
    if (typenum not in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE)
            or cnp.PyArray_TYPE(<cnp.ndarray>x) != typenum
            or cnp.PyArray_TYPE(<cnp.ndarray>W) != typenum
            or cnp.PyArray_DIM(<cnp.ndarray>x, 0) != ops.N
            or cnp.PyArray_DIM(<cnp.ndarray>x, 1) != ops.M_in
            or cnp.PyArray_DIM(<cnp.ndarray>dy, 1) != ops.M_out
            or not (dx is None or c_array(dx, typenum, ops.N, ops.M_in, True))
            or not (dW is None or c_array(dW, typenum, ops.M_in, ops.M_out, True))
            or not (db is None or c_array(db, typenum, ops.M_out, -1, True))
            or not 0 <= act <= GELU_TANH
            or (act and not c_array(saved, typenum, ops.N, ops.M_out, False))
            or (act and overwrite_dy and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>dy))
            or not (dz is None or (act and not overwrite_dy and (
                c_array(dz, typenum, ops.N, ops.M_out, True) if ops.tdy == b'N'
                else c_array(dz.T, typenum, ops.M_out, ops.N, True))))):
        raise ValueError("backward: x, W, dy, dx, dW, db and the saved activation must agree "
                         "in dtype and shape")
    return typenum


cdef object _scratch(Operands* ops, int typenum, Py_ssize_t itemsize, bint dz_scratch):
    """Point ops's scratch at arrays big enough for the call (or leave it at the
    caller's stack buffers, which small calls fit in); returns the arrays, which
    must outlive the call."""
    cdef Py_ssize_t size = 0
    WT = None
    if not ops.transpose:
        ops.WT_copy = NULL
    elif ops.M_in * ops.M_out > SMALL_WT:
        WT = scratch(ops.M_in * ops.M_out, typenum)
        ops.WT_copy = data(WT)
    ops.rows = ops.chunks = 0
    if ops.blocked:
        # The chunking is decided here, once, and the scratch sized from it.
        ops.rows = parallel.block_rows(2 * ops.M_in + ops.M_out, itemsize, BLAS_INT_MAX)
        ops.chunks = blocked_chunks(ops.N, ops.M_in, ops.M_out, ops.rows)
        work = scratch(ops.chunks * ops.M_in * ops.M_out if ops.dW != NULL else 0, typenum)
        db_work = scratch(ops.chunks * ops.M_out if ops.db != NULL else 0, cnp.NPY_DOUBLE)
        dz_work = scratch(ops.chunks * ops.rows * ops.M_out if dz_scratch else 0, typenum)
        ops.work, ops.db_work, ops.dz_work = data(work), <double*>data(db_work), data(dz_work)
        return (WT, work, db_work, dz_work)
    if ops.dx != NULL:
        size = product_workspace(ops.N, ops.M_in, ops.M_out, ops.setting)
    if ops.dW != NULL:
        size += product_workspace(ops.M_in, ops.M_out, ops.N, ops.setting)
    work = scratch(size, typenum)
    ops.work = data(work)
    db_work = None
    size = column_sums_workspace(ops.N, ops.M_out) if ops.db != NULL else 0
    if size > SMALL_DB_WORK:  # small calls allocate nothing for db
        db_work = scratch(size, cnp.NPY_DOUBLE)
        ops.db_work = <double*>data(db_work)
    dz_work = scratch(ops.N * ops.M_out if dz_scratch else 0, typenum)
    ops.dz_work = data(dz_work)
    if WT is None and work is None and db_work is None and dz_work is None:
        return None  # a small call: no tuple to make
    return (WT, work, db_work, dz_work)
