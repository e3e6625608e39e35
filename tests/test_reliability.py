"""Concurrency, fork, memory and numerical robustness."""
import os
import threading
import tracemalloc

import numpy as np
import pytest
from _helpers import assert_close, make, reference, run_script

import fastlinear
from fastlinear import Linear, linear_backward, linear_forward


def test_eight_threads_share_read_only_weights():
    """8 Python threads x 500 calls on shared read-only weights, separate outputs."""
    rng = np.random.default_rng(11)
    shapes = [(16, 12, 8), (64, 40, 30), (3000, 24, 12), (200, 200, 200)]
    weights = []
    for _, M_in, M_out in shapes:
        W, b = make(rng, (M_in, M_out), np.float64), make(rng, M_out, np.float64)
        W.flags.writeable = b.flags.writeable = False
        weights.append((W, b))
    errors = []

    def work(i):
        try:
            local = np.random.default_rng(i)
            for r in range(500):
                k = (i + r) % len(shapes)
                N, M_in, M_out = shapes[k]
                W, b = weights[k]
                x, dy = make(local, (N, M_in), np.float64), make(local, (N, M_out), np.float64)
                y = np.empty((N, M_out))
                linear_forward(x, W, b, out=y, num_threads=1 + r % 2)
                g = linear_backward(x, W, dy, num_threads=1 + (r + i) % 2)
                if r % 25 == 0:  # the reference is slower than the call: check a sample
                    ry, rdx, rdW, rdb = reference(x, W, b, dy)
                    assert_close(y, ry, np.float64, M_in)
                    assert_close(g.dx, rdx, np.float64, M_out)
                    assert_close(g.dW, rdW, np.float64, N)
                    assert_close(g.db, rdb, np.float64, N)
                else:
                    assert np.array_equal(y, x @ W + b) or np.allclose(y, x @ W + b, rtol=1e-12)
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_linear_shared_by_two_threads():
    """Each thread's backward uses its own forward's x; both gradients land in dW."""
    layer = Linear(30, 20, seed=0)
    rng = np.random.default_rng(5)
    xs = [make(rng, (50, 30), np.float64) for _ in range(2)]
    dys = [make(rng, (50, 20), np.float64) for _ in range(2)]
    barrier = threading.Barrier(2)
    dxs = [None, None]
    rounds = 200

    def work(i):
        for _ in range(rounds):
            layer.forward(xs[i])
            barrier.wait()          # both forwards done before either backward
            dxs[i] = layer.backward(dys[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert_close(dxs[i], dys[i] @ layer.W.T, np.float64, 20)
    expected = rounds * (xs[0].T @ dys[0] + xs[1].T @ dys[1])
    assert_close(layer.dW, expected, np.float64, 2 * rounds * 50, scale=rounds)
    # A thread that ran no forward has no input to differentiate against.
    errors = []

    def backward_only():
        try:
            layer.backward(dys[0])
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=backward_only)
    t.start()
    t.join()
    assert errors and "before forward" in errors[0]


def test_linear_pickles():
    import pickle
    layer = Linear(4, 3, seed=1)
    clone = pickle.loads(pickle.dumps(layer))
    np.testing.assert_array_equal(clone.W, layer.W)
    x = np.ones((2, 4))
    assert_close(clone(x), layer(x), np.float64, 4)


def test_grads_pickle():
    """Gradients cross process boundaries (multiprocessing, dask): Grads must pickle."""
    import pickle
    x, W, dy = np.ones((3, 4)), np.ones((4, 2)), np.ones((3, 2))
    grads = linear_backward(x, W, dy)
    clone = pickle.loads(pickle.dumps(grads))
    assert type(clone) is fastlinear.Grads
    for got, want in zip(clone, grads):
        np.testing.assert_array_equal(got, want)


def test_forked_child_works():
    out = run_script("""
        import multiprocessing as mp, warnings
        import numpy as np, fastlinear

        def child(n):
            rng = np.random.default_rng(n)
            x, W, dy = rng.standard_normal((600, 300)), rng.standard_normal((300, 200)), rng.standard_normal((600, 200))
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                g = fastlinear.linear_backward(x, W, dy, num_threads=2)
            return np.allclose(g.dW, x.T @ dy) and np.allclose(g.dx, dy @ W.T)

        if __name__ == "__main__":
            x = np.ones((600, 300)); W = np.ones((300, 200))
            fastlinear.linear_forward(x, W, num_threads=2)     # the parent runs its threads
            with mp.get_context("fork").Pool(2) as pool:
                # fastlinear's pool starts anew in each child, with no warning
                print(all(pool.map(child, range(4))))
    """, timeout=120)
    assert out.split() == ["True"]


def _sanitized():
    with open("/proc/self/maps") as f:
        return "libasan" in f.read()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or _sanitized(),
                    reason="needs Linux /proc; AddressSanitizer's quarantine holds freed memory")
def test_resident_memory_flat_over_100k_small_calls():
    out = run_script("""
        import numpy as np, fastlinear
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096
        rng = np.random.default_rng(0)
        x, W, b, dy = rng.standard_normal((8, 16)), rng.standard_normal((16, 4)), rng.standard_normal(4), rng.standard_normal((8, 4))
        def step():
            fastlinear.linear_forward(x, W, b)
            fastlinear.linear_backward(x, W, dy)
        for _ in range(5000):
            step()
        before = rss()
        for _ in range(100000):
            step()
        print(rss() - before)
    """)
    growth = int(out)
    assert growth < 2 ** 20, f"resident memory grew by {growth} bytes over 100,000 calls"


def test_large_calls_allocate_only_their_outputs():
    rng = np.random.default_rng(0)
    shapes = [(1000, 300, 200), (20000, 32, 16)]
    for N, M_in, M_out in shapes:
        x, W, b, dy = (make(rng, (N, M_in), np.float64), make(rng, (M_in, M_out), np.float64),
                       make(rng, M_out, np.float64), make(rng, (N, M_out), np.float64))
        y, dx, dW, db = np.empty((N, M_out)), np.empty((N, M_in)), np.empty((M_in, M_out)), np.empty(M_out)
        tracemalloc.start()
        try:
            # Python's free lists and caches fill during the first calls; what
            # counts is what the next 1,000 leave behind.
            for _ in range(1000):
                linear_forward(x, W, b, out=y)
                linear_backward(x, W, dy, dx=dx, dW=dW, db=db)
            tracemalloc.reset_peak()
            start, _ = tracemalloc.get_traced_memory()
            for _ in range(1000):
                linear_forward(x, W, b, out=y)
                linear_backward(x, W, dy, dx=dx, dW=dW, db=db)
            end, peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            fresh = linear_backward(x, W, dy)
            _, peak_fresh = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        outputs = sum(a.nbytes for a in fresh)
        # With buffers given, only scratch for partial sums is allocated: at
        # most 64 partial dW of a narrow layer, or a few KiB.
        scratch = 64 * 2 ** 10 + 64 * M_in * M_out * 8
        assert end - start < 1024
        assert peak - start < scratch
        assert peak_fresh - start < outputs + scratch


@pytest.mark.parametrize("shape", [(50, 40, 30), (3000, 64, 16), (500, 300, 200)], ids=str)
def test_float32_error_bound_on_ill_scaled_data(shape):
    """|r32 - r64| <= 2 (K + 2) eps32 (|A| |B|), the classical dot-product bound.

    Columns of x and W span 12 orders of magnitude.  The bound is elementwise,
    relative to the sum of absolute products, as documented in docs/reliability.md.
    """
    N, M_in, M_out = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N, M_in)) * np.logspace(-6, 6, M_in)
    W = rng.standard_normal((M_in, M_out)) * np.logspace(6, -6, M_in)[:, None]
    dy = rng.standard_normal((N, M_out)) * np.logspace(-3, 3, M_out)
    b = rng.standard_normal(M_out)
    x32, W32, dy32, b32 = (a.astype(np.float32) for a in (x, W, dy, b))
    x, W, dy, b = (a.astype(np.float64) for a in (x32, W32, dy32, b32))  # same inputs
    eps = np.finfo(np.float32).eps
    y = linear_forward(x32, W32, b32)
    g = linear_backward(x32, W32, dy32)
    checks = [(y, x @ W + b, np.abs(x) @ np.abs(W) + np.abs(b), M_in + 1),
              (g.dx, dy @ W.T, np.abs(dy) @ np.abs(W.T), M_out),
              (g.dW, x.T @ dy, np.abs(x.T) @ np.abs(dy), N),
              (g.db, dy.sum(0), np.abs(dy).sum(0), 1)]   # db is summed in float64
    for got, exact, absolute, K in checks:
        bound = 2 * (K + 2) * eps * absolute + np.finfo(np.float32).tiny
        assert np.all(np.abs(got - exact) <= bound)


def test_repeated_calls_bitwise_identical():
    rng = np.random.default_rng(9)
    x, W, dy = make(rng, (3000, 64), np.float32), make(rng, (64, 16), np.float32), make(rng, (3000, 16), np.float32)
    first = linear_backward(x, W, dy, num_threads=2)
    for t in (1, 2, 3, 4):
        for _ in range(3):
            again = linear_backward(x, W, dy, num_threads=t)
            for a, c in zip(first, again):
                np.testing.assert_array_equal(a, c)
