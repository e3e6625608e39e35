"""Train fastlinear's MLPClassifier out of core, with dask-ml's Incremental.

The training set is a dask array whose row chunks are made only when a task needs
them: each chunk draws its rows with a seed of its own and labels them with a fixed
random "teacher" network, so the whole set is never in memory (at the default
400 000 rows it would be 205 MB).  dask-ml's Incremental passes the chunks one by one
to the estimator's partial_fit, on a dask.distributed LocalCluster in this process.
scikit-learn's MLPClassifier, with the same parameters, is trained the same way for
comparison: the script prints the wall time of each fit and its accuracy on held-out
rows from the same teacher.

    python examples/train_out_of_core.py --rows 400000 --chunk-rows 25000

Needs scikit-learn, dask and dask-ml: ``pip install fastlinear[dask,examples] dask-ml``.
"""
import argparse
import platform
import subprocess
import time

import numpy as np

try:
    import dask.array as da
    from distributed import Client, LocalCluster
    from sklearn import neural_network
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit("this example needs scikit-learn and dask: "
                     "pip install fastlinear[dask,examples]") from exc
try:
    from dask_ml.wrappers import Incremental
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit(f"this example needs dask-ml: pip install dask-ml ({exc})") from exc

from fastlinear.sklearn import MLPClassifier

FEATURES, TEACHER_HIDDEN, CLASSES = 64, 32, 4
PARAMS = dict(hidden_layer_sizes=(128,), batch_size=256, learning_rate_init=1e-3)


def features(seed, chunk, rows):
    """``rows`` rows of features, drawn with the seed of chunk ``chunk``."""
    return np.random.default_rng([seed, 0, chunk]).standard_normal((rows, FEATURES))


def labels(X, seed):
    """The classes the fixed random teacher, 64 -> 32 (tanh) -> 4, gives the rows of X."""
    rng = np.random.default_rng([seed, 1, 0])
    W1 = rng.standard_normal((FEATURES, TEACHER_HIDDEN)) / np.sqrt(FEATURES)
    W2 = rng.standard_normal((TEACHER_HIDDEN, CLASSES))
    return (np.tanh(X @ W1) @ W2).argmax(axis=1)


def lazy_dataset(rows, chunk_rows, seed):
    """X and y as dask arrays of row chunks; each chunk of X, and of y, is made from its
    seed by a task of its own when it is needed."""
    chunks = (chunk_rows,) * (rows // chunk_rows)
    chunks += (rows % chunk_rows,) if rows % chunk_rows else ()

    def X_chunk(block_id=None):
        return features(seed, block_id[0], chunks[block_id[0]])

    # y's tasks draw their rows again rather than read X's chunk: with dask and distributed
    # 2023.1, X.map_blocks(labels, drop_axis=1) reaches partial_fit as a task not yet run.
    def y_chunk(block_id=None):
        return labels(X_chunk(block_id), seed)

    return (da.map_blocks(X_chunk, chunks=(chunks, (FEATURES,)), dtype=np.float64),
            da.map_blocks(y_chunk, chunks=(chunks,), dtype=np.int64))


def fit(estimator, X, y):
    """Incremental(estimator) fitted on X, y chunk by chunk in order; and its seconds."""
    model = Incremental(estimator, shuffle_blocks=False)
    start = time.perf_counter()
    model.fit(X, y, classes=np.arange(CLASSES))
    return model, time.perf_counter() - start


def cpu_model():
    """The CPU's model name, from lscpu or /proc/cpuinfo."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    try:
        with open("/proc/cpuinfo") as f:
            out += f.read()
    except OSError:
        pass
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def main(argv=None):
    """Train both estimators on the same lazy data set; return their accuracies and seconds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000, help="training rows (400000)")
    parser.add_argument("--chunk-rows", type=int, default=25_000, help="rows per chunk (25000)")
    parser.add_argument("--test-rows", type=int, default=20_000, help="held-out rows (20000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the teacher, data and weights")
    args = parser.parse_args(argv)

    X, y = lazy_dataset(args.rows, args.chunk_rows, args.seed)
    X_test = np.random.default_rng([args.seed, 2, 0]).standard_normal((args.test_rows, FEATURES))
    y_test = labels(X_test, args.seed)
    print(f"CPU: {cpu_model()}")
    print(f"{args.rows} rows x {FEATURES} features in {X.numblocks[0]} chunks of "
          f"{args.chunk_rows} ({X.nbytes / 1e6:.0f} MB if held at once), {CLASSES} classes")
    estimators = {"fastlinear": MLPClassifier, "scikit-learn": neural_network.MLPClassifier}
    result = {}
    for name, estimator in estimators.items():
        # One worker thread in this process: the chunks go through partial_fit one at a
        # time.  A cluster per estimator: in one cluster, the second fit's tasks could be
        # taken for the first's (the two estimators may hash alike) and served its results.
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster, \
                Client(cluster):
            model, seconds = fit(estimator(random_state=args.seed, **PARAMS), X, y)
        accuracy = float(model.estimator_.score(X_test, y_test))
        result[name] = {"seconds": seconds, "accuracy": accuracy}
        print(f"{name:>12} MLPClassifier: fit {seconds:6.2f} s, "
              f"held-out accuracy {accuracy:.2%}")
    return result


if __name__ == "__main__":
    main()
