# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Activations and their derivatives, on a block while it is in cache.

The element math and the loops over contiguous runs are C (_activations.h,
which says how they are computed); this walks the rows of a block.
"""
from libc.string cimport memcpy

cdef extern from "_activations.h" nogil:
    void fl_map_double(int act, double* r, Py_ssize_t n)
    void fl_map_float(int act, float* r, Py_ssize_t n)
    void fl_grad_map_double(int act, const double* g, const double* s, double* o, Py_ssize_t n)
    void fl_grad_map_float(int act, const float* g, const float* s, float* o, Py_ssize_t n)
    double fl_grad_double(int act, double g, double s)
    float fl_grad_float(int act, float g, float s)


cdef inline void _map(int act, floating* r, Py_ssize_t n) noexcept nogil:
    """r = f(r) for n contiguous elements."""
    if floating is double:
        fl_map_double(act, r, n)
    else:
        fl_map_float(act, r, n)


cdef inline void _grad_map(int act, const floating* g, const floating* s, floating* o,
                           Py_ssize_t n) noexcept nogil:
    """o = g f'(.) for n contiguous elements (o may be g)."""
    if floating is double:
        fl_grad_map_double(act, g, s, o, n)
    else:
        fl_grad_map_float(act, g, s, o, n)


cdef inline floating _grad(int act, floating g, floating s) noexcept nogil:
    return fl_grad_double(act, g, s) if floating is double else fl_grad_float(act, g, s)


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
