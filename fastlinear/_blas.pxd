# Row-major GEMM on top of the column-major BLAS that SciPy ships.
from cython cimport floating
cimport numpy as cnp

# The largest dimension or leading dimension of one call: BLAS's integers are 32-bit.
cdef enum:
    BLAS_INT_MAX = 2147483647

# The BLAS libraries a plan may name (see fastlinear._backends): SciPy's, always
# there, and the optional ones registered with set_backend.
cdef enum:
    SCIPY_BLAS = 0
    BACKENDS = 4

cdef void gemm(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
               floating alpha, const floating* A, Py_ssize_t ldA, const floating* B,
               Py_ssize_t ldB, floating beta, floating* C, Py_ssize_t ldC,
               int backend) noexcept nogil

cdef const floating* row(const floating* A, char trans, Py_ssize_t ld, Py_ssize_t i) noexcept nogil
cdef const floating* col(const floating* A, char trans, Py_ssize_t ld, Py_ssize_t j) noexcept nogil

cdef bint layout(object a, char* trans, Py_ssize_t* ld) noexcept

cdef bint c_array(object a, int typenum, Py_ssize_t rows, Py_ssize_t cols,
                  bint write) noexcept

cdef void extent(cnp.ndarray a, char** lo, char** hi) noexcept

cdef object scratch(Py_ssize_t n, int typenum)
cdef void* data(object a) noexcept
