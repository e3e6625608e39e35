# Activations applied where a block of y is written (forward) and their
# derivatives where a block of dy is read (backward).
from cython cimport floating

cdef enum:
    NO_ACTIVATION = 0
    RELU = 1
    TANH = 2
    SIGMOID = 3
    GELU = 4       # x Phi(x), with erf
    GELU_TANH = 5  # PyTorch's approximate="tanh"

cdef void activate(int act, floating* y, Py_ssize_t ldy, Py_ssize_t rows, Py_ssize_t cols,
                   floating* z, Py_ssize_t ldz) noexcept nogil

cdef void activation_grad(int act, const floating* dy, Py_ssize_t s0, Py_ssize_t s1,
                          const floating* saved, Py_ssize_t ld_saved,
                          floating* dz, Py_ssize_t t0, Py_ssize_t t1,
                          Py_ssize_t rows, Py_ssize_t cols) noexcept nogil
