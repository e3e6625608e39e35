# Row-major GEMM on top of the column-major BLAS that SciPy ships, and the
# helpers the kernels share: array checks, scratch, and parallel loops over
# tasks of one dtype.
from cython cimport floating
cimport numpy as cnp
cimport fastlinear._parallel as parallel

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

# gemm in calls whose m, n and k are at most ``limit`` (gemm's is BLAS_INT_MAX).
cdef void split_gemm(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     floating alpha, const floating* A, Py_ssize_t ldA, const floating* B,
                     Py_ssize_t ldB, floating beta, floating* C, Py_ssize_t ldC, int backend,
                     Py_ssize_t limit) noexcept nogil

cdef const floating* row(const floating* A, char trans, Py_ssize_t ld, Py_ssize_t i) noexcept nogil
cdef const floating* col(const floating* A, char trans, Py_ssize_t ld, Py_ssize_t j) noexcept nogil

cdef bint layout(object a, char* trans, Py_ssize_t* ld) noexcept

cdef bint c_array(object a, int typenum, Py_ssize_t rows, Py_ssize_t cols,
                  bint write) noexcept

cdef void extent(cnp.ndarray a, char** lo, char** hi) noexcept

cdef object scratch(Py_ssize_t n, int typenum)
cdef void* data(object a) noexcept


# A parallel loop over tasks that read arrays of one dtype.  A task's body is
# written once, fused on the dtype:
#
#     cdef void _body(Py_ssize_t t, void* arg, const floating* tag) noexcept nogil
#
# and typed_for(n, num_threads, _body[floating], &args) runs
# _body[floating](t, &args, NULL) for t in range(n): the float32 or float64
# body is chosen once, where the loop starts, never in a task.  (``tag`` is
# always NULL; it only names the dtype.)  A loop's tasks are (t, void*)
# functions, so a body is called through the one of these two tasks that
# restores its own type.
cdef struct TypedTask:
    parallel.task_fn body  # a float or double body, called as its own type
    void* arg


cdef inline void _float_task(Py_ssize_t t, void* task) noexcept nogil:
    cdef const TypedTask* typed = <const TypedTask*>task
    (<void (*)(Py_ssize_t, void*, const float*) noexcept nogil>typed.body)(t, typed.arg, NULL)


cdef inline void _double_task(Py_ssize_t t, void* task) noexcept nogil:
    cdef const TypedTask* typed = <const TypedTask*>task
    (<void (*)(Py_ssize_t, void*, const double*) noexcept nogil>typed.body)(t, typed.arg, NULL)


cdef inline void typed_for(Py_ssize_t n, int num_threads,
                           void (*body)(Py_ssize_t, void*, const floating*) noexcept nogil,
                           void* arg) noexcept nogil:
    """body(t, arg, NULL) for t in range(n), on up to num_threads threads (never more than n)."""
    cdef TypedTask typed
    typed.body, typed.arg = <parallel.task_fn>body, arg
    parallel.parallel_for(n, parallel.threads_for(num_threads, n),
                          _double_task if floating is double else _float_task, &typed)


cdef inline void run_typed(void (*as_float)(void*, const float*) noexcept nogil,
                           void (*as_double)(void*, const double*) noexcept nogil,
                           void* arg, int typenum, bint release) noexcept:
    """A kernel's float32 or float64 version on ``arg``, as ``typenum`` says:
    as_double(arg, NULL) or as_float(arg, NULL), without the GIL if ``release``."""
    cdef parallel.PyThreadState* released = parallel.release_gil(release)
    if typenum == cnp.NPY_DOUBLE:
        as_double(arg, NULL)
    else:
        as_float(arg, NULL)
    parallel.restore_gil(released)
