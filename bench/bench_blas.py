"""Benchmark: fastlinear's step with each BLAS backend, and what the planner chose.

One step is the forward y = x W + b and the backward dx, dW, db given dy.
Peers, interleaved round by round in one process:

* auto   - the plans the planner chose among every backend installed
* scipy  - the plans it chose with SciPy's BLAS only (fastlinear without the extra)
* mkl    - the plans it chose with MKL only (``pip install "fastlinear[mkl]"``)
* openblas - the plans it chose with scipy-openblas32's OpenBLAS only
             (``pip install "fastlinear[openblas]"``)
* torch  - torch.nn.Linear forward + backward(dy), if installed

Each fastlinear peer runs the plans the planner measured under its setting
(``set_blas``), so that they can take turns call by call.  Ratios are
medians over rounds of (auto time / peer time) within a round.  Results go to
bench/results/blas-<time>.json.
"""
import argparse
import statistics

import numpy as np
from threadpoolctl import threadpool_info

import fastlinear
from bench import RESULTS, available, calls_per_peer, cpu_name, interleaved, report, run_info
from fastlinear import _backends, _plans
from fastlinear._problem import KINDS, Problem

SHAPES = [(64, 784, 256), (256, 1024, 1024), (4096, 1024, 1024)]
QUICK_SHAPES = [(64, 784, 256)]
# (shape or None for every one, dtype, peer, bound): auto / peer <= bound.  Against
# scipy where auto chose another backend (elsewhere both run SciPy's); against torch
# on (4096, 1024, 1024), where PyTorch brings MKL on Intel CPUs.
TARGETS = [(None, dtype, "scipy", 1.00) for dtype in ("float32", "float64")]
TARGETS += [((4096, 1024, 1024), dtype, "torch", 1.00) for dtype in ("float32", "float64")]


def plans_for(blas, shape, dtype):
    """(forward plan, backward plan) the planner chooses for ``shape`` with ``blas``."""
    fastlinear.set_blas(blas)
    return tuple(_plans.planner.choose(Problem(KINDS[kind], dtype, *shape)) for kind in ("f", "b11"))


def run_case(shape, dtype, blases, with_torch, budget, settle):
    N, M_in, M_out = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, M_in)).astype(dtype)
    W = (rng.standard_normal((M_in, M_out)) / np.sqrt(M_in)).astype(dtype)
    b = rng.standard_normal(M_out).astype(dtype)
    dy = rng.standard_normal((N, M_out)).astype(dtype)
    y, dx, dW, db = np.empty((N, M_out), dtype), np.empty_like(x), np.empty_like(W), np.empty_like(b)
    plans = {blas: plans_for(blas, shape, dtype) for blas in blases}
    fastlinear.set_blas("auto")

    def step(forward_plan, backward_plan):
        def run():
            fastlinear.linear_forward(x, W, b, out=y, _plan=forward_plan)
            fastlinear.linear_backward(x, W, dy, dx=dx, dW=dW, db=db, _plan=backward_plan)
        return run

    peers = {blas: step(*plans[blas]) for blas in blases}
    if with_torch:
        import torch
        layer = torch.nn.Linear(M_in, M_out).to(getattr(torch, dtype))
        tx, tdy = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)

        def torch_step():
            tx.grad = None
            layer.zero_grad(set_to_none=True)
            layer(tx).backward(tdy)
        peers["torch"] = torch_step
    calls = calls_per_peer(peers)
    library = {name: "torch" if name == "torch" else "fastlinear" for name in peers}
    times = interleaved(peers, (3, 500), budget, calls, settle, library)
    row = {"shape": list(shape), "dtype": dtype, "rounds": len(times["auto"]),
           "plans": {blas: [_plans.plan_to_json(p) for p in plans[blas]] for blas in blases},
           "median_s": {name: statistics.median(ts) for name, ts in times.items()},
           "ratio": {name: statistics.median(a / p for a, p in zip(times["auto"], ts))
                     for name, ts in times.items() if name != "auto"}}
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_SHAPES}")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--budget", type=float, default=6.0, help="seconds per case")
    parser.add_argument("--settle", type=float, default=0.12)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    with_torch = not args.no_torch and available("torch")
    found = _backends.backends.found()
    print(f"fastlinear {fastlinear.__version__} on {cpu_name()}, "
          f"{fastlinear.get_num_threads()} threads; backends: {found}")
    blases = ["auto", "scipy"] + [name for name in _backends.OPTIONAL if name in found]
    for name in _backends.OPTIONAL:
        if name not in found:
            print(f"{name} is not used: {_backends.backends.missing.get(name)}")
    names = blases + (["torch"] if with_torch else [])
    print(f"{'N, M_in, M_out':>20} {'dtype':8}" + "".join(f"{n + ' ms':>11}" for n in names)
          + "".join(f"{'/' + n:>9}" for n in names[1:]) + "  auto's backend (forward, backward)",
          flush=True)
    rows = []
    for shape in QUICK_SHAPES if args.quick else SHAPES:
        for dtype in args.dtypes.split(","):
            row = run_case(shape, dtype, blases, with_torch, args.budget, args.settle)
            rows.append(row)
            print(f"{', '.join(map(str, shape)):>20} {dtype:8}"
                  + "".join(f"{row['median_s'][n] * 1e3:11.3f}" for n in names)
                  + "".join(f"{row['ratio'][n]:9.3f}" for n in names[1:])
                  + "  " + ", ".join(p["blas"] for p in row["plans"]["auto"]), flush=True)
    targets = []
    for shape, dtype, peer, bound in TARGETS:
        for row in rows:
            if (shape in (None, tuple(row["shape"])) and row["dtype"] == dtype
                    and peer in row["ratio"]
                    and (peer != "scipy" or any(p["blas"] != "scipy"
                                                for p in row["plans"]["auto"]))):
                value = row["ratio"][peer]
                targets.append((f"{tuple(row['shape'])} {dtype}: auto / {peer}", value,
                                f"<= {bound}", value <= bound))
    info = {**run_info(), "threads": fastlinear.get_num_threads(), "backends": found,
            "blas": threadpool_info()}
    report("blas", args.out, info, rows, targets)


if __name__ == "__main__":
    main()
