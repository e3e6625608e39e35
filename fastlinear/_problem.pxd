# The problem a call solves: its one key, its work, the built-in rules, and
# the plans of this process (see fastlinear._plans for how plans are chosen).
cimport fastlinear._parallel as parallel
from fastlinear._blas cimport SCIPY_BLAS

# A problem's kind: FORWARD, or BACKWARD with the gradients it computes
# (db always, dx and dW when asked).
cdef enum:
    FORWARD = 0
    NEED_DW = 1
    NEED_DX = 2
    BACKWARD = 4

cdef class Problem:
    cdef readonly int kind
    cdef readonly str dtype
    cdef readonly Py_ssize_t N, M_in, M_out

cdef double work(Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out) noexcept nogil
cdef int builtin_path(Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out) noexcept nogil
cdef int plan_of(int kind, bint is_double, Py_ssize_t N, Py_ssize_t M_in,
                 Py_ssize_t M_out) except -1

cdef enum:
    # The work below which the built-in plans run a call on the calling thread,
    # and from which OpenBLAS starts threads of its own.
    SERIAL_WORK = 1 << 18


cdef inline bint holds_blas(int plan, Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out) noexcept nogil:
    """Whether SciPy's BLAS is held at one thread for a call: always while
    fastlinear's threads call it, and on the calling thread alone from the size
    where OpenBLAS would start threads of its own (SERIAL_WORK multiply-adds),
    for a serial plan the planner chose there.  Below it, the hold's
    microseconds are saved; an optional backend is loaded single-threaded and
    needs none."""
    if parallel.plan_backend(plan) != SCIPY_BLAS:
        return False
    return (parallel.plan_path(plan) != parallel.SERIAL
            or <double>N * M_in * M_out >= SERIAL_WORK)
