"""Two builds of fastlinear timed side by side in one run, to check a change leaves speed alone.

    python tools/compare_builds.py --before venvA/bin/python --after venvB/bin/python \\
        [--rounds R] [--plans measure|off|file] [--plan-file F] [--json out.json] [--quick-smoke]

Each interpreter has one build of fastlinear installed (non-editable).  Cases: fastlinear's
part of every ``bench/bench.py --quick`` case (bench.Case.fastlinear: forward + backward
into preallocated buffers, QUICK_SHAPES, float32 and float64, default threads); its whole
MLP step in every ``bench/bench_mlp.py`` standard configuration, both dtypes
(bench_mlp.FastlinearMLP.step); and the per-call overhead of ``linear_forward`` and of
``linear_backward`` (dx, dW, db into buffers) on (32, 32, 32) float64.

The rounds are shared among --processes pairs of fresh workers (default 3): one process's
memory layout can make a build a few percent faster or slower for its whole life, so a
single pair would mistake that for the code.  Each pair is two long-lived workers, one
per interpreter, running this tree's benchmark code, started with
``-I`` in a temporary directory so that they import the installed package, never a source
tree.  They set every case up in turn (same seeds, same data) and warm it up; then, case
after case, they take turns for R rounds, the first of each round alternating, one
running while the other waits on its stdin.  A turn sleeps --settle seconds (the other
build's thread pools stop spinning), makes one untimed call, times 3 samples of n calls
(n from the "before" build, for about 20 ms a sample, the same for both) and answers the
median seconds per call.  Per case: both medians, the median over rounds of after/before
within a round (drift cancels), and in how many rounds "after" was the slower.  Flagged
(exit status 1): a benchmark case outside 1 +- --tolerance (0.03), an overhead above 1.

``--plans measure`` (the default) gives each worker a fresh plan file of its own
(FASTLINEAR_PLAN_FILE), so each measures its plans during warm-up, as a fresh install
would; plans the two measured differently are listed, as noise there shows as a
difference.  ``--plans off`` runs the built-in plans in both; ``--plans file`` gives both
a copy of one plan file (--plan-file, read only: FASTLINEAR_PLANS=file), so that both
run the same plans, thread pool included, where measuring would choose by noise.
Results also go to a JSON
file (--json; default bench/results/compare-<time>.json).  ``--quick-smoke`` shrinks
every sample: it checks that the script runs and measures nothing.  A run takes about
3 minutes on 2 cores.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = 3  # timed samples per turn; the turn reports their median


def setup_cases():
    """{name: callable}: every case, built from the benchmarks' own code."""
    import bench
    import bench_mlp
    cases = {}
    for dtype in ("float32", "float64"):
        for shape in bench.QUICK_SHAPES:
            name = f"layer {dtype} {'x'.join(map(str, shape))}"
            cases[name] = bench.Case(shape, dtype, None, False).fastlinear
    for dtype in ("float32", "float64"):
        for sizes, batch in bench_mlp.STANDARD_CONFIGS:
            name = f"mlp {dtype} {'-'.join(map(str, sizes))} b{batch}"
            cases[name] = bench_mlp.FastlinearMLP(sizes, batch, dtype, None).step
    c, fl = bench.Case((32, 32, 32), "float64", None, False), bench.fastlinear
    cases["overhead forward 32x32x32 float64"] = lambda: fl.linear_forward(c.x, c.W, c.b, out=c.y)
    cases["overhead backward 32x32x32 float64"] = lambda: fl.linear_backward(
        c.x, c.W, c.dy, dx=c.dx, dW=c.dW, db=c.db)
    return cases


def per_call(fn, seconds):
    """Seconds per call of ``fn``, from calls repeated for at least ``seconds`` (2 at least)."""
    count, start = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - start < seconds:
        fn()
        count += 1
    return (time.perf_counter() - start) / count


def worker(bench_dir, warmup):
    """Answer the parent's commands, one JSON line each, on the original stdout."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the answers
    sys.stdout = sys.stderr
    sys.path.insert(0, bench_dir)
    import hashlib
    import numpy as np
    import fastlinear
    cases = setup_cases()
    estimates = {name: (fn(), per_call(fn, warmup))[1] for name, fn in cases.items()}
    package = os.path.dirname(os.path.abspath(fastlinear.__file__))
    digest = hashlib.sha256()  # of the package's files: tells two builds of one version apart
    for f in sorted(f for f in os.listdir(package) if f.endswith((".so", ".pyd", ".py"))):
        with open(os.path.join(package, f), "rb") as fh:
            digest.update(f.encode() + fh.read())
    try:
        plans = fastlinear._config.config().get("plans", {})
    except AttributeError:  # a build without show_config's data
        plans = {}
    info = {"python": sys.executable, "fastlinear": fastlinear.__version__, "package": package,
            "build_digest": digest.hexdigest()[:12], "numpy": np.__version__,
            "threads": fastlinear.get_num_threads(), "plans_mode": plans.get("mode"),
            "plan_file": plans.get("file"), "estimates": estimates}
    print(json.dumps(info), file=proto, flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        fn = cases[cmd["case"]]
        time.sleep(cmd["settle"])
        fn()
        samples = []
        for _ in range(cmd["samples"]):
            t = time.perf_counter()
            for _ in range(cmd["calls"]):
                fn()
            samples.append((time.perf_counter() - t) / cmd["calls"])
        print(json.dumps(statistics.median(samples)), file=proto, flush=True)


class Worker:
    def __init__(self, python, env, cwd, warmup):
        self.proc = subprocess.Popen(
            [python, "-I", os.path.abspath(__file__), "--worker", os.path.join(ROOT, "bench"),
             str(warmup)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=cwd)

    def ask(self, command=None):
        if command is not None:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"a worker ({self.proc.args[0]}) stopped: see its error above")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def cpu_model():
    """The CPU's model name, from lscpu or else /proc/cpuinfo."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        text = ""
    if not re.search(r"^Model name:", text, re.M) and os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            text = f.read()
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M | re.I)
    return found.group(1).strip() if found else "unknown"


def plan_differences(folder):
    """(keys whose plans differ, keys in both) of the two workers' plan files, or None."""
    plans = []
    for label in ("before", "after"):
        try:
            with open(os.path.join(folder, f"plans-{label}.json")) as f:
                sections = json.load(f)["sections"]
            plans.append({key: {k: v for k, v in entry.items() if k not in ("margin", "budget")}
                          for sec in sections for key, entry in sec["plans"].items()})
        except (OSError, ValueError, KeyError, AttributeError):
            return None
    common = plans[0].keys() & plans[1].keys()
    return sorted(k for k in common if plans[0][k] != plans[1][k]), len(common)


def fmt(seconds):
    return f"{seconds * 1e6:10.2f} us" if seconds < 1e-3 else f"{seconds * 1e3:10.3f} ms"


def start_workers(args, tmp, warmup, workers):
    """A fresh worker per build in ``workers``; what each says of itself."""
    info = {}
    for label, python in (("before", args.before), ("after", args.after)):
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "FASTLINEAR_PLAN_FILE", "FASTLINEAR_PLANS")}
        env["FASTLINEAR_PLANS"] = args.plans
        if args.plans == "file" and not os.path.exists(os.path.join(tmp, f"plans-{label}.json")):
            shutil.copyfile(args.plan_file, os.path.join(tmp, f"plans-{label}.json"))
        if args.plans != "off":  # kept across process pairs, so each build keeps its plans
            env["FASTLINEAR_PLAN_FILE"] = os.path.join(tmp, f"plans-{label}.json")
        workers[label] = Worker(python, env, tmp, warmup)
        info[label] = workers[label].ask()  # one sets up (and plans) while the other waits
    return info


def report_header(args, info):
    """The run's header, printed, as it goes into the JSON file."""
    builds = {label: {k: v for k, v in i.items() if k != "estimates"} for label, i in info.items()}
    header = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "cpu": cpu_model(), "cpus": os.cpu_count(), "plans": args.plans,
              "rounds": args.rounds, "processes": args.processes,
              "quick_smoke": args.quick_smoke, "builds": builds}
    print(f"CPU: {header['cpu']}, {header['cpus']} CPUs; plans: {args.plans}"
          + {"measure": " (each build its own fresh plan file)", "off": " (built-in plans)",
             "file": f" (both read {args.plan_file})"}[args.plans] + f"; {args.rounds} rounds per case over {args.processes} "
          "process pairs" + ("; --quick-smoke: figures mean nothing" if args.quick_smoke else ""))
    for label, i in builds.items():
        print(f"{label:>6}: fastlinear {i['fastlinear']} (build {i['build_digest']}) "
              f"at {i['package']}\n        {i['python']}, NumPy {i['numpy']}, "
              f"{i['threads']} default threads, plans {i['plans_mode']} {i['plan_file'] or ''}")
    return header


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the interpreter of the old build")
    ap.add_argument("--after", required=True, help="the interpreter of the new build")
    ap.add_argument("--rounds", type=int, default=15, help="rounds per case (default 15)")
    ap.add_argument("--processes", type=int, default=3,
                    help="fresh worker pairs the rounds are shared among (default 3)")
    ap.add_argument("--plans", choices=("measure", "off", "file"), default="measure",
                    help="measure (each build its own fresh plan file), off (built-in plans) "
                         "or file (both read --plan-file)")
    ap.add_argument("--plan-file", help="with --plans file: the plan file both builds read")
    ap.add_argument("--tolerance", type=float, default=0.03,
                    help="flag a benchmark case whose after/before is outside 1 +- this")
    ap.add_argument("--settle", type=float, default=0.12,
                    help="seconds of sleep before each turn (default 0.12)")
    ap.add_argument("--json", help="results file (default bench/results/compare-<time>.json)")
    ap.add_argument("--quick-smoke", action="store_true",
                    help="tiny samples: checks that the script runs, measures nothing")
    args = ap.parse_args(argv)
    if (args.plans == "file") != (args.plan_file is not None):
        ap.error("--plan-file goes with --plans file, and only with it")
    target, samples, warmup = (0.002, 1, 0.005) if args.quick_smoke else (0.02, SAMPLES, 0.2)
    tmp = tempfile.mkdtemp(prefix="compare_builds-")
    workers, info, times, cmds = {}, {}, {}, {}
    try:
        # Each process pair runs a share of the rounds: a process's own memory
        # layout can make one build a few percent faster for its whole life.
        for process in range(args.processes):
            info = start_workers(args, tmp, warmup, workers)
            if process == 0:
                header = report_header(args, info)
            estimates = info["before"]["estimates"]
            for name, est in estimates.items():
                cmd = cmds.setdefault(name, {"case": name,
                                             "calls": max(1, min(100000, round(target / est))),
                                             "samples": samples, "settle": args.settle})
                case_times = times.setdefault(name, {"before": [], "after": []})
                for r in range(process, args.rounds, args.processes):
                    for label in (("before", "after") if r % 2 == 0 else ("after", "before")):
                        case_times[label].append(workers[label].ask(cmd))
            for w in workers.values():
                w.close()
            workers.clear()
        print(f"\n{'case':44}{'before':>13}{'after':>13}{'after/before':>14}{'slower':>8}")
        rows, flagged = [], 0
        for name, case_times in times.items():
            kind = "overhead" if name.startswith("overhead") else "bench"
            ratios = [a / b for a, b in zip(case_times["after"], case_times["before"])]
            ratio = statistics.median(ratios)
            slower = sum(x > 1 for x in ratios)
            flag = (ratio > 1.0 if kind == "overhead" else abs(ratio - 1) > args.tolerance)
            flagged += flag
            note = ("  <- overhead rose" if kind == "overhead" else
                    f"  <- outside +-{args.tolerance:.0%}") if flag else ""
            med = {label: statistics.median(ts) for label, ts in case_times.items()}
            print(f"{name:44}{fmt(med['before']):>13}{fmt(med['after']):>13}{ratio:14.3f}"
                  f"{f'{slower}/{len(ratios)}':>8}{note}", flush=True)
            rows.append({"case": name, "kind": kind, "calls_per_sample": cmds[name]["calls"],
                         "median_s": med, "ratio": ratio, "flagged": flag,
                         "rounds_after_slower": slower, "times_s": case_times, "ratios": ratios})
    finally:
        for w in workers.values():
            w.close()
        differ = plan_differences(tmp) if args.plans == "measure" else None
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    if differ:
        header["plans_differ"] = differ[0]
        print(f"plans measured differently by the two workers: {len(differ[0])} of {differ[1]}"
              + (f" ({', '.join(differ[0][:8])}{', ...' if len(differ[0]) > 8 else ''})"
                 if differ[0] else ""))
    print(f"{flagged} case(s) flagged" if flagged else "nothing flagged: "
          f"every case within +-{args.tolerance:.0%}, no overhead higher")
    path = args.json or os.path.join(
        ROOT, "bench", "results", f"compare-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"info": header, "rows": rows}, f, indent=1)
    print(f"wrote {path}")
    return 1 if flagged else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(main())
