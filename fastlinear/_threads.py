"""Thread counts: the process default for fastlinear, and BLAS's own pool.

fastlinear never changes the process's OpenMP settings (each parallel region
names its thread count).  It does have to steer BLAS: its OpenMP threads each
call BLAS, which must then run on one thread, or 2 threads each start 2 more
and wait on one another.  The change is made only while such calls run and
the previous value is put back when the last of them ends, so
``threadpoolctl.threadpool_info()`` reads the same before and after a call.
"""
import ctypes
import itertools
import os
import threading
import warnings

from fastlinear._gemm import _use_small_kernels

_default = None
# GNU OpenMP cannot start threads in a child forked after the parent ran an
# OpenMP team: the child's next parallel region waits forever.  fastlinear
# notes when it has run one, and a forked child then runs its calls on one
# thread instead of hanging.
_team_started = False
_forked_child = False
_fork_warned = False
# More threads than this is a mistake, not a machine: OpenMP would try to
# start them all and abort the process when it cannot.
MAX_THREADS = 4096


def _env_threads():
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def get_num_threads():
    """The number of threads a call uses when it is given no ``num_threads``.

    It is the value last given to :func:`set_num_threads`, else
    ``OMP_NUM_THREADS``, else the number of CPUs this process may run on.
    """
    global _default
    if _default is None:
        _default = _env_threads()
    return _default


def set_num_threads(n):
    """Set the default number of threads of fastlinear calls in this process.

    ``None`` goes back to ``OMP_NUM_THREADS`` or the CPU count.  Only
    fastlinear is affected: the OpenMP runtime and BLAS keep their settings.
    """
    global _default
    _default = None if n is None else check_threads(n)


def check_threads(n):
    """``n`` as a positive int, or the process default when ``n`` is None."""
    if n is None:
        n = get_num_threads()
    elif isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"num_threads must be a positive int or None, got {n!r}")
    else:
        n = n.__index__()
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(f"num_threads must be between 1 and {MAX_THREADS}, got {n}")
    if _forked_child and n > 1:
        _warn_forked()
        return 1
    return n


def team_started():
    """Record that an OpenMP team of more than one thread has run in this process."""
    global _team_started
    _team_started = True


def _warn_forked():
    global _fork_warned
    if not _fork_warned:
        _fork_warned = True
        warnings.warn("fastlinear: this process was forked after fastlinear had run OpenMP "
                      "threads, and GNU OpenMP cannot start threads again in a forked child; "
                      "calls here run on one thread.  Use the 'spawn' or 'forkserver' "
                      "multiprocessing start method for parallel children.", RuntimeWarning,
                      stacklevel=3)


def _after_fork_in_child():
    global _forked_child
    _forked_child = _forked_child or _team_started
    blas_threads.after_fork()


# OpenBLAS cores with small-matrix GEMM kernels, which fastlinear._gemm cuts
# mid-size products for.
_SMALL_KERNEL_CORES = {"skylakex", "cooperlake", "sapphirerapids"}


def _has_small_kernels(lib):
    info = lib.info()
    return (info.get("internal_api") == "openblas"
            and str(info.get("architecture", "")).lower() in _SMALL_KERNEL_CORES)


def _openblas_function(path, name):
    """``name`` from the already loaded OpenBLAS at ``path``, under any of its builds'
    symbol affixes (SciPy's wheels prefix ``scipy_``; 64-bit integer builds add a suffix)."""
    lib = ctypes.CDLL(path)
    for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
        function = getattr(lib, f"{prefix}{name}{suffix}", None)
        if function is not None:
            return function
    return None


def _thread_controls(lib):
    """(get, set) of a BLAS's thread count, callable from any Python thread.

    threadpoolctl lets only the first Python thread that sizes OpenBLAS's
    process-wide (pthreads) pool resize it later, and silently ignores every
    other thread; fastlinear is called from any thread (dask's threaded
    scheduler, a server's workers) and orders its changes under its own lock,
    so it calls OpenBLAS's own functions.  The OpenMP build's setting is per
    thread, and other BLAS have no such gate: threadpoolctl sets those.
    """
    info = lib.info()
    if info.get("internal_api") == "openblas" and info.get("threading_layer") != "openmp":
        get = _openblas_function(info["filepath"], "openblas_get_num_threads")
        set_ = _openblas_function(info["filepath"], "openblas_set_num_threads")
        if get is not None and set_ is not None:
            return get, set_
    return lib.get_num_threads, lib.set_num_threads


class BlasThreads:
    """Holds SciPy's BLAS at one thread while fastlinear's threads call it.

    Calls running at once, from any Python threads, share the setting: the
    first to enter saves the library's thread count, the last to leave puts
    it back.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._libs = None
        self._controls = ()
        self._active = 0
        self._saved = ()

    def libraries(self):
        """threadpoolctl controllers of the BLAS that scipy.linalg.cython_blas uses."""
        if self._libs is None:
            import scipy
            import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
            from threadpoolctl import ThreadpoolController

            blas = ThreadpoolController().select(user_api="blas").lib_controllers
            scipy_dir = os.path.realpath(os.path.dirname(scipy.__file__))
            # A SciPy wheel bundles its BLAS in scipy/ or scipy.libs/; an
            # unbundled SciPy links a system BLAS we cannot tell apart, so
            # every BLAS is held then.
            own = [lib for lib in blas
                   if os.path.realpath(lib.filepath).startswith((scipy_dir + os.sep,
                                                                 scipy_dir + ".libs" + os.sep))]
            libs = own or blas
            _use_small_kernels(bool(libs) and all(map(_has_small_kernels, libs)))
            self._controls = tuple(map(_thread_controls, libs))
            self._libs = libs
        return self._libs

    def enter(self):
        with self._lock:
            if not self._active:
                self.libraries()
                self._saved = tuple(get() for get, _ in self._controls)
                try:
                    for (_, set_), saved in zip(self._controls, self._saved):
                        if saved != 1:
                            set_(1)
                except BaseException:
                    self._restore()
                    raise
            self._active += 1

    def _restore(self):
        for (_, set_), saved in zip(self._controls, self._saved):
            if saved != 1:
                set_(saved)

    def after_fork(self):
        """In a forked child: a fresh lock, and BLAS back as it was if a call was inside."""
        self._lock = threading.Lock()
        if self._active:
            self._active = 1
            self.exit()

    def exit(self):
        with self._lock:
            self._active -= 1
            if not self._active:
                self._restore()


blas_threads = BlasThreads()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
