# The problem a call solves: its one key, its work, the built-in rules, and
# the plans of this process (see fastlinear._plans for how plans are chosen).

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
cdef bint holds_blas(int plan, Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out) noexcept nogil
