"""How good are the plans in a plan file?  Re-measure each problem.

For every plan of this machine's section of the plan file, every candidate of
its class is timed again, interleaved, for ``--factor`` times the budget a
first call has, and the fastest candidate is picked.  Where that is not the
stored plan, the two are then timed again, alone and as long, and the ratio
is the median over those rounds of the stored plan's time over the best
one's in the same round.  A plan chosen by noise shows up as a ratio well
above 1.

Both measurements time the plans on the planner's placements (each round on
one of several allocations of the arrays, in turn, as the planner does): on a
single allocation, where the arrays happen to lie decides between close plans
by up to 19%, and the ratio would measure the placement, not the plan.

The second measurement is what makes the ratio fair: the candidate that came
out fastest among several is, on average, one that noise favoured in those
rounds, so its ratio from the same rounds is biased against the stored plan
(the more candidates, the more).  Both figures are reported: ``screen`` from
the rounds that picked the best, ``ratio`` from the rounds that did not.

    FASTLINEAR_PLAN_FILE=/tmp/plans.json python bench/bench_mlp.py
    FASTLINEAR_PLAN_FILE=/tmp/plans.json python bench/plan_quality.py

Results go to bench/results/plans-<time>.json.
"""
import argparse
import datetime
import json
import os
import statistics
import sys

from threadpoolctl import threadpool_info

import fastlinear
from bench import RESULTS, cpu_name, run_info
from fastlinear import _parallel, _planfile, _plans
from fastlinear._problem import KINDS, Problem, check_key


def requality(key, entry, factor):
    """{key, stored, best, ratio, margin}: the stored plan against the fastest candidate."""
    kind, dtype, bits, M_in, M_out = check_key(key).split(":")
    N = 1 << max(int(bits) - 1, 0)  # the smallest N of the class: the bench's batches are powers of 2
    problem = Problem(KINDS[kind], dtype, N, int(M_in), int(M_out))
    stored = _plans._plan_from_json(entry)
    plans = _plans.candidates(problem)
    if stored not in plans:
        plans.append(stored)
    if len(plans) < 2:
        return {"key": key, "candidates": 1}
    _parallel.pool_adapts(False)  # as the planner times them: on cores it takes as free
    try:
        _, _, times = _plans.timings(problem, plans, factor * _plans.BUDGET)
        best = min(plans, key=lambda plan: statistics.median(times[plan]))
        screen = _plans._paired(times, stored, best)
        if best != stored:
            times = _plans.timings(problem, [stored, best], factor * _plans.BUDGET)[2]
    finally:
        _parallel.pool_adapts(True)
    return {"key": key, "stored": _plans.plan_to_json(stored), "best": _plans.plan_to_json(best),
            "candidates": len(plans), "rounds": len(times[best]), "screen": screen,
            "ratio": _plans._paired(times, stored, best), "margin": entry.get("margin")}


def brief(plan):
    return f"{plan['path']}{'+small' if plan['small_kernels'] else ''} {plan['blas']}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan-file", help="default: the file fastlinear plans into")
    parser.add_argument("--factor", type=float, default=10.0,
                        help="times a first call's budget to measure each class for")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    path = args.plan_file or _plans.planner.path()
    identity = _plans.planner.identity()
    entries = _planfile.PlanFile(path, False, _plans._parallel.PATHS, _plans.BACKEND_SLOTS,
                                 check_key).read(identity)
    if not entries:
        sys.exit(f"no plans for this machine in {path}")
    fastlinear.set_planning("off")  # nothing re-measured here is written
    print(f"{len(entries)} plans of {path}, re-measured for {args.factor:g}x the budget "
          f"on {cpu_name()}")
    print(f"{'class':28} {'stored':22} {'best':22} {'screen':>6} {'ratio':>6} {'margin':>7}")
    rows = []
    for key, entry in sorted(entries.items()):
        row = requality(key, entry, args.factor)
        if row["candidates"] < 2:
            continue
        rows.append(row)
        print(f"{key:28} {brief(row['stored']):22} {brief(row['best']):22} {row['screen']:6.3f} "
              f"{row['ratio']:6.3f} "
              f"{row['margin'] if row['margin'] is not None else '-':>7}", flush=True)
    ratios = [row["ratio"] for row in rows]
    over5 = sum(r > 1.05 for r in ratios)
    over10 = sum(r > 1.10 for r in ratios)
    print(f"\n{len(rows)} classes with several candidates: median ratio "
          f"{statistics.median(ratios):.3f}, worst {max(ratios):.3f}; more than 5% slower than "
          f"the best: {over5}; more than 10% slower: {over10}")
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = os.path.join(args.out, f"plans-{stamp}.json")
    with open(out, "w") as f:
        json.dump({"cpu": cpu_name(), "fastlinear": fastlinear.__version__, "plan_file": path,
                   "factor": args.factor, "rows": rows,
                   "info": {**run_info(), "blas": threadpool_info()}}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
