"""The plan file: what is read, warned about and never touched."""
import json
import os
import warnings

import numpy as np
import pytest
from _helpers import make, planner_problem

import fastlinear
from fastlinear import _planfile, _plans

KEY = "f:float64:7:784:256"
ENTRY = {"path": "serial", "small_kernels": False, "tasks": 2, "blas": "scipy"}


@pytest.fixture
def restore_planning():
    yield
    fastlinear.set_planning(os.environ["FASTLINEAR_PLANS"], os.environ["FASTLINEAR_PLAN_FILE"])


def _sections(*sections):
    return {"format": _planfile.FORMAT,
            "sections": [{"identity": identity, "plans": plans} for identity, plans in sections]}


def _runtime_warnings(fn):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        result = fn()
    return result, [str(w.message) for w in got if issubclass(w.category, RuntimeWarning)]


def test_no_identity_warning_when_this_identity_has_a_section(tmp_path, restore_planning):
    """Other machines' sections beside this one's are the normal shared file: no warning."""
    path = tmp_path / "plans.json"
    other = dict(_plans.identity(), cpu="another CPU")
    path.write_text(json.dumps(_sections((other, {KEY: dict(ENTRY, tasks=4)}),
                                         (_plans.identity(), {KEY: ENTRY}))))
    fastlinear.set_planning("file", path)
    plan, got = _runtime_warnings(lambda: _plans.planner.choose(planner_problem("f", 64, 784, 256, dtype="float64")))
    assert got == []
    assert _plans.plan_to_json(plan) == ENTRY


@pytest.mark.parametrize("tasks, valid", [(1, True), (1024, True), (2048, True),
                                          (_planfile.MAX_TASKS, True),
                                          (_planfile.MAX_TASKS + 1, False), (0, False)])
def test_task_counts_a_plan_may_hold_are_plans(tmp_path, restore_planning, tasks, valid):
    """A machine with 1025 to 2048 CPUs writes plans of 2048 tasks (machine_tasks): they are
    read, up to the bound make_plan accepts."""
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(_sections((_plans.identity(), {KEY: dict(ENTRY, tasks=tasks)}))))
    fastlinear.set_planning("file", path)
    plan, got = _runtime_warnings(lambda: _plans.planner.choose(planner_problem("f", 64, 784, 256, dtype="float64")))
    if valid:
        assert got == [] and _plans.plan_to_json(plan) == dict(ENTRY, tasks=tasks)
    else:
        assert len(got) == 1 and "corrupt" in got[0]
        assert plan == planner_problem("f", 64, 784, 256).builtin_plan()


def test_each_file_that_is_not_a_plan_file_gets_its_own_warning(tmp_path, restore_planning, rng):
    """Once per cause means once per file: a second pinned file with the same
    problem is named in a warning of its own."""
    x, W = make(rng, (64, 784), np.float64), make(rng, (784, 256), np.float64)
    for name in ("first.json", "second.json"):
        path = tmp_path / name
        path.write_bytes(b"\x00 not json")
        fastlinear.set_planning("measure", path)
        _, got = _runtime_warnings(lambda: (fastlinear.linear_forward(x, W),
                                            fastlinear.linear_forward(x, W)))
        assert len(got) == 1 and str(path) in got[0], got
        assert path.read_bytes() == b"\x00 not json"


@pytest.mark.skipif(not (hasattr(os, "symlink") and hasattr(os, "geteuid")), reason="POSIX links")
def test_a_cache_file_linked_to_a_users_file_is_left_alone(tmp_path, monkeypatch, rng,
                                                          restore_planning):
    """fastlinear replaces its own corrupt cache file, but never a file a link
    there points at: the user's bytes stay as they are, and the link stays."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fastlinear.set_planning("measure", None)
    path = _plans.planner.path()
    assert path.startswith(str(tmp_path))
    os.makedirs(os.path.dirname(path), mode=0o700)
    mine = tmp_path / "notes.txt"
    mine.write_bytes(b"my own notes, not JSON\n")
    os.chmod(mine, 0o600)
    os.symlink(mine, path)
    x, W = make(rng, (64, 784), np.float64), make(rng, (784, 256), np.float64)
    y, got = _runtime_warnings(lambda: fastlinear.linear_forward(x, W))
    np.testing.assert_allclose(y, x @ W, rtol=1e-10, atol=1e-10)
    assert mine.read_bytes() == b"my own notes, not JSON\n"
    assert os.path.islink(path) and os.path.realpath(path) == os.path.realpath(mine)
    assert len(got) == 1 and path in got[0]
    assert _plans.planner.summary()["measured_here"] == 1
