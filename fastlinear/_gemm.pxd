from cython cimport floating

cdef enum:
    MAX_PRODUCTS = 2

# One product C = op(A) op(B) of gemm_products, its pointers to float32 or
# float64 elements as is_double says.
cdef struct Product:
    char transA, transB
    Py_ssize_t m, n, k, ldA, ldB, ldC
    const void* A
    const void* B
    const void* bias
    void* C
    void* work
    bint accumulate, is_double, small_kernel

cdef bint small_kernels() noexcept nogil

cdef Py_ssize_t product_workspace(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                  bint small_kernel) noexcept nogil

cdef Product product(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const floating* A, Py_ssize_t ldA, const floating* B, Py_ssize_t ldB,
                     const floating* bias, bint accumulate, floating* C, Py_ssize_t ldC,
                     floating* work, bint small_kernel) noexcept nogil

cdef void gemm_products(const Product* p, Py_ssize_t count, int num_threads) noexcept nogil
