# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Activations and their derivatives, on a block while it is in cache.

Computed in the input's precision, in the forms PyTorch uses, so that NaN and
Inf propagate as PyTorch's do: float64 with the C library's functions;
float32's exp and erf with the branch-free polynomials below, which the
compiler turns into SIMD loops where the C library's are one call per element
(see docs/design.md for their error bounds).  The derivative of relu, tanh
and sigmoid is taken from the forward's output y, that of gelu and gelu_tanh
from its input z.
"""
from libc.math cimport INFINITY, erf, exp, tanh, tanhf
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

cdef double SQRT1_2 = 0.70710678118654752440    # 1 / sqrt(2)
cdef double INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi)
cdef double SQRT_2_PI = 0.79788456080286535588  # sqrt(2 / pi)
cdef double KAPPA = 0.044715


cdef inline floating _tanh(floating v) noexcept nogil:
    return tanh(v) if floating is double else tanhf(v)


cdef inline floating _exp(floating v) noexcept nogil:
    return exp(v) if floating is double else _expf(v)


cdef inline floating _erf(floating v) noexcept nogil:
    return erf(v) if floating is double else _erff(v)


cdef inline float _expf(float x) noexcept nogil:
    """exp(x) = 2^n exp(r), n the integer nearest x / ln 2, |r| <= ln 2 / 2,
    exp(r) by its Taylor polynomial of degree 7 (truncation below 1e-9).

    Results under 2**-124 are 0; NaN stays NaN.  Every constant is a float,
    so that the arithmetic stays in float32 lanes.
    """
    cdef float lo = -86.0, hi = 88.7
    cdef float xc = lo if x < lo else x
    xc = hi if xc > hi else xc
    cdef float known = xc if xc == xc else 0  # NaN: any n, the result is NaN anyway
    # Adding and taking away 1.5 * 2**23 rounds to the nearest integer.
    cdef float n = (known * <float>1.44269504088896341 + <float>12582912.0) - <float>12582912.0
    cdef float r = (xc - n * <float>0.693145751953125) - n * <float>1.428606765330187e-06
    cdef float p = <float>(1.0 / 5040)
    p = p * r + <float>(1.0 / 720)
    p = p * r + <float>(1.0 / 120)
    p = p * r + <float>(1.0 / 24)
    p = p * r + <float>(1.0 / 6)
    p = p * r + <float>0.5
    p = p * r + <float>1.0
    p = p * r + <float>1.0
    # 2^(n - 1) from its exponent bits (n - 1 + 127 lies in 1..254), times 2.
    cdef uint32_t bits = <uint32_t>(<int>n + 126) << 23
    cdef float scale
    memcpy(&scale, &bits, sizeof(float))
    cdef float result = p * scale * <float>2.0
    result = 0 if x < lo else result
    return <float>INFINITY if x > <float>88.72283935546875 else result


cdef inline float _erff(float x) noexcept nogil:
    """erf(x) as x P(x^2) / Q(x^2), a rational minimax approximation on [-4, 4]
    (erf is +-1 in float32 beyond); NaN stays NaN."""
    cdef float bound = 4.0
    x = -bound if x < -bound else x
    x = bound if x > bound else x
    cdef float x2 = x * x
    cdef float p = <float>-2.72614225801306e-10
    p = p * x2 + <float>2.77068142495902e-08
    p = p * x2 - <float>2.10102402082508e-06
    p = p * x2 - <float>5.69250639462346e-05
    p = p * x2 - <float>7.34990630326855e-04
    p = p * x2 - <float>2.95459980854025e-03
    p = p * x2 - <float>1.60960333262415e-02
    cdef float q = <float>-1.45660718464996e-05
    q = q * x2 - <float>2.13374055278905e-04
    q = q * x2 - <float>1.68282697438203e-03
    q = q * x2 - <float>7.37332916720468e-03
    q = q * x2 - <float>1.42647390514189e-02
    return x * p / q


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
    cdef Py_ssize_t i
    cdef floating* r
    if ldy == cols and (z == NULL or ldz == cols):  # contiguous: one loop, not one per row
        cols, rows = rows * cols, 1
    for i in range(rows):
        r = y + i * ldy
        if z != NULL:
            memcpy(z + i * ldz, r, cols * sizeof(floating))
        _map(act, r, cols)


cdef inline void _map(int act, floating* r, Py_ssize_t n) noexcept nogil:
    """r = f(r) for n contiguous elements: a loop per activation, so that each
    inlines _f for a constant and vectorises."""
    cdef Py_ssize_t j
    if act == RELU:  # the common case
        _keep(r, r, r, n, True)
    elif act == TANH:
        for j in range(n):
            r[j] = _f(TANH, r[j])
    elif act == SIGMOID:
        for j in range(n):
            r[j] = _f(SIGMOID, r[j])
    elif act == GELU:
        for j in range(n):
            r[j] = _f(GELU, r[j])
    elif act == GELU_TANH:
        for j in range(n):
            r[j] = _f(GELU_TANH, r[j])


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
                          Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    """dz = dy * f'(.) over a block (element strides s0, s1 of dy and t0, t1 of
    dz, which may be dy itself)."""
    cdef Py_ssize_t i, j
    if s1 == 1 and t1 == 1 and s0 == cols and t0 == cols and ld_saved == cols:
        _grad_map(act, dy, saved, dz, rows * cols)  # contiguous: one loop, not one per row
        return
    for i in range(rows):
        if s1 == 1 and t1 == 1:
            _grad_map(act, dy + i * s0, saved + i * ld_saved, dz + i * t0, cols)
        else:
            for j in range(cols):
                dz[i * t0 + j * t1] = _grad(act, dy[i * s0 + j * s1], saved[i * ld_saved + j])


cdef inline void _grad_map(int act, const floating* g, const floating* s, floating* o,
                           Py_ssize_t n) noexcept nogil:
    """o = g f'(.) for n contiguous elements (o may be g): a loop per activation, as in _map."""
    cdef Py_ssize_t j
    if act == RELU:  # without a branch per element: its sign is random
        _keep(g, s, o, n, False)
    elif act == TANH:
        for j in range(n):
            o[j] = _grad(TANH, g[j], s[j])
    elif act == SIGMOID:
        for j in range(n):
            o[j] = _grad(SIGMOID, g[j], s[j])
    elif act == GELU:
        for j in range(n):
            o[j] = _grad(GELU, g[j], s[j])
    else:
        for j in range(n):
            o[j] = _grad(GELU_TANH, g[j], s[j])
