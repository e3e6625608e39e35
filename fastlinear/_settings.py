"""The process's settings: which BLAS computes fastlinear's products, how calls
are planned, and how many threads a call uses.

Each takes effect for calls that start afterwards.  The thread count lives in
_threads, which the checks of every call read.
"""
from ._backends import backends
from ._plans import planner
from ._threads import get_num_threads, set_num_threads

__all__ = ["get_num_threads", "set_blas", "set_num_threads", "set_planning"]


def set_blas(blas="auto"):
    """Choose the BLAS that computes fastlinear's products in this process.

    Parameters
    ----------
    blas : {"auto", "scipy", "mkl", "openblas"}
        ``auto``: the planner measures every backend installed (SciPy's, MKL
        with the ``mkl`` extra, OpenBLAS with the ``openblas`` extra) and
        keeps the fastest per problem.  Any other: that one only
        (an optional one falls back to SciPy's, with a warning, where it is
        not installed or cannot load).  Plans are chosen again afterwards.
        Also ``FASTLINEAR_BLAS``.
    """
    backends.configure(blas)
    planner.forget()


def set_planning(mode="measure", plan_file=None):
    """Choose how calls are planned in this process.

    Parameters
    ----------
    mode : {"measure", "file", "off"}
        ``measure``: plans from the plan file, and a new problem is
        timed on its first call (a few tens of milliseconds) and its plan
        added to the file.  ``file``: plans from the file, built-in plans for
        the rest; nothing is measured or written.  ``off``: built-in plans
        only; no file is read.
    plan_file : str or path, optional
        The plan file; by default one per CPU, BLAS and fastlinear version in
        the user's cache directory.
    """
    planner.configure(mode, plan_file)
