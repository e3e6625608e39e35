"""Threads, the BLAS hold and configuration: same bits for any thread count, no setting changed."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from _helpers import DTYPES, arrays, assert_close, make, reference, run_script
from threadpoolctl import threadpool_info

import fastlinear
from fastlinear import linear_backward, linear_forward

F64 = np.float64


# ---- threads -----------------------------------------------------------------

# serial, blocked (narrow W), tiled, tiled with dW split along N
# Serial, row blocks, tiles; (16, 1024, 1024): a tiled forward of few rows, in many tasks;
# (2048, 200, 0) and (0, 600, 600): gradients zero-filled in row blocks and in tiles.
SHAPES_BY_PATH = [(30, 20, 10), (20000, 16, 8), (5000, 64, 16), (600, 300, 200), (1024, 512, 256),
                  (3000, 200, 200), (16, 1024, 1024), (2048, 200, 0), (0, 600, 600)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES_BY_PATH, ids=str)
def test_bitwise_identical_across_thread_counts(shape, dtype):
    N, M_in, M_out = shape
    x, W, b, dy = arrays(N, M_in, M_out, dtype)
    results = []
    for t in (1, 2, 3, 4, 1):
        y = linear_forward(x, W, b, num_threads=t)
        results.append((y,) + tuple(linear_backward(x, W, dy, num_threads=t)))
    for other in results[1:]:
        for a, c in zip(results[0], other):
            np.testing.assert_array_equal(a, c)


class _FakeBlas:
    def __init__(self, **info):
        self._info = info

    def info(self):
        return self._info


@pytest.mark.parametrize("shape, path", [
    ((32, 32, 32), "serial"), ((16, 100, 100), "serial"),
    # No multiply-adds, but gradients to zero-fill that are too big to keep the GIL for.
    ((4000, 5000, 0), "blocked"), ((2048, 200, 0), "blocked"), ((0, 600, 600), "tiled"),
    ((100000, 64, 16), "blocked"), ((2049, 33, 7), "blocked"), ((4096, 64, 64), "blocked"),
    # Too few rows to share out in blocks, or W too wide: tiled.
    ((64, 64, 64), "tiled"), ((1000, 64, 16), "tiled"), ((32, 256, 128), "tiled"),
    ((20000, 256, 128), "tiled"), ((64, 784, 256), "tiled"),
])
def test_builtin_path(shape, path):
    """Which path the built-in plans give a shape (see docs/design.md)."""
    from fastlinear._problem import KINDS, Problem
    for kind in KINDS.values():
        assert Problem(kind, "float64", *shape).builtin_path() == {"serial": 0, "blocked": 1, "tiled": 2}[path]


@pytest.mark.parametrize("info, expected", [
    ({"internal_api": "openblas", "architecture": "SkylakeX"}, True),
    ({"internal_api": "openblas", "architecture": "Cooperlake"}, True),
    ({"internal_api": "openblas", "architecture": "SapphireRapids"}, True),
    ({"internal_api": "openblas", "architecture": "Haswell"}, False),
    ({"internal_api": "openblas"}, False),
    ({"internal_api": "mkl", "architecture": "SkylakeX"}, False),
])
def test_small_kernel_detection(info, expected):
    """Mid-size products are cut for small-matrix kernels only on BLAS cores that have them."""
    from fastlinear._problem import _has_small_kernels
    assert _has_small_kernels(_FakeBlas(**info)) is expected


def _scipy_blas_is_pthreads_openblas():
    from fastlinear._threads import blas_threads
    libs = blas_threads.libraries()
    return bool(libs) and all(lib.info().get("internal_api") == "openblas"
                              and lib.info().get("threading_layer") == "pthreads"
                              for lib in libs)


@pytest.mark.parametrize("info, local_in_38", [
    ({"internal_api": "mkl", "threading_layer": "intel"}, True),
    ({"internal_api": "openblas", "threading_layer": "openmp", "filepath": "unused"}, True),
    ({"internal_api": "blis", "threading_layer": "pthreads"}, False),
])
def test_thread_controls_of_other_blas_go_through_threadpoolctl(info, local_in_38):
    """Only a pthreads OpenBLAS is set through its own functions; the others
    keep threadpoolctl's setters, per thread where threadpoolctl sets them so."""
    import threadpoolctl
    from fastlinear._threads import _thread_controls, _version
    lib = _FakeBlas(**info)
    lib.get_num_threads, lib.set_num_threads = object(), object()
    per_thread = local_in_38 and _version(threadpoolctl.__version__) >= (3, 8)
    assert _thread_controls(lib) == (lib.get_num_threads, lib.set_num_threads, per_thread)


def test_thread_controls_of_pthreads_openblas_are_its_own():
    import ctypes
    from fastlinear._threads import _thread_controls, blas_threads
    if not _scipy_blas_is_pthreads_openblas():
        pytest.skip("SciPy's BLAS is not a pthreads OpenBLAS")
    for lib in blas_threads.libraries():
        get, set_, per_thread = _thread_controls(lib)
        assert isinstance(get, ctypes._CFuncPtr) and isinstance(set_, ctypes._CFuncPtr)
        assert not per_thread
        assert get() == lib.get_num_threads()


class _FakeSetting:
    """A BLAS thread count, for the process or for each thread."""

    def __init__(self, per_thread, count=4):
        self.per_thread, self.count = per_thread, count
        self.local = threading.local()

    def get(self):
        return getattr(self.local, "count", self.count) if self.per_thread else self.count

    def set(self, n):
        if self.per_thread:
            self.local.count = n
        else:
            self.count = n


def test_blas_hold_of_overlapping_calls_from_two_threads():
    """A enters, B enters, A leaves, B leaves: a process-wide setting stays at
    one thread until B leaves, and each thread's own setting is back to
    its count when that thread leaves."""
    from fastlinear._threads import BlasThreads
    shared, own = _FakeSetting(False), _FakeSetting(True)
    holder = BlasThreads()
    holder._libs = []  # libraries() then keeps these controls
    holder._shared, holder._per_thread = ((shared.get, shared.set, False),), ((own.get, own.set, True),)
    steps = [threading.Event() for _ in range(4)]
    seen = {}

    def a():
        holder.enter()
        seen["A inside"] = (shared.get(), own.get())
        steps[0].set()
        steps[1].wait(10)
        holder.exit()
        seen["A after"] = (shared.get(), own.get())
        steps[2].set()

    def b():
        steps[0].wait(10)
        holder.enter()
        seen["B inside"] = (shared.get(), own.get())
        steps[1].set()
        steps[2].wait(10)
        seen["B inside, A gone"] = (shared.get(), own.get())
        holder.exit()
        seen["B after"] = (shared.get(), own.get())

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"A inside": (1, 1), "B inside": (1, 1), "A after": (1, 4),
                    "B inside, A gone": (1, 1), "B after": (4, 4)}


def test_results_do_not_depend_on_earlier_calls():
    """How mid-size products are cut is settled before the first call of a
    process, whatever its path: a small call gives the same bits before and
    after a large one."""
    code = """if True:
        import numpy as np
        import fastlinear
        rng = np.random.default_rng(0)
        x, W, dy = (rng.standard_normal(s) for s in [(8, 256), (256, 100), (8, 100)])
        first = fastlinear.linear_backward(x, W, dy)
        fastlinear.linear_forward(rng.standard_normal((600, 300)), rng.standard_normal((300, 200)))
        again = fastlinear.linear_backward(x, W, dy)
        assert all((a == c).all() for a, c in zip(first, again)), "results changed"
    """
    run_script(code, timeout=120)


def test_blas_thread_setting_unchanged():
    before = threadpool_info()
    for shape in SHAPES_BY_PATH:
        x, W, b, dy = arrays(*shape)
        for t in (1, 2, 3):
            linear_forward(x, W, b, num_threads=t)
            linear_backward(x, W, dy, num_threads=t)
    assert threadpool_info() == before


def test_concurrent_calls_from_python_threads():
    rng = np.random.default_rng(3)
    cases = []
    for shape in [(500, 300, 200), (20000, 16, 8), (40, 30, 20)]:
        N, M_in, M_out = shape
        x, W, dy = make(rng, (N, M_in), F64), make(rng, (M_in, M_out), F64), make(rng, (N, M_out), F64)
        b = make(rng, M_out, F64)
        cases.append((x, W, b, dy, reference(x, W, b, dy)))
    before = threadpool_info()
    errors = []

    def work(i):
        try:
            for r in range(15):
                x, W, b, dy, (ry, rdx, rdW, rdb) = cases[(i + r) % len(cases)]
                y = linear_forward(x, W, b, num_threads=1 + r % 2)
                g = linear_backward(x, W, dy, num_threads=1 + r % 2)
                assert_close(y, ry, F64, W.shape[0])
                assert_close(g.dW, rdW, F64, x.shape[0])
                assert_close(g.dx, rdx, F64, W.shape[1])
                assert_close(g.db, rdb, F64, x.shape[0])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert threadpool_info() == before


def test_blas_held_for_calls_from_any_python_thread():
    """threadpoolctl lets only the first Python thread that sizes OpenBLAS's
    pool change it; a call from another thread must still hold BLAS at one
    thread (else each of fastlinear's threads' BLAS calls starts BLAS threads too) and
    leave the count as it found it."""
    if not _scipy_blas_is_pthreads_openblas():
        pytest.skip("SciPy's BLAS is not a pthreads OpenBLAS")
    code = """if True:
        import threading
        import numpy as np
        import fastlinear
        from fastlinear._threads import blas_threads
        from threadpoolctl import ThreadpoolController

        libs = blas_threads.libraries()
        # The main thread sizes the pool through threadpoolctl, and so becomes
        # the one thread threadpoolctl lets resize it.
        for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
            lib.set_num_threads(2)
        before = [lib.get_num_threads() for lib in libs]
        assert before == [2] * len(libs), before
        seen = []

        def call():
            x = np.ones((600, 300))
            fastlinear.linear_backward(x, np.ones((300, 200)), np.ones((600, 200)))
            blas_threads.enter()
            seen.append([lib.get_num_threads() for lib in libs])
            blas_threads.exit()
            seen.append([lib.get_num_threads() for lib in libs])

        worker = threading.Thread(target=call)
        worker.start()
        worker.join()
        assert seen == [[1] * len(libs), before], (seen, before)
    """
    run_script(code, timeout=120)


def test_default_threads_and_env():
    old = fastlinear.get_num_threads()
    try:
        fastlinear.set_num_threads(3)
        assert fastlinear.get_num_threads() == 3
        fastlinear.set_num_threads(None)
        assert fastlinear.get_num_threads() >= 1
    finally:
        fastlinear.set_num_threads(old)
    code = "import fastlinear; print(fastlinear.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="5")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(fastlinear.__file__)))
    assert out.stdout.strip() == "5", out.stderr


def test_show_config(capsys):
    fastlinear.show_config()
    text = capsys.readouterr().out
    assert fastlinear.__version__ in text
    assert "threads" in text and "num_threads" in text and "blas" in text
