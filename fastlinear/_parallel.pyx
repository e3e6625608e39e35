# cython: language_level=3
cimport fastlinear._parallel as parallel

cdef extern from "_pool.h":
    const char* FL_POOL_KIND
    void fl_parallel_for(Py_ssize_t n, int threads, parallel.task_fn task, void* arg) noexcept nogil
    void fl_pool_init()
    void fl_pool_adapt(int on) noexcept nogil

fl_pool_init()


cdef void parallel_for(Py_ssize_t n, int threads, parallel.task_fn task, void* arg) noexcept nogil:
    fl_parallel_for(n, threads, task, arg)


def threads_kind():
    """What runs the parallel loops: "pthreads" (a pool of fastlinear's own),
    "openmp" (where there are no POSIX threads), or "serial"."""
    return FL_POOL_KIND.decode()


def pool_adapts(bint on):
    """Whether the pool may run jobs on the caller alone after jobs that sharing
    lost (see _pool.h); the planner turns it off while it times plans."""
    fl_pool_adapt(on)


# The path codes a plan holds, for the Python layer that chooses them.
PATHS = {"serial": parallel.SERIAL, "blocked": parallel.BLOCKED, "tiled": parallel.TILED}


def make_plan(int path, bint small_kernels, Py_ssize_t tasks, int backend=0):
    """The int a kernel takes for a path, a small-kernel cut, tasks per
    product and a BLAS backend."""
    if (path not in (parallel.SERIAL, parallel.BLOCKED, parallel.TILED)
            or not 1 <= tasks <= 1 << 20 or not 0 <= backend <= 3):
        raise ValueError(f"no such plan: path {path}, tasks {tasks}, backend {backend}")
    return path | (small_kernels << 2) | (backend << 3) | (tasks << 5)


def plan_fields(int plan):
    """(path, small_kernels, tasks, backend) of a plan made by make_plan."""
    return (parallel.plan_path(plan), bool(parallel.plan_small_kernels(plan)),
            parallel.plan_tasks(plan), parallel.plan_backend(plan))
