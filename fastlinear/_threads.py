"""Thread counts: the process default for fastlinear, and BLAS's own pool.

fastlinear never changes the process's OpenMP settings: its parallel loops
run on threads of its own (see _pool.h).  It does have to steer BLAS: its
threads each call BLAS, which must then run on one thread, or 2 threads each
start 2 more and wait on one another.  The change is made only while such calls run and
the previous value is put back when the last of them ends, so
``threadpoolctl.threadpool_info()`` reads the same before and after a call.
"""
import ctypes
import itertools
import os
import threading

from ._warn import warn

_default = None
# More threads than this is a mistake, not a machine.
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
    return n


def _version(text):
    """(major, minor) of a version string."""
    return tuple(int("".join(c for c in part if c.isdigit()) or 0)
                 for part in (text.split(".") + ["0"])[:2])


def _openblas_functions(path):
    """OpenBLAS's own get and set of its thread count, or None if they cannot be had.

    The library is the one already loaded from ``path``, never a second copy
    (RTLD_NOLOAD where the platform has it), and both symbols take the
    affixes found for the getter (SciPy's wheels prefix ``scipy_``, 64-bit
    integer builds add a suffix; the count is a C int in all of them).
    threadpoolctl finds these affixes too, but only from version 3.5 and in
    private attributes (``_symbol_prefix``, ``_get_symbol``), so they are looked for here.
    """
    try:
        lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", ctypes.DEFAULT_MODE))
    except (OSError, TypeError):
        return None
    for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
        get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
        if get is None:
            continue
        set_ = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
        if set_ is None:
            return None
        get.argtypes, get.restype = [], ctypes.c_int
        set_.argtypes, set_.restype = [ctypes.c_int], None
        return get, set_
    return None


def _thread_controls(lib):
    """(get, set, per_thread) of a BLAS's thread count; per_thread: the setting
    belongs to the calling thread rather than to the process.

    threadpoolctl lets one Python thread at a time (the first to set it)
    resize OpenBLAS's process-wide pthreads pool and silently ignores the
    others.  fastlinear is called from any thread (dask's threaded scheduler,
    a server's workers) and orders its changes under its own lock, so it calls
    OpenBLAS's own functions.  threadpoolctl 3.8 sets MKL and OpenMP-threaded
    BLAS for the calling thread only; earlier versions, and other BLAS, for
    the process.
    """
    import threadpoolctl

    info = lib.info()
    api, layer = info.get("internal_api"), info.get("threading_layer")
    if api == "openblas" and layer != "openmp":
        functions = _openblas_functions(info.get("filepath"))
        if functions is not None:
            return functions + (False,)
        warn(f"fastlinear: cannot find OpenBLAS's thread-count functions in "
             f"{info.get('filepath')}; calls from Python threads that threadpoolctl "
             "does not let set it run with BLAS's own threads")
    per_thread = (_version(threadpoolctl.__version__) >= (3, 8)
                  and (api == "mkl" or layer == "openmp"))
    return lib.get_num_threads, lib.set_num_threads, per_thread


def _hold(controls):
    """Set each BLAS of ``controls`` to one thread; returns their previous counts."""
    saved = []
    try:
        for get, set_, _ in controls:
            saved.append(get())
            if saved[-1] != 1:
                set_(1)
    except BaseException:
        _release(controls, saved)
        raise
    return tuple(saved)


def _release(controls, saved):
    for (_, set_, _), count in zip(controls, saved):
        if count != 1:
            set_(count)


class BlasThreads:
    """Holds SciPy's BLAS at one thread while fastlinear's threads call it.

    A process-wide setting is shared by the calls running at once, from any
    Python threads: the first to enter saves the library's thread count, the
    last to leave puts it back.  A per-thread setting is saved and put back
    by each Python thread for itself.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._libs = None
        self._shared = self._per_thread = ()
        self._active = 0
        self._saved = ()
        self._local = threading.local()

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
            controls = [_thread_controls(lib) for lib in libs]
            self._shared = tuple(c for c in controls if not c[2])
            self._per_thread = tuple(c for c in controls if c[2])
            self._libs = libs
        return self._libs

    def enter(self):
        self.libraries()
        with self._lock:
            if not self._active:
                self._saved = _hold(self._shared)
            self._active += 1
        if not self._per_thread:  # SciPy's wheels: no per-thread bookkeeping on each call
            return
        local = self._local
        try:
            depth = getattr(local, "depth", 0)
            if not depth:
                local.saved = _hold(self._per_thread)
            local.depth = depth + 1
        except BaseException:
            self._leave_shared()
            raise

    def exit(self):
        if self._per_thread:
            local = self._local
            local.depth -= 1
            if not local.depth:
                _release(self._per_thread, local.saved)
        self._leave_shared()

    def _leave_shared(self):
        with self._lock:
            self._active -= 1
            if not self._active:
                _release(self._shared, self._saved)

    def after_fork(self):
        """In a forked child: a fresh lock, and BLAS back as it was if a call was inside.

        Only the forking thread lives on, and it was not inside a call; the
        calls of other threads end in the parent only.
        """
        self._lock = threading.Lock()
        if self._active:
            self._active = 1
            self._leave_shared()


blas_threads = BlasThreads()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=blas_threads.after_fork)
