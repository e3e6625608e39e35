# Arrays as the kernels take them, and results as the caller gets them.
cdef Py_ssize_t rows_of(a) except -1
cdef as_rows(a, Py_ssize_t N, Py_ssize_t M)
cdef target(out, Py_ssize_t rows, Py_ssize_t cols, int typenum, bint keep, bint* copy_back)
cdef result(t, buf, bint copy_back, x, bint flat)
cdef dz_target(dz, dy, Py_ssize_t N, Py_ssize_t M_out, int typenum, bint* copy_back)
