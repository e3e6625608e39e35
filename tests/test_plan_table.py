"""The plans of a process's calls (the table in fastlinear._api, keyed by class of
problem): calls of one M_in and M_out in two N buckets each get their own plan."""
import json
import os

import numpy as np
import pytest
from _helpers import assert_close, make, reference

import fastlinear
from fastlinear import _backends, _planfile, _plans
from fastlinear import linear_backward
from fastlinear._parallel import PATHS, make_plan
from fastlinear._problem import KINDS, Problem

M_IN, M_OUT = 33, 7
# Two N of other bit lengths (12 and 13), where row blocks sum dW over several
# chunks and tiles in one product: the two plans give other bits.
N_SMALL, N_LARGE = 2049, 5000
BLOCKED = make_plan(PATHS["blocked"], False, 2)
TILED = make_plan(PATHS["tiled"], False, 2)


def write_plan_file(path, plans):
    """A plan file fastlinear trusts, holding ``plans`` {(kind, dtype, N, M_in, M_out): plan}
    for this process's identity."""
    entries = {Problem(KINDS[kind], dtype, N, M_in, M_out).key: _plans.plan_to_json(plan)
               for (kind, dtype, N, M_in, M_out), plan in plans.items()}
    path.write_text(json.dumps({"format": _planfile.FORMAT, "sections": [
        {"identity": _plans.identity(), "plans": entries}]}))


@pytest.fixture
def plan_file(tmp_path):
    """A plan file to pin plans in; the suite's own planning settings afterwards."""
    yield tmp_path / "plans.json"
    fastlinear.set_planning(os.environ["FASTLINEAR_PLANS"], os.environ["FASTLINEAR_PLAN_FILE"])


def backward(x, W, dy, plan=None):
    """dx, dW, db by the planner's plan (None) or by ``plan``."""
    if plan is None:
        return fastlinear.linear_backward(x, W, dy)
    return linear_backward(x, W, dy, _plan=plan)


@pytest.mark.parametrize("order", ["blocked first", "tiled first"])
def test_two_N_buckets_of_one_shape_get_their_own_plans(plan_file, rng, order):
    """With a plan pinned per N bucket, each call has the bits of its own bucket's
    plan, whichever bucket is called first and after the other has been."""
    plans = {N_SMALL: BLOCKED, N_LARGE: TILED} if order == "blocked first" else \
        {N_SMALL: TILED, N_LARGE: BLOCKED}
    problems = {}
    for N in plans:
        x, W, dy = make(rng, (N, M_IN), np.float64), make(rng, (M_IN, M_OUT), np.float64), \
            make(rng, (N, M_OUT), np.float64)
        _, rdx, rdW, rdb = reference(x, W, None, dy)
        want = backward(x, W, dy, plans[N])
        for got, ref, k in zip(want, (rdx, rdW, rdb), (M_OUT, N, N)):
            assert_close(got, ref, np.float64, k)
        other = backward(x, W, dy, TILED if plans[N] == BLOCKED else BLOCKED)
        assert not np.array_equal(other.dW, want.dW), "the two plans must differ in their bits"
        problems[N] = (x, W, dy, want)
    write_plan_file(plan_file, {("b11", "float64", N, M_IN, M_OUT): plan for N, plan in plans.items()})
    fastlinear.set_planning("file", plan_file)
    for N in (N_SMALL, N_LARGE, N_SMALL, N_LARGE):
        x, W, dy, want = problems[N]
        for got, expected in zip(backward(x, W, dy), want):
            np.testing.assert_array_equal(got, expected, err_msg=f"N = {N}")
    assert _plans.planner.summary()["plans"] == 2  # both read from the file


def _problem_arrays(rng, N):
    return make(rng, (N, M_IN), np.float64), make(rng, (M_IN, M_OUT), np.float64), \
        make(rng, (N, M_OUT), np.float64)


def test_set_blas_chooses_the_plans_again(plan_file, rng):
    """After set_blas, plans are chosen again: a plan file rewritten since is read
    anew, and calls have the bits of its new plan."""
    N = N_SMALL
    x, W, dy = _problem_arrays(rng, N)
    _, rdx, rdW, rdb = reference(x, W, None, dy)
    by_plan = {plan: backward(x, W, dy, plan) for plan in (BLOCKED, TILED)}
    assert not np.array_equal(by_plan[BLOCKED].dW, by_plan[TILED].dW), \
        "the two plans must differ in their bits"
    key = ("b11", "float64", N, M_IN, M_OUT)
    write_plan_file(plan_file, {key: BLOCKED})
    fastlinear.set_planning("file", plan_file)
    for got, expected in zip(backward(x, W, dy), by_plan[BLOCKED]):
        np.testing.assert_array_equal(got, expected)
    write_plan_file(plan_file, {key: TILED})
    fastlinear.set_blas(_backends.backends.choice)  # the same choice: only the plans change
    for got, expected, ref, k in zip(backward(x, W, dy), by_plan[TILED], (rdx, rdW, rdb),
                                     (M_OUT, N, N)):
        assert_close(got, ref, np.float64, k)
        np.testing.assert_array_equal(got, expected)
