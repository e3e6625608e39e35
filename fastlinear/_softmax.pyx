# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Softmax over each row of a matrix, in place, in one pass per row: what
scikit-learn's MLPClassifier applies to the output of its last layer; and
with it, in the same pass, the cross-entropy of each row and the gradient
that training starts its backward pass from.

Each row is computed whole by one thread, in a fixed order, and rows are cut
into fixed groups that fastlinear's threads share: the bits are the same for
any thread count.  The array was checked by the caller: C-contiguous float32
or float64, writeable.
"""
from libc.float cimport DBL_EPSILON, FLT_EPSILON
from libc.math cimport exp, fabs, log
from cython cimport floating

cimport fastlinear._parallel as parallel
from fastlinear._blas cimport typed_for

# Elements a task covers: enough work to outweigh handing a task to a thread.
cdef enum:
    CHUNK = 1 << 14


cdef struct Rows:
    void* a
    Py_ssize_t n, m, per_task  # rows, columns, rows per task
    void* extra  # what a task needs besides the rows


cdef struct Loss:
    const void* y        # (n, m) targets: bool, or the dtype of the rows
    bint y_is_bool
    void* delta          # (n, m): (p - y) times the row's scale
    const void* scales   # (n,) row scales in the rows' dtype, or NULL: `scale` for every row
    double scale
    double* row_loss     # (n,): -sum_j y log p, p clipped to [eps, 1 - eps]


cdef inline void _softmax_row(floating* row, Py_ssize_t m) noexcept nogil:
    """row = exp(row - max row) / sum exp(row - max row), the sum in float64 with
    Neumaier's compensation (a plain sum of many terms would lose digits that wide
    rows of float64 need).  A NaN or an infinity in the row makes it all NaN, as
    NumPy's expression does."""
    cdef Py_ssize_t j
    cdef floating top
    cdef double total = 0, lost = 0, term, sum_
    if m == 0:
        return
    top = row[0]
    for j in range(1, m):
        if row[j] > top or row[j] != row[j]:
            top = row[j]
    for j in range(m):
        row[j] = <floating>exp(row[j] - top)
        term = row[j]
        sum_ = total + term
        lost += (total - sum_) + term if fabs(total) >= fabs(term) else (term - sum_) + total
        total = sum_
    total += lost
    for j in range(m):
        row[j] = row[j] / <floating>total


cdef void _softmax(Py_ssize_t t, void* arg, const floating* tag) noexcept nogil:
    """The softmax of each row of task t."""
    cdef Rows* rows = <Rows*>arg
    cdef Py_ssize_t i
    for i in range(t * rows.per_task, min(rows.n, (t + 1) * rows.per_task)):
        _softmax_row(<floating*>rows.a + i * rows.m, rows.m)


cdef void _softmax_loss(Py_ssize_t t, void* arg, const floating* tag) noexcept nogil:
    """For each row of task t: its softmax p, its cross-entropy against y (as
    scikit-learn's log_loss: p clipped to [eps, 1 - eps], y = 0 adding nothing) and
    delta = (p - y) s, rounded to the dtype after the difference and after the
    product, as NumPy's two in-place steps."""
    cdef Rows* rows = <Rows*>arg
    cdef Loss* loss = <Loss*>rows.extra
    cdef Py_ssize_t i, j, m = rows.m
    cdef floating* p
    cdef floating* delta
    cdef floating eps = <floating>(DBL_EPSILON if floating is double else FLT_EPSILON)
    cdef floating target, scale, clipped
    cdef double total
    for i in range(t * rows.per_task, min(rows.n, (t + 1) * rows.per_task)):
        p = <floating*>rows.a + i * m
        delta = <floating*>loss.delta + i * m
        _softmax_row(p, m)
        scale = <floating>loss.scale if loss.scales == NULL else (<const floating*>loss.scales)[i]
        total = 0
        for j in range(m):
            if loss.y_is_bool:
                target = (<const unsigned char*>loss.y)[i * m + j] != 0
            else:
                target = (<const floating*>loss.y)[i * m + j]
            clipped = p[j]  # a NaN stays NaN, as in np.clip
            if clipped < eps:
                clipped = eps
            elif clipped > 1 - eps:
                clipped = 1 - eps
            if target != 0 or clipped != clipped:  # scipy's xlogy: 0 log p is 0 unless p is NaN
                total += target * log(clipped)
            delta[j] = <floating>(p[j] - target)
            delta[j] = delta[j] * scale
        loss.row_loss[i] = -total


cdef void _rows_for(Rows* rows, bint is_double, int num_threads,
                    void (*as_float)(Py_ssize_t, void*, const float*) noexcept nogil,
                    void (*as_double)(Py_ssize_t, void*, const double*) noexcept nogil
                    ) noexcept nogil:
    """A float32 or float64 row body over every row of ``rows``, in tasks of whole rows."""
    if rows.n == 0:
        return
    rows.per_task = max(1, CHUNK // max(rows.m, 1))
    cdef Py_ssize_t tasks = parallel.ceil_div(rows.n, rows.per_task)
    if is_double:
        typed_for(tasks, num_threads, as_double, rows)
    else:
        typed_for(tasks, num_threads, as_float, rows)


cdef Rows _rows(a):
    cdef Rows rows
    rows.a, rows.n, rows.m = <void*><size_t>a.ctypes.data, a.shape[0], a.shape[1]
    rows.extra = NULL
    return rows


def softmax(a, int num_threads):
    """Softmax over the rows of the 2-D array ``a``, in place (checked by the caller)."""
    cdef Rows rows = _rows(a)
    cdef bint is_double = a.dtype.itemsize == 8
    with nogil:
        _rows_for(&rows, is_double, num_threads, _softmax[float], _softmax[double])


def softmax_loss(z, y, delta, scales, double scale, row_loss, int num_threads):
    """z = softmax(z) over its rows, in place; row_loss[i] = -sum_j y log p (p
    clipped to [eps, 1 - eps]); delta = (p - y) times scales[i] (or ``scale`` where
    scales is None).  z, delta C-contiguous (n, m) of one float dtype, y C-contiguous
    (n, m) bool or of that dtype, scales (n,) of that dtype, row_loss (n,) float64:
    checked by the caller."""
    cdef Rows rows = _rows(z)
    cdef Loss loss
    loss.y, loss.y_is_bool = <void*><size_t>y.ctypes.data, y.dtype.kind == "b"
    loss.delta = <void*><size_t>delta.ctypes.data
    loss.scales = NULL if scales is None else <void*><size_t>scales.ctypes.data
    loss.scale, loss.row_loss = scale, <double*><size_t>row_loss.ctypes.data
    rows.extra = &loss
    cdef bint is_double = z.dtype.itemsize == 8
    with nogil:
        _rows_for(&rows, is_double, num_threads, _softmax_loss[float], _softmax_loss[double])
