"""Optional BLAS backends: a ?gemm faster than SciPy's, where one is installed.

SciPy's BLAS is always there and is the default.  With the ``mkl`` extra
(``pip install "fastlinear[mkl]"``), Intel's ``libmkl_rt`` is loaded as well,
privately (``RTLD_LOCAL``), with its sequential threading layer, so that each
of fastlinear's tasks stays one single-threaded BLAS call (results stay
identical for every ``num_threads``) and no Intel OpenMP runtime is loaded
beside the process's own.  Its conditional numerical reproducibility mode is
set too, so that its results do not depend on how arrays are aligned.  The
planner then measures each backend among its candidate plans and keeps the
fastest for each class of problem.

``FASTLINEAR_BLAS`` (or :func:`set_blas`) chooses: ``auto`` (the default:
measured), ``scipy`` or ``mkl``.
"""
import ctypes
import os
import sys
import threading
import warnings

from . import _blas

CHOICES = ("auto", "scipy", "mkl")
SLOTS = {"scipy": 0, "mkl": 1}  # where _blas keeps each backend's functions
NAMES = {slot: name for name, slot in SLOTS.items()}
# MKL's constants (mkl_service.h, mkl_cblas.h).
MKL_THREADING_SEQUENTIAL = 1
MKL_INTERFACE_LP64 = 0
MKL_CBWR_AUTO_STRICT = 2 | 0x10000


def env_choice(name, choices):
    """The value of environment variable ``name``, one of ``choices`` (the first,
    the default, with a warning, if it is something else)."""
    value = os.environ.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        warnings.warn(f"fastlinear: {name}={value!r} is not one of {choices}; using "
                      f"{choices[0]!r}", RuntimeWarning, stacklevel=3)
        value = choices[0]
    return value


def _mkl_library():
    """The path of the installed ``mkl`` distribution's libmkl_rt, or None."""
    try:
        from importlib import metadata
        files = metadata.files("mkl") or []
    except Exception:  # not installed, or metadata without a file list
        return None
    names = sorted(os.path.realpath(f.locate()) for f in files
                   if os.path.basename(str(f)).startswith(("libmkl_rt.", "mkl_rt.")))
    return names[0] if names else None


def _loaded_elsewhere(name):
    """Whether a library of this name is mapped into the process already."""
    if sys.platform == "win32":
        return bool(ctypes.windll.kernel32.GetModuleHandleW(name))
    try:
        with open("/proc/self/maps") as f:
            return any(name in line for line in f)
    except OSError:
        return False


def load_mkl(path):
    """(addresses of dgemm_ and sgemm_, a description) of the libmkl_rt at
    ``path``, loaded as the module's docstring says; raises OSError saying why
    it cannot be used."""
    if _loaded_elsewhere("mkl_rt.2.dll" if sys.platform == "win32" else "libmkl_rt"):
        # Its threading layer is then another library's setting to keep.
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
    return dgemm, sgemm, f"{text.value.decode(errors='replace').strip()} ({path})"


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
                if self.choice != "scipy":
                    self._find_mkl()
            return dict(self._found)

    def _find_mkl(self):
        path = _mkl_library()
        if path is None:
            self.missing["mkl"] = "the mkl package is not installed"
            if self.choice == "mkl":
                warnings.warn("fastlinear: MKL was chosen but the mkl package is not "
                              "installed; SciPy's BLAS computes every product", RuntimeWarning,
                              stacklevel=5)
            return
        try:
            dgemm, sgemm, about = load_mkl(path)
        except OSError as e:
            self.missing["mkl"] = f"{path} cannot be used: {e}"
            warnings.warn(f"fastlinear: not using MKL: {self.missing['mkl']}; SciPy's BLAS "
                          "computes every product", RuntimeWarning, stacklevel=5)
            return
        _blas.set_backend(SLOTS["mkl"], dgemm, sgemm)
        self._found["mkl"] = about

    def usable(self):
        """Slots the planner may choose among: the chosen backend, or every one found."""
        found = self.found()
        if self.choice in found:  # "scipy", or "mkl" where it loaded
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
            if choice != "scipy" and self._found is not None and "mkl" not in self._found:
                self._found = None  # look again: loading was skipped or failed
                self.missing = {}


backends = Backends()


def set_blas(blas="auto"):
    """Choose the BLAS that computes fastlinear's products in this process.

    Parameters
    ----------
    blas : {"auto", "scipy", "mkl"}
        ``auto``: the planner measures every backend installed (SciPy's, and
        MKL with the ``mkl`` extra) and keeps the fastest per class of
        problem.  ``scipy`` or ``mkl``: that one only (MKL falls back to
        SciPy's, with a warning, where it is not installed or cannot load).
        Plans are chosen again afterwards.  Also ``FASTLINEAR_BLAS``.
    """
    from ._plans import planner
    backends.configure(blas)
    planner.forget()
