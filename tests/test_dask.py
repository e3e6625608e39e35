"""fastlinear.dask against fastlinear on the whole arrays, its graph, its errors."""
import importlib
import sys

import numpy as np
import pytest
from _helpers import DTYPES, assert_close, make

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import fastlinear  # noqa: E402
import fastlinear.dask as fld  # noqa: E402

N, M_IN, M_OUT = 50, 12, 7
ROW_CHUNKS = {
    "single": (N,),
    "uneven": (10, 25, 15),
    "ragged": (7,) * 7 + (1,),
    "rows-of-1": (1,) * N,
}


def arrays(dtype, N=N, M_in=M_IN, M_out=M_OUT, seed=0):
    rng = np.random.default_rng(seed)
    return (make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype),
            make(rng, M_out, dtype), make(rng, (N, M_out), dtype))


def check_grads(got, want, dtype, N, M_in, M_out):
    """got: computed Grads; want: fastlinear.linear_backward on the whole arrays."""
    for name, k in (("dx", M_out), ("dW", N), ("db", N)):
        g, w = getattr(got, name), getattr(want, name)
        if w is None:
            assert g is None, name
        else:
            assert_close(g, w, dtype, k, scale=np.sqrt(k))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", ROW_CHUNKS, ids=str)
def test_forward_matches_fastlinear(chunks, dtype, bias):
    x, W, b, _ = arrays(dtype)
    b = b if bias else None
    y = fld.linear_forward(da.from_array(x, chunks=(ROW_CHUNKS[chunks], -1)), W, b,
                           num_threads=1)
    assert isinstance(y, da.Array)
    assert y.chunks == (ROW_CHUNKS[chunks], (M_OUT,)) and y.dtype == dtype
    assert_close(y.compute(), fastlinear.linear_forward(x, W, b), dtype, M_IN, np.sqrt(M_IN))


@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", ROW_CHUNKS, ids=str)
def test_backward_matches_fastlinear(chunks, dtype, bias, need_dx):
    x, W, _, dy = arrays(dtype)
    c = ROW_CHUNKS[chunks]
    grads = fld.linear_backward(da.from_array(x, chunks=(c, -1)), W,
                                da.from_array(dy, chunks=(c, -1)),
                                bias=bias, need_dx=need_dx, num_threads=1)
    assert isinstance(grads, fastlinear.Grads)
    assert (grads.dx is None) != need_dx and (grads.db is None) != bias
    if need_dx:
        assert grads.dx.chunks == (c, (M_IN,))
    assert grads.dW.chunks == ((M_IN,), (M_OUT,))
    got = fastlinear.Grads(*dask.compute(*grads))
    want = fastlinear.linear_backward(x, W, dy, bias=bias, need_dx=need_dx)
    check_grads(got, want, dtype, N, M_IN, M_OUT)


@pytest.mark.parametrize("dtype", DTYPES)
def test_larger_chunks_run_the_parallel_kernels(dtype):
    # 1000-row chunks of a 64 -> 32 layer take fastlinear's blocked path,
    # 600-row chunks of 256 -> 160 its tiled path
    for N, M_in, M_out, rows in ((3000, 64, 32, 1000), (1800, 256, 160, 600)):
        x, W, b, dy = arrays(dtype, N, M_in, M_out, seed=1)
        X, DY = da.from_array(x, chunks=(rows, -1)), da.from_array(dy, chunks=(rows, -1))
        y, *grads = dask.compute(fld.linear_forward(X, W, b, num_threads=2),
                                 *fld.linear_backward(X, W, DY, num_threads=2))
        assert_close(y, fastlinear.linear_forward(x, W, b), dtype, M_in, np.sqrt(M_in))
        check_grads(fastlinear.Grads(*grads), fastlinear.linear_backward(x, W, dy),
                    dtype, N, M_in, M_out)


def test_inputs_are_rechunked():
    x, W, b, dy = arrays(np.float64)
    X = da.from_array(x, chunks=(9, 5))                 # several chunks along M_in
    y = fld.linear_forward(X, W, b)
    assert y.chunks == (X.chunks[0], (M_OUT,))
    assert_close(y.compute(), fastlinear.linear_forward(x, W, b), np.float64, M_IN)
    want = fastlinear.linear_backward(x, W, dy)
    for DY in (da.from_array(dy, chunks=(20, 3)), dy):  # other row chunks; NumPy
        grads = fld.linear_backward(X, W, DY)
        assert grads.dx.chunks == (X.chunks[0], (M_IN,))
        check_grads(fastlinear.Grads(*dask.compute(*grads)), want, np.float64, N, M_IN, M_OUT)


def test_one_fastlinear_call_per_chunk(monkeypatch):
    calls = {"forward": [], "backward": []}

    def counting(name, real):
        def call(x, *args, **kwargs):
            calls[name].append(x.shape)
            return real(x, *args, **kwargs)
        return call

    monkeypatch.setattr(fld, "_linear_forward", counting("forward", fastlinear.linear_forward))
    monkeypatch.setattr(fld, "_linear_backward", counting("backward", fastlinear.linear_backward))
    x, W, b, dy = arrays(np.float64)
    X, DY = da.from_array(x, chunks=(ROW_CHUNKS["uneven"], -1)), da.from_array(dy, chunks=10)
    dask.compute(fld.linear_forward(X, W, b), *fld.linear_backward(X, W, DY),
                 scheduler="synchronous")
    rows = [(n, M_IN) for n in ROW_CHUNKS["uneven"]]
    assert sorted(calls["forward"]) == sorted(rows)
    assert sorted(calls["backward"]) == sorted(rows)


@pytest.mark.parametrize("split_every", [None, 2, 3, 8])
def test_partials_are_summed_in_a_tree(split_every):
    n_chunks = 37
    x, W, _, dy = arrays(np.float64, N=n_chunks * 2)
    X, DY = da.from_array(x, chunks=(2, -1)), da.from_array(dy, chunks=(2, -1))
    grads = fld.linear_backward(X, W, DY, split_every=split_every)
    fan_in = split_every or fld.FAN_IN
    deps = grads.dW.__dask_graph__().get_all_dependencies()
    name = grads.dW.name.rsplit("-", 1)[1]
    chunk_tasks = [k for k in deps if k[0] == f"fastlinear-backward-{name}"]
    sums = {k: v for k, v in deps.items() if k[0] == f"fastlinear-sum-{name}" and k[1] > 0}
    assert len(chunk_tasks) == n_chunks
    for key in chunk_tasks:         # reads its x chunk, its dy chunk and W
        assert len(deps[key]) == 3
    assert sums and all(2 <= len(v) <= fan_in for v in sums.values())
    depth = max(k[1] for k in sums)
    assert depth == int(np.ceil(np.log(n_chunks) / np.log(fan_in) - 1e-9))
    (root,) = deps[(grads.dW.name, 0, 0)]
    assert root == (f"fastlinear-sum-{name}", depth, 0)
    check_grads(fastlinear.Grads(*dask.compute(*grads)), fastlinear.linear_backward(x, W, dy),
                np.float64, len(x), M_IN, M_OUT)


def test_results_are_reproducible():
    x, W, _, dy = arrays(np.float32, N=400, M_in=64, M_out=48)
    X, DY = da.from_array(x, chunks=(90, -1)), da.from_array(dy, chunks=(90, -1))
    first = dask.compute(*fld.linear_backward(X, W, DY, num_threads=1))
    again = dask.compute(*fld.linear_backward(X, W, DY, num_threads=2))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_bad_inputs():
    x, W, b, dy = arrays(np.float64)
    X, DY = da.from_array(x, chunks=10), da.from_array(dy, chunks=10)
    cases = [
        (TypeError, "x must be a dask array", lambda: fld.linear_forward(x, W, b)),
        (TypeError, "W must be a NumPy array, not a dask", lambda: fld.linear_forward(X, da.from_array(W), b)),
        (TypeError, "x must be float32 or float64", lambda: fld.linear_forward(X.astype(int), W)),
        (TypeError, "x is float32, W is float64", lambda: fld.linear_forward(X.astype(np.float32), W)),
        (TypeError, "dy is float32", lambda: fld.linear_backward(X, W, DY.astype(np.float32))),
        (ValueError, "x must be 2-D", lambda: fld.linear_forward(X[None], W, b)),
        (ValueError, r"x must have shape \(\.\.\., M_in\)", lambda: fld.linear_forward(X[:, :3], W, b)),
        (ValueError, r"b must have shape \(M_out,\)", lambda: fld.linear_forward(X, W, b[:2])),
        (ValueError, r"dy must have shape \(50, 7\)", lambda: fld.linear_backward(X, W, DY[:40])),
        (ValueError, r"dy must have shape \(50, 7\)", lambda: fld.linear_backward(X, W, dy[:40])),
        (ValueError, r"dy must have shape \(\.\.\., M_out\)", lambda: fld.linear_backward(X, W, DY[:, :3])),
        (ValueError, "unknown chunk sizes", lambda: fld.linear_forward(X[X[:, 0] > 0], W, b)),
        (TypeError, "dy must be a dask array or a NumPy array, got Delayed",
         lambda: fld.linear_backward(X, W, dask.delayed(dy))),
        (ValueError, "split_every must be an int >= 2", lambda: fld.linear_backward(X, W, DY, split_every=1)),
        (ValueError, "num_threads must be between 1 and", lambda: fld.linear_forward(X, W, b, num_threads=0)),
    ]
    for error, match, call in cases:
        with pytest.raises(error, match=match):
            call()


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.array", None)
    monkeypatch.delitem(sys.modules, "fastlinear.dask")
    with pytest.raises(ImportError, match=r"pip install fastlinear\[dask\]"):
        importlib.import_module("fastlinear.dask")


def test_distributed_local_cluster():
    distributed = pytest.importorskip("distributed")
    x, W, b, dy = arrays(np.float64, N=2000, M_in=64, M_out=32, seed=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        # worker processes start with OMP_NUM_THREADS=1: one fastlinear thread per task
        assert set(client.run(fastlinear.get_num_threads).values()) == {1}
        X, DY = client.persist([da.from_array(x, chunks=(250, -1)),
                                da.from_array(dy, chunks=(250, -1))])
        y = fld.linear_forward(X, W, b)
        grads = fld.linear_backward(X, W, DY, need_dx=True)
        y, *grads = client.compute([y, *grads], sync=True)
    assert_close(y, fastlinear.linear_forward(x, W, b), np.float64, 64, 8.0)
    check_grads(fastlinear.Grads(*grads), fastlinear.linear_backward(x, W, dy),
                np.float64, 2000, 64, 32)
