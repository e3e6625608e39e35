# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Activations and their derivatives, on a block while it is in cache.

Computed in the input's precision with the C library's functions, in the
forms PyTorch uses, so that NaN and Inf propagate as PyTorch's do.  The
derivative of relu, tanh and sigmoid is taken from the forward's output y,
that of gelu and gelu_tanh from its input z.
"""
from libc.math cimport erf, erff, exp, expf, tanh, tanhf
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

cdef double SQRT1_2 = 0.70710678118654752440    # 1 / sqrt(2)
cdef double INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi)
cdef double SQRT_2_PI = 0.79788456080286535588  # sqrt(2 / pi)
cdef double KAPPA = 0.044715


cdef inline floating _tanh(floating v) noexcept nogil:
    return tanh(v) if floating is double else tanhf(v)


cdef inline floating _exp(floating v) noexcept nogil:
    return exp(v) if floating is double else expf(v)


cdef inline floating _erf(floating v) noexcept nogil:
    return erf(v) if floating is double else erff(v)


cdef inline floating _f(int act, floating z) noexcept nogil:
    """f(z)."""
    cdef floating one = 1, half = 0.5, inner
    if act == RELU:
        return 0 if z < 0 else z  # NaN stays NaN
    if act == TANH:
        return _tanh(z)
    if act == SIGMOID:
        return one / (one + _exp(-z))
    if act == GELU:
        return z * half * (one + _erf(z * <floating>SQRT1_2))
    inner = <floating>SQRT_2_PI * (z + <floating>KAPPA * z * z * z)
    return half * z * (one + _tanh(inner))


cdef inline floating _grad(int act, floating g, floating s) noexcept nogil:
    """g f'(z), from s = f(z) for relu, tanh and sigmoid, s = z for the gelus."""
    if act == RELU:
        return 0 if s <= 0 else g  # a select, as PyTorch's threshold_backward: 0 even for an infinite g
    return g * _df(act, s)


cdef inline floating _df(int act, floating s) noexcept nogil:
    cdef floating one = 1, half = 0.5, t, inner
    if act == TANH:
        return one - s * s
    if act == SIGMOID:
        return s * (one - s)
    if act == GELU:
        return (half * (one + _erf(s * <floating>SQRT1_2))
                + s * _exp(-half * s * s) * <floating>INV_SQRT_2PI)
    inner = <floating>SQRT_2_PI * (s + <floating>KAPPA * s * s * s)
    t = _tanh(inner)
    return (half * (one + t)
            + half * s * (one - t * t) * <floating>SQRT_2_PI * (one + 3 * <floating>KAPPA * s * s))


cdef void activate(int act, floating* y, Py_ssize_t ldy, Py_ssize_t rows, Py_ssize_t cols,
                   floating* z, Py_ssize_t ldz) noexcept nogil:
    """y = f(y) over a block of rows; z (if not NULL) keeps the block's y before."""
    cdef Py_ssize_t i, j
    cdef floating* r
    for i in range(rows):
        r = y + i * ldy
        if z != NULL:
            memcpy(z + i * ldz, r, cols * sizeof(floating))
        if act == RELU:  # the common case
            _keep(r, r, r, cols, True)
        elif act != NO_ACTIVATION:
            for j in range(cols):
                r[j] = _f(act, r[j])


cdef inline void _keep(const floating* g, const floating* s, floating* o, Py_ssize_t cols,
                       bint at_zero) noexcept nogil:
    """o = g where s > 0 (or s >= 0 if ``at_zero``) or s is NaN, else 0: relu's select.

    The bits of g go through a mask, without a branch per element (the signs
    are random, and a mispredicted branch costs more than the element), and an
    infinite or NaN g still gives 0 where it is not kept, as PyTorch's does.
    """
    cdef Py_ssize_t j
    if floating is double:
        if at_zero:
            for j in range(cols):
                (<uint64_t*>o)[j] = (<const uint64_t*>g)[j] & (<uint64_t>0 - <uint64_t>(not s[j] < 0))
        else:
            for j in range(cols):
                (<uint64_t*>o)[j] = (<const uint64_t*>g)[j] & (<uint64_t>0 - <uint64_t>(not s[j] <= 0))
    else:
        if at_zero:
            for j in range(cols):
                (<uint32_t*>o)[j] = (<const uint32_t*>g)[j] & (<uint32_t>0 - <uint32_t>(not s[j] < 0))
        else:
            for j in range(cols):
                (<uint32_t*>o)[j] = (<const uint32_t*>g)[j] & (<uint32_t>0 - <uint32_t>(not s[j] <= 0))


cdef void activation_grad(int act, const floating* dy, Py_ssize_t s0, Py_ssize_t s1,
                          const floating* saved, Py_ssize_t ld_saved,
                          floating* dz, Py_ssize_t t0, Py_ssize_t t1,
                          Py_ssize_t rows, Py_ssize_t cols, double* db_acc) noexcept nogil:
    """dz = dy * f'(.) over a block (element strides s0, s1 of dy and t0, t1 of
    dz, which may be dy itself), adding dz's column sums onto db_acc unless NULL."""
    cdef Py_ssize_t i, j
    cdef floating d
    cdef const floating* g
    cdef const floating* s
    cdef floating* o
    for i in range(rows):
        g = dy + i * s0
        s = saved + i * ld_saved
        o = dz + i * t0
        if s1 != 1 or t1 != 1:
            for j in range(cols):
                d = _grad(act, g[j * s1], s[j])
                o[j * t1] = d
                if db_acc != NULL:
                    db_acc[j] += d
        elif act == RELU:  # the common case, without a branch per element (its sign is random)
            _keep(g, s, o, cols, False)
            if db_acc != NULL:
                for j in range(cols):
                    db_acc[j] += o[j]
        elif db_acc != NULL:
            for j in range(cols):
                d = _grad(act, g[j], s[j])
                o[j] = d
                db_acc[j] += d
        else:
            for j in range(cols):
                o[j] = _grad(act, g[j], s[j])
