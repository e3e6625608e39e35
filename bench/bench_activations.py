"""Benchmark: a linear layer with an activation, fused by fastlinear or not.

One step is the forward y = f(x W + b) and the backward dx, dW, db given dy.
Peers, interleaved round by round in one process:

* fused    - linear_forward(activation=f) + linear_backward(activation=f), dz
             into a preallocated buffer as the unfused peer's
* unfused  - fastlinear's plain layer with f and its derivative in NumPy
             (for relu: the mask z > 0, y = z * mask, dz = dy * mask)
* plain    - fastlinear's layer without an activation (what fusing must not add to)
* numpy    - the whole step in NumPy (relu only)
* torch    - torch.nn.Linear + ReLU or GELU, forward + backward(dy), if installed

Ratios are medians over rounds of (fused time / peer time) within a round.
Results go to bench/results/act-<time>.json.
"""
import argparse
import statistics

import numpy as np
from threadpoolctl import threadpool_info

import fastlinear
from bench import RESULTS, available, calls_per_peer, cpu_name, interleaved, report, run_info

DEFAULT_CASES = [((100000, 64, 16), "relu"), ((64, 784, 256), "relu"),
                 ((64, 784, 256), "gelu"), ((100000, 64, 16), "gelu"),
                 ((4096, 1024, 1024), "relu")]
# (shape, dtype, activation, peer, bound): fused / peer <= bound.
TARGETS = [((100000, 64, 16), "float64", "relu", "unfused", 0.85),
           ((64, 784, 256), "float64", "relu", "unfused", 0.85),
           ((100000, 64, 16), "float64", "relu", "numpy", 0.70)]
TARGETS += [(shape, dtype, "gelu", "torch", 0.80) for shape in ((64, 784, 256), (100000, 64, 16))
            for dtype in ("float32", "float64")]
TARGETS += [((4096, 1024, 1024), dtype, "relu", "plain", 1.02) for dtype in ("float32", "float64")]


class Case:
    def __init__(self, shape, dtype, activation, with_torch):
        N, M_in, M_out = shape
        rng = np.random.default_rng(0)
        self.activation = activation
        self.x = rng.standard_normal((N, M_in)).astype(dtype)
        self.W = (rng.standard_normal((M_in, M_out)) / np.sqrt(M_in)).astype(dtype)
        self.b = rng.standard_normal(M_out).astype(dtype)
        self.dy = rng.standard_normal((N, M_out)).astype(dtype)
        self.y, self.z, self.dz = (np.empty((N, M_out), dtype) for _ in range(3))
        self.mask = np.empty((N, M_out), bool)
        self.dx, self.dW, self.db = np.empty_like(self.x), np.empty_like(self.W), np.empty_like(self.b)
        self.peers = {"fused": self.fused, "plain": self.plain}
        if activation == "relu":
            self.peers.update(unfused=self.unfused, numpy=self.numpy)
        if with_torch:
            self.setup_torch()

    def fused(self):
        act, z = self.activation, self.z if self.activation in ("gelu", "gelu_tanh") else None
        fastlinear.linear_forward(self.x, self.W, self.b, activation=act, out=self.y, z=z)
        fastlinear.linear_backward(self.x, self.W, self.dy, activation=act,
                                   **({"z": z} if z is not None else {"y": self.y}),
                                   dx=self.dx, dW=self.dW, db=self.db, dz=self.dz)

    def plain(self):
        fastlinear.linear_forward(self.x, self.W, self.b, out=self.y)
        fastlinear.linear_backward(self.x, self.W, self.dy, dx=self.dx, dW=self.dW, db=self.db)

    def unfused(self):
        fastlinear.linear_forward(self.x, self.W, self.b, out=self.z)
        np.greater(self.z, 0, out=self.mask)
        np.multiply(self.z, self.mask, out=self.y)
        np.multiply(self.dy, self.mask, out=self.dz)
        fastlinear.linear_backward(self.x, self.W, self.dz, dx=self.dx, dW=self.dW, db=self.db)

    def numpy(self):
        np.matmul(self.x, self.W, out=self.z)
        self.z += self.b
        np.greater(self.z, 0, out=self.mask)
        np.multiply(self.z, self.mask, out=self.y)
        np.multiply(self.dy, self.mask, out=self.dz)
        np.matmul(self.x.T, self.dz, out=self.dW)
        self.dz.sum(axis=0, out=self.db)
        np.matmul(self.dz, self.W.T, out=self.dx)

    def setup_torch(self):
        import torch
        M_in, M_out = self.W.shape
        layer = torch.nn.Linear(M_in, M_out).to(getattr(torch, self.W.dtype.name))
        act = torch.nn.ReLU() if self.activation == "relu" else torch.nn.GELU()
        x = torch.from_numpy(self.x).requires_grad_(True)
        dy = torch.from_numpy(self.dy)

        def step():
            x.grad = None
            layer.zero_grad(set_to_none=True)
            act(layer(x)).backward(dy)
        self.peers["torch"] = step


def run_case(shape, dtype, activation, with_torch, budget, settle):
    case = Case(shape, dtype, activation, with_torch)
    calls = calls_per_peer(case.peers)
    library = {name: "torch" if name == "torch" else "numpy" if name == "numpy" else "fastlinear"
               for name in case.peers}
    times = interleaved(case.peers, (3, 500), budget, calls, settle, library)
    row = {"shape": list(shape), "dtype": dtype, "activation": activation,
           "rounds": len(times["fused"]), "median_s": {}, "ratio": {}}
    for name, ts in times.items():
        row["median_s"][name] = statistics.median(ts)
        if name != "fused":
            row["ratio"][name] = statistics.median(f / p for f, p in zip(times["fused"], ts))
    return row


def parse_cases(text):
    """"4096,1024,1024:relu;64,784,256:gelu" -> [((4096, 1024, 1024), "relu"), ...]"""
    cases = []
    for part in text.replace(" ", "").split(";"):
        if part:
            shape, _, activation = part.partition(":")
            cases.append((tuple(int(v) for v in shape.split(",")), activation or "relu"))
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=parse_cases, default=DEFAULT_CASES,
                        help='e.g. "4096,1024,1024:relu;64,784,256:gelu" (N,M_in,M_out:activation)')
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds per case")
    parser.add_argument("--settle", type=float, default=0.12)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    with_torch = not args.no_torch and available("torch")
    print(f"fastlinear {fastlinear.__version__} on {cpu_name()}, "
          f"{fastlinear.get_num_threads()} threads")
    names = ["fused", "plain", "unfused", "numpy", "torch"]
    print(f"{'N, M_in, M_out':>20} {'dtype':8}{'act':>6}" + "".join(f"{n + ' ms':>12}" for n in names)
          + "".join(f"{'/' + n:>9}" for n in names[1:]), flush=True)
    rows = []
    for shape, activation in args.cases:
        for dtype in args.dtypes.split(","):
            row = run_case(shape, dtype, activation, with_torch, args.budget, args.settle)
            rows.append(row)
            print(f"{', '.join(map(str, shape)):>20} {dtype:8}{activation:>6}"
                  + "".join(f"{row['median_s'][n] * 1e3:12.3f}" if n in row["median_s"]
                            else f"{'-':>12}" for n in names)
                  + "".join(f"{row['ratio'][n]:9.3f}" if n in row["ratio"] else f"{'-':>9}"
                            for n in names[1:]), flush=True)
    targets = []
    for shape, dtype, activation, peer, bound in TARGETS:
        for row in rows:
            if (tuple(row["shape"]), row["dtype"], row["activation"]) == (shape, dtype, activation) \
                    and peer in row["ratio"]:
                value = row["ratio"][peer]
                targets.append((f"{shape} {dtype} {activation}: fused / {peer}", value,
                                f"<= {bound}", value <= bound))
    info = {**run_info(), "threads": fastlinear.get_num_threads(), "blas": threadpool_info()}
    report("act", args.out, info, rows, targets)

if __name__ == "__main__":
    main()
