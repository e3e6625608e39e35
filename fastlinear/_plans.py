"""Plans: how each problem is run, chosen by measuring on this machine.

A plan (see _parallel.pxd) says which path a call takes (serial: on the
calling thread; blocked: over row blocks; tiled: over tiles of each product),
whether mid-size products are cut for BLAS's small-matrix kernels, which BLAS
computes them (see _backends), and how many tasks a big product is cut into.
Any plan gives the right result; which is fastest depends on the CPU and its
BLAS.  The first time a problem (see _problem: its
direction, dtype, M_in, M_out and N to within a factor of 2) is seen, the
candidate plans are timed briefly on data of that shape and the fastest is
kept, in memory and in a JSON file in the user's cache directory keyed by CPU,
BLAS and fastlinear version, so that a later process pays nothing and gets
the same bits.  A plan never depends on the thread count of a call, so
results stay identical for every ``num_threads``.

``FASTLINEAR_PLANS`` (or :func:`set_planning`) chooses the mode: ``measure``
(the default), ``file`` (plans from the file, built-in ones for the rest,
nothing measured or written) or ``off`` (built-in plans only, no file read).
``FASTLINEAR_PLAN_FILE`` pins the file.
"""
import os
import statistics
import threading
import time

import numpy as np

from . import _parallel, _planfile
from ._api import linear_backward, linear_forward
from ._backends import NAMES as BACKEND_NAMES, SLOTS as BACKEND_SLOTS, backends, env_choice
from ._problem import KINDS, MIN_PLANNED_WORK, Problem, check_key, cpu_name, forget_plans, set_planner
from ._threads import blas_threads, get_num_threads
from ._version import __version__

MODES = ("measure", "file", "off")
# A candidate replaces the built-in plan only when its median is this much
# faster: a closer call would let the machine's noise choose.
MARGIN = 0.97
# Seconds of timed calls screening the candidates of a problem (at
# least 3 rounds of every candidate after an untimed one, at most 25), and
# twice that confirming the finalists (see measure).
BUDGET = 0.03
# tune() plans ahead of time, so it can afford to measure for longer.
TUNE_BUDGET = 10 * BUDGET
# A kept plan whose runner-up was within this factor of it is a close call.
CLOSE_CALL = 1.05


def is_close_call(margin):
    """Whether a plan kept by ``margin`` (None: it had no runner-up) was a close call."""
    return margin is not None and margin < CLOSE_CALL
# Seconds to wait before timing candidates: OpenBLAS's idle threads (NumPy's
# BLAS, after a product the program ran just before) spin for 2**28 cycles,
# about 0.1 s at 2-3 GHz, and would take the core that parallel plans need,
# so that a first call right after a NumPy product chose the calling thread.
SETTLE = 0.2
# Seconds a timed sample lasts at least (calls repeated): perf_counter's own
# cost is a fraction of a microsecond on any machine, a thousandth of this.
MIN_SAMPLE = 0.0002
# Problems of this much work (see _problem.work) or more never run on the
# calling thread where there is more than one CPU.
MAX_SERIAL_WORK = 1 << 24
# Row blocks are a candidate for W of at most this many weights: past it
# each block's partial dW outgrows a core's cache.
MAX_BLOCKED_WEIGHTS = 1 << 14
# Where a call's arrays lie in memory changes which plan is faster: two plans
# of one problem timed on ten allocations in one process ranged from 0.94 to
# 1.19 times each other, each allocation steady within 1%.  So candidates
# are timed on this many allocations, a round on each in turn, where these
# take at most PLACEMENT_BYTES together (past it, arrays span enough pages to
# average their placement out, and memory is not spent on copies).
PLACEMENTS = 3
PLACEMENT_BYTES = 1 << 26
PATH_NAMES = {code: name for name, code in _parallel.PATHS.items()}


def identity():
    """What a plan file must match to be used: plans measured elsewhere are guesses."""
    found = backends.found()
    return {"fastlinear": __version__, "cpu": cpu_name(), "cpus": os.cpu_count() or 1,
            "blas": [f"{lib.internal_api} {lib.version} {getattr(lib, 'architecture', None)} "
                     f"{os.path.basename(lib.filepath)}" for lib in blas_threads.libraries()],
            "backends": [found[BACKEND_NAMES[slot]] for slot in backends.usable()]}


def candidates(problem):
    """Every plan a call of this problem may be given; the built-in one first."""
    builtin = problem.builtin_plan()
    if problem.work < MIN_PLANNED_WORK:
        return [builtin]
    paths = [_parallel.PATHS["tiled"]]
    if problem.work < MAX_SERIAL_WORK or (os.cpu_count() or 1) == 1:
        paths.append(_parallel.PATHS["serial"])
    if float(problem.M_in) * problem.M_out <= MAX_BLOCKED_WEIGHTS and problem.N >= 64:
        paths.append(_parallel.PATHS["blocked"])
    plans = [builtin]
    # A call without products (db alone) calls no BLAS: its backends are equals.
    usable = backends.usable() if problem.products() else [backends.default()]
    for backend in usable:
        for path in paths:
            for small_kernels in (False, True) if problem.has_small_products() else (False,):
                plan = problem.plan(path, small_kernels, backend)
                if plan not in plans:
                    plans.append(plan)
    return plans


def _plan_from_json(entry):
    """A plan from an entry of the plan file (see _planfile), which has been
    checked; ValueError if it names a backend this process may not use."""
    backend = BACKEND_SLOTS[entry["blas"]]
    if backend not in backends.usable():
        raise ValueError(f"the {entry['blas']} backend cannot be used here")
    return _parallel.make_plan(_parallel.PATHS[entry["path"]], entry["small_kernels"],
                               entry["tasks"], backend)


def plan_to_json(plan, margin=None, budget=None):
    """A plan's entry in the plan file; where it was measured, the margin it was
    kept by (None for a class with one candidate) and its screening budget."""
    path, small_kernels, tasks, backend = _parallel.plan_fields(plan)
    entry = {"path": PATH_NAMES[path], "small_kernels": small_kernels, "tasks": tasks,
             "blas": BACKEND_NAMES[backend]}
    if budget is not None:
        entry["margin"] = None if margin is None else round(float(margin), 4)
        entry["budget"] = float(budget)
    return entry


def _timed_call(problem):
    """A call of this problem on random data of its shape, given a plan and a thread count."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((problem.N, problem.M_in)).astype(problem.dtype)
    W = rng.standard_normal((problem.M_in, problem.M_out)).astype(problem.dtype)
    if not problem.backward:
        b, y = np.zeros(problem.M_out, problem.dtype), np.empty((problem.N, problem.M_out), problem.dtype)
        return lambda plan, threads: linear_forward(x, W, b, out=y, num_threads=threads, _plan=plan)
    dy = rng.standard_normal((problem.N, problem.M_out)).astype(problem.dtype)
    dx = np.empty_like(x) if problem.need_dx else None
    dW = np.empty_like(W) if problem.need_dW else None
    db = np.empty(problem.M_out, problem.dtype)
    return lambda plan, threads: linear_backward(
        x, W, dy, need_dx=problem.need_dx, need_dW=problem.need_dW, dx=dx, dW=dW, db=db,
        num_threads=threads, _plan=plan)


def _placed_calls(problem):
    """Calls of this problem on arrays of their own, PLACEMENTS of them where
    they fit in PLACEMENT_BYTES."""
    size = problem.N * problem.M_in + problem.M_in * problem.M_out + problem.N * problem.M_out
    one = 2 * size * np.dtype(problem.dtype).itemsize  # inputs and outputs
    return [_timed_call(problem) for _ in range(PLACEMENTS if PLACEMENTS * one <= PLACEMENT_BYTES else 1)]


def _timed_rounds(calls, plans, rounds, repeats=None):
    """Per plan, the seconds per call of each of ``rounds`` interleaved rounds
    (each round starts at another plan, so none always runs first, and runs
    the next of ``calls``), a round timing ``repeats[plan]`` calls in a row
    (1 if not given)."""
    threads = get_num_threads()
    times = {plan: [] for plan in plans}
    for r in range(rounds):
        call = calls[r % len(calls)]
        for plan in plans[r % len(plans):] + plans[:r % len(plans)]:
            k = repeats[plan] if repeats else 1
            t = time.perf_counter()
            for _ in range(k):
                call(plan, threads)
            times[plan].append((time.perf_counter() - t) / k)
    return times


def _paired(times, plan, against):
    """The median over rounds of plan's time over ``against``'s in the same round."""
    return statistics.median(t / u for t, u in zip(times[plan], times[against]))


def timings(problem, plans, budget):
    """The calls of this class (_placed_calls), the calls per sample of each
    plan (_repeats), and per plan the seconds per call of interleaved rounds,
    for about ``budget`` seconds (at least 3 rounds) after an untimed call of
    each on each placement."""
    calls = _placed_calls(problem)
    time.sleep(SETTLE)
    _timed_rounds(calls, plans, len(calls))  # pages, BLAS buffers, the thread team
    repeats, once = _repeats(calls[0], plans)
    return calls, repeats, _timed_rounds(calls, plans, int(max(3, min(
        budget / BUDGET * 25, budget / max(once, 1e-9)))), repeats)


def _repeats(call, plans):
    """Calls per timed sample of each plan: enough for about MIN_SAMPLE seconds,
    so that a call of microseconds is not timed against the clock's own cost
    and the state the previous plan left behind; and the seconds a round of
    such samples takes, from the one call of each timed here."""
    threads = get_num_threads()
    repeats, once = {}, 0.0
    for plan in plans:
        t = time.perf_counter()
        call(plan, threads)
        seconds = max(time.perf_counter() - t, 1e-9)
        repeats[plan] = int(min(100, max(1, MIN_SAMPLE / seconds)))
        once += seconds * repeats[plan]
    return repeats, once


def measure(problem, plans, budget=BUDGET):
    """The plan to keep of ``plans`` (the built-in one first) on this machine,
    and its margin: the runner-up's time over its, a median of paired rounds.

    Every candidate is screened on the fastest of its rounds (on a shared
    machine a round is slowed by whatever else runs, never sped up).  The two
    fastest and the built-in plan are then timed again, twice as long, and a
    plan replaces the built-in one only if the median of its per-round ratios
    to it is below MARGIN: a win in one lucky round does not count.
    """
    _parallel.pool_adapts(False)  # every plan timed as it runs on free cores
    try:
        return _measure(problem, plans, budget)
    finally:
        _parallel.pool_adapts(True)


def _measure(problem, plans, budget):
    calls, repeats, screened = timings(problem, plans, budget)
    ranked = sorted(plans[1:], key=lambda plan: min(screened[plan]))
    finalists = [plans[0]] + ranked[:2]
    if len(finalists) == 1:
        return plans[0], None
    rounds = int(max(5, min(len(screened[plans[0]]) * 2,
                            2 * budget / max(sum(min(screened[p]) * repeats[p]
                                                 for p in finalists), 1e-9))))
    times = _timed_rounds(calls, finalists, rounds, repeats)
    best = min(finalists, key=lambda plan: _paired(times, plan, plans[0]))
    if _paired(times, best, plans[0]) > MARGIN:
        best = plans[0]
    return best, min(999.0, min(_paired(times, plan, best) for plan in finalists if plan != best))


class Planner:
    """The plans of this process: from the plan file, measured, or built in."""

    def __init__(self):
        self._lock = threading.Lock()
        self.mode = env_choice("FASTLINEAR_PLANS", MODES)
        self.file = os.environ.get("FASTLINEAR_PLAN_FILE") or None
        self._reset()

    def _reset(self):
        self.plans = None  # key -> plan, from the file or measured here; None until read
        # key -> (margin, budget): how far its plan led, and the seconds it was screened for
        self.measures = {}
        self._identity = None  # identity(), once asked: it reads /proc/cpuinfo and the BLAS
        self.measured = 0
        self.seconds = 0.0
        forget_plans()

    def identity(self):
        if self._identity is None:
            self._identity = identity()
        return self._identity

    def forget(self):
        """Choose every plan again (the backends to choose among have changed)."""
        with self._lock:
            self._reset()

    def configure(self, mode, file):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if file is not None and not isinstance(file, (str, os.PathLike)):
            raise TypeError(f"plan_file must be a path or None, got {type(file).__name__}")
        with self._lock:
            self.mode, self.file = mode, None if file is None else os.fspath(file)
            self._reset()

    def path(self):
        """The plan file: the pinned one, else one per identity in the user's cache."""
        return self.file if self.file is not None else _planfile.default_path(self.identity())

    def _plan_file(self):
        return _planfile.PlanFile(self.path(), self.file is None, _parallel.PATHS, BACKEND_SLOTS,
                                  check_key)

    def choose(self, problem, budget=None):
        """The plan for a call of ``problem`` (the C-level table in _problem keeps it
        afterwards); with a ``budget``, measured again for that long even if known."""
        if self.mode == "off":
            return problem.builtin_plan()
        key = problem.key
        with self._lock:
            if self.plans is None:
                self.plans = self._read(self._plan_file())
            if self._known(key, budget):
                return self.plans[key]
            plans = candidates(problem)
            if self.mode != "measure" or len(plans) == 1:
                return plans[0]
            # Under the file's lock: a process planning the same problem at
            # once waits, then takes this plan, so both compute the same bits.
            plan_file = self._plan_file()
            with plan_file.lock():
                self.plans.update(self._read(plan_file))
                if not self._known(key, budget):
                    start = time.perf_counter()
                    budget = budget or BUDGET
                    self.plans[key], margin = measure(problem, plans, budget)
                    self.measures[key] = (margin, budget)
                    self.seconds += time.perf_counter() - start
                    self.measured += 1
                    plan_file.write(self.identity(), {k: plan_to_json(plan, *self.measures.get(k, ()))
                                                      for k, plan in self.plans.items()})
            return self.plans[key]

    def _known(self, key, budget):
        """Whether the plan of ``key`` is known, measured for at least ``budget`` if given
        (so that processes tuning at once take each other's plans)."""
        return key in self.plans and (budget is None or budget <= self.measures.get(key, (0, 0))[1])

    def _read(self, plan_file):
        """The plans of the file that this process can run; how each was measured into
        self.measures."""
        plans = {}
        for key, entry in plan_file.read(self.identity()).items():
            try:
                plans[key] = _plan_from_json(entry)
            except ValueError:  # a backend this process may not use: planned again
                continue
            if "budget" in entry:
                self.measures[key] = (entry.get("margin"), entry["budget"])
        return plans

    def after_fork(self):
        self._lock = threading.Lock()

    def summary(self):
        with self._lock:
            plans = self.plans if self.plans is not None else (
                self._read(self._plan_file()) if self.mode != "off" else {})
            close = sorted(k for k in plans if is_close_call(self.measures.get(k, (None,))[0]))
        blas = [BACKEND_NAMES[_parallel.plan_fields(plan)[3]] for plan in plans.values()]
        return {"mode": self.mode, "file": None if self.mode == "off" else self.path(),
                "plans": len(plans), "measured_here": self.measured,
                "planning_seconds": round(self.seconds, 4),
                "plans_per_blas": {name: blas.count(name) for name in sorted(set(blas))},
                "close_calls": close}


planner = Planner()
set_planner(planner)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=planner.after_fork)


def tune(shapes, dtypes=("float32", "float64"), budget=TUNE_BUDGET):
    """Plan ahead: measure the plans of each (N, M_in, M_out) in ``shapes``.

    Plans the forward, the backward, and the backward without dx (a first
    layer), for each dtype, measuring each for ``budget`` seconds (ten times
    as long as a first call does, so that noise is less likely to choose),
    and puts them in the plan file in place of any measured before, so that
    training later pays nothing for planning.  Also ``python -m fastlinear
    tune N,M_in,M_out ...``.

    Parameters
    ----------
    shapes : iterable of (int, int, int)
        (N, M_in, M_out) of each layer, N the rows of a batch.
    dtypes : iterable of str
        "float32", "float64" or both.
    budget : float
        Seconds of timed calls screening the candidates of each class of
        problem; the finalists are timed for twice as long.

    Returns
    -------
    dict
        The plan chosen for each problem, as stored in the plan file,
        with its ``margin``: the runner-up's time over the chosen plan's, a
        median of paired rounds (below 1.05 is a close call; absent where the
        class has one candidate).
    """
    if planner.mode != "measure":
        raise ValueError(f"planning is {planner.mode!r}: tune() measures only in 'measure' "
                         "mode (see set_planning)")
    if not (isinstance(budget, (int, float)) and 0 < budget < float("inf")):
        raise ValueError(f"budget must be a positive number of seconds, got {budget!r}")
    chosen = {}
    for N, M_in, M_out in shapes:
        for dtype in dtypes:
            for kind in ("f", "b11", "b01"):
                problem = Problem(KINDS[kind], np.dtype(dtype).name, N, M_in, M_out)
                plan = planner.choose(problem, budget)
                chosen[problem.key] = plan_to_json(plan, *planner.measures.get(problem.key, ()))
    forget_plans()  # calls take the plans measured here from now on
    return chosen
