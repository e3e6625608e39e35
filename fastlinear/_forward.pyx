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
from fastlinear._blas cimport gemm, row, layout, c_array, BLAS_INT_MAX, scratch, data
from fastlinear._epilogue cimport activate, GELU_TANH
from fastlinear._gemm cimport (Product, TaskSetting, product, gemm_products, product_workspace,
                               setting_of)

cnp.import_array()


cdef void _rows(const floating* x, char tx, Py_ssize_t ldx,
                const floating* W, char tW, Py_ssize_t ldW, const floating* b,
                floating* y, Py_ssize_t i0, Py_ssize_t i1,
                Py_ssize_t M_in, Py_ssize_t M_out, int act, floating* z, int backend) noexcept nogil:
    """Rows i0:i1 of y: the bias, then x W added on top, then the activation
    (z, if not NULL, receives the rows before it)."""
    cdef Py_ssize_t i
    if b != NULL:
        for i in range(i0, i1):
            memcpy(y + i * M_out, b, M_out * sizeof(floating))
    gemm(tx, tW, i1 - i0, M_out, M_in, 1, row(x, tx, ldx, i0), ldx, W, ldW,
         <floating>(1 if b != NULL else 0), y + i0 * M_out, M_out, backend)
    if act or z != NULL:
        activate(act, y + i0 * M_out, M_out, i1 - i0, M_out,
                 z + i0 * M_out if z != NULL else NULL, M_out)


cdef struct Blocks:
    # The arguments of _rows, for the tasks of a BLOCKED forward.
    const void* x
    const void* W
    const void* b
    void* y
    void* z
    char tx, tW
    Py_ssize_t ldx, ldW, N, M_in, M_out, rows
    int act, backend
    bint is_double


cdef void _block_task(Py_ssize_t blk, void* arg) noexcept nogil:
    cdef Blocks* a = <Blocks*>arg
    cdef Py_ssize_t i0 = blk * a.rows, i1 = min(a.N, (blk + 1) * a.rows)
    if a.is_double:
        _rows(<const double*>a.x, a.tx, a.ldx, <const double*>a.W, a.tW, a.ldW,
              <const double*>a.b, <double*>a.y, i0, i1, a.M_in, a.M_out, a.act, <double*>a.z,
              a.backend)
    else:
        _rows(<const float*>a.x, a.tx, a.ldx, <const float*>a.W, a.tW, a.ldW,
              <const float*>a.b, <float*>a.y, i0, i1, a.M_in, a.M_out, a.act, <float*>a.z,
              a.backend)


cdef void _forward(const floating* x, char tx, Py_ssize_t ldx,
                   const floating* W, char tW, Py_ssize_t ldW, const floating* b,
                   floating* y, Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out,
                   int path, Py_ssize_t rows, floating* work, TaskSetting setting,
                   int act, floating* z, int num_threads) noexcept nogil:
    cdef Py_ssize_t blocks = parallel.ceil_div(N, rows)
    cdef Product prod
    cdef Blocks a
    if path == parallel.SERIAL or (path == parallel.BLOCKED and N <= rows):
        _rows(x, tx, ldx, W, tW, ldW, b, y, 0, N, M_in, M_out, act, z, setting.backend)
    elif path == parallel.BLOCKED:
        # Narrow W: each cache-sized block of rows gets its bias and its
        # product while it is in this core's cache.
        a.x, a.W, a.b, a.y, a.z, a.tx, a.tW = x, W, b, y, z, tx, tW
        a.ldx, a.ldW, a.N, a.M_in, a.M_out, a.rows = ldx, ldW, N, M_in, M_out, rows
        a.act, a.backend, a.is_double = act, setting.backend, floating is double
        parallel.parallel_for(blocks, parallel.threads_for(num_threads, blocks), _block_task, &a)
    else:
        prod = product(tx, tW, N, M_out, M_in, x, ldx, W, ldW, b, False, y, M_out, work, setting,
                    act, z)
        gemm_products(&prod, 1, num_threads)


cpdef forward(object x, object W, object b, object y, int act, object z, int plan,
              int num_threads):
    """y[:] = f(x @ W (+ b)), the way ``plan``'s path (SERIAL, BLOCKED or TILED) says.

    f is the activation ``act`` (see _epilogue); z, if given, a C-contiguous
    array like y that receives x @ W (+ b).

    x and W are 2-D arrays that BLAS reads in place (see _blas.layout), b is
    None or a contiguous 1-D array, y a C-contiguous (N, M_out) array; all
    of one dtype.  SERIAL makes one BLAS call on this thread, BLOCKED threads
    over cache-sized row blocks (narrow W), TILED tiles the product.
    """
    cdef char tx, tW
    cdef Py_ssize_t ldx, ldW
    if not (layout(x, &tx, &ldx) and layout(W, &tW, &ldW)):
        raise ValueError("x and W must be 2-D, aligned and readable by BLAS in place")
    cdef Py_ssize_t N = cnp.PyArray_DIM(<cnp.ndarray>x, 0)
    cdef Py_ssize_t M_in = cnp.PyArray_DIM(<cnp.ndarray>W, 0)
    cdef Py_ssize_t M_out = cnp.PyArray_DIM(<cnp.ndarray>W, 1)
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>x)
    if (typenum not in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE)
            or cnp.PyArray_TYPE(<cnp.ndarray>W) != typenum
            or cnp.PyArray_DIM(<cnp.ndarray>x, 1) != M_in
            or not c_array(y, typenum, N, M_out, True)
            or not (b is None or c_array(b, typenum, M_out, -1, False))
            or not (z is None or c_array(z, typenum, N, M_out, True))
            or not 0 <= act <= GELU_TANH):
        raise ValueError("forward: x, W, b and y must agree in dtype and shape")
    cdef bint is_double = typenum == cnp.NPY_DOUBLE
    cdef Py_ssize_t rows = parallel.block_rows(M_in + M_out, 8 if is_double else 4, BLAS_INT_MAX)
    cdef TaskSetting setting = setting_of(plan)
    cdef int path = parallel.plan_path(plan)
    cdef Py_ssize_t size = product_workspace(N, M_out, M_in, setting) if path == parallel.TILED else 0
    work = scratch(size, typenum)
    cdef void* xp = data(x)
    cdef void* Wp = data(W)
    cdef void* bp = data(b)
    cdef void* yp = data(y)
    cdef void* wp = data(work)
    cdef void* zp = data(z)
    # A SERIAL call keeps the GIL: it runs for microseconds, less than handing
    # the GIL over and back costs.
    cdef parallel.PyThreadState* released = parallel.release_gil(path != parallel.SERIAL)
    if is_double:
        _forward(<double*>xp, tx, ldx, <double*>Wp, tW, ldW, <double*>bp, <double*>yp,
                 N, M_in, M_out, path, rows, <double*>wp, setting, act, <double*>zp, num_threads)
    else:
        _forward(<float*>xp, tx, ldx, <float*>Wp, tW, ldW, <float*>bp, <float*>yp,
                 N, M_in, M_out, path, rows, <float*>wp, setting, act, <float*>zp, num_threads)
    parallel.restore_gil(released)
