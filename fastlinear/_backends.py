"""Optional BLAS backends: a ?gemm faster than SciPy's, where one is installed.

SciPy's BLAS is always there and is the default.  Each extra adds one, loaded
privately (``RTLD_LOCAL``) and single-threaded, so that each of fastlinear's
tasks stays one single-threaded BLAS call (results stay identical for every
``num_threads``):

* ``mkl`` (``pip install "fastlinear[mkl]"``): Intel's ``libmkl_rt`` with its
  sequential threading layer, so that no Intel OpenMP runtime is loaded beside
  the process's own, and its conditional numerical reproducibility mode, so
  that its results do not depend on how arrays are aligned;
* ``openblas`` (``pip install "fastlinear[openblas]"``): the ``scipy-openblas32``
  wheel's OpenBLAS, often newer than the one SciPy bundles, held at one thread.

A library another part of the process has loaded already is left alone: its
settings are that part's.  The planner then measures each backend among its
candidate plans and keeps the fastest for each problem.

``FASTLINEAR_BLAS`` (or :func:`set_blas`) chooses: ``auto`` (the default:
measured), ``scipy``, ``mkl`` or ``openblas``.
"""
import ctypes
import os
import sys
import threading
from typing import Callable, NamedTuple, Optional

from . import _blas
from ._warn import warn

# MKL's constants (mkl_service.h, mkl_cblas.h).
MKL_THREADING_SEQUENTIAL = 1
MKL_INTERFACE_LP64 = 0
MKL_CBWR_AUTO_STRICT = 2 | 0x10000


def env_choice(name, choices):
    """The value of environment variable ``name``, one of ``choices`` (the first,
    the default, with a warning, if it is something else)."""
    value = os.environ.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        warn(f"fastlinear: {name}={value!r} is not one of {choices}; using {choices[0]!r}",
             cause=("environment", name))
        value = choices[0]
    return value


def _library(name):
    """The path of the library of optional backend ``name``, or None if its
    distribution is not installed (found from its file list: importing a
    package could load its library with other settings)."""
    backend = BACKENDS[name]
    try:
        from importlib import metadata
        files = metadata.files(backend.distribution) or []
    except Exception:  # not installed, or metadata without a file list
        return None
    names = sorted(os.path.realpath(f.locate()) for f in files
                   if os.path.basename(str(f)).startswith(backend.filename_prefixes))
    return names[0] if names else None


def _is_loaded(path):
    """Whether the library file at ``path`` is loaded already, under any name
    (``RTLD_NOLOAD`` opens only a library loaded already; on Windows, its module name).

    threadpoolctl, which finds MKL, lists scipy-openblas libraries only from
    version 3.5 (fastlinear supports 3.1), so the loader is asked directly.
    """
    if sys.platform == "win32":
        return bool(ctypes.windll.kernel32.GetModuleHandleW(os.path.basename(path)))
    try:
        ctypes.CDLL(os.path.realpath(path), mode=os.RTLD_NOLOAD)
    except OSError:
        return False
    return True


def load_mkl(path):
    """(addresses of dgemm_ and sgemm_, a description) of the libmkl_rt at
    ``path``, loaded as the module's docstring says; raises OSError saying why
    it cannot be used."""
    from threadpoolctl import ThreadpoolController

    if ThreadpoolController().select(internal_api="mkl"):
        # Any MKL's threading layer is the process's: another library's setting to keep.
        raise OSError("libmkl_rt is loaded by another library of this process")
    lib = ctypes.CDLL(path)  # OSError if it is not a loadable library
    try:
        for fn in ("MKL_Set_Threading_Layer", "MKL_Set_Interface_Layer", "MKL_CBWR_Set"):
            getattr(lib, fn).argtypes = [ctypes.c_int]
        if lib.MKL_Set_Threading_Layer(MKL_THREADING_SEQUENTIAL) != MKL_THREADING_SEQUENTIAL:
            raise OSError("its sequential threading layer cannot be chosen")
        if lib.MKL_Set_Interface_Layer(MKL_INTERFACE_LP64) != MKL_INTERFACE_LP64:
            raise OSError("its 32-bit integer interface cannot be chosen")
        if lib.MKL_CBWR_Set(MKL_CBWR_AUTO_STRICT) != 0:
            raise OSError("its reproducibility mode cannot be set")
        text = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(text, len(text))
        dgemm = ctypes.cast(lib.dgemm_, ctypes.c_void_p).value
        sgemm = ctypes.cast(lib.sgemm_, ctypes.c_void_p).value
    except AttributeError as e:
        raise OSError(f"it lacks {e}") from None
    _check_gemm(lib.dgemm_, ctypes.c_double)
    _check_gemm(lib.sgemm_, ctypes.c_float)
    _keep.append(lib)  # never unloaded: _blas holds its functions
    return dgemm, sgemm, 0, 0, f"{text.value.decode(errors='replace').strip()} ({path})"


def load_openblas(path):
    """(addresses of dgemm, sgemm and the thread count's get and set, a
    description) of the scipy-openblas32 library at ``path``, loaded as the
    module's docstring says; raises OSError saying why it cannot be used."""
    if _is_loaded(path):  # its thread count is then another library's setting to keep
        raise OSError("it is loaded by another library of this process")
    lib = ctypes.CDLL(path)
    try:
        get, set_ = lib.scipy_openblas_get_num_threads, lib.scipy_openblas_set_num_threads
        config = lib.scipy_openblas_get_config
        dgemm, sgemm = lib.scipy_dgemm_, lib.scipy_sgemm_
    except AttributeError as e:
        raise OSError(f"it lacks {e}") from None
    get.argtypes, get.restype = [], ctypes.c_int
    set_.argtypes, set_.restype = [ctypes.c_int], None
    config.argtypes, config.restype = [], ctypes.c_char_p
    set_(1)
    if get() != 1:
        raise OSError("its thread count cannot be set to 1")
    _check_gemm(dgemm, ctypes.c_double)
    _check_gemm(sgemm, ctypes.c_float)
    _keep.append(lib)
    address = [ctypes.cast(f, ctypes.c_void_p).value for f in (dgemm, sgemm, get, set_)]
    return (*address, f"{config().decode(errors='replace').strip()} ({path})")


class Backend(NamedTuple):
    """A BLAS backend, as threadpoolctl's ``LibController`` subclasses describe a library."""
    name: str
    slot: int  # where fastlinear._blas keeps its functions
    label: str
    # Optional backends: the distribution that installs the library, the start
    # of its file name, and load(path) -> (function addresses..., description).
    distribution: Optional[str] = None
    filename_prefixes: tuple = ()
    load: Optional[Callable] = None


BACKENDS = {b.name: b for b in (
    Backend("scipy", 0, "SciPy's BLAS"),
    Backend("mkl", 1, "MKL", "mkl", ("libmkl_rt.", "mkl_rt."), load_mkl),
    Backend("openblas", 2, "OpenBLAS (scipy-openblas32)", "scipy-openblas32",
            ("libscipy_openblas.",), load_openblas),
)}
CHOICES = ("auto", *BACKENDS)
OPTIONAL = tuple(name for name, b in BACKENDS.items() if b.load)
SLOTS = {name: b.slot for name, b in BACKENDS.items()}
NAMES = {b.slot: name for name, b in BACKENDS.items()}


_keep: list = []  # the loaded libraries, never unloaded


def _check_gemm(gemm, real):
    """Raise OSError unless ``gemm`` computes a 2x3 by 3x2 product exactly."""
    A = (real * 6)(1, 2, 3, 4, 5, 6)  # column-major 2x3
    B = (real * 6)(1, 0, 2, 1, 0, 3)  # column-major 3x2
    C = (real * 4)(7, 7, 7, 7)
    two, three = ctypes.c_int(2), ctypes.c_int(3)
    no, one, zero = ctypes.c_char(b"N"), real(1), real(0)
    gemm(ctypes.byref(no), ctypes.byref(no), ctypes.byref(two), ctypes.byref(two),
         ctypes.byref(three), ctypes.byref(one), A, ctypes.byref(two), B, ctypes.byref(three),
         ctypes.byref(zero), C, ctypes.byref(two))
    if list(C) != [11, 14, 16, 20]:
        raise OSError(f"its ?gemm computed {list(C)} for [11, 14, 16, 20]")


class Backends:
    """The backends this process may use, found and loaded on first need."""

    def __init__(self):
        self._lock = threading.Lock()
        self.choice = env_choice("FASTLINEAR_BLAS", CHOICES)
        self._found = None  # name -> description, once looked for
        self.missing = {}   # name -> why it cannot be used

    def found(self):
        """{name: description} of every backend that loaded, SciPy's first."""
        with self._lock:
            if self._found is None:
                self._found = {"scipy": "scipy.linalg.cython_blas"}
                for name in self._wanted(self.choice):
                    self._find(name)
            return dict(self._found)

    @staticmethod
    def _wanted(choice):
        """The optional backends a choice looks for."""
        return [name for name in OPTIONAL if choice in ("auto", name)]

    def _find(self, name):
        backend = BACKENDS[name]
        path = _library(name)
        if path is None:
            self.missing[name] = f"the {backend.distribution} package is not installed"
            if self.choice == name:
                warn(f"fastlinear: {backend.label} was chosen but the {backend.distribution} "
                     "package is not installed; SciPy's BLAS computes every product")
            return
        try:
            *functions, about = backend.load(path)
        except OSError as e:
            self.missing[name] = f"{path} cannot be used: {e}"
            warn(f"fastlinear: not using {backend.label}: {self.missing[name]}; "
                 "SciPy's BLAS computes every product")
            return
        _blas.set_backend(backend.slot, *functions)
        self._found[name] = about

    def usable(self):
        """Slots the planner may choose among: the chosen backend, or every one found."""
        found = self.found()
        if self.choice in found:  # "scipy", or an optional backend where it loaded
            return [SLOTS[self.choice]]
        return [SLOTS[name] for name in found]

    def default(self):
        """The slot of built-in plans: SciPy's, unless another backend is chosen."""
        return self.usable()[0] if self.choice != "auto" else SLOTS["scipy"]

    def configure(self, choice):
        if choice not in CHOICES:
            raise ValueError(f"blas must be one of {CHOICES}, got {choice!r}")
        with self._lock:
            self.choice = choice
            if self._found is not None and any(name not in self._found
                                               for name in self._wanted(choice)):
                self._found = None  # look again: loading was skipped or failed
                self.missing = {}


backends = Backends()
