# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Row-major GEMM through ``scipy.linalg.cython_blas`` or an optional BLAS.

A row-major matrix with leading dimension ``ld`` is, byte for byte, the
column-major transpose of itself, so ``C = op(A) op(B)`` in row-major order is
the column-major call ``C^T = op(B)^T op(A)^T``: swap the operands, keep the
flags, never copy.  Empty dimensions are handled here because BLAS rejects a
leading dimension of 0, and dimensions past the 32-bit BLAS integer are split.
"""
cimport numpy as cnp
from scipy.linalg.cython_blas cimport dgemm, sgemm

cnp.import_array()

# The Fortran ?gemm of each backend; SciPy's is always there.
ctypedef void (*dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*,
                         double*, int*, double*, double*, int*) noexcept nogil
ctypedef void (*sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*,
                         float*, int*, float*, float*, int*) noexcept nogil
# A backend's thread count, where it has one that must stay at 1 (see gemm).
ctypedef int (*get_threads_t)() noexcept nogil
ctypedef void (*set_threads_t)(int) noexcept nogil
cdef dgemm_t _dgemm[BACKENDS]
cdef sgemm_t _sgemm[BACKENDS]
cdef get_threads_t _get_threads[BACKENDS]
cdef set_threads_t _set_threads[BACKENDS]
_dgemm[SCIPY_BLAS] = dgemm
_sgemm[SCIPY_BLAS] = sgemm


def set_backend(int backend, size_t dgemm_address, size_t sgemm_address,
                size_t get_threads_address=0, size_t set_threads_address=0):
    """Register the ``dgemm``/``sgemm`` (Fortran interface, 32-bit integers) of
    a backend, and the get and set of its thread count if it has one; the
    addresses come from a library fastlinear._backends loaded and checked."""
    if (not SCIPY_BLAS < backend < BACKENDS or not dgemm_address or not sgemm_address
            or (get_threads_address == 0) != (set_threads_address == 0)):
        raise ValueError(f"no such backend slot {backend}, or a NULL function")
    _get_threads[backend] = <get_threads_t>get_threads_address
    _set_threads[backend] = <set_threads_t>set_threads_address
    _dgemm[backend] = <dgemm_t>dgemm_address
    _sgemm[backend] = <sgemm_t>sgemm_address


def has_backend(int backend):
    """Whether a backend's functions are registered."""
    return 0 <= backend < BACKENDS and _dgemm[backend] != NULL


cdef const floating* row(const floating* A, char trans, Py_ssize_t ld, Py_ssize_t i) noexcept nogil:
    """Address of row ``i`` of op(A); A is stored transposed when trans is 'T'."""
    return A + i * ld if trans == b'N' else A + i


cdef const floating* col(const floating* A, char trans, Py_ssize_t ld, Py_ssize_t j) noexcept nogil:
    """Address of column ``j`` of op(A)."""
    return A + j if trans == b'N' else A + j * ld


cdef void _gemm_call(char transA, char transB, int m, int n, int k, floating alpha,
                     const floating* A, int ldA, const floating* B, int ldB,
                     floating beta, floating* C, int ldC, int backend) noexcept nogil:
    if floating is double:
        _dgemm[backend](&transB, &transA, &n, &m, &k, &alpha, <double*>B, &ldB,
                        <double*>A, &ldA, &beta, C, &ldC)
    else:
        _sgemm[backend](&transB, &transA, &n, &m, &k, &alpha, <float*>B, &ldB,
                        <float*>A, &ldA, &beta, C, &ldC)


cdef void gemm(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* A, Py_ssize_t ldA, const floating* B,
               Py_ssize_t ldB, floating beta, floating* C, Py_ssize_t ldC,
               int backend) noexcept nogil:
    """C (m x n) := alpha op(A) (m x k) @ op(B) (k x n) + beta C, all row-major,
    by the ?gemm of ``backend`` (SciPy's if that one is not registered).

    beta is 0 (C is overwritten, never read, so garbage or NaN in it does
    not leak) or 1 (accumulate).  Leading dimensions must already be at most
    BLAS_INT_MAX; m, n and k may exceed it.
    """
    split_gemm(transA, transB, m, n, k, alpha, A, ldA, B, ldB, beta, C, ldC, backend,
               BLAS_INT_MAX)


cdef void split_gemm(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     floating alpha, const floating* A, Py_ssize_t ldA, const floating* B,
                     Py_ssize_t ldB, floating beta, floating* C, Py_ssize_t ldC, int backend,
                     Py_ssize_t limit) noexcept nogil:
    """gemm, in calls whose m, n and k are at most ``limit``."""
    cdef Py_ssize_t i, j, i0, j0, k0, mb, nb, kb
    cdef floating beta_k
    if not 0 <= backend < BACKENDS or _dgemm[backend] == NULL:
        backend = SCIPY_BLAS
    if _get_threads[backend] != NULL and _get_threads[backend]() != 1:
        # A private library that threadpoolctl found and resized: back to one thread.
        _set_threads[backend](1)
    if m == 0 or n == 0:
        return
    if k == 0:
        if beta == 0:
            for i in range(m):
                for j in range(n):
                    C[i * ldC + j] = 0
        return
    i0 = 0
    while i0 < m:
        mb = min(m - i0, limit)
        j0 = 0
        while j0 < n:
            nb = min(n - j0, limit)
            k0 = 0
            beta_k = beta
            while k0 < k:
                kb = min(k - k0, limit)
                _gemm_call(transA, transB, <int>mb, <int>nb, <int>kb, alpha,
                           col(row(A, transA, ldA, i0), transA, ldA, k0), <int>ldA,
                           col(row(B, transB, ldB, k0), transB, ldB, j0), <int>ldB,
                           beta_k, C + i0 * ldC + j0, <int>ldC, backend)
                beta_k = 1
                k0 += kb
            j0 += nb
        i0 += mb


cdef bint layout(object a, char* trans, Py_ssize_t* ld) noexcept:
    """Whether BLAS can read the 2-D array ``a`` in place, and how.

    Row-major storage (unit column stride) is op 'N'; column-major storage
    (unit row stride) is the transpose of a row-major matrix, op 'T'.  A
    stride of a length-1 axis is meaningless, so it is ignored.  Negative,
    zero (broadcast) or other strides need a copy.
    """
    if (not isinstance(a, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>a) != 2
            or not cnp.PyArray_ISALIGNED(<cnp.ndarray>a)):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef Py_ssize_t r = cnp.PyArray_DIM(arr, 0), c = cnp.PyArray_DIM(arr, 1)
    cdef Py_ssize_t s0 = cnp.PyArray_STRIDE(arr, 0), s1 = cnp.PyArray_STRIDE(arr, 1)
    cdef Py_ssize_t item = cnp.PyArray_ITEMSIZE(arr)
    if r == 0 or c == 0:
        trans[0] = b'N'
        ld[0] = max(c, 1)
        return True
    if (c <= 1 or s1 == item) and (r <= 1 or (s0 > 0 and s0 % item == 0 and s0 // item >= c)):
        trans[0] = b'N'
        ld[0] = s0 // item if r > 1 else max(c, 1)
    elif (r <= 1 or s0 == item) and (c <= 1 or (s1 > 0 and s1 % item == 0 and s1 // item >= r)):
        trans[0] = b'T'
        ld[0] = s1 // item if c > 1 else max(r, 1)
    else:
        return False
    return ld[0] <= BLAS_INT_MAX


cdef bint c_array(object a, int typenum, Py_ssize_t rows, Py_ssize_t cols,
                  bint write) noexcept:
    """Whether ``a`` is an aligned C-contiguous array of this type and shape.

    ``cols`` < 0 asks for a 1-D array of ``rows`` elements; ``write`` for a
    writeable one.
    """
    if not isinstance(a, cnp.ndarray):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if (cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_ISCARRAY_RO(arr)
            or (write and not cnp.PyArray_ISWRITEABLE(arr))
            or cnp.PyArray_NDIM(arr) != (1 if cols < 0 else 2)
            or cnp.PyArray_DIM(arr, 0) != rows):
        return False
    return cols < 0 or cnp.PyArray_DIM(arr, 1) == cols


cdef object scratch(Py_ssize_t n, int typenum):
    """An uninitialised 1-D array of n elements of this type, or None when n is 0."""
    cdef cnp.npy_intp size = n
    return cnp.PyArray_EMPTY(1, &size, typenum, 0) if n > 0 else None


cdef void* data(object a) noexcept:
    """The data pointer of an array, NULL for None."""
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef void extent(cnp.ndarray a, char** lo, char** hi) noexcept:
    """lo:hi, the bytes the elements of ``a`` lie in (empty for an empty array)."""
    cdef char* start = <char*>cnp.PyArray_DATA(a)
    cdef Py_ssize_t i, step, low = 0, high = cnp.PyArray_ITEMSIZE(a)
    for i in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, i) == 0:
            lo[0] = hi[0] = start
            return
        step = cnp.PyArray_STRIDE(a, i) * (cnp.PyArray_DIM(a, i) - 1)
        if step < 0:
            low += step
        else:
            high += step
    lo[0] = start + low
    hi[0] = start + high
