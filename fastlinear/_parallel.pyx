# cython: language_level=3
cimport fastlinear._parallel as par


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(par.FL_HAVE_OPENMP)
