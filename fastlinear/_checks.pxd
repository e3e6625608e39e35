# The checks of the public functions' inputs, each raising a TypeError or
# ValueError that names what does not fit, before anything is written.
cimport numpy as cnp
from cpython.object cimport PyObject

cdef struct CallArrays:
    # The arrays of a call that an output must not overlap (borrowed
    # references, NULL where there is none) and the tuple of their names.
    PyObject* arrays[6]
    PyObject* names

cdef inline int typenum_of(a) noexcept:
    return cnp.PyArray_TYPE(<cnp.ndarray>a)

cpdef int activation_code(activation) except -1
cpdef float_array(a, str name)
cdef int check_forward_arrays(x, W, b, Py_ssize_t* dims) except -1
cdef int check_backward_arrays(x, W, dy, saved, str saved_name, Py_ssize_t* dims) except -1
cdef object check_saved(activation, int act, y, z)
cdef void set_operands(CallArrays* o, tuple names, a0, a1, a2, a3, a4, a5) noexcept
cdef int check_out(out, str name, like, Py_ssize_t last, int typenum,
                   const CallArrays* others) except -1
cdef int check_apart(cnp.ndarray a, str name, other, str other_name) except -1
cdef int check_apart_all(cnp.ndarray a, str name, const CallArrays* others) except -1
cdef int check_gradient_buffers(CallArrays* others, dx, dW, db, dz, int kind, bint bias,
                                int typenum) except -1
cdef int check_dz_wanted(int act, overwrite_dy) except -1
cdef int check_stepped(CallArrays* others, W, b, dz, int typenum) except -1
cdef double check_step(lr, b, W, bias, need_dW, dW, db, accumulate) except? -1
cdef int check_plan(int plan) except -1
cdef int threads_of(num_threads, int path) except 0
