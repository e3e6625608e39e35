"""Benchmark: one linear-layer training step, fastlinear against its peers.

Peers, measured side by side in one process and interleaved round by round:

* fastlinear  - linear_forward + linear_backward into preallocated buffers
* numpy       - x @ W + b, x.T @ dy, dy.sum(0), dy @ W.T
* gemm3       - the three GEMMs alone into preallocated outputs (NumPy's
                BLAS): the floor any GEMM-based layer can approach
* torch       - torch.nn.Linear forward + backward(dy), if PyTorch is installed

A step is forward + backward; GFLOP/s count 6 * N * M_in * M_out.  Each
ratio is the median over rounds of (fastlinear time / peer time) within a
round, so slow drifts of a shared machine cancel.  Also reported: the time of
each part of fastlinear's step (forward, dW, dx, db), and the db reduction's
read rate against this machine's two-thread read bandwidth, probed in turns
with the parts (its share of it is again a median of per-round ratios).

Run ``python bench/bench.py --help`` for options.  Results go to
bench/results/: a JSON file of every figure and a PNG plot.
"""
import argparse
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import fastlinear
try:  # the benchmarks' CPU label
    from fastlinear._problem import cpu_name  # noqa: F401
except ImportError:  # a build from before the problem model (tools/compare_builds.py runs one)
    from fastlinear._plans import cpu_name  # noqa: F401

DEFAULT_SHAPES = [(32, 32, 32), (64, 256, 128), (64, 784, 256), (128, 512, 512),
                  (256, 1024, 1024), (4096, 1024, 1024), (100000, 64, 16), (2048, 4096, 4096)]
QUICK_SHAPES = [(32, 32, 32), (64, 784, 256), (1024, 1024, 1024), (100000, 64, 16)]
# The library each peer runs: NumPy's reference and the BLAS floor share NumPy's BLAS pool,
# so one may follow the other without a pause.
LIBRARY = {"fastlinear": "fastlinear", "numpy": "numpy", "gemm3": "numpy", "torch": "torch"}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# Distributions whose versions a run records where installed: the library, its
# dependencies, the peers and the optional BLAS backends.
VERSIONED = ["fastlinear", "numpy", "scipy", "threadpoolctl", "torch", "scikit-learn", "dask",
             "distributed", "mkl", "scipy-openblas32"]


def run_info():
    """What every result file records of its run: date, CPU, and software versions
    (Python and the installed distributions of VERSIONED; fastlinear's git commit
    when the benchmark runs from a checkout).  The BLAS libraries loaded are in
    each file's threadpoolctl list ("blas" or "threadpool_info")."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"],
                                cwd=os.path.dirname(RESULTS), capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        if commit:
            versions["fastlinear git"] = commit
    except (OSError, subprocess.SubprocessError):
        pass
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu_name(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "versions": versions}


# (shape, dtype, threads or None for default, peer, bound) -> fastlinear time / peer time <= bound
TARGETS = [
    ((4096, 1024, 1024), "float64", None, "gemm3", 1.03),
    ((4096, 1024, 1024), "float32", None, "gemm3", 1.03),
    ((4096, 1024, 1024), "float64", None, "numpy", 1.00),
    ((4096, 1024, 1024), "float32", None, "numpy", 1.00),
    ((64, 784, 256), "float64", None, "numpy", 0.90),
    ((64, 784, 256), "float32", None, "numpy", 0.90),
    ((32, 32, 32), "float64", None, "numpy", 0.50),
    ((32, 32, 32), "float64", None, "torch", 0.10),
    ((100000, 64, 16), "float64", None, "numpy", 0.85),
]


def parse_shapes(text):
    shapes = []
    for part in text.replace(" ", "").split(";"):
        if part:
            dims = tuple(int(v) for v in part.lower().replace("x", ",").split(","))
            if len(dims) != 3:
                raise argparse.ArgumentTypeError(f"a shape is N,M_in,M_out; got {part!r}")
            shapes.append(dims)
    return shapes


READ_BYTES = 256 * 2 ** 20


@functools.lru_cache(maxsize=1)
def _read_array():
    return np.ones(READ_BYTES // 8)


def reader(threads):
    """A call that reads READ_BYTES once with ``threads`` threads running NumPy's
    sum (it releases the GIL), each over its own part of one array."""
    parts = np.array_split(_read_array(), threads)

    def read():
        workers = [threading.Thread(target=np.sum, args=(p,)) for p in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return read


def read_bandwidth(threads, reps=5):
    """Bytes/s that ``threads`` threads read (the fastest of ``reps`` reads)."""
    read = reader(threads)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - t)
    return READ_BYTES / best


class Case:
    """Buffers and callables of one (shape, dtype, threads) case."""

    def __init__(self, shape, dtype, threads, with_torch):
        N, M_in, M_out = shape
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((N, M_in)).astype(dtype)
        self.W = (rng.standard_normal((M_in, M_out)) / np.sqrt(M_in)).astype(dtype)
        self.b = rng.standard_normal(M_out).astype(dtype)
        self.dy = rng.standard_normal((N, M_out)).astype(dtype)
        self.y = np.empty((N, M_out), dtype)
        self.dx = np.empty_like(self.x)
        self.dW = np.empty_like(self.W)
        self.db = np.empty_like(self.b)
        self.threads = threads
        self.peers = {"fastlinear": self.fastlinear, "numpy": self.numpy, "gemm3": self.gemm3}
        if with_torch:
            self.setup_torch()
            self.peers["torch"] = self.torch_step

    def fastlinear(self):
        fastlinear.linear_forward(self.x, self.W, self.b, out=self.y, num_threads=self.threads)
        fastlinear.linear_backward(self.x, self.W, self.dy, dx=self.dx, dW=self.dW, db=self.db,
                                   num_threads=self.threads)

    def numpy(self):
        x, W, b, dy = self.x, self.W, self.b, self.dy
        x @ W + b, x.T @ dy, dy.sum(0), dy @ W.T

    def gemm3(self):
        np.matmul(self.x, self.W, out=self.y)
        np.matmul(self.x.T, self.dy, out=self.dW)
        np.matmul(self.dy, self.W.T, out=self.dx)

    def setup_torch(self):
        import torch
        self.torch = torch
        M_in, M_out = self.W.shape
        dtype = torch.float64 if self.W.dtype == np.float64 else torch.float32
        self.layer = torch.nn.Linear(M_in, M_out, dtype=dtype)
        with torch.no_grad():
            self.layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(self.W.T)))
            self.layer.bias.copy_(torch.from_numpy(self.b))
        self.tx = torch.from_numpy(self.x).requires_grad_(True)
        self.tdy = torch.from_numpy(self.dy)

    def torch_step(self):
        self.tx.grad = None
        self.layer.weight.grad = None
        self.layer.bias.grad = None
        self.layer(self.tx).backward(self.tdy)

    def parts(self):
        t = self.threads
        x, W, dy = self.x, self.W, self.dy
        return {
            "forward": lambda: fastlinear.linear_forward(x, W, self.b, out=self.y, num_threads=t),
            "dW": lambda: fastlinear.linear_backward(x, W, dy, need_dx=False, bias=False,
                                                     dW=self.dW, num_threads=t),
            "dx": lambda: fastlinear.linear_backward(x, W, dy, need_dW=False, bias=False,
                                                     dx=self.dx, num_threads=t),
            "db": lambda: fastlinear.linear_backward(x, W, dy, need_dx=False, need_dW=False,
                                                     db=self.db, num_threads=t),
        }


def calls_per_turn(seconds):
    """Timed calls per turn for a call of about ``seconds``: one turn spans ~20 ms."""
    return 1 if seconds > 0.05 else int(min(1000, max(5, 0.02 / seconds)))


def calls_per_peer(fns):
    """{name: timed calls per turn} for each peer, from one call timed after a warm-up call."""
    calls = {}
    for name, fn in fns.items():
        fn()
        t = time.perf_counter()
        fn()
        calls[name] = calls_per_turn(max(time.perf_counter() - t, 1e-7))
    return calls


def available(module):
    """Whether ``module`` can be imported (an optional peer)."""
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def interleaved(fns, rounds, seconds, calls, settle, library=None):
    """{name: [median seconds per call in each round]}, the names taking turns.

    Rounds run until ``seconds`` have passed, and at least rounds[0] and at
    most rounds[1] of them.  ``calls`` maps each name to its number of timed
    calls per turn, and ``library`` each name to the library it runs (all one
    library if None).
    The first turn, and a turn that follows another library's turn, starts
    after ``settle`` seconds of sleep; a turn times one untimed call first
    when it times several.  Thread pools spin for a while
    after their last task (OpenBLAS's pthreads pool for about 0.1 s, an OpenMP
    team for GOMP_SPINCOUNT iterations); a peer started while the previous
    peer's pool still spins shares its cores with it, and the figures would
    measure that collision rather than the peer.  Each call is timed on its
    own and a turn reports its median, so a slow first call after the sleep
    (a core waking up) does not count.
    """
    times = {name: [] for name in fns}
    names = list(fns)
    for name in names:  # warm-up: first-touch pages, BLAS buffers, thread pools
        fns[name]()
    library = library or {}
    last = object()  # no library yet: the first turn settles too
    start, r = time.perf_counter(), 0
    while r < rounds[0] or (r < rounds[1] and time.perf_counter() - start < seconds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn = fns[name]
            if settle and library.get(name) != last:
                time.sleep(settle)
            last = library.get(name)
            if calls[name] > 1:
                fn()
            per_call = []
            for _ in range(calls[name]):
                t = time.perf_counter()
                fn()
                per_call.append(time.perf_counter() - t)
            times[name].append(statistics.median(per_call))
        r += 1
    return times


def run_case(shape, dtype, threads, with_torch, budget, max_rounds, settle):
    case = Case(shape, dtype, threads, with_torch)
    limits = {} if threads is None else {"limits": threads}
    torch_threads = None
    if with_torch and threads is not None:
        torch_threads = case.torch.get_num_threads()
        case.torch.set_num_threads(threads)
    try:
        with threadpool_limits(**limits) if limits else _nothing():
            case.fastlinear()
            t0 = time.perf_counter()
            case.fastlinear()
            one = max(time.perf_counter() - t0, 1e-7)
            reps = calls_per_turn(one)
            # Three quarters of the budget for the steps, the rest for the parts.
            rounds = (3, max_rounds)
            steps = interleaved(case.peers, rounds, 0.75 * budget,
                                dict.fromkeys(case.peers, reps), settle, LIBRARY)
            # A part is timed as often as its own length asks: a single cold
            # call of a short part would measure the wake-up, not the part.
            part_fns = case.parts()
            # The two-thread read probe takes turns with the parts, so that db's
            # share of it is a ratio within each round, like the steps' ratios.
            part_fns["read"] = reader(2)
            part_calls = {}
            for name, fn in part_fns.items():
                fn()
                t0 = time.perf_counter()
                fn()
                part_calls[name] = calls_per_turn(time.perf_counter() - t0)
            parts = interleaved(part_fns, rounds, 0.25 * budget, part_calls, settle)
    finally:
        if torch_threads is not None:
            case.torch.set_num_threads(torch_threads)
    N, M_in, M_out = shape
    flops = 6.0 * N * M_in * M_out
    row = {"shape": list(shape), "dtype": np.dtype(dtype).name,
           "threads": threads or fastlinear.get_num_threads(), "default_threads": threads is None,
           "rounds": len(steps["fastlinear"]), "calls_per_turn": reps, "median_s": {},
           "gflops": {}, "ratio": {}, "parts_s": {}}
    for name, ts in steps.items():
        med = statistics.median(ts)
        row["median_s"][name] = med
        row["gflops"][name] = flops / med / 1e9
        if name != "fastlinear":
            row["ratio"][name] = statistics.median(f / p for f, p in zip(steps["fastlinear"], ts))
    reads = parts.pop("read")
    for name, ts in parts.items():
        row["parts_s"][name] = statistics.median(ts)
    db_bytes = N * M_out * np.dtype(dtype).itemsize
    row["db_read_GBps"] = db_bytes / row["parts_s"]["db"] / 1e9
    row["read_GBps"] = READ_BYTES / statistics.median(reads) / 1e9
    row["db_share"] = statistics.median((db_bytes / t_db) / (READ_BYTES / t_read)
                                        for t_db, t_read in zip(parts["db"], reads))
    return row


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def fmt_time(s):
    return f"{s * 1e3:9.3f}" if s >= 1e-3 else f"{s * 1e3:9.4f}"


def print_header(peers):
    cols = "".join(f"{p + ' ms':>12}" for p in peers)
    ratios = "".join(f"{'/' + p:>9}" for p in peers if p != "fastlinear")
    print(f"{'dtype':8}{'N, M_in, M_out':>20}{'thr':>4}{cols}{'fl GF/s':>9}{ratios}"
          f"{'fwd ms':>10}{'dW ms':>10}{'dx ms':>10}{'db ms':>10}{'db GB/s':>8}{'rd GB/s':>8}",
          flush=True)


def print_row(row, peers):
    cols = "".join(f"{fmt_time(row['median_s'][p]):>12}" if p in row["median_s"] else f"{'-':>12}"
                   for p in peers)
    ratios = "".join(f"{row['ratio'][p]:9.3f}" if p in row["ratio"] else f"{'-':>9}"
                     for p in peers if p != "fastlinear")
    parts = "".join(f"{fmt_time(row['parts_s'][k]):>10}" for k in ("forward", "dW", "dx", "db"))
    shape = ", ".join(map(str, row["shape"]))
    print(f"{row['dtype']:8}{shape:>20}{row['threads']:>4}{cols}{row['gflops']['fastlinear']:9.1f}"
          f"{ratios}{parts}{row['db_read_GBps']:8.1f}{row['read_GBps']:8.1f}", flush=True)


def check_targets(rows):
    """[(description, value, bound, holds)] for the targets whose cases ran."""
    out = []
    by_key = {(tuple(r["shape"]), r["dtype"], r["default_threads"]): r for r in rows}
    for shape, dtype, _, peer, bound in TARGETS:
        r = by_key.get((shape, dtype, True))
        if r and peer in r["ratio"]:
            v = r["ratio"][peer]
            out.append((f"{shape} {dtype}: fastlinear / {peer}", v, f"<= {bound:.2f}", v <= bound))
    # No case slower than NumPy, at any thread count (cases with a bound of their own
    # at default threads are reported above).
    bounded = {(shape, dtype) for shape, dtype, _, peer, _ in TARGETS if peer == "numpy"}
    for r in rows:
        key = (tuple(r["shape"]), r["dtype"])
        if "numpy" in r["ratio"] and not (r["default_threads"] and key in bounded):
            v = r["ratio"]["numpy"]
            out.append((f"{key[0]} {key[1]} {r['threads']} thread(s): fastlinear / numpy", v,
                        "<= 1.00", v <= 1.00))
    for shape in [(100000, 64, 16), (4096, 1024, 1024)]:
        r = by_key.get((shape, "float64", True))
        if r:
            frac = r["db_share"]
            out.append((f"db on ({shape[0]}, {shape[2]}) float64: share of 2-thread read bandwidth",
                        frac, ">= 0.70", frac >= 0.70))
    one = {(tuple(r["shape"]), r["dtype"]): r for r in rows
           if not r["default_threads"] and r["threads"] == 1}
    for shape in [(4096, 1024, 1024)]:
        r1, rd = one.get((shape, "float64")), by_key.get((shape, "float64", True))
        if r1 and rd and rd["threads"] >= 2:
            s = r1["median_s"]["fastlinear"] / rd["median_s"]["fastlinear"]
            out.append((f"{shape} float64: speed-up {rd['threads']} threads over 1", s, ">= 1.70",
                        s >= 1.70))
    return out


def plot(rows, path):
    plt = pyplot()
    if plt is None:
        return None
    default = [r for r in rows if r["default_threads"]]
    if not default:
        return None
    dtypes = sorted({r["dtype"] for r in default})
    fig, axes = plt.subplots(1, len(dtypes), figsize=(7 * len(dtypes), 4.5), squeeze=False)
    for ax, dtype in zip(axes[0], dtypes):
        rs = [r for r in default if r["dtype"] == dtype]
        labels = ["\n".join(map(str, r["shape"])) for r in rs]
        peers = [p for p in ("fastlinear", "numpy", "torch") if any(p in r["gflops"] for r in rs)]
        width = 0.8 / len(peers)
        xs = np.arange(len(rs))
        for i, p in enumerate(peers):
            ax.bar(xs + i * width, [r["gflops"].get(p, 0) for r in rs], width, label=p)
        ax.plot(xs + 0.4 - width / 2, [r["gflops"]["gemm3"] for r in rs], "k_", markersize=24,
                markeredgewidth=2, label="BLAS floor (3 GEMMs)")
        ax.set_xticks(xs + 0.4 - width / 2)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylabel("GFLOP/s (6 N M_in M_out per step)")
        ax.set_title(f"{dtype}, {default[0]['threads']} threads: one training step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", type=parse_shapes,
                    help="'N,M_in,M_out;N,M_in,M_out;...' (default: the standard six)")
    ap.add_argument("--dtypes", default="float32,float64", help="comma-separated (default both)")
    ap.add_argument("--threads", default="default,1",
                    help="comma-separated thread counts; 'default' is the process default")
    ap.add_argument("--rounds", type=int, default=30, help="most rounds per case (default 30)")
    ap.add_argument("--budget", type=float, default=15.0,
                    help="seconds a case takes, at least 3 rounds (default 15)")
    ap.add_argument("--settle", type=float, default=0.12,
                    help="seconds of sleep before each peer's turn (default 0.12)")
    ap.add_argument("--quick", action="store_true", help="small shapes, few rounds: under 30 s")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    ap.add_argument("--targets", action="store_true",
                    help="check the project's performance targets (docs/performance.md)")
    ap.add_argument("--out", default=RESULTS, help=f"results folder (default {RESULTS})")
    args = ap.parse_args(argv)

    shapes = args.shapes or (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    dtypes = [np.dtype(d.strip()).name for d in args.dtypes.split(",")]
    threads = [None if t.strip() == "default" else int(t) for t in args.threads.split(",")]
    budget, max_rounds = (1.0, 3) if args.quick else (args.budget, args.rounds)
    if args.quick and args.threads == "default,1":
        threads = [None]
    with_torch = not args.no_torch and available("torch")

    bw1, bw2 = read_bandwidth(1), read_bandwidth(2)
    info = {
        **run_info(),
        "python": sys.version.split()[0], "fastlinear": fastlinear._config.config(),
        "threadpool_info": threadpool_info(),
        "torch": (sys.modules["torch"].__version__ if with_torch else None),
        "read_bandwidth_GBps": {"1 thread": bw1 / 1e9, "2 threads": bw2 / 1e9},
    }
    print(f"fastlinear {fastlinear.__version__} on {info['cpu']}, {info['cpus']} CPUs, "
          f"default threads {fastlinear.get_num_threads()}; torch: {info['torch'] or 'not installed'}")
    print(f"read bandwidth (NumPy sum): 1 thread {bw1 / 1e9:.1f} GB/s, 2 threads {bw2 / 1e9:.1f} GB/s")
    peers = ["fastlinear", "numpy", "gemm3"] + (["torch"] if with_torch else [])
    print_header(peers)
    rows = []
    for dtype in dtypes:
        for shape in shapes:
            for t in threads:
                if sys.stdout.isatty():
                    print(f"  ... {dtype} {shape} threads={t or 'default'}", end="\r", flush=True)
                row = run_case(shape, dtype, t, with_torch, budget, max_rounds, args.settle)
                rows.append(row)
                print_row(row, peers)
    report("bench", args.out, info, rows, check_targets(rows) if args.targets else [], plot)


def pyplot():
    """matplotlib.pyplot on a file-only backend, or None where matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def report(prefix, out, info, rows, targets, plot=None):
    """Print the targets (with the CPU), write <prefix>-<time>.json and, given ``plot``, .png."""
    if targets:
        print(f"\ntargets on {info['cpu']} (medians of per-round ratios in this run):")
        for desc, value, bound, ok in targets:
            print(f"  [{'ok' if ok else 'MISSED'}] {desc} = {value:.3f} ({bound})")
    os.makedirs(out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = os.path.join(out, f"{prefix}-{stamp}.json")
    with open(json_path, "w") as f:
        json.dump({"info": info, "rows": rows,
                   "targets": [dict(zip(("what", "value", "bound", "holds"), t)) for t in targets]},
                  f, indent=1, default=str)
    png = plot(rows, os.path.join(out, f"{prefix}-{stamp}.png")) if plot else None
    why = ("matplotlib is not installed" if pyplot() is None
           else "no figures at the default thread count")
    print(f"\nwrote {json_path}" + (f" and {png}" if png else "" if plot is None
                                     else f" (no plot: {why})"))


if __name__ == "__main__":
    main()
