"""Benchmark: scikit-learn's MLPClassifier against fastlinear.sklearn's, fit and predict.

Each case fits a fresh estimator, with the same parameters and random_state, and
times ``fit`` and then ``predict_proba`` on 10,000 rows.  Peers, interleaved round
by round in one process:

* sklearn    - sklearn.neural_network.MLPClassifier
* fastlinear - fastlinear.sklearn.MLPClassifier
* torch      - the same network, loss (cross-entropy with scikit-learn's L2 term
               as weight decay) and solver as a torch.nn + torch.optim loop over
               shuffled batches, for as many epochs as scikit-learn's fit runs,
               if PyTorch is installed

Data: scikit-learn's digits (1,797 rows, 64 features, hidden layer (100,), the
defaults), and MNIST-shaped synthetic data (784 features, hidden layers (256, 128),
10 classes).  Batch sizes 64 and scikit-learn's default ("auto": 200), solvers adam
and sgd, both dtypes.  Each ratio is the median over rounds of (fastlinear's time /
the peer's time) in a round.

``--load N`` runs N busy-looping processes meanwhile, as on a shared machine.
Results go to bench/results/: sklearn-<time>.json with every figure, and a .png.
"""
import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_info

import fastlinear
from bench import RESULTS, available, cpu_name, interleaved, pyplot, report, run_info
from bench_mlp import cpu_load

PREDICT_ROWS = 10_000
# (data, hidden layers, epochs): digits' epochs are scikit-learn's default max_iter
# (fits stop at convergence or there); the synthetic data gets a fixed number.
DATA = {"digits": ((100,), 200), "mnist-shaped": ((256, 128), 2)}


def load_data(name, rows, dtype):
    """(X, y) of ``name``, and 10,000 rows to predict."""
    if name == "digits":
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        X = (X / 16).astype(dtype)
    else:
        # Rows of a fixed random "teacher" network: learnable, unlike random labels.
        rng = np.random.default_rng(0)
        X = rng.random((rows, 784)).astype(dtype)
        teacher = rng.standard_normal((784, 10))
        y = np.argmax(np.tanh((X - 0.5) @ teacher), axis=1)
    predict = np.resize(X, (PREDICT_ROWS, X.shape[1]))
    return X, y, predict


def estimator_fns(cls, params, X, y, predict):
    """fit and predict_proba of a fresh estimator per fit."""
    state = {}

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at the epoch limit
            state["model"] = cls(**params).fit(X, y)

    def predict_proba():
        state["model"].predict_proba(predict)
    return fit, predict_proba


def torch_fns(params, epochs, X, y, predict):
    """The same training, for ``epochs`` epochs, as a torch.nn + torch.optim loop, and
    its prediction."""
    import torch
    dtype = getattr(torch, X.dtype.name)
    sizes = [X.shape[1], *params["hidden_layer_sizes"], int(y.max()) + 1]
    inputs, labels = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    rows = torch.from_numpy(predict)
    batch = min(200, len(X)) if params["batch_size"] == "auto" else params["batch_size"]
    state = {}

    def fit():
        torch.manual_seed(0)
        layers = []
        for m, n in zip(sizes[:-1], sizes[1:]):
            layers += [torch.nn.Linear(m, n), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers[:-1]).to(dtype)
        # scikit-learn's L2 term alpha/2 |W|² / batch is weight decay alpha / batch.
        decay = params["alpha"] / batch
        if params["solver"] == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8,
                                         weight_decay=decay)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9,
                                        nesterov=True, weight_decay=decay)
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(epochs):
            for index in torch.randperm(len(inputs)).split(batch):
                optimizer.zero_grad()
                loss_fn(model(inputs[index]), labels[index]).backward()
                optimizer.step()
        state["model"] = model

    def predict_proba():
        with torch.no_grad():
            torch.softmax(state["model"](rows), dim=1)
    return fit, predict_proba


def run_case(data, rows, batch, solver, dtype, peers, rounds, settle):
    from sklearn.neural_network import MLPClassifier

    from fastlinear.sklearn import MLPClassifier as FastMLPClassifier
    hidden, epochs = DATA[data]
    X, y, predict = load_data(data, rows, dtype)
    params = dict(hidden_layer_sizes=hidden, solver=solver, batch_size=batch, max_iter=epochs,
                  alpha=1e-4, random_state=0)
    if data != "digits":
        params.update(tol=0.0, n_iter_no_change=epochs + 1)  # exactly `epochs` epochs
    fns = {"fastlinear": estimator_fns(FastMLPClassifier, params, X, y, predict),
           "sklearn": estimator_fns(MLPClassifier, params, X, y, predict)}
    if "torch" in peers:
        # As many epochs as scikit-learn's fit runs before it stops.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            epochs = MLPClassifier(**params).fit(X, y).n_iter_
        fns["torch"] = torch_fns(params, epochs, X, y, predict)
    library = {name: name for name in fns}
    # fit, then predict_proba with the model just fitted, as one turn: the fit's figure
    # is the first call's, the prediction's the median of five.
    times = {name: {"fit": [], "predict": []} for name in fns}

    def turn(name):
        fit, predict_proba = fns[name]
        start = time.perf_counter()
        fit()
        times[name]["fit"].append(time.perf_counter() - start)
        calls = []
        for _ in range(5):
            start = time.perf_counter()
            predict_proba()
            calls.append(time.perf_counter() - start)
        times[name]["predict"].append(statistics.median(calls))
    interleaved({name: (lambda name=name: turn(name)) for name in fns}, (rounds, rounds), 0.0,
                {name: 1 for name in fns}, settle, library)
    for name in fns:  # interleaved's warm-up turn is not a round
        for what in ("fit", "predict"):
            times[name][what] = times[name][what][1:]
    row = {"data": data, "rows": len(X), "batch": batch, "solver": solver, "dtype": dtype,
           "median_s": {name: {what: statistics.median(v) for what, v in t.items()}
                        for name, t in times.items()},
           "ratio": {}, "times_s": times}
    for name in fns:
        if name != "fastlinear":
            row["ratio"][name] = {what: statistics.median(
                np.array(times["fastlinear"][what]) / np.array(times[name][what]))
                for what in ("fit", "predict")}
    return row


def plot(rows, path):
    plt = pyplot()
    if plt is None or not rows:
        return None
    fig, ax = plt.subplots(figsize=(10, 4))
    labels = [f"{r['data']}\n{r['solver']} {r['batch']} {r['dtype'][5:]}" for r in rows]
    for k, what in enumerate(("fit", "predict")):
        ax.bar(np.arange(len(rows)) + 0.4 * k, [r["ratio"]["sklearn"][what] for r in rows],
               0.4, label=f"{what}: fastlinear / scikit-learn")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(rows)) + 0.2, labels, fontsize=7)
    ax.set_ylabel("time ratio (lower is faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="digits,mnist-shaped",
                        help="comma-separated: digits, mnist-shaped")
    parser.add_argument("--rows", type=int, default=10_000,
                        help="rows of the MNIST-shaped data (default 10000)")
    parser.add_argument("--batch", default="64,auto", help="comma-separated batch sizes")
    parser.add_argument("--solvers", default="adam,sgd")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per case")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="seconds of sleep before a peer's turn (thread pools stop spinning)")
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="N busy-looping processes run meanwhile")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    if not available("sklearn"):
        sys.exit("bench_sklearn.py needs scikit-learn: pip install 'fastlinear[sklearn]'")
    peers = ["sklearn"] + (["torch"] if available("torch") and not args.no_torch else [])
    info = {**run_info(),
            "python": platform.python_version(), "numpy": np.__version__,
            "fastlinear": fastlinear.__version__, "threads": fastlinear.get_num_threads(),
            "blas": threadpool_info(), "time": datetime.datetime.now().isoformat(),
            "load": args.load}
    import sklearn
    info["sklearn"] = sklearn.__version__
    cases = [(data, int(batch) if batch != "auto" else batch, solver, dtype)
             for data in args.data.split(",") for batch in args.batch.split(",")
             for solver in args.solvers.split(",") for dtype in args.dtypes.split(",")]
    print(f"fastlinear {fastlinear.__version__}, scikit-learn {sklearn.__version__} on "
          f"{info['cpu']}, {info['cpus']} CPUs; peers: {', '.join(peers)}"
          + (f"; {args.load} busy process(es) running" if args.load else ""))
    print(f"{'case':>50}" + "".join(f"{n + ' fit s':>16}" for n in ["fastlinear"] + peers)
          + "".join(f"{'fit/' + n:>13}{'pred/' + n:>13}" for n in peers), flush=True)
    rows = []
    start = time.perf_counter()
    with cpu_load(args.load):
        for data, batch, solver, dtype in cases:
            row = run_case(data, args.rows, batch, solver, dtype, peers, args.rounds,
                           args.settle)
            rows.append(row)
            case = f"{data} {row['rows']} rows, {solver}, batch {batch}, {dtype}"
            print(f"{case:>50}"
                  + "".join(f"{row['median_s'][n]['fit']:16.3f}"
                            for n in ["fastlinear"] + peers)
                  + "".join(f"{row['ratio'][n]['fit']:13.3f}{row['ratio'][n]['predict']:13.3f}"
                            for n in peers), flush=True)
    info["seconds"] = round(time.perf_counter() - start, 1)
    report("sklearn", args.out, info, rows, [], plot)


if __name__ == "__main__":
    main()
