# Work partitions shared by the kernels.  Every partition is a function of the
# shape alone, never of the thread count, so that the order in which partial
# sums are combined, and hence every bit of the result, is the same whatever
# num_threads is.

# A parallel loop: task(t, arg) for t in range(n) on up to ``threads`` threads,
# the caller among them, tasks handed out one at a time (see _pool.h).
ctypedef void (*task_fn)(Py_ssize_t t, void* arg) noexcept nogil
cdef void parallel_for(Py_ssize_t n, int threads, task_fn task, void* arg) noexcept nogil

cdef extern from "Python.h":
    ctypedef struct PyThreadState
    PyThreadState* PyEval_SaveThread() nogil
    void PyEval_RestoreThread(PyThreadState* state) nogil

# How a call is run: a plan (see fastlinear._plans) packs a path, whether
# mid-size products are cut for BLAS's small-matrix kernels, which BLAS
# computes them (see _blas.pxd), and how many tasks a big product is cut
# into, into one int.
cdef enum:
    SERIAL = 0    # on the calling thread (products cut as TILED cuts them, run in turn)
    BLOCKED = 1   # the blocked path: threads over cache-sized row blocks
    TILED = 2     # threads over the tasks of each product


cdef inline int plan_path(int plan) noexcept nogil:
    return plan & 3


cdef inline bint plan_small_kernels(int plan) noexcept nogil:
    return (plan >> 2) & 1


cdef inline int plan_backend(int plan) noexcept nogil:
    return (plan >> 3) & 3


cdef inline Py_ssize_t plan_tasks(int plan) noexcept nogil:
    return plan >> 5


cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline Py_ssize_t chunk_start(Py_ssize_t c, Py_ssize_t n, Py_ssize_t chunks) noexcept nogil:
    """First row of chunk ``c`` when ``n`` rows are cut into ``chunks`` near-equal chunks."""
    return c * n // chunks


cdef inline Py_ssize_t block_rows(Py_ssize_t width, Py_ssize_t itemsize, Py_ssize_t limit) noexcept nogil:
    """Rows of a block whose ``width`` elements per row fill about 256 KiB.

    That keeps a block of x, dy and dx resident in a core's L2 cache while the
    three products that read it run.
    """
    cdef Py_ssize_t rows = (256 * 1024) // (max(width, 1) * itemsize)
    return max(1, min(max(rows, 16), 4096, limit))


cdef inline int threads_for(int num_threads, Py_ssize_t tasks) noexcept nogil:
    """Threads worth starting for ``tasks`` tasks: never more threads than tasks."""
    return <int>max(1, min(<Py_ssize_t>num_threads, tasks))


cdef inline PyThreadState* release_gil(bint release) noexcept:
    """Release the GIL if ``release``; what restore_gil needs (NULL when kept).

    For a kernel call that must not take ``with nogil`` unconditionally:
    between the two, nothing may touch a Python object.
    """
    return PyEval_SaveThread() if release else NULL


cdef inline void restore_gil(PyThreadState* released) noexcept nogil:
    if released != NULL:
        PyEval_RestoreThread(released)
