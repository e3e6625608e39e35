# cython: language_level=3
"""The problem model: what a call computes, how much work it is, the built-in
plan for it, and the plans of this process.

A problem is a direction (forward, or backward with or without dx and dW), a
dtype, M_in, M_out and N to within a factor of 2 (its bucket, N's bit length).
Its key is what the plan cache and the plan file are indexed by.  A plan (see
_parallel.pxd) depends on the problem alone, never on a call's thread count,
so that results are identical for every ``num_threads``.
"""
import functools
import platform

cimport fastlinear._parallel as parallel
from fastlinear._backends import backends
from fastlinear._gemm import in_small_kernel_range, machine_tasks
from fastlinear._parallel import make_plan
from fastlinear._threads import blas_threads

__all__ = ["Problem", "KINDS", "MIN_PLANNED_WORK", "check_key", "cpu_name",
           "forget_plans", "set_planner", "small_kernels", "builtin_small_kernels"]

# The kinds by the name a plan file key gives them.
KINDS = {"f": FORWARD, "b00": BACKWARD, "b01": BACKWARD | NEED_DW,
         "b10": BACKWARD | NEED_DX, "b11": BACKWARD | NEED_DX | NEED_DW}
_KIND_NAMES = {kind: name for name, kind in KINDS.items()}

cdef enum:
    # Problems below this much work always run on the calling thread, with the
    # same plan: waking a second thread and handing the GIL over take
    # microseconds on any machine, as long as such a problem takes on one core.
    _MIN_PLANNED_WORK = 1 << 15
    # The built-in rules, used when planning is off; the planner times these
    # choices on the user's machine instead (docs/design.md, "Built-in rules",
    # has the measurements).  Below SERIAL_WORK (see _problem.pxd) a call runs
    # on the calling thread, keeping the GIL: starting threads costs more than
    # it saves.
    # W of at most NARROW_WEIGHTS weights makes GEMMs too thin to tile, so from
    # NARROW_ROWS rows on (enough blocks to share between threads) the blocked
    # path cuts the rows into cache-sized blocks instead.
    NARROW_WEIGHTS = 1 << 12
    NARROW_ROWS = 1 << 11

MIN_PLANNED_WORK = _MIN_PLANNED_WORK


cdef double work(Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out) noexcept nogil:
    """Multiply-adds, plus the adds of db and the elements of dx and dW, which count
    on their own because with M_out or N zero they are zero-filled at no
    multiply-add; in floating point, since the product of three sizes can pass 2**63."""
    return (<double>N * M_out * (M_in + 1)  # + 1: the bias row
            + <double>N * M_in + <double>M_in * M_out)


cdef int builtin_path(Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out) noexcept nogil:
    """SERIAL: on the calling thread.  BLOCKED: threads over cache-sized row
    blocks, the backward's products done block by block.  TILED: threads over
    the tasks of each product."""
    if work(N, M_in, M_out) < SERIAL_WORK:
        return parallel.SERIAL
    if <double>M_in * M_out <= NARROW_WEIGHTS and N >= NARROW_ROWS:
        return parallel.BLOCKED
    return parallel.TILED


cdef class Problem:
    """A problem as the planner sees it: ``kind`` (see KINDS), dtype, N, M_in, M_out."""

    def __init__(self, int kind, dtype, Py_ssize_t N, Py_ssize_t M_in, Py_ssize_t M_out):
        if kind not in _KIND_NAMES or dtype not in ("float32", "float64") \
                or min(N, M_in, M_out) < 0:
            raise ValueError(f"no such problem: {kind}, {dtype}, {N}, {M_in}, {M_out}")
        self.kind, self.dtype, self.N, self.M_in, self.M_out = kind, dtype, N, M_in, M_out

    @property
    def backward(self):
        return bool(self.kind & BACKWARD)

    @property
    def need_dx(self):
        return bool(self.kind & NEED_DX)

    @property
    def need_dW(self):
        return bool(self.kind & NEED_DW)

    @property
    def work(self):
        return work(self.N, self.M_in, self.M_out)

    @property
    def key(self):
        """The key of its plan: kind, dtype, N's bucket, M_in and M_out."""
        return (f"{_KIND_NAMES[self.kind]}:{self.dtype}:{int(self.N).bit_length()}:"
                f"{self.M_in}:{self.M_out}")

    def products(self):
        """(m, n, k) of the GEMMs a call of this problem makes."""
        if not self.backward:
            return [(self.N, self.M_out, self.M_in)]
        return (([(self.N, self.M_in, self.M_out)] if self.need_dx else [])
                + ([(self.M_in, self.M_out, self.N)] if self.need_dW else []))

    def has_small_products(self):
        """Whether a plan's small-kernel cut applies to one of its products."""
        return any(in_small_kernel_range(*mnk) for mnk in self.products())

    def plan(self, int path, bint small_kernels, int backend):
        """The plan on ``path``; the small-kernel cut is kept only where the call
        cuts products into tasks (a forward on the calling thread, or over row
        blocks, makes one BLAS call per block), so that one computation has one plan."""
        cdef bint tiles = path == parallel.TILED or (path == parallel.SERIAL and self.backward)
        return make_plan(path, small_kernels and tiles, machine_tasks(), backend)

    def builtin_path(self):
        """The built-in rules' path: SERIAL, BLOCKED or TILED (see builtin_path)."""
        return builtin_path(self.N, self.M_in, self.M_out)

    def builtin_plan(self):
        """The built-in plan: fixed rules on the shape."""
        return self.plan(self.builtin_path(), builtin_small_kernels(), backends.default())

    def __repr__(self):
        return f"Problem({self.key!r})"


def check_key(key):
    """The key itself; ValueError unless it is one that Problem.key makes."""
    kind, dtype, bits, M_in, M_out = key.split(":")
    if kind not in KINDS or dtype not in ("float32", "float64"):
        raise ValueError(key)
    bits, M_in, M_out = int(bits), int(M_in), int(M_out)
    if not (0 <= bits <= 64 and 0 <= M_in < 2 ** 63 and 0 <= M_out < 2 ** 63):
        raise ValueError(key)
    return key


@functools.lru_cache(maxsize=None)
def _cpuinfo():
    """The first processor's fields in /proc/cpuinfo ({} where there is none)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_name():
    """The CPU's model name, with family and model where /proc/cpuinfo has them."""
    fields = _cpuinfo()
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return name


# OpenBLAS cores with small-matrix GEMM kernels, which the built-in plans cut
# mid-size products for.
_SMALL_KERNEL_CORES = {"skylakex", "cooperlake", "sapphirerapids"}


def _has_small_kernels(lib):
    info = lib.info()
    return (info.get("internal_api") == "openblas"
            and str(info.get("architecture", "")).lower() in _SMALL_KERNEL_CORES)


def small_kernels():
    """Whether every BLAS that SciPy's cython_blas may use has small-matrix kernels."""
    libs = blas_threads.libraries()
    return bool(libs) and all(map(_has_small_kernels, libs))


# CPUs on which the small-kernel cut was measured to gain (vendor, family), so
# that the built-in plans cut there: AMD family 25 with OpenBLAS's AVX-512
# cores is Zen 4 (Zen 3 has no AVX-512).  Everywhere else, where the same cut
# has cost up to 1.6x, only a measurement (the planner) chooses it.
_SMALL_KERNELS_GAIN = {("AuthenticAMD", "25")}


def builtin_small_kernels():
    """Whether the built-in plans cut products for the small-matrix kernels."""
    fields = _cpuinfo()
    return ((fields.get("vendor_id"), fields.get("cpu family")) in _SMALL_KERNELS_GAIN
            and small_kernels())


# The plans of this process's calls, by problem: a C-level table in front of
# the planner, which is asked on a miss.  Problems too small to plan skip both.
cdef enum:
    TABLE_SIZE = 1024  # a power of two
    PROBES = 8

cdef struct Entry:
    Py_ssize_t M_in, M_out
    int tag   # 0: empty; else 1 + (kind, dtype, N's bucket) packed
    int plan

cdef Entry _table[TABLE_SIZE]
cdef int _serial_plan = -1
cdef object _planner = None


def set_planner(planner):
    """The object whose choose(problem) gives plans on a miss."""
    global _planner
    _planner = planner
    forget_plans()


def forget_plans():
    """Empty the table: plans are asked of the planner again."""
    global _serial_plan
    cdef Py_ssize_t i
    for i in range(TABLE_SIZE):
        _table[i].tag = 0
    _serial_plan = -1


cdef int plan_of(int kind, bint is_double, Py_ssize_t N, Py_ssize_t M_in,
                 Py_ssize_t M_out) except -1:
    """The plan of a call: from the table, else from the planner."""
    global _serial_plan
    if work(N, M_in, M_out) < _MIN_PLANNED_WORK:
        if _serial_plan < 0:
            _serial_plan = _planner.choose(Problem(FORWARD, "float64", 0, 0, 0))
        return _serial_plan
    cdef Py_ssize_t bits = 0, n = N, i, slot
    while n:
        bits += 1
        n >>= 1
    cdef int tag = 1 + (kind << 16 | is_double << 8 | bits)
    cdef size_t h = (<size_t>tag * 0x9E3779B97F4A7C15ULL) ^ (<size_t>M_in * 0xC2B2AE3D27D4EB4FULL) \
        ^ (<size_t>M_out * 0x165667B19E3779F9ULL)
    for i in range(PROBES):
        slot = (h + i) & (TABLE_SIZE - 1)
        if _table[slot].tag == tag and _table[slot].M_in == M_in and _table[slot].M_out == M_out:
            return _table[slot].plan
        if _table[slot].tag == 0:
            break
    cdef int plan = _planner.choose(Problem(kind, "float64" if is_double else "float32",
                                            N, M_in, M_out))
    for i in range(PROBES):  # a full neighbourhood is asked again next time
        slot = (h + i) & (TABLE_SIZE - 1)
        if _table[slot].tag == 0:
            _table[slot].M_in, _table[slot].M_out = M_in, M_out
            _table[slot].tag, _table[slot].plan = tag, plan
            break
    return plan
