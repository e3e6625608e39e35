"""Benchmark: one training step of a whole MLP, fastlinear against its peers.

A step is the forward pass through every layer (ReLU between layers), softmax
cross-entropy, the backward pass and an SGD update of every weight and bias,
on synthetic data.  Peers, interleaved round by round in one process:

* fastlinear - linear_forward / linear_backward into preallocated buffers, each
               backward taking its layer's SGD step (lr=, b=)
* numpy      - the same loop with np.matmul(..., out=) (the best NumPy allows)
* torch      - torch.nn.Sequential + torch.optim.SGD, if PyTorch is installed
* sklearn    - MLPClassifier(solver="sgd").partial_fit on the batch, if installed
* fl-grads   - fastlinear's layers returning dW and db into buffers, stepped
               by the NumPy loop's own update (with --grads or --full)
* fl-1t      - fastlinear's loop on one thread (with --one-thread or --load)

``--load N`` runs N busy-looping processes meanwhile, as on a shared machine;
``--mixed`` adds one NumPy product to every peer's step, as a loop that mixes
its own NumPy products in.

The array loops share everything but the layers: preallocated buffers and the
loss; numpy and fl-grads also share the update.  The first layer computes no
dx.  fastlinear's layers fuse their ReLU (forward and backward); NumPy's write
ReLU and its mask in place.  Each ratio is the median over rounds of
(fastlinear time / peer time) in a round.

``--parity`` also times the NumPy loop's matrix products alone and the loss and
update alone.  Their sum over the NumPy step ("parity") is what a loop with
NumPy's update would come to, relative to NumPy's, if its products ran
exactly as fast as NumPy's and its bias, activation and db cost nothing.
Below parity, fastlinear's products beat NumPy's or its step saves the
update's passes.

Run ``python bench/bench_mlp.py --help`` for options.  Results go to
bench/results/: mlp-<time>.json with every figure and mlp-<time>.png.
"""
import argparse
import contextlib
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import fastlinear
from bench import (RESULTS, available, calls_per_peer, cpu_name, interleaved, pyplot, report,
                   run_info)

# (layer sizes, batch): the standard run answers "is it faster for my training?"
# in about two minutes; --full adds a batch size and one thread.
STANDARD_CONFIGS = [((784, 256, 128, 10), 64), ((784, 256, 128, 10), 256),
                    ((64, 128, 10), 32), ((1024, 1024, 1024, 10), 128)]
FULL_CONFIGS = [((784, 256, 128, 10), 32)] + STANDARD_CONFIGS
QUICK_CONFIGS = [((784, 256, 128, 10), 64), ((64, 128, 10), 32)]
LEARNING_RATE = 0.01

# (sizes, batch, dtype, peer, bound): fastlinear's step / peer's step <= bound,
# at default threads and at one thread.
TARGETS = [(sizes, batch, dtype, "numpy", 0.90 if batch < 256 else 0.95)
           for sizes, batch in FULL_CONFIGS[:3] for dtype in ("float32", "float64")]
TARGETS += [(sizes, batch, dtype, "torch", 1.00)
            for sizes, batch in FULL_CONFIGS[:3] for dtype in ("float32", "float64")]
TARGETS += [((64, 128, 10), 32, dtype, peer, bound) for dtype in ("float32", "float64")
            for peer, bound in (("numpy", 0.75), ("torch", 0.50))]
TARGETS += [((1024, 1024, 1024, 10), 128, "float32", "numpy", 0.95)]


class ArrayMLP:
    """An MLP trained by a loop over NumPy arrays; subclasses give the layer.

    forward(i, h) writes layer i's output y[i] (after ReLU for a hidden
    layer); backward(i) takes dy[i], the gradient at that output, and writes
    dW[i], db[i] and, but for the first layer, dy[i - 1].
    """

    def __init__(self, sizes, batch, dtype, threads):
        rng = np.random.default_rng(0)
        self.threads = threads
        self.x = rng.standard_normal((batch, sizes[0])).astype(dtype)
        self.labels = rng.integers(0, sizes[-1], batch)
        self.W = [(rng.standard_normal((m, n)) / np.sqrt(m)).astype(dtype)
                  for m, n in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(n, dtype) for n in sizes[1:]]
        self.dW = [np.empty_like(W) for W in self.W]
        self.db = [np.empty_like(b) for b in self.b]
        self.y = [np.empty((batch, n), dtype) for n in sizes[1:]]
        self.dy = [np.empty((batch, n), dtype) for n in sizes[1:]]
        self.rows = np.arange(batch)
        self.last = len(self.W) - 1
        self.learning_rate = LEARNING_RATE

    def step(self):
        h = self.x
        for i in range(self.last + 1):
            self.forward(i, h)
            h = self.y[i]
        self.loss()
        for i in range(self.last, -1, -1):
            self.backward(i)
        self.update()

    def loss(self):
        """Softmax cross-entropy, averaged over the batch: dL/dlogits = (p - onehot) / batch."""
        logits, dlogits = self.y[-1], self.dy[-1]
        np.subtract(logits, logits.max(axis=1, keepdims=True), out=dlogits)
        np.exp(dlogits, out=dlogits)
        dlogits /= dlogits.sum(axis=1, keepdims=True)
        dlogits[self.rows, self.labels] -= 1
        dlogits *= 1.0 / len(self.rows)

    def update(self):
        for param, grad in zip(self.W + self.b, self.dW + self.db):
            grad *= self.learning_rate
            param -= grad

    def input_of(self, i):
        return self.x if i == 0 else self.y[i - 1]


class FastlinearMLP(ArrayMLP):
    """ReLU fused into the layers; dy of a hidden layer is overwritten with dz;
    each backward takes the SGD step of its W and b itself (lr=)."""

    def forward(self, i, h):
        fastlinear.linear_forward(h, self.W[i], self.b[i], out=self.y[i], num_threads=self.threads,
                                  activation="relu" if i < self.last else None)

    def backward(self, i, **step):
        hidden = i < self.last
        step = step or {"lr": self.learning_rate, "b": self.b[i]}
        fastlinear.linear_backward(self.input_of(i), self.W[i], self.dy[i],
                                   activation="relu" if hidden else None,
                                   y=self.y[i] if hidden else None, overwrite_dy=hidden,
                                   need_dx=i > 0, dx=self.dy[i - 1] if i > 0 else None,
                                   num_threads=self.threads, **step)

    def update(self):
        pass  # done by each backward


class FastlinearGradsMLP(FastlinearMLP):
    """The same layers returning dW and db, which the NumPy loop's update applies."""

    def backward(self, i):
        super().backward(i, dW=self.dW[i], db=self.db[i])

    update = ArrayMLP.update


class NumpyMLP(ArrayMLP):
    """np.matmul into preallocated buffers; ReLU and its mask written in place."""

    def __init__(self, sizes, batch, dtype, threads):
        super().__init__(sizes, batch, dtype, threads)
        self.mask = [np.empty((batch, n), bool) for n in sizes[1:-1]]

    def forward(self, i, h):
        y = self.y[i]
        np.matmul(h, self.W[i], out=y)
        y += self.b[i]
        if i < self.last:
            np.greater(y, 0, out=self.mask[i])
            np.multiply(y, self.mask[i], out=y)

    def backward(self, i):
        dy = self.dy[i]
        if i < self.last:
            np.multiply(dy, self.mask[i], out=dy)
        np.matmul(self.input_of(i).T, dy, out=self.dW[i])
        dy.sum(axis=0, out=self.db[i])
        if i > 0:
            np.matmul(dy, self.W[i].T, out=self.dy[i - 1])


class NumpyProducts(NumpyMLP):
    """The NumPy loop's matrix products alone: no bias, ReLU, db, loss or update."""

    def __init__(self, sizes, batch, dtype, threads):
        super().__init__(sizes, batch, dtype, threads)
        rng = np.random.default_rng(1)
        for dy in self.dy:  # the loss, which would write the last dy, does not run
            dy[:] = rng.standard_normal(dy.shape) / batch

    def forward(self, i, h):
        np.matmul(h, self.W[i], out=self.y[i])

    def backward(self, i):
        np.matmul(self.input_of(i).T, self.dy[i], out=self.dW[i])
        if i > 0:
            np.matmul(self.dy[i], self.W[i].T, out=self.dy[i - 1])

    def loss(self):
        pass

    def update(self):
        pass


class SharedCode(ArrayMLP):
    """What the NumPy loop runs besides its layers: the loss and the SGD update."""

    def __init__(self, sizes, batch, dtype, threads):
        super().__init__(sizes, batch, dtype, threads)
        rng = np.random.default_rng(1)
        for a in self.y + self.dW + self.db:
            a[:] = rng.standard_normal(a.shape) / batch
        # Multiplying by 1 costs what multiplying by the rate does, and keeps
        # the gradients, which no layer rewrites here, from decaying into
        # subnormals over the rounds.
        self.learning_rate = 1.0

    def step(self):
        self.loss()
        self.update()


def torch_step(sizes, batch, dtype):
    import torch
    torch.manual_seed(0)
    layers = []
    for m, n in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(m, n), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(getattr(torch, dtype))
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch, sizes[0])).astype(dtype))
    labels = torch.from_numpy(rng.integers(0, sizes[-1], batch))

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), labels).backward()
        optimizer.step()
    return step


def sklearn_step(sizes, batch, dtype):
    from sklearn.neural_network import MLPClassifier
    model = MLPClassifier(hidden_layer_sizes=sizes[1:-1], solver="sgd", alpha=0.0,
                          momentum=0.0, learning_rate_init=LEARNING_RATE, batch_size=batch,
                          random_state=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], batch)
    classes = np.arange(sizes[-1])
    model.partial_fit(x, labels, classes=classes)  # sets up the layers and their dtype

    def step():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_fit(x, labels)
    return step


# The --parity parts: the NumPy loop's products alone, and its loss and update
# alone (see the module's docstring).
PARITY_PARTS = {"numpy products": NumpyProducts, "loss and update": SharedCode}


def run_config(sizes, batch, dtype, threads, peers, budget, max_rounds, settle, parity, mixed):
    fns = {"fastlinear": FastlinearMLP(sizes, batch, dtype, threads).step,
           "numpy": NumpyMLP(sizes, batch, dtype, threads).step}
    if "fl-grads" in peers:
        fns["fl-grads"] = FastlinearGradsMLP(sizes, batch, dtype, threads).step
    if "fl-1t" in peers:
        fns["fl-1t"] = FastlinearMLP(sizes, batch, dtype, 1).step
    if parity:
        fns.update((name, part(sizes, batch, dtype, threads).step)
                   for name, part in PARITY_PARTS.items())
    if "torch" in peers:
        fns["torch"] = torch_step(sizes, batch, dtype)
    if "sklearn" in peers:
        fns["sklearn"] = sklearn_step(sizes, batch, dtype)
    if mixed:
        fns = {name: with_numpy_product(fn, sizes, batch, dtype) for name, fn in fns.items()}
    torch_threads = None
    if "torch" in fns and threads is not None:
        import torch
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            calls = calls_per_peer(fns)
            # Every peer is its own library: a turn after another peer's starts
            # once that peer's thread pool has stopped spinning.
            times = interleaved(fns, (3, max_rounds), budget, calls, settle,
                                {name: name for name in fns})
    finally:
        if torch_threads is not None:
            import torch
            torch.set_num_threads(torch_threads)
    row = {"sizes": list(sizes), "batch": batch, "dtype": dtype,
           "threads": threads or fastlinear.get_num_threads(), "default_threads": threads is None,
           "rounds": len(times["fastlinear"]), "median_s": {}, "ratio": {}}
    for name, ts in times.items():
        row["median_s"][name] = statistics.median(ts)
        if name != "fastlinear" and name not in PARITY_PARTS:
            row["ratio"][name] = statistics.median(f / p for f, p in zip(times["fastlinear"], ts))
    if parity:
        row["parity"] = statistics.median(
            (g + s) / n for g, s, n in zip(*(times[name] for name in PARITY_PARTS), times["numpy"]))
    return row


def with_numpy_product(step, sizes, batch, dtype):
    """``step`` after one NumPy product of the first layer's shape, as a loop that
    mixes its own NumPy products in (NumPy's BLAS threads then share the cores)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((batch, sizes[0])).astype(dtype)
    W = rng.standard_normal((sizes[0], sizes[1])).astype(dtype)
    y = np.empty((batch, sizes[1]), dtype)

    def mixed():
        np.matmul(x, W, out=y)
        step()
    return mixed


@contextlib.contextmanager
def cpu_load(processes):
    """Run ``processes`` busy loops in other processes, as a shared machine or a data loader would."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


PEER_NAMES = {"numpy": "the NumPy loop (np.matmul into preallocated buffers)",
              "torch": "PyTorch (torch.nn + torch.optim.SGD)",
              "sklearn": "scikit-learn (MLPClassifier.partial_fit on the batch)",
              "fl-grads": "fl-grads (fastlinear's layers, NumPy's update)",
              "fl-1t": "fastlinear on one thread"}


def verdict(rows, info):
    """The answer in plain words: how fastlinear's step compares with each peer's."""
    lines = [f"On {info['cpu']}, {info['cpus']} CPUs: fastlinear's whole training step "
             "against the same step in"]
    for peer, name in PEER_NAMES.items():
        cases = [(1 / row["ratio"][peer], f"{label(row)} {row['dtype']} t{row['threads']}")
                 for row in rows if peer in row["ratio"]]
        if not cases:
            continue
        faster = [c for c in cases if c[0] >= 1]
        slower = [c for c in cases if c[0] < 1]
        text = f"  {name}: faster in {len(faster)} of {len(cases)} runs"
        if faster:
            speedups = sorted(c[0] for c in faster)
            text += (f", {speedups[0]:.2f}x to {speedups[-1]:.2f}x as fast"
                     f" (median {statistics.median(speedups):.2f}x)")
        if slower:
            worst = min(slower)
            text += (f"; slower in {len(slower)}, by up to {1 / worst[0] - 1:.1%} "
                     f"({worst[1]})")
        lines.append(text)
    lines.append("(Medians of per-round ratios in this run, on this machine: another CPU, BLAS "
                 "or load\n gives other figures; see the README's \"Performance\".)")
    return "\n".join(lines)


def label(row):
    return f"{'-'.join(map(str, row['sizes']))} b{row['batch']}"


def check_targets(rows):
    out = []
    for sizes, batch, dtype, peer, bound in TARGETS:
        for row in rows:
            if (tuple(row["sizes"]), row["batch"], row["dtype"]) == (sizes, batch, dtype) \
                    and peer in row["ratio"]:
                thr = "default threads" if row["default_threads"] else f"{row['threads']} thread(s)"
                value = row["ratio"][peer]
                parity = f"; parity {row['parity']:.3f}" if peer == "numpy" and "parity" in row else ""
                out.append((f"{label(row)} {dtype} {thr}: fastlinear / {peer}", value,
                            f"<= {bound}{parity}", value <= bound))
    return out


def plot(rows, path):
    plt = pyplot()
    if plt is None:
        return None
    peers = [p for p in ("numpy", "torch", "sklearn") if any(p in r["ratio"] for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    width = 0.8 / max(1, len(peers))
    for k, peer in enumerate(peers):
        xs = [i + k * width for i, r in enumerate(rows) if peer in r["ratio"]]
        ax.bar(xs, [r["ratio"][peer] for r in rows if peer in r["ratio"]], width, label=peer)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([f"{label(r)}\n{r['dtype']} t{r['threads']}" for r in rows],
                       fontsize=7, rotation=90)
    ax.set_ylabel("fastlinear step / peer step")
    ax.set_yscale("log")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(f"MLP training step, {cpu_name()}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def parse_configs(text):
    """"784-256-128-10:64;64-128-10:32" -> [((784, 256, 128, 10), 64), ...]"""
    configs = []
    for part in text.replace(" ", "").split(";"):
        if part:
            sizes, _, batch = part.partition(":")
            configs.append((tuple(int(v) for v in sizes.split("-")), int(batch)))
    return configs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two small configurations")
    parser.add_argument("--full", action="store_true",
                        help="also batch 32, one thread and fl-grads (about 10 minutes)")
    parser.add_argument("--configs", type=parse_configs,
                        help='e.g. "784-256-128-10:64;64-128-10:32" (layer sizes:batch)')
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--threads", default=None,
                        help='comma-separated thread counts, "default" for fastlinear\'s '
                             '(default: "default"; "default,1" with --full)')
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per configuration (default 10, 3 with --quick)")
    parser.add_argument("--rounds", type=int, default=200, help="at most this many rounds")
    parser.add_argument("--settle", type=float, default=0.12,
                        help="seconds of sleep before a turn that follows another peer's")
    parser.add_argument("--parity", action="store_true",
                        help="also time the NumPy loop's products alone and the loss and "
                             "update alone: the ratio fastlinear would reach with products "
                             "as fast as NumPy's")
    parser.add_argument("--grads", action="store_true", help="add the fl-grads peer")
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="run N busy-looping processes meanwhile, as on a shared machine "
                             "(adds the fl-1t peer)")
    parser.add_argument("--one-thread", action="store_true",
                        help="add the fl-1t peer: fastlinear's loop on one thread")
    parser.add_argument("--mixed", action="store_true",
                        help="every peer's step also runs one NumPy product, as a loop that "
                             "mixes its own NumPy products in")
    parser.add_argument("--targets", action="store_true",
                        help="check the project's performance targets (docs/performance.md)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    configs = args.configs or (QUICK_CONFIGS if args.quick else
                               FULL_CONFIGS if args.full else STANDARD_CONFIGS)
    budget = args.budget or (3.0 if args.quick else 10.0)
    thread_text = args.threads or ("default,1" if args.full else "default")
    threads = [None if t == "default" else int(t) for t in thread_text.split(",")]
    dtypes = args.dtypes.split(",")
    peers = [p for p, module, off in (("torch", "torch", args.no_torch),
                                      ("sklearn", "sklearn", args.no_sklearn))
             if not off and available(module)]
    if args.grads or args.full:
        peers.append("fl-grads")
    if args.one_thread or args.load:
        peers.append("fl-1t")
    info = {**run_info(),
            "python": platform.python_version(), "numpy": np.__version__,
            "fastlinear": fastlinear.__version__, "threads": fastlinear.get_num_threads(),
            "blas": threadpool_info(), "time": datetime.datetime.now().isoformat(),
            "load": args.load, "mixed": args.mixed}
    runs = [(sizes, batch, dtype, t) for sizes, batch in configs for dtype in dtypes
            for t in threads]
    print(f"fastlinear {fastlinear.__version__} on {info['cpu']}, {info['cpus']} CPUs, "
          f"default threads {info['threads']}; peers: {', '.join(['numpy'] + peers)}"
          + (f"; {args.load} busy process(es) running" if args.load else "")
          + ("; one NumPy product in every step" if args.mixed else ""))
    print(f"{len(runs)} runs of about {budget:g} s each, one row as each ends "
          "(fastlinear's plans for a new shape are measured in its first steps)")
    names = ["fastlinear", "numpy"] + peers
    print(f"{'':>6}{'MLP, batch':>22} {'dtype':8}{'thr':>4}"
          + "".join(f"{n + ' ms':>14}" for n in names)
          + "".join(f"{'/' + n:>10}" for n in names[1:]) + (f"{'parity':>9}" if args.parity else ""),
          flush=True)
    rows = []
    start = time.perf_counter()
    with cpu_load(args.load):
        for k, (sizes, batch, dtype, t) in enumerate(runs):
            row = run_config(sizes, batch, dtype, t, peers, budget, args.rounds, args.settle,
                             args.parity, args.mixed)
            rows.append(row)
            print(f"{f'[{k + 1}/{len(runs)}]':>6}{label(row):>22} {dtype:8}{row['threads']:>4}"
                  + "".join(f"{row['median_s'][n] * 1e3:14.3f}" for n in names)
                  + "".join(f"{row['ratio'][n]:10.3f}" for n in names[1:])
                  + (f"{row['parity']:9.3f}" if args.parity else ""), flush=True)
    info["seconds"] = round(time.perf_counter() - start, 1)
    report("mlp", args.out, info, rows, check_targets(rows) if args.targets else [], plot)
    print("\n" + verdict(rows, info))


if __name__ == "__main__":
    main()
