# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Softmax over each row of a matrix, in place, in one pass per row: what
scikit-learn's MLPClassifier applies to the output of its last layer.

Each row is computed whole by one thread, in a fixed order, and rows are cut
into fixed groups that fastlinear's threads share: the bits are the same for
any thread count.  The array was checked by the caller: C-contiguous float32
or float64, writeable.
"""
from libc.math cimport exp
from cython cimport floating

cimport fastlinear._parallel as parallel
from fastlinear._blas cimport typed_for

# Elements a task covers: enough work to outweigh handing a task to a thread.
cdef enum:
    CHUNK = 1 << 14


cdef struct Rows:
    void* a
    Py_ssize_t n, m, per_task  # rows, columns, rows per task


cdef void _softmax(Py_ssize_t t, void* arg, const floating* tag) noexcept nogil:
    """For each row r of task t: r = exp(r - max r) / sum exp(r - max r), the sum
    in float64.  A NaN or an infinity in a row makes the whole row NaN, as NumPy's
    expression does."""
    cdef Rows* rows = <Rows*>arg
    cdef Py_ssize_t i, j, m = rows.m
    cdef floating* row
    cdef floating top
    cdef double total
    for i in range(t * rows.per_task, min(rows.n, (t + 1) * rows.per_task)):
        row = <floating*>rows.a + i * m
        top = row[0]
        for j in range(1, m):
            if row[j] > top or row[j] != row[j]:
                top = row[j]
        total = 0
        for j in range(m):
            row[j] = <floating>exp(row[j] - top)
            total += row[j]
        for j in range(m):
            row[j] = row[j] / <floating>total


def softmax(a, int num_threads):
    """Softmax over the rows of the 2-D array ``a``, in place (checked by the caller)."""
    cdef Rows rows
    rows.a, rows.n, rows.m = <void*><size_t>a.ctypes.data, a.shape[0], a.shape[1]
    if rows.n == 0 or rows.m == 0:
        return
    rows.per_task = max(1, CHUNK // rows.m)
    cdef Py_ssize_t tasks = parallel.ceil_div(rows.n, rows.per_task)
    cdef bint is_double = a.dtype.itemsize == 8
    with nogil:
        if is_double:
            typed_for(tasks, num_threads, _softmax[double], &rows)
        else:
            typed_for(tasks, num_threads, _softmax[float], &rows)
