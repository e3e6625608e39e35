# Activations applied where a block of y is written (forward) and their
# derivatives where a block of dy is read (backward).
from cython cimport floating

cdef extern from "_activations.h":
    enum:
        NO_ACTIVATION "FL_NO_ACTIVATION"
        RELU "FL_RELU"
        TANH "FL_TANH"
        SIGMOID "FL_SIGMOID"
        GELU "FL_GELU"            # x Phi(x), with erf
        GELU_TANH "FL_GELU_TANH"  # PyTorch's approximate="tanh"

cdef void activate(int act, floating* y, Py_ssize_t ldy, Py_ssize_t rows, Py_ssize_t cols,
                   floating* z, Py_ssize_t ldz) noexcept nogil

cdef void activation_grad(int act, const floating* dy, Py_ssize_t s0, Py_ssize_t s1,
                          const floating* saved, Py_ssize_t ld_saved,
                          floating* dz, Py_ssize_t t0, Py_ssize_t t1,
                          Py_ssize_t rows, Py_ssize_t cols) noexcept nogil
