from cython cimport floating

ctypedef fused partial_t:
    float
    double

cdef void colsum_add(const floating* a, Py_ssize_t s0, Py_ssize_t s1,
                     Py_ssize_t rows, Py_ssize_t cols, double* acc) noexcept nogil

cdef Py_ssize_t column_sums_workspace(Py_ssize_t N, Py_ssize_t M_out) noexcept nogil

cdef void column_sums(const floating* dy, Py_ssize_t s0, Py_ssize_t s1,
                      Py_ssize_t N, Py_ssize_t M_out, floating* db, bint accumulate,
                      double scale, double* work, int num_threads, int act, const floating* saved,
                      floating* dz, Py_ssize_t t0, Py_ssize_t t1) noexcept nogil

cdef void combine(const partial_t* parts, Py_ssize_t chunks, Py_ssize_t width,
                  floating* out, bint accumulate, double scale, int num_threads) noexcept nogil
