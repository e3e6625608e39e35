"""Warnings that point at the user's line, once per cause per process."""
import os
import sys
import threading
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_given: set = set()
_lock = threading.Lock()


def _user_stacklevel():
    """The stacklevel, for a warnings.warn called from warn(), of the first
    frame outside fastlinear; import machinery frames are skipped by
    warnings.warn itself, so they are not counted."""
    frame, level = sys._getframe(2), 2  # warn()'s caller
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib") or "importlib" + os.sep + "_bootstrap" in name:
            frame = frame.f_back
            continue
        if not name.startswith(_PACKAGE):
            break
        frame, level = frame.f_back, level + 1
    return level


def warn(message, cause=None):
    """A RuntimeWarning at the user's call; with ``cause``, only the first of that cause."""
    if cause is not None:
        with _lock:
            if cause in _given:
                return
            _given.add(cause)
    warnings.warn(message, RuntimeWarning, stacklevel=_user_stacklevel())
