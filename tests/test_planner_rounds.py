"""The planner: which candidates reach the final rounds, how long it screens,
and which plans of the file it keeps and takes."""
import json
import os

import numpy as np
import pytest
from _helpers import make, planner_problem

import fastlinear
from fastlinear import _plans
from fastlinear._parallel import PATHS, make_plan


@pytest.fixture
def plan_file(tmp_path, monkeypatch):
    """A planner measuring into a fresh file, without the settling pause; the suite's settings afterwards."""
    monkeypatch.setattr(_plans, "SETTLE", 0)
    path = tmp_path / "plans.json"
    fastlinear.set_planning("measure", path)
    yield path
    fastlinear.set_planning(os.environ["FASTLINEAR_PLANS"], os.environ["FASTLINEAR_PLAN_FILE"])


def _own_section(path):
    data = json.loads(path.read_text())
    (section,) = [s for s in data["sections"] if s["identity"] == _plans.identity()]
    return section["plans"]


# Four distinct plans: the built-in one first.
PLANS = [make_plan(PATHS["tiled"], False, 2), make_plan(PATHS["serial"], False, 2),
         make_plan(PATHS["blocked"], False, 2), make_plan(PATHS["tiled"], True, 2)]


def test_candidates_are_screened_on_their_fastest_round(monkeypatch):
    """A round is only ever slowed by other work: a candidate fast in one round
    and slowed in the others is a finalist, and wins when the final rounds show it."""
    default, noisy, steady, slower = PLANS
    screened = {default: [1.0] * 5, noisy: [0.5, 3.0, 3.0, 3.0, 3.0], steady: [0.9] * 5,
                slower: [0.95] * 5}
    monkeypatch.setattr(_plans, "timings",
                        lambda *args: (None, dict.fromkeys(PLANS, 1), screened))
    final = {default: 1.0, noisy: 0.6, steady: 0.9, slower: 0.95}
    timed = []

    def rounds(call, chosen, n, repeats=None):
        timed.append(list(chosen))
        return {p: [final[p]] * n for p in chosen}

    monkeypatch.setattr(_plans, "_timed_rounds", rounds)
    best, margin = _plans.measure(planner_problem("b11", 64, 784, 256, dtype="float64"), PLANS)
    assert timed == [[default, noisy, steady]]
    assert best == noisy and margin == pytest.approx(0.9 / 0.6)


@pytest.mark.parametrize("budget, call_seconds, most", [
    (_plans.BUDGET, 1e-7, 25),          # quick calls: at most 25 rounds
    (10 * _plans.BUDGET, 1e-7, 250),    # tune's budget: ten times as many
    (_plans.BUDGET, 1.0, 3),            # slow calls: the 3 rounds at least
])
def test_screening_rounds(monkeypatch, budget, call_seconds, most):
    """Screening lasts about ``budget``: at least 3 rounds, at most 25 per BUDGET."""
    monkeypatch.setattr(_plans, "SETTLE", 0)
    monkeypatch.setattr(_plans, "_placed_calls", lambda problem: [None])
    monkeypatch.setattr(_plans, "_repeats",
                        lambda call, chosen: (dict.fromkeys(chosen, 1), call_seconds * len(chosen)))
    monkeypatch.setattr(_plans, "_timed_rounds",
                        lambda call, chosen, n, repeats=None: {p: [call_seconds] * n for p in chosen})
    _, _, screened = _plans.timings(planner_problem("b11", 64, 784, 256, dtype="float64"), PLANS, budget)
    for plan in PLANS:
        assert 3 <= len(screened[plan]) <= most


def test_tune_again_with_the_same_budget_measures_nothing(plan_file):
    """A class measured for ``budget`` is known for that budget: tune() again keeps its plans."""
    first = fastlinear.tune([(64, 784, 256)], dtypes=["float64"], budget=0.005)
    measured = _plans.planner.summary()["measured_here"]
    assert measured == 3
    content = plan_file.read_bytes()
    assert fastlinear.tune([(64, 784, 256)], dtypes=["float64"], budget=0.005) == first
    assert _plans.planner.summary()["measured_here"] == measured
    assert plan_file.read_bytes() == content


def test_tune_plans_the_first_layer(plan_file, rng):
    """tune() plans the forward, the backward and the backward without dx (a
    first layer): training then measures nothing."""
    chosen = fastlinear.tune([(64, 784, 256)], dtypes=["float64"], budget=0.005)
    assert {key.split(":")[0] for key in chosen} == {"f", "b11", "b01"}
    measured = _plans.planner.summary()["measured_here"]
    x, W, dy = (make(rng, s, np.float64) for s in ((64, 784), (784, 256), (64, 256)))
    y = fastlinear.linear_forward(x, W)
    dx, dW, db = fastlinear.linear_backward(x, W, dy)
    none, dW1, db1 = fastlinear.linear_backward(x, W, dy, need_dx=False)
    assert none is None
    np.testing.assert_allclose(dW1, x.T @ dy, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(y, x @ W, rtol=1e-10, atol=1e-9)
    assert _plans.planner.summary()["measured_here"] == measured


def test_plans_another_process_wrote_are_kept(plan_file, rng):
    """Plans written to the file after this process read it (by a process
    planning beside it) survive this process's next write, and are used."""
    x, W = make(rng, (64, 784), np.float64), make(rng, (784, 256), np.float64)
    fastlinear.linear_forward(x, W)  # measured, the file written
    theirs = {"path": "serial", "small_kernels": False, "tasks": 2, "blas": "scipy"}
    data = json.loads(plan_file.read_text())
    (section,) = data["sections"]
    section["plans"]["f:float64:12:33:7"] = theirs
    plan_file.write_text(json.dumps(data))
    fastlinear.linear_forward(make(rng, (32, 64), np.float64), make(rng, (64, 128), np.float64))
    assert _plans.planner.summary()["measured_here"] == 2
    plans = _own_section(plan_file)
    assert plans["f:float64:12:33:7"] == theirs and "f:float64:6:64:128" in plans
    assert _plans.plan_to_json(_plans.planner.choose(planner_problem("f", 2049, 33, 7, dtype="float64"))) == theirs


def test_a_longer_measurement_in_the_file_is_taken(plan_file, rng):
    """Where another process measured a class for longer since this one read the
    file, asking for that budget takes its plan instead of measuring again."""
    x, W = make(rng, (64, 784), np.float64), make(rng, (784, 256), np.float64)
    fastlinear.linear_forward(x, W)  # measured for BUDGET
    assert _plans.planner.summary()["measured_here"] == 1
    theirs = {"path": "serial", "small_kernels": False, "tasks": 2, "blas": "scipy",
              "margin": 1.25, "budget": 0.5}
    data = json.loads(plan_file.read_text())
    data["sections"][0]["plans"]["f:float64:7:784:256"] = theirs
    plan_file.write_text(json.dumps(data))
    plan = _plans.planner.choose(planner_problem("f", 64, 784, 256, dtype="float64"), budget=0.5)
    assert _plans.plan_to_json(plan, 1.25, 0.5) == theirs
    assert _plans.planner.summary()["measured_here"] == 1
    assert _own_section(plan_file)["f:float64:7:784:256"] == theirs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_placements_up_to_their_byte_limit(monkeypatch, dtype):
    """Candidates are timed on PLACEMENTS allocations of their own while these take at
    most PLACEMENT_BYTES together, on one past it: checked at the limit on both sides."""
    monkeypatch.setattr(_plans, "_timed_call", lambda problem: object())
    N, M_in, M_out = 64, 784, 256
    one = 2 * (N * M_in + M_in * M_out + N * M_out) * np.dtype(dtype).itemsize
    problem = planner_problem("b11", N, M_in, M_out, dtype=dtype)
    for limit, placements in ((_plans.PLACEMENTS * one, _plans.PLACEMENTS),
                              (_plans.PLACEMENTS * one - 1, 1)):
        monkeypatch.setattr(_plans, "PLACEMENT_BYTES", limit)
        calls = _plans._placed_calls(problem)
        assert len(calls) == placements and len({id(call) for call in calls}) == placements


def test_rounds_take_the_placements_in_turn():
    """Round r runs every plan on placement r mod the placements, so each paired round
    compares the plans on the same arrays."""
    ran = []
    calls = [lambda plan, threads, i=i: ran.append((i, plan)) for i in range(3)]
    times = _plans._timed_rounds(calls, PLANS, 7)
    assert all(len(times[plan]) == 7 for plan in PLANS)
    per_round = [ran[r * len(PLANS):(r + 1) * len(PLANS)] for r in range(7)]
    for r, round_ in enumerate(per_round):
        assert {i for i, _ in round_} == {r % 3} and sorted(p for _, p in round_) == sorted(PLANS)


def test_placements_hold_arrays_of_their_own():
    """Each placement's call writes arrays of its own: timing one never touches another's."""
    problem = planner_problem("f", 16, 8, 4, dtype="float64")
    calls = _plans._placed_calls(problem)
    assert len(calls) == _plans.PLACEMENTS
    outputs = [call.__closure__ for call in calls]
    arrays = [[c.cell_contents for c in cells if isinstance(c.cell_contents, np.ndarray)]
              for cells in outputs]
    assert all(arrays)
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert not any(np.shares_memory(a, b) for a in arrays[i] for b in arrays[j])


def test_every_placement_is_warmed_before_the_timed_rounds(monkeypatch):
    """Each placement runs every plan once, untimed, before any timed round: the first
    touch of a placement's pages never lands in a timed sample."""
    monkeypatch.setattr(_plans, "SETTLE", 0)
    ran = []
    calls = [lambda plan, threads, i=i: ran.append((i, plan)) for i in range(3)]
    monkeypatch.setattr(_plans, "_placed_calls", lambda problem: calls)
    monkeypatch.setattr(_plans, "_repeats", lambda call, chosen: (dict.fromkeys(chosen, 1), 1e-3))
    _plans.timings(planner_problem("b11", 64, 784, 256, dtype="float64"), PLANS, _plans.BUDGET)
    warm = ran[:len(calls) * len(PLANS)]
    assert sorted(warm) == sorted((i, plan) for i in range(len(calls)) for plan in PLANS)
