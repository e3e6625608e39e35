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


cdef void _decay(DecayArgs* a, Py_ssize_t t, floating kind) noexcept nogil:
    """grad += decay param over chunk t, and the chunk's sum of param² (float64, in
    LANES partial sums added in a fixed order) into sums[t]."""
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


cdef void _decay_f32(Py_ssize_t t, void* arg) noexcept nogil:
    _decay(<DecayArgs*>arg, t, <float>0)


cdef void _decay_f64(Py_ssize_t t, void* arg) noexcept nogil:
    _decay(<DecayArgs*>arg, t, <double>0)


cdef void _sgd(SGDArgs* a, Py_ssize_t lo, Py_ssize_t hi, floating kind) noexcept nogil:
    """velocity = momentum velocity - lr grad; param += velocity, or with
    Nesterov's momentum param += momentum velocity - lr grad.  No velocity: a
    plain step."""
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


cdef void _adam(AdamArgs* a, Py_ssize_t lo, Py_ssize_t hi, floating kind) noexcept nogil:
    """m = beta1 m + (1 - beta1) grad; v = beta2 v + (1 - beta2) grad²;
    param += -lr m / (sqrt(v) + eps), lr already bias-corrected.  m, v and
    the denominator in the parameter's dtype, the step in float64, as NumPy 2
    computes scikit-learn's expressions (its bias-corrected rate is a float64
    scalar, the other constants Python floats)."""
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


cdef void _sgd_f32(Py_ssize_t t, void* arg) noexcept nogil:
    cdef SGDArgs* a = <SGDArgs*>arg
    _sgd(a, t * CHUNK, min(a.size, (t + 1) * CHUNK), <float>0)


cdef void _sgd_f64(Py_ssize_t t, void* arg) noexcept nogil:
    cdef SGDArgs* a = <SGDArgs*>arg
    _sgd(a, t * CHUNK, min(a.size, (t + 1) * CHUNK), <double>0)


cdef void _adam_f32(Py_ssize_t t, void* arg) noexcept nogil:
    cdef AdamArgs* a = <AdamArgs*>arg
    _adam(a, t * CHUNK, min(a.size, (t + 1) * CHUNK), <float>0)


cdef void _adam_f64(Py_ssize_t t, void* arg) noexcept nogil:
    cdef AdamArgs* a = <AdamArgs*>arg
    _adam(a, t * CHUNK, min(a.size, (t + 1) * CHUNK), <double>0)


cdef void _run(Py_ssize_t size, int num_threads, parallel.task_fn task, void* arg) noexcept nogil:
    cdef Py_ssize_t tasks = parallel.ceil_div(size, CHUNK), t
    if tasks <= 1:
        for t in range(tasks):
            task(t, arg)
    else:
        parallel.parallel_for(tasks, parallel.threads_for(num_threads, tasks), task, arg)


cdef void* _data(object a) except? NULL:
    return NULL if a is None else <void*><size_t>a.ctypes.data


def sgd(param, grad, velocity, double lr, double momentum, bint nesterov, int num_threads):
    """The SGD update in place (arrays checked by fastlinear.optim)."""
    cdef SGDArgs a
    a.param, a.grad, a.velocity = _data(param), _data(grad), _data(velocity)
    a.size, a.lr, a.momentum, a.nesterov = param.size, lr, momentum, nesterov
    cdef parallel.task_fn task = _sgd_f64 if param.dtype.itemsize == 8 else _sgd_f32
    with nogil:
        _run(a.size, num_threads, task, &a)


def adam(param, grad, m, v, double lr, double beta1, double beta2, double eps, int num_threads):
    """The Adam update in place (arrays checked by fastlinear.optim)."""
    cdef AdamArgs a
    a.param, a.grad, a.m, a.v = _data(param), _data(grad), _data(m), _data(v)
    a.size, a.lr, a.beta1, a.beta2, a.eps = param.size, lr, beta1, beta2, eps
    cdef parallel.task_fn task = _adam_f64 if param.dtype.itemsize == 8 else _adam_f32
    with nogil:
        _run(a.size, num_threads, task, &a)


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
    cdef parallel.task_fn task = _decay_f64 if param.dtype.itemsize == 8 else _decay_f32
    cdef double total = 0
    with nogil:
        _run(a.size, num_threads, task, &a)
        for t in range(tasks):
            total += a.sums[t]
    free(a.sums)
    return total
