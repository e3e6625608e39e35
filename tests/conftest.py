"""Shared helpers.  The tests import the installed fastlinear, not the source tree."""
import os
import shutil
import sys
import tempfile

_repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `python -m pytest` puts the working directory first on sys.path, where the
# uncompiled source package would shadow the installed one.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _repo]
sys.path.insert(0, os.path.join(_repo, "tests"))  # for _helpers

# The suite runs the built-in plans, so that a test meant for one path takes it on any
# machine; tests of the planner turn measuring on, into a file of the suite's own,
# never the user's cache (subprocesses inherit both settings).
_plans_dir = tempfile.mkdtemp(prefix="fastlinear-test-plans-")
os.environ["FASTLINEAR_PLAN_FILE"] = os.path.join(_plans_dir, "plans.json")
os.environ["FASTLINEAR_PLANS"] = "off"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastlinear  # noqa: E402

def pytest_report_header(config):
    info = fastlinear._config.config()
    return [f"fastlinear {info['fastlinear']} from {os.path.dirname(fastlinear.__file__)}",
            f"threads={info['threads']} num_threads={info['num_threads']} plans={info['plans']} "
            f"blas={[(b['internal_api'], b['version']) for b in info['blas']]}",
            f"backends={list(info['blas_backends'])} missing={info['blas_missing']}"]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_plans_dir, ignore_errors=True)
