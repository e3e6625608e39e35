# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Forward kernel: y = f(x W + b).

The bias is broadcast into y, the product added onto it with beta = 1 and
the activation f applied, block by block while the block is in cache, so no
temporary the size of y is ever made and y is not passed over again.
"""
cimport numpy as cnp
from libc.string cimport memcpy
from cython cimport floating
cimport fastlinear._parallel as parallel
from fastlinear._blas cimport (gemm, row, layout, c_array, BLAS_INT_MAX, scratch, data, typed_for,
                              run_typed)
from fastlinear._epilogue cimport activate, GELU_TANH
from fastlinear._gemm cimport (Product, TaskSetting, product, gemm_products, product_workspace,
                               setting_of)

cnp.import_array()


cdef struct Operands:
    # A forward's arrays, of one dtype, and how BLAS reads x and W; y, z and
    # the workspace are C-contiguous, b and z NULL where not given.
    const void* x
    const void* W
    const void* b
    void* y
    void* z
    void* work
    char tx, tW
    Py_ssize_t ldx, ldW, N, M_in, M_out
    int act, path, num_threads
    Py_ssize_t rows  # the blocked path's rows per block
    TaskSetting setting


cdef void _rows(const Operands* a, Py_ssize_t i0, Py_ssize_t i1,
                const floating* tag) noexcept nogil:
    """Rows i0:i1 of y: the bias, then x W added on top, then the activation
    (z, if not NULL, receives the rows before it)."""
    cdef const floating* x = <const floating*>a.x
    cdef const floating* b = <const floating*>a.b
    cdef floating* y = <floating*>a.y
    cdef floating* z = <floating*>a.z
    cdef Py_ssize_t i, M_out = a.M_out
    if b != NULL:
        for i in range(i0, i1):
            memcpy(y + i * M_out, b, M_out * sizeof(floating))
    gemm(a.tx, a.tW, i1 - i0, M_out, a.M_in, 1, row(x, a.tx, a.ldx, i0), a.ldx,
         <const floating*>a.W, a.ldW, <floating>(1 if b != NULL else 0), y + i0 * M_out, M_out,
         a.setting.backend)
    if a.act or z != NULL:
        activate(a.act, y + i0 * M_out, M_out, i1 - i0, M_out,
                 z + i0 * M_out if z != NULL else NULL, M_out)


cdef void _blocked_task(Py_ssize_t blk, void* arg, const floating* tag) noexcept nogil:
    """Block blk of the blocked path's rows of y."""
    cdef const Operands* a = <const Operands*>arg
    _rows(a, blk * a.rows, min(a.N, (blk + 1) * a.rows), tag)


cdef void _forward(void* arg, const floating* tag) noexcept nogil:
    cdef const Operands* a = <const Operands*>arg
    cdef Product prod
    if a.path == parallel.SERIAL or (a.path == parallel.BLOCKED and a.N <= a.rows):
        _rows(a, 0, a.N, tag)
    elif a.path == parallel.BLOCKED:
        # Narrow W: each cache-sized block of rows gets its bias and its
        # product while it is in this core's cache.
        typed_for(parallel.ceil_div(a.N, a.rows), a.num_threads, _blocked_task[floating], arg)
    else:
        prod = product(a.tx, a.tW, a.N, a.M_out, a.M_in, <const floating*>a.x, a.ldx,
                       <const floating*>a.W, a.ldW, <const floating*>a.b, False, <floating*>a.y,
                       a.M_out, <floating*>a.work, a.setting, a.act, <floating*>a.z)
        gemm_products(&prod, 1, a.num_threads)


cpdef forward(object x, object W, object b, object y, int act, object z, int plan,
              int num_threads):
    """y[:] = f(x @ W (+ b)), the way ``plan``'s path (SERIAL, BLOCKED or TILED) says.

    f is the activation ``act`` (see _epilogue); z, if given, a C-contiguous
    array like y that receives x @ W (+ b).

    x and W are 2-D arrays that BLAS reads in place (see _blas.layout), b is
    None or a contiguous 1-D array, y a C-contiguous (N, M_out) array; all
    of one dtype.  SERIAL makes one BLAS call on this thread, BLOCKED (the
    blocked path) threads over cache-sized row blocks (narrow W), TILED tiles
    the product.
    """
    cdef Operands a
    if not (layout(x, &a.tx, &a.ldx) and layout(W, &a.tW, &a.ldW)):
        raise ValueError("x and W must be 2-D, aligned and readable by BLAS in place")
    a.N, a.M_in, a.M_out = (cnp.PyArray_DIM(<cnp.ndarray>x, 0), cnp.PyArray_DIM(<cnp.ndarray>W, 0),
                            cnp.PyArray_DIM(<cnp.ndarray>W, 1))
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>x)
    if (typenum not in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE)
            or cnp.PyArray_TYPE(<cnp.ndarray>W) != typenum
            or cnp.PyArray_DIM(<cnp.ndarray>x, 1) != a.M_in
            or not c_array(y, typenum, a.N, a.M_out, True)
            or not (b is None or c_array(b, typenum, a.M_out, -1, False))
            or not (z is None or c_array(z, typenum, a.N, a.M_out, True))
            or not 0 <= act <= GELU_TANH):
        raise ValueError("forward: x, W, b and y must agree in dtype and shape")
    a.rows = parallel.block_rows(a.M_in + a.M_out, cnp.PyArray_ITEMSIZE(<cnp.ndarray>x),
                                 BLAS_INT_MAX)
    a.setting = setting_of(plan)
    a.path = parallel.plan_path(plan)
    a.act, a.num_threads = act, num_threads
    work = scratch(product_workspace(a.N, a.M_out, a.M_in, a.setting)
                   if a.path == parallel.TILED else 0, typenum)
    a.x, a.W, a.b, a.y, a.z, a.work = data(x), data(W), data(b), data(y), data(z), data(work)
    # A SERIAL call keeps the GIL: it runs for microseconds, less than handing
    # the GIL over and back costs.
    run_typed(_forward[float], _forward[double], &a, typenum, a.path != parallel.SERIAL)
