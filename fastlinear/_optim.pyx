# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Optimizer updates of one parameter in one pass: SGD with (Nesterov)
momentum and Adam, as scikit-learn's MLP optimizers compute them.

Each element's update reads and writes only that element, so the arrays are
cut into fixed chunks that fastlinear's threads share: the bits are the same
for any thread count.  The arrays were checked by fastlinear.optim: one dtype,
one size, C-contiguous, the state writeable and apart from the others.
"""
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from cython cimport floating

cimport fastlinear._parallel as parallel
from fastlinear._blas cimport typed_for

# Elements a task updates: enough work to outweigh handing a task to a thread.
cdef enum:
    CHUNK = 1 << 15


cdef struct SGDArgs:
    void* param
    const void* grad
    void* velocity
    Py_ssize_t size
    double lr, momentum
    bint nesterov


cdef struct AdamArgs:
    void* param
    const void* grad
    void* m
    void* v
    Py_ssize_t size
    double lr, beta1, beta2, eps


cdef struct DecayArgs:
    const void* param
    void* grad
    Py_ssize_t size
    double decay
    double* sums


cdef enum:
    LANES = 8  # independent partial sums, so that the adds need not wait on each other


cdef void _decay(Py_ssize_t t, void* arg, const floating* tag) noexcept nogil:
    """grad += decay param over chunk t, and the chunk's sum of param² (float64, in
    LANES partial sums added in a fixed order) into sums[t]."""
    cdef DecayArgs* a = <DecayArgs*>arg
    cdef const floating* param = <const floating*>a.param
    cdef floating* grad = <floating*>a.grad
    cdef floating decay = <floating>a.decay
    cdef Py_ssize_t lo = t * CHUNK, hi = min(a.size, (t + 1) * CHUNK), i, j
    cdef double acc[LANES]
    cdef double w
    for j in range(LANES):
        acc[j] = 0
    i = lo
    while i + LANES <= hi:
        for j in range(LANES):
            w = param[i + j]
            grad[i + j] = grad[i + j] + decay * param[i + j]
            acc[j] += w * w
        i += LANES
    for j in range(hi - i):
        w = param[i + j]
        grad[i + j] = grad[i + j] + decay * param[i + j]
        acc[j] += w * w
    w = 0
    for j in range(LANES):
        w += acc[j]
    a.sums[t] = w


cdef void _sgd(Py_ssize_t t, void* arg, const floating* tag) noexcept nogil:
    """Over chunk t: velocity = momentum velocity - lr grad; param += velocity,
    or with Nesterov's momentum param += momentum velocity - lr grad.  No
    velocity: a plain step."""
    cdef SGDArgs* a = <SGDArgs*>arg
    cdef Py_ssize_t lo = t * CHUNK, hi = min(a.size, (t + 1) * CHUNK)
    cdef floating* param = <floating*>a.param
    cdef const floating* grad = <const floating*>a.grad
    cdef floating* velocity = <floating*>a.velocity
    cdef floating lr = <floating>a.lr, momentum = <floating>a.momentum, step
    cdef Py_ssize_t i
    if velocity == NULL:
        for i in range(lo, hi):
            param[i] = param[i] + (-lr * grad[i])
    elif a.nesterov:
        for i in range(lo, hi):
            step = momentum * velocity[i] - lr * grad[i]
            velocity[i] = step
            param[i] = param[i] + (momentum * step - lr * grad[i])
    else:
        for i in range(lo, hi):
            step = momentum * velocity[i] - lr * grad[i]
            velocity[i] = step
            param[i] = param[i] + step


cdef void _adam(Py_ssize_t t, void* arg, const floating* tag) noexcept nogil:
    """Over chunk t: m = beta1 m + (1 - beta1) grad; v = beta2 v + (1 - beta2) grad²;
    param += -lr m / (sqrt(v) + eps), lr already bias-corrected.  m, v and
    the denominator in the parameter's dtype, the step in float64, as NumPy 2
    computes scikit-learn's expressions (its bias-corrected rate is a float64
    scalar, the other constants Python floats)."""
    cdef AdamArgs* a = <AdamArgs*>arg
    cdef Py_ssize_t lo = t * CHUNK, hi = min(a.size, (t + 1) * CHUNK)
    cdef floating* param = <floating*>a.param
    cdef const floating* grad = <const floating*>a.grad
    cdef floating* m = <floating*>a.m
    cdef floating* v = <floating*>a.v
    cdef floating beta1 = <floating>a.beta1, beta2 = <floating>a.beta2
    cdef floating c1 = <floating>(1.0 - a.beta1), c2 = <floating>(1.0 - a.beta2)
    cdef floating eps = <floating>a.eps, g, root
    cdef double lr = -a.lr
    cdef Py_ssize_t i
    for i in range(lo, hi):
        g = grad[i]
        m[i] = beta1 * m[i] + c1 * g
        v[i] = beta2 * v[i] + c2 * (g * g)
        root = <floating>sqrt(v[i])
        param[i] = <floating>(<double>param[i] + (lr * m[i]) / <double>(root + eps))


cdef void _run(Py_ssize_t size, int num_threads, bint is_double,
               void (*as_float)(Py_ssize_t, void*, const float*) noexcept nogil,
               void (*as_double)(Py_ssize_t, void*, const double*) noexcept nogil,
               void* arg) noexcept nogil:
    """A float32 or float64 update, as ``is_double`` says."""
    if is_double:
        _chunks(size, num_threads, as_double, arg)
    else:
        _chunks(size, num_threads, as_float, arg)


cdef void _chunks(Py_ssize_t size, int num_threads,
                  void (*body)(Py_ssize_t, void*, const floating*) noexcept nogil,
                  void* arg) noexcept nogil:
    """body over the chunks of ``size`` elements; one chunk on the calling thread."""
    cdef Py_ssize_t tasks = parallel.ceil_div(size, CHUNK), t
    if tasks <= 1:
        for t in range(tasks):
            body(t, arg, NULL)
    else:
        typed_for(tasks, num_threads, body, arg)


cdef void* _data(object a) except? NULL:
    return NULL if a is None else <void*><size_t>a.ctypes.data


def sgd(param, grad, velocity, double lr, double momentum, bint nesterov, int num_threads):
    """The SGD update in place (arrays checked by fastlinear.optim)."""
    cdef SGDArgs a
    a.param, a.grad, a.velocity = _data(param), _data(grad), _data(velocity)
    a.size, a.lr, a.momentum, a.nesterov = param.size, lr, momentum, nesterov
    cdef bint is_double = param.dtype.itemsize == 8
    with nogil:
        _run(a.size, num_threads, is_double, _sgd[float], _sgd[double], &a)


def adam(param, grad, m, v, double lr, double beta1, double beta2, double eps, int num_threads):
    """The Adam update in place (arrays checked by fastlinear.optim)."""
    cdef AdamArgs a
    a.param, a.grad, a.m, a.v = _data(param), _data(grad), _data(m), _data(v)
    a.size, a.lr, a.beta1, a.beta2, a.eps = param.size, lr, beta1, beta2, eps
    cdef bint is_double = param.dtype.itemsize == 8
    with nogil:
        _run(a.size, num_threads, is_double, _adam[float], _adam[double], &a)


def decay_norm(param, grad, double decay, int num_threads):
    """grad += decay * param (the L2 term of a gradient) in one pass that also
    returns the sum of param², the same for any thread count (arrays of one dtype and
    size, C-contiguous, checked by the caller)."""
    cdef DecayArgs a
    a.param, a.grad, a.size, a.decay = _data(param), _data(grad), param.size, decay
    cdef Py_ssize_t tasks = parallel.ceil_div(a.size, CHUNK), t
    a.sums = <double*>malloc(max(tasks, 1) * sizeof(double))
    if a.sums == NULL:
        raise MemoryError()
    cdef bint is_double = param.dtype.itemsize == 8
    cdef double total = 0
    with nogil:
        _run(a.size, num_threads, is_double, _decay[float], _decay[double], &a)
        for t in range(tasks):
            total += a.sums[t]
    free(a.sums)
    return total
