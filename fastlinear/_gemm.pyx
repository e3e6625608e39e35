# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A GEMM parallelised over tasks fixed by the shape and the machine.

BLAS threads its own GEMM by splitting C according to the thread count, so
its results change in the last bits when the thread count does.  Here the
product is cut into tasks that depend on (m, n, k) and on the call's plan
(see fastlinear._plans) only, a parallel loop hands them to the
threads, and each task is one single-threaded BLAS call; partial products
over slices of k are added in a fixed order.  Every element is thus computed
by the same instructions whatever num_threads is.

Mid-size products can be cut for BLAS's small-matrix kernels instead (see
_small_tiles); the call's plan says which.
"""
import os

from libc.string cimport memcpy
cimport fastlinear._parallel as parallel
from fastlinear._blas cimport gemm, row, col, typed_for
from fastlinear._epilogue cimport activate

# A task is at least this many multiply-adds and this many rows, columns and
# k: each BLAS call repacks its panels of A and B, which must stay small next
# to its arithmetic.
cdef enum:
    MIN_TASK_WORK = 1 << 22
    MIN_SIDE = 64
    # Elements of a row of C summed at a time with its partials (2 KiB of float64).
    ADD_BLOCK = 256


# OpenBLAS's small-matrix kernels for SkylakeX and later x86 cores multiply
# without packing A and B when m*n*k <= 10**6, and for C^T = B^T A (its
# column-major A^T B) when also m*n <= 1200 and k >= 32.  A plan may cut
# products of up to 2**25 multiply-adds with k <= 1024 into tasks of that size;
# the planner times that cut against the packed one on the user's machine
# (docs/design.md, "Built-in rules").
cdef enum:
    SMALL_KERNEL_WORK = 1000000
    SMALL_KERNEL_TN_TILE = 1200
    SMALL_KERNEL_TN_MIN_K = 32
    SMALL_TASKS_MAX_WORK = 1 << 25
    SMALL_TASKS_MAX_K = 1024

def machine_tasks():
    """Tasks per product (see _packed_tiles) for this machine: its CPU count
    rounded up to a power of two, never the thread count of a call."""
    cdef Py_ssize_t tasks = 1
    while tasks < (os.cpu_count() or 1):
        tasks *= 2
    return tasks


cdef TaskSetting setting_of(int plan) noexcept nogil:
    cdef TaskSetting setting
    setting.small_kernels = parallel.plan_small_kernels(plan)
    setting.tasks = parallel.plan_tasks(plan)
    setting.backend = parallel.plan_backend(plan)
    return setting


cdef bint _small_tasks(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, bint small_kernels) noexcept nogil:
    # k first: m * n is the size of an allocated C, so m * n * k cannot then overflow.
    return small_kernels and k <= SMALL_TASKS_MAX_K and m * n * k <= SMALL_TASKS_MAX_WORK


cdef Tiles _small_tiles(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, bint tn) noexcept nogil:
    """Slices of m and n that bring each task within the small-matrix kernels' limits.

    The longer side of a task is halved until it fits; ``tn`` says the task
    is BLAS's A^T B, which has the tighter limit (below its shortest k that
    kernel is not used, and smaller tasks would only add calls).
    """
    cdef Tiles t
    cdef Py_ssize_t mt = m, nt = n
    tn = tn and k >= SMALL_KERNEL_TN_MIN_K
    t.slices_m = t.slices_n = t.slices_k = 1
    while ((mt * nt * k > SMALL_KERNEL_WORK or (tn and mt * nt > SMALL_KERNEL_TN_TILE))
           and (mt > 1 or nt > 1)):
        if nt >= mt:
            t.slices_n *= 2
        else:
            t.slices_m *= 2
        mt, nt = parallel.ceil_div(m, t.slices_m), parallel.ceil_div(n, t.slices_n)
    return t


cdef Tiles _packed_tiles(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, Py_ssize_t tasks) noexcept nogil:
    """How many slices of m, n and k: each split where it costs least.

    Splitting m repacks op(B) once more per new slice (k * n/slices_n
    elements), splitting n repacks op(A) (k * m/slices_m), and splitting k
    writes and then re-reads a partial C (2 * m/slices_m * n/slices_n).
    Halving the cheapest keeps the extra memory traffic lowest.  A product
    gets ``tasks`` tasks (one per CPU), plus one doubling per 8x more work
    from 2**35 multiply-adds on, and none smaller than MIN_TASK_WORK: every
    task repacks, so more tasks than CPUs only cost.
    """
    cdef Tiles t
    cdef Py_ssize_t most = tasks, big = 1LL << 35, mt, nt, kt, cost_m, cost_n, cost_k, best
    t.slices_m = t.slices_n = t.slices_k = 1
    while m * n * k >= big and most < 64:
        most *= 2
        big *= 8
    while t.slices_m * t.slices_n * t.slices_k < most:
        mt, nt, kt = m // t.slices_m, n // t.slices_n, k // t.slices_k
        if mt * nt * kt < 2 * MIN_TASK_WORK:
            break
        cost_m = kt * nt if mt >= 2 * MIN_SIDE else -1
        cost_n = kt * mt if nt >= 2 * MIN_SIDE else -1
        # A slice of k also costs a parallel pass to add the partials, which
        # only pays off when k dominates the task's other sides (dW = x^T dy
        # over many rows).
        cost_k = 2 * mt * nt if kt >= 2 * MIN_SIDE and kt >= 8 * max(mt, nt) else -1
        best = cost_m
        if cost_n >= 0 and (best < 0 or cost_n < best):
            best = cost_n
        if cost_k >= 0 and (best < 0 or cost_k < best):
            best = cost_k
        if best < 0:
            break
        if best == cost_m:
            t.slices_m *= 2
        elif best == cost_n:
            t.slices_n *= 2
        else:
            t.slices_k *= 2
    return t


cdef Tiles product_tiles(const Product* prod) noexcept nogil:
    """How gemm_products cuts ``prod`` into tasks."""
    if _small_tasks(prod.m, prod.n, prod.k, prod.setting.small_kernels):
        # BLAS's A^T B in column-major terms is C = op(A) op(B) with only B transposed.
        return _small_tiles(prod.m, prod.n, prod.k, prod.transA == b'N' and prod.transB == b'T')
    return _packed_tiles(prod.m, prod.n, prod.k, prod.setting.tasks)


def in_small_kernel_range(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k):
    """Whether a plan's small-kernel cut applies to this product (else its packed cut does)."""
    return _small_tasks(m, n, k, True)


cdef Py_ssize_t product_workspace(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                  TaskSetting setting) noexcept nogil:
    """Elements of workspace a product (see product) needs: one partial C per extra slice of k."""
    if _small_tasks(m, n, k, setting.small_kernels):
        return 0
    return (_packed_tiles(m, n, k, setting.tasks).slices_k - 1) * m * n


cdef void _task(Py_ssize_t t, Tiles tiles, const Product* prod, const floating* A,
                const floating* B, const floating* bias, floating* C,
                floating* work) noexcept nogil:
    cdef Py_ssize_t tile = t % (tiles.slices_m * tiles.slices_n)
    cdef Py_ssize_t kk = t // (tiles.slices_m * tiles.slices_n)
    cdef Py_ssize_t i0 = parallel.chunk_start(tile // tiles.slices_n, prod.m, tiles.slices_m)
    cdef Py_ssize_t i1 = parallel.chunk_start(tile // tiles.slices_n + 1, prod.m, tiles.slices_m)
    cdef Py_ssize_t j0 = parallel.chunk_start(tile % tiles.slices_n, prod.n, tiles.slices_n)
    cdef Py_ssize_t j1 = parallel.chunk_start(tile % tiles.slices_n + 1, prod.n, tiles.slices_n)
    cdef Py_ssize_t k0 = parallel.chunk_start(kk, prod.k, tiles.slices_k)
    cdef Py_ssize_t k1 = parallel.chunk_start(kk + 1, prod.k, tiles.slices_k)
    cdef Py_ssize_t i, ld = prod.ldC
    cdef floating* out = C
    cdef floating beta = prod.accumulate or bias != NULL
    if kk > 0:  # a later slice of k: its own partial C, added in order afterwards
        out = work + (kk - 1) * prod.m * prod.n
        ld = prod.n
        beta = 0
    elif bias != NULL:
        for i in range(i0, i1):
            memcpy(C + i * ld + j0, bias + j0, (j1 - j0) * sizeof(floating))
    gemm(prod.transA, prod.transB, i1 - i0, j1 - j0, k1 - k0, <floating>prod.alpha,
         col(row(A, prod.transA, prod.ldA, i0), prod.transA, prod.ldA, k0), prod.ldA,
         col(row(B, prod.transB, prod.ldB, k0), prod.transB, prod.ldB, j0), prod.ldB,
         beta, out + i0 * ld + j0, ld, prod.setting.backend)
    if tiles.slices_k == 1 and (prod.act or prod.aux != NULL):  # the tile is complete and in cache
        activate(prod.act, C + i0 * ld + j0, ld, i1 - i0, j1 - j0,
                 <floating*>prod.aux + i0 * prod.n + j0 if prod.aux != NULL else NULL, prod.n)


cdef void _add_partials(Py_ssize_t i, const Product* prod, Py_ssize_t parts, floating* C,
                        const floating* work) noexcept nogil:
    """Row i of C plus the partial products of the later slices of k, in order.

    The sums run in float64 accumulators a block of the row at a time: each
    element gets the same additions in the same order as one at a time, and
    the loops over a block vectorise.
    """
    cdef double acc[ADD_BLOCK]
    cdef Py_ssize_t j0 = 0, j, q, width, n = prod.n, size = prod.m * prod.n
    cdef floating* c
    cdef const floating* w
    while j0 < n:
        width = min(<Py_ssize_t>ADD_BLOCK, n - j0)
        c = C + i * prod.ldC + j0
        for j in range(width):
            acc[j] = c[j]
        for q in range(parts):
            w = work + q * size + i * n + j0
            for j in range(width):
                acc[j] = acc[j] + w[j]
        for j in range(width):
            c[j] = <floating>acc[j]
        j0 += ADD_BLOCK
    if prod.act or prod.aux != NULL:  # the row is complete
        activate(prod.act, C + i * prod.ldC, prod.ldC, 1, n,
                 <floating*>prod.aux + i * n if prod.aux != NULL else NULL, n)


cdef struct ProductTasks:
    # What the tasks of gemm_products read: the products and their tiles, or
    # (while partial products are added) one product and its slices of k.
    const Product* prod
    const Tiles* tiles
    Py_ssize_t parts


cdef void _tile_task(Py_ssize_t t, void* arg, const floating* tag) noexcept nogil:
    """Task t of the products, numbered one product after another."""
    cdef const ProductTasks* a = <const ProductTasks*>arg
    cdef const Product* prod = a.prod
    cdef const Tiles* tiles = a.tiles
    while t >= tiles.slices_m * tiles.slices_n * tiles.slices_k:
        t -= tiles.slices_m * tiles.slices_n * tiles.slices_k
        prod += 1
        tiles += 1
    _task(t, tiles[0], prod, <const floating*>prod.A, <const floating*>prod.B,
          <const floating*>prod.bias, <floating*>prod.C, <floating*>prod.work)


cdef void _partials_task(Py_ssize_t i, void* arg, const floating* tag) noexcept nogil:
    """Row i of the product's C plus its partial products."""
    cdef const ProductTasks* a = <const ProductTasks*>arg
    _add_partials(i, a.prod, a.parts, <floating*>a.prod.C, <const floating*>a.prod.work)


cdef void _run_products(const Product* prod, Py_ssize_t count, int num_threads,
                        const floating* tag) noexcept nogil:
    cdef Tiles tiles[MAX_PRODUCTS]
    cdef Py_ssize_t tasks = 0, c
    cdef ProductTasks run
    for c in range(count):
        tiles[c] = product_tiles(&prod[c])
        tasks += tiles[c].slices_m * tiles[c].slices_n * tiles[c].slices_k
    run.prod, run.tiles = prod, tiles
    typed_for(tasks, num_threads, _tile_task[floating], &run)
    for c in range(count):
        if tiles[c].slices_k > 1:
            run.prod, run.parts = &prod[c], tiles[c].slices_k - 1
            typed_for(prod[c].m, num_threads, _partials_task[floating], &run)


cdef void gemm_products(const Product* prod, Py_ssize_t count, int num_threads) noexcept nogil:
    """Run ``count`` independent products (at most MAX_PRODUCTS, of one dtype)
    as one pool of tasks.

    One parallel loop for all: no thread waits at the end of one product
    while the other still has tasks.
    """
    if count > 0 and prod.is_double:
        _run_products(prod, count, num_threads, <const double*>NULL)
    else:
        _run_products(prod, count, num_threads, <const float*>NULL)


cdef Product product(char transA, char transB, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const floating* A, Py_ssize_t ldA, const floating* B, Py_ssize_t ldB,
                     const floating* bias, bint accumulate, floating* C, Py_ssize_t ldC,
                     floating* work, TaskSetting setting, int act, floating* aux,
                     double alpha=1) noexcept nogil:
    """C (m x n) = f(alpha op(A) op(B), plus C if ``accumulate``, plus ``bias`` (length n) if given).

    f is the activation ``act``, applied by the task that completes a tile
    while it is in cache; ``aux``, if not NULL, receives C before f.

    The bias is written into each tile just before its product is added onto
    it with beta = 1, while the tile is in cache.  ``work`` holds
    product_workspace(m, n, k, setting) elements; ``setting`` is
    setting_of(plan) as the caller read it.
    """
    cdef Product prod
    prod.transA, prod.transB, prod.m, prod.n, prod.k = transA, transB, m, n, k
    prod.A, prod.ldA, prod.B, prod.ldB, prod.bias = A, ldA, B, ldB, bias
    prod.accumulate, prod.C, prod.ldC, prod.work = accumulate, C, ldC, work
    prod.is_double = floating is double
    prod.setting = setting
    prod.act, prod.aux, prod.alpha = act, aux, alpha
    return prod
