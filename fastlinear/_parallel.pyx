# cython: language_level=3
cimport fastlinear._parallel as par


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(par.FL_HAVE_OPENMP)


# The path codes the kernels take, for the Python layer that chooses them.
PATHS = {"serial": par.SERIAL, "blocked": par.BLOCKED, "tiled": par.TILED}
