"""Shared helpers.  The tests import the installed fastlinear, not the source tree."""
import os
import sys

_repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `python -m pytest` puts the working directory first on sys.path, where the
# uncompiled source package would shadow the installed one.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _repo]
sys.path.insert(0, os.path.join(_repo, "tests"))  # for _helpers

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastlinear  # noqa: E402

def pytest_report_header(config):
    info = fastlinear._config.config()
    return [f"fastlinear {info['fastlinear']} from {os.path.dirname(fastlinear.__file__)}",
            f"openmp={info['openmp']} num_threads={info['num_threads']} tiling={info['tiling']} "
            f"blas={[(b['internal_api'], b['version']) for b in info['blas']]}"]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
