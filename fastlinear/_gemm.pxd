from cython cimport floating

cdef Py_ssize_t tiled_gemm_workspace(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil

cdef void tiled_gemm(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const floating* A, Py_ssize_t ldA, const floating* B, Py_ssize_t ldB,
                     const floating* bias, bint accumulate, floating* C, Py_ssize_t ldC,
                     floating* work, int num_threads) noexcept nogil
