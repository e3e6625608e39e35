"""show_config: what this build of fastlinear runs with."""
import platform
import sys

import numpy as np
import scipy

from ._backends import backends
from ._parallel import threads_kind
from ._problem import builtin_small_kernels, small_kernels
from ._threads import blas_threads, get_num_threads
from ._version import __version__


def config():
    """The facts show_config prints, as a dict."""
    from ._plans import planner
    libs = blas_threads.libraries()
    return {
        "fastlinear": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "threads": threads_kind(),  # what runs the parallel loops
        "num_threads": get_num_threads(),
        # Where plans come from: two machines with the same BLAS give the same
        # bits only where their plans agree too.
        "plans": planner.summary(),
        # Whether SciPy's OpenBLAS has small-matrix kernels, and whether the
        # built-in plans cut products for them on this CPU.
        "blas_small_kernels": small_kernels(),
        "builtin_small_kernels": builtin_small_kernels(),
        # The backends plans may choose among (see set_blas), and those that cannot be used.
        "blas_choice": backends.choice,
        "blas_backends": backends.found(),
        "blas_missing": dict(backends.missing),
        "blas": [{"internal_api": lib.internal_api, "version": lib.version,
                  "threading_layer": getattr(lib, "threading_layer", None),
                  "architecture": getattr(lib, "architecture", None),
                  "num_threads": lib.get_num_threads(), "filepath": lib.filepath}
                 for lib in libs],
    }


def show_config(file=None):
    """Print fastlinear's version, its threads, where plans come from and the BLAS in use."""
    info = config()
    lines = [f"{k:12s} {v}" for k, v in info.items() if k != "blas"]
    for lib in info["blas"]:
        lines.append("blas         " + ", ".join(f"{k}={v}" for k, v in lib.items()))
    print("\n".join(lines), file=file or sys.stdout)
