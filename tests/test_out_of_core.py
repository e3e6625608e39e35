"""fastlinear.sklearn's estimators trained out of core by dask-ml's Incremental."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("sklearn")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
# Skipped where dask-ml is absent; one that is installed but fails to import fails here
# (pytest.importorskip would skip it).
if importlib.util.find_spec("dask_ml") is None:
    pytest.skip("needs dask-ml: pip install dask-ml", allow_module_level=True)
from dask_ml.wrappers import Incremental  # noqa: E402
from sklearn import neural_network  # noqa: E402

from fastlinear.sklearn import MLPClassifier  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "train_out_of_core.py")
ROW_CHUNKS = (700, 1000, 1000, 300, 1000)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def data(seed=0):
    """Rows in uneven chunks, three classes by the sign of two linear functions."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((sum(ROW_CHUNKS), 10))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] - X[:, 3] > 0.5)
    return X, y


@pytest.mark.parametrize("params", [
    dict(solver="adam", hidden_layer_sizes=(16,), batch_size=32, learning_rate_init=0.01),
    dict(solver="sgd", hidden_layer_sizes=(16, 8), batch_size=100, momentum=0.9,
         learning_rate_init=0.1, alpha=1e-3, activation="tanh"),
])
def test_incremental_matches_sklearn(client, params):
    X, y = data()
    dX, dy = da.from_array(X, chunks=(ROW_CHUNKS, -1)), da.from_array(y, chunks=(ROW_CHUNKS,))
    ours = Incremental(MLPClassifier(random_state=0, **params), shuffle_blocks=False)
    ours.fit(dX, dy, classes=[0, 1, 2])
    # The reference is scikit-learn's estimator given the same chunks in order, outside
    # dask: a second Incremental fit in this client could be served dask's result of the
    # first, as the two estimators may hash alike.
    reference = neural_network.MLPClassifier(random_state=0, **params)
    for stop, size in zip(np.cumsum(ROW_CHUNKS), ROW_CHUNKS):
        reference.partial_fit(X[stop - size:stop], y[stop - size:stop], classes=[0, 1, 2])
    assert type(ours.estimator_) is MLPClassifier
    # One partial_fit per chunk, over every row.
    assert len(ours.estimator_.loss_curve_) == len(ROW_CHUNKS)
    assert ours.estimator_.t_ == len(X)
    np.testing.assert_allclose(ours.estimator_.loss_curve_, reference.loss_curve_, rtol=1e-9)
    for name in ("coefs_", "intercepts_"):
        for got, want in zip(getattr(ours.estimator_, name), getattr(reference, name)):
            assert got.dtype == want.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=name)
    predicted = ours.predict(dX)
    assert isinstance(predicted, da.Array)
    predicted = predicted.compute()
    np.testing.assert_array_equal(predicted, reference.predict(X))
    assert (predicted == y).mean() > 0.75, (predicted == y).mean()  # the majority class: 0.5


# In a fresh interpreter: the example's lazy data set of `rows` rows, fitted by
# Incremental(fastlinear's MLPClassifier); prints the process's peak RSS in bytes.
CHILD = textwrap.dedent("""
    import importlib.util, json, resource, sys
    spec = importlib.util.spec_from_file_location("train_out_of_core", sys.argv[1])
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    from distributed import Client, LocalCluster
    X, y = example.lazy_dataset(int(sys.argv[2]), int(sys.argv[3]), seed=0)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster):
        model, _ = example.fit(example.MLPClassifier(random_state=0, **example.PARAMS), X, y)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
    print(json.dumps({"rows_seen": int(model.estimator_.t_), "nbytes": int(X.nbytes),
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale}))
""")


def peak_rss(tmp_path, rows, chunk_rows):
    proc = subprocess.run([sys.executable, "-c", CHILD, EXAMPLE, str(rows), str(chunk_rows)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["rows_seen"] == rows
    return result


def test_memory_does_not_grow_with_rows(tmp_path):
    """Peak RSS with 4x the rows (512 MB of features, were they held at once) stays within
    100 MB of that with 1x (128 MB): the chunks are made, used and dropped one by one."""
    pytest.importorskip("resource")
    chunk_rows = 25_000
    small = peak_rss(tmp_path, 250_000, chunk_rows)
    large = peak_rss(tmp_path, 1_000_000, chunk_rows)
    assert large["nbytes"] == 4 * small["nbytes"] >= 4 * 10**8
    growth = large["peak_rss"] - small["peak_rss"]
    assert growth < 100 * 2**20, (small, large)
