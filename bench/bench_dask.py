"""Benchmark: one linear-layer step on a dask.distributed cluster.

fastlinear.dask against the same step in plain dask.array expressions:

* fastlinear.dask - linear_forward, then linear_backward (one task per row
                    chunk for dx, partial dW and db; partials summed in a tree)
* dask.array      - x @ W + b, dy @ W.T, x.T @ dy, dy.sum(0), in one graph

Both run on a LocalCluster of worker processes with one thread each, and each
task computes on one core: fastlinear with num_threads=1, and NumPy's BLAS held
at one thread by OMP/OPENBLAS/MKL_NUM_THREADS=1 in the workers' environment
(checked with threadpoolctl in every worker and printed).  x and dy are
generated on the workers and persisted before timing, each chunk of dy on the
worker that holds the same rows of x: where a network's next layer leaves it.  A timed step sends a
new W and b, leaves y and dx persisted on the workers (as the next layer
would use them) and brings dW and db back to the client.  The peers alternate
round by round; figures are medians over rounds, and the ratio is the median
of the per-round ratios.  Nothing is written to disk.

Both peers make the same single-threaded BLAS products, so what differs is
the rest: fastlinear.dask reads each chunk once per call, adds b and sums db
within its pass and runs fewer tasks.  The gap is therefore widest for narrow
layers (memory-bound, e.g. --in 64 --out 16) and narrowest for wide ones.

    python bench/bench_dask.py [--rows 200000 --in 256 --out 128 --chunks 8 --rounds 7]

Needs dask and distributed: pip install fastlinear[dask].
"""
import argparse
import os
import statistics
import time

import numpy as np

import fastlinear

try:
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    import fastlinear.dask as fld
except ImportError as exc:
    raise SystemExit("this benchmark needs dask and distributed: "
                     "pip install fastlinear[dask]") from exc

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TARGET = 0.75  # fastlinear.dask time / dask.array time


def worker_threads():
    """Run on a worker: fastlinear's default threads and every BLAS/OpenMP pool's."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS)
    from threadpoolctl import threadpool_info

    pools = sorted((f"{i['internal_api']} ({os.path.basename(i['filepath'])})", i["num_threads"])
                   for i in threadpool_info())
    return fastlinear.get_num_threads(), pools


def _dy_chunk(x, M_out, block_info=None):
    """Random dy rows for a chunk of x, made where that chunk is (seeded by position)."""
    start = block_info[0]["array-location"][0][0]
    return np.random.default_rng([2, start]).standard_normal((x.shape[0], M_out))


def fastlinear_step(X, DY, W, b, num_threads):
    grads = fld.linear_backward(X, W, DY, num_threads=num_threads)
    return fld.linear_forward(X, W, b, num_threads=num_threads), grads.dx, grads.dW, grads.db


def dask_step(X, DY, W, b, num_threads):
    return X @ W + b, DY @ W.T, X.T @ DY, DY.sum(axis=0)


def run_step(client, step, X, DY, W, b, num_threads):
    """Seconds for one step, and the dW, db it brought back."""
    start = time.perf_counter()
    outputs = client.persist(list(step(X, DY, W, b, num_threads)))  # y, dx, dW, db
    wait(outputs)
    dW, db = client.compute(outputs[2:], sync=True)
    seconds = time.perf_counter() - start
    client.cancel(outputs)  # so that no later step can reuse a result
    return seconds, dW, db


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="N (default 200000)")
    parser.add_argument("--in", dest="M_in", type=int, default=256, help="M_in (default 256)")
    parser.add_argument("--out", dest="M_out", type=int, default=128, help="M_out (default 128)")
    parser.add_argument("--chunks", type=int, default=8, help="row chunks of x (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--num-threads", type=int, default=1,
                        help="fastlinear threads per task (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    args = parser.parse_args()
    N, M_in, M_out = args.rows, args.M_in, args.M_out
    rows = -(-N // args.chunks)
    flops = 6 * N * M_in * M_out

    env = {k: str(args.num_threads) if k == "OMP_NUM_THREADS" else v
           for k, v in ONE_THREAD.items()}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None, env=env) as cluster, \
            Client(cluster) as client:
        print(f"x ({N}, {M_in}) -> {M_out} float64 in {args.chunks} row chunks of {rows}; "
              f"{args.workers} workers x 1 thread; fastlinear num_threads={args.num_threads}")
        for worker, (default, pools) in sorted(client.run(worker_threads).items()):
            print(f"  {worker}: fastlinear default {default} thread(s); "
                  + ", ".join(f"{name}: {n}" for name, n in pools))
        rng = da.random.default_rng(0)
        X = client.persist(rng.standard_normal((N, M_in), chunks=(rows, -1)))
        wait(X)
        DY = client.persist(X.map_blocks(_dy_chunk, M_out, chunks=(X.chunks[0], (M_out,)),
                                         dtype=X.dtype))
        wait(DY)

        peers = {"fastlinear.dask": fastlinear_step, "dask.array": dask_step}
        times = {name: [] for name in peers}
        weights = np.random.default_rng(1)
        for r in range(args.rounds + 1):                 # round 0 warms up
            W = weights.standard_normal((M_in, M_out)) / np.sqrt(M_in)
            b = weights.standard_normal(M_out)
            order = list(peers) if r % 2 == 0 else list(peers)[::-1]
            results = {}
            for name in order:
                seconds, dW, db = run_step(client, peers[name], X, DY, W, b, args.num_threads)
                results[name] = (dW, db)
                if r:
                    times[name].append(seconds)
            if r:
                print(f"  round {r}: "
                      + ", ".join(f"{n} {times[n][-1] * 1e3:.0f} ms" for n in peers))
            if r == 0:
                (dW1, db1), (dW2, db2) = results.values()
                diff = max(np.abs(dW1 - dW2).max() / np.abs(dW2).max(),
                           np.abs(db1 - db2).max() / np.abs(db2).max())
                print(f"  dW, db of the two peers agree to {diff:.1e} (relative)")

    print(f"\nmedian of {args.rounds} rounds, one step = forward + backward "
          f"({flops / 1e9:.1f} GFLOP):")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:16s} {med * 1e3:8.1f} ms  {flops / med / 1e9:6.1f} GFLOP/s"
              f"   (min {min(ts) * 1e3:.1f}, max {max(ts) * 1e3:.1f} ms)")
    ratio = statistics.median(f / d for f, d in zip(*times.values()))
    print(f"  ratio fastlinear.dask / dask.array: {ratio:.3f} "
          f"(target <= {TARGET}: {'met' if ratio <= TARGET else 'missed'})")


if __name__ == "__main__":
    main()
