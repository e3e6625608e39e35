from cython cimport floating

cdef enum:
    MAX_PRODUCTS = 2

# How a call's products are cut into tasks, from its plan (setting_of); the
# call passes it on, so that its workspace and its tasks agree.
cdef struct TaskSetting:
    bint small_kernels  # the BLAS has small-matrix kernels (see _small_tiles)
    Py_ssize_t tasks    # tasks a product is cut into where it is big enough (see _packed_tiles)
    int backend         # the BLAS that computes the products (see _blas.pxd)

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
    void* aux   # NULL, or C's values before the activation (C-contiguous, m x n)
    int act     # applied to C once its product is complete (see _epilogue)
    double alpha  # C := alpha op(A) op(B) (+ C if accumulate, + bias)
    bint accumulate, is_double
    TaskSetting setting

# How a product is cut into tasks: its m, n and k are each cut into this many
# slices, and a task computes one slice of m by one slice of n over one slice
# of k (slices of k after the first add their partial products afterwards).
cdef struct Tiles:
    Py_ssize_t slices_m, slices_n, slices_k

cdef TaskSetting setting_of(int plan) noexcept nogil

cdef Tiles product_tiles(const Product* prod) noexcept nogil

cdef Py_ssize_t product_workspace(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                  TaskSetting setting) noexcept nogil

cdef Product product(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const floating* A, Py_ssize_t ldA, const floating* B, Py_ssize_t ldB,
                     const floating* bias, bint accumulate, floating* C, Py_ssize_t ldC,
                     floating* work, TaskSetting setting, int act, floating* aux,
                     double alpha=*) noexcept nogil

cdef void gemm_products(const Product* p, Py_ssize_t count, int num_threads) noexcept nogil
