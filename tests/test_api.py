"""Errors, threads, the Linear class and configuration."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from _helpers import DTYPES, assert_close, make, reference, run_script
from threadpoolctl import threadpool_info

import fastlinear
from fastlinear import Linear, linear_backward, linear_forward

F64 = np.float64


def arrays(N=4, M_in=3, M_out=2, dtype=F64):
    rng = np.random.default_rng(0)
    return make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, M_out, dtype), make(rng, (N, M_out), dtype)


# ---- bad input -------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.int64, np.int32, np.bool_, np.complex128, np.float16, object,
                                 ">f2", ">c8", ">i8"])
def test_non_float_dtypes_are_type_errors(bad):
    x, W, b, dy = arrays()
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        linear_forward(x.astype(bad), W, b)
    with pytest.raises(TypeError, match="W must be float32 or float64"):
        linear_backward(x, W.astype(bad), dy)
    with pytest.raises(TypeError, match="dy must be float32 or float64"):
        linear_backward(x, W, dy.astype(bad))


def test_complex_message_mentions_imaginary_part():
    x, W, b, _ = arrays()
    with pytest.raises(TypeError, match="imaginary"):
        linear_forward(x, W.astype(np.complex128), b)


def test_mixed_precision_is_a_type_error():
    x, W, b, dy = arrays()
    with pytest.raises(TypeError, match="x is float32, W is float64"):
        linear_forward(x.astype(np.float32), W, b)
    with pytest.raises(TypeError, match="b is float32"):
        linear_forward(x, W, b.astype(np.float32))
    with pytest.raises(TypeError, match="dy is float32"):
        linear_backward(x, W, dy.astype(np.float32))


@pytest.mark.parametrize("call, match", [
    (lambda x, W, b, dy: linear_forward(x[:, :2], W, b), r"x must have shape \(\.\.\., M_in\) = \(\.\.\., 3\).*\(3, 2\).*\(4, 2\)"),
    (lambda x, W, b, dy: linear_forward(x, W[None], b), r"W must be 2-D.*\(1, 3, 2\)"),
    (lambda x, W, b, dy: linear_forward(x, W, b[:1]), r"b must have shape \(M_out,\) = \(2,\).*\(1,\)"),
    (lambda x, W, b, dy: linear_forward(x, W, b[None]), r"b must have shape.*\(1, 2\)"),
    (lambda x, W, b, dy: linear_forward(x[0, 0], W, b), r"x must have shape .*got \(\)"),
    (lambda x, W, b, dy: linear_backward(x, W, dy[:3]), r"dy must have shape \(4, 2\).*\(4, 3\).*\(3, 2\)"),
    (lambda x, W, b, dy: linear_backward(x, W, dy[:, :1]), r"dy must have shape \(\.\.\., M_out\)"),
    (lambda x, W, b, dy: linear_backward(x, W.T, dy), r"x must have shape"),
])
def test_shape_errors_name_the_shapes(call, match):
    with pytest.raises(ValueError, match=match):
        call(*arrays())


def test_out_errors_and_nothing_written():
    x, W, b, dy = arrays()
    ro = np.zeros((4, 2))
    ro.flags.writeable = False
    xw = x.copy()
    cases = [
        (np.zeros((4, 3)), ValueError, "out must have shape"),
        (np.zeros((4, 2), np.float32), ValueError, "out must have dtype float64"),
        (np.zeros((4, 2), ">f8"), ValueError, "native byte order, got >f8"),
        (ro, ValueError, "out is read-only"),
        ([[0.0, 0.0]] * 4, TypeError, "out must be a NumPy array"),
    ]
    for out, exc, match in cases:
        with pytest.raises(exc, match=match):
            linear_forward(x, W, b, out=out)
    big = np.zeros((4, 5))
    x_in_big = big[:, :3]
    x_in_big[:] = x
    with pytest.raises(ValueError, match="out overlaps x"):
        linear_forward(x_in_big, W, b, out=big[:, 1:3])
    np.testing.assert_array_equal(big[:, :3], x)
    with pytest.raises(ValueError, match="out overlaps W"):
        linear_forward(x[:2, :2], W[:2], out=W[:2])
    np.testing.assert_array_equal(x, xw)


def test_gradient_buffer_errors_and_nothing_written():
    x, W, b, dy = arrays()
    dW = np.full((3, 2), 7.0)
    db = np.full(2, 7.0)
    with pytest.raises(ValueError, match="dx must have shape"):
        linear_backward(x, W, dy, dx=np.zeros((4, 2)), dW=dW, db=db)
    with pytest.raises(ValueError, match="db overlaps dW"):
        linear_backward(x, W, dy, dW=dW, db=dW[0])
    with pytest.raises(ValueError, match="dW overlaps dy"):
        linear_backward(x, W, dy, dW=dy[:3])
    with pytest.raises(ValueError, match="db buffer was given but db is not computed"):
        linear_backward(x, W, dy, bias=False, db=db)
    np.testing.assert_array_equal(dW, 7.0)
    np.testing.assert_array_equal(db, 7.0)


# The arrays of a backward call in the order they are checked: each gradient
# buffer against the inputs and the buffers before it.
BACKWARD_ORDER = ["x", "W", "dy", "dx", "dW", "db"]
BACKWARD_SHAPES = {"x": (4, 3), "W": (3, 2), "dy": (4, 2), "dx": (4, 3), "dW": (3, 2), "db": (2,)}


def _carve(pool, placed, reverse):
    """Views of ``pool``: name -> an array of BACKWARD_SHAPES[name] over the elements
    from placed[name] on, in reverse memory order if ``reverse``."""
    views = {}
    for name, start in placed.items():
        shape = BACKWARD_SHAPES[name]
        flat = pool[start:start + int(np.prod(shape))]
        views[name] = (flat[::-1] if reverse else flat).reshape(shape)
    return views


@pytest.mark.parametrize("reverse", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("first, second", [(a, g) for i, g in enumerate(BACKWARD_ORDER) if i >= 3
                                           for a in BACKWARD_ORDER[:i]])
def test_every_gradient_overlap_is_refused(first, second, reverse):
    """A buffer sharing a single element with an input or another buffer (the last
    element of one, the first of the other) is refused, naming both; nothing is written."""
    placed = {name: 20 * i for i, name in enumerate(BACKWARD_ORDER)}
    placed[second] = placed[first] + int(np.prod(BACKWARD_SHAPES[first])) - 1
    pool = np.random.default_rng(0).standard_normal(20 * len(BACKWARD_ORDER))
    before = pool.copy()
    a = _carve(pool, placed, reverse)
    with pytest.raises(ValueError, match=f"{second} overlaps {first}"):
        linear_backward(a["x"], a["W"], a["dy"], dx=a["dx"], dW=a["dW"], db=a["db"])
    np.testing.assert_array_equal(pool, before)


@pytest.mark.parametrize("name", ["x", "W", "b"])
def test_out_overlapping_any_forward_input_is_refused(name):
    """out sharing its first element with the last of an input is refused; nothing is written."""
    x, W, b, _ = arrays()
    inputs = {"x": x, "W": W, "b": b}
    pool = np.zeros(inputs[name].size + 7)
    view = pool[:inputs[name].size].reshape(inputs[name].shape)
    view[...] = inputs[name]
    inputs[name] = view
    before = pool.copy()
    with pytest.raises(ValueError, match=f"out overlaps {name}"):
        linear_forward(**inputs, out=pool[view.size - 1:].reshape(4, 2))
    np.testing.assert_array_equal(pool, before)


def test_interleaved_arrays_that_share_no_element_are_accepted():
    """out and dW may lie between the elements of x (their byte ranges cross):
    only shared elements are refused."""
    x, W, b, dy = arrays()
    big = np.zeros((4, 6))
    big[:, ::2] = x
    y = linear_forward(big[:, ::2], W, b, out=big[:, 1::2][:, :2])
    assert_close(y, x @ W + b, F64, 3)
    pool = np.zeros(12)
    pool[::2] = W.ravel()
    g = linear_backward(x, pool[::2].reshape(3, 2), dy, dW=pool[1::2].reshape(3, 2))
    assert_close(g.dW, x.T @ dy, F64, 4)


@pytest.mark.parametrize("shape", [(5, 2), (3, 2), (4, 1, 2), (2,)], ids=str)
def test_out_with_other_leading_dimensions_is_refused(shape):
    x, W, b, dy = arrays()
    with pytest.raises(ValueError, match=r"out must have shape \(4, 2\)"):
        linear_forward(x, W, b, out=np.zeros(shape))
    with pytest.raises(ValueError, match=r"dx must have shape \(2, 2, 3\)"):
        linear_backward(x.reshape(2, 2, 3), W, dy.reshape(2, 2, 2), dx=np.zeros((4, 1, 3)))


@pytest.mark.parametrize("n, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError),
                                    (True, TypeError), (10 ** 6, ValueError), (2 ** 40, ValueError)])
def test_bad_num_threads(n, exc):
    x, W, b, dy = arrays()
    with pytest.raises(exc, match="num_threads"):
        linear_forward(x, W, b, num_threads=n)
    with pytest.raises(exc, match="num_threads"):
        linear_backward(x, W, dy, num_threads=n)
    with pytest.raises(exc, match="num_threads"):
        fastlinear.set_num_threads(n)


def test_inputs_not_modified_and_lists_accepted():
    x, W, b, dy = arrays()
    copies = [a.copy() for a in (x, W, b, dy)]
    y = linear_forward(x.tolist(), W.tolist(), b.tolist())
    assert_close(y, x @ W + b, F64, 3)
    linear_forward(x, W, b)
    linear_backward(x, W, dy)
    for a, c in zip((x, W, b, dy), copies):
        np.testing.assert_array_equal(a, c)


def misaligned(shape, dtype):
    """A C-contiguous, writeable array whose data is not aligned to its itemsize."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(int(np.prod(shape)) * itemsize + 1, np.uint8)
    a = raw[1:].view(dtype).reshape(shape)
    assert not a.flags.aligned
    return a


@pytest.mark.parametrize("dtype", DTYPES)
def test_misaligned_arrays(dtype):
    rng = np.random.default_rng(4)
    for N, M_in, M_out in [(7, 5, 3), (600, 300, 200), (5000, 64, 16)]:
        x, W, b, dy = (misaligned(s, dtype) for s in ((N, M_in), (M_in, M_out), (M_out,), (N, M_out)))
        for a in (x, W, b, dy):
            a[...] = rng.standard_normal(a.shape)
        y = misaligned((N, M_out), dtype)
        assert linear_forward(x, W, b, out=y) is y
        bufs = dict(dx=misaligned((N, M_in), dtype), dW=misaligned((M_in, M_out), dtype),
                    db=misaligned((M_out,), dtype))
        g = linear_backward(x, W, dy, **bufs)
        ry, rdx, rdW, rdb = reference(x, W, b, dy)
        assert_close(y, ry, dtype, M_in)
        assert_close(g.dx, rdx, dtype, M_out)
        assert_close(g.dW, rdW, dtype, N)
        assert_close(g.db, rdb, dtype, N)


def test_shape_checks_take_any_array():
    """The checks fastlinear.dask shares read shapes of non-NumPy arrays, never their memory."""
    from fastlinear._api import check_backward, check_forward

    class Shaped:  # what the checks may read of a dask array: ndim, shape and dtype
        def __init__(self, *shape):
            self.shape, self.ndim, self.dtype = shape, len(shape), np.dtype(np.float64)

    W = np.ones((3, 2))
    check_forward(Shaped(5, 3), W, Shaped(2))
    check_forward(Shaped(5, 3), Shaped(3, 2), np.ones(2))
    assert check_backward(Shaped(5, 3), W, Shaped(5, 2))[1:] == (3, 2)
    with pytest.raises(ValueError, match="b must have shape"):
        check_forward(Shaped(5, 3), W, Shaped(3))
    with pytest.raises(ValueError, match="W must be 2-D"):
        check_forward(Shaped(5, 3), Shaped(3))
    with pytest.raises(ValueError, match="x must have shape"):
        check_forward(Shaped(5, 4), W)
    with pytest.raises(ValueError, match="dy must have shape"):
        check_backward(Shaped(5, 3), W, Shaped(5, 3))
    with pytest.raises(AttributeError):
        check_forward(np.ones((5, 3)), W, 1)


def test_kernels_refuse_inconsistent_arguments():
    """The compiled entry points check what they are given, whoever calls them."""
    from fastlinear import _backward, _forward
    from fastlinear._parallel import PATHS, make_plan
    x, W, b, dy = arrays(8, 4, 3)
    y = np.empty((8, 3))
    read_only = np.empty((8, 3))
    read_only.flags.writeable = False
    for args in [(x, W, b, np.empty((8, 3), np.float32)), (x, W, b, np.empty((3, 8)).T),
                 (x, W, b, np.empty((8, 4))), (x, W, b, read_only),
                 (x, W.astype(np.float32), b, y), ([[1.0]], W, b, y), (x, W, b[:2], y)]:
        with pytest.raises(ValueError):
            _forward.forward(*args, 0, None, make_plan(PATHS["tiled"], False, 2), 2)
    for bufs in [(np.empty((8, 3)), None, None), (None, np.empty((4, 3), np.float32), None),
                 (None, None, np.empty(4))]:
        with pytest.raises(ValueError):
            _backward.backward(x, W, dy, *bufs, False, False, False, 0, None, False,
                               make_plan(PATHS["blocked"], False, 2), 2)


def test_non_native_byte_order():
    x, W, b, dy = arrays()
    y = linear_forward(x.astype(">f8"), W, b)
    assert y.dtype == F64
    assert_close(y, x @ W + b, F64, 3)


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
def test_default_path(shape, path):
    """Which strategy the built-in plans give a shape (see docs/design.md)."""
    from fastlinear import _api
    assert _api.default_path(*shape) == {"serial": 0, "blocked": 1, "tiled": 2}[path]


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
    from fastlinear._threads import _has_small_kernels
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
    holder._libs = []
    holder._use_controls([(shared.get, shared.set, False), (own.get, own.set, True)])
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


# ---- the Linear class ----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_class_matches_functional(dtype):
    layer = Linear(5, 3, dtype=dtype, seed=0)
    assert layer.W.shape == (5, 3) and layer.b.shape == (3,) and layer.W.dtype == dtype
    bound = 1 / np.sqrt(5)
    assert np.all(np.abs(layer.W) <= bound) and np.all(np.abs(layer.b) <= bound)
    rng = np.random.default_rng(1)
    x, dy = make(rng, (2, 7, 5), dtype), make(rng, (2, 7, 3), dtype)
    ry, rdx, rdW, rdb = reference(x, layer.W, layer.b, dy)
    W_id, dW_id = id(layer.W), id(layer.dW)
    assert_close(layer(x), ry, dtype, 5)
    assert_close(layer.backward(dy), rdx, dtype, 3)
    layer.forward(x)
    layer.backward(dy, need_dx=False)
    assert_close(layer.dW, 2 * rdW, dtype, 28)
    assert_close(layer.db, 2 * rdb, dtype, 28)
    layer.zero_grad()
    assert not layer.dW.any() and not layer.db.any()
    assert id(layer.W) == W_id and id(layer.dW) == dW_id


def test_linear_init_is_seeded_and_uniform():
    a, b = Linear(400, 300, seed=1), Linear(400, 300, seed=1)
    np.testing.assert_array_equal(a.W, b.W)
    assert not np.array_equal(a.W, Linear(400, 300, seed=2).W)
    bound = 1 / 20
    assert a.W.min() >= -bound and a.W.max() <= bound
    assert abs(a.W.mean()) < 0.001 and abs(a.W.std() - bound / np.sqrt(3)) < 0.001


def test_linear_no_bias_state_dict_repr():
    layer = Linear(4, 2, bias=False, dtype=np.float32)
    assert layer.b is None and layer.db is None
    assert repr(layer) == "Linear(in_features=4, out_features=2, bias=False, dtype=float32)"
    state = layer.state_dict()
    assert set(state) == {"W"}
    other = Linear(4, 2, bias=False, dtype=np.float32, seed=5)
    W_before = other.W
    other.load_state_dict(state)
    assert other.W is W_before
    np.testing.assert_array_equal(other.W, layer.W)
    state["W"][:] = 0
    assert layer.W.any()
    with pytest.raises(ValueError, match="keys"):
        other.load_state_dict({"W": layer.W, "b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"W must have shape \(4, 2\)"):
        other.load_state_dict({"W": np.zeros((2, 4))})
    g = other.parameters()
    assert len(g) == 1 and g[0][0] is other.W and g[0][1] is other.dW


@pytest.mark.parametrize("M_in, M_out", [(0, 3), (3, 0), (0, 0)])
def test_linear_with_zero_features(M_in, M_out):
    """A layer may have no inputs (y is the bias) or no outputs."""
    layer = Linear(M_in, M_out, seed=0)
    assert layer.W.shape == (M_in, M_out) and layer.b.shape == (M_out,)
    rng = np.random.default_rng(2)
    x, dy = make(rng, (5, M_in), F64), make(rng, (5, M_out), F64)
    ry, rdx, rdW, rdb = reference(x, layer.W, layer.b, dy)
    assert_close(layer(x), ry, F64, M_in)
    assert_close(layer.backward(dy), rdx, F64, M_out)
    assert_close(layer.dW, rdW, F64, 5)
    assert_close(layer.db, rdb, F64, 5)


def test_linear_backward_that_fails_changes_nothing():
    """A refused dy leaves dW, db and the pending input as they were: the
    backward can be made again with the right dy."""
    layer = Linear(3, 2, seed=0)
    x, _, _, dy = arrays()
    layer.forward(x)
    with pytest.raises(ValueError, match="dy must have shape"):
        layer.backward(dy[:, :1])
    assert not layer.dW.any() and not layer.db.any()
    layer.backward(dy)
    assert_close(layer.dW, x.T @ dy, F64, 4)


def test_linear_load_state_dict_checks_everything_before_copying():
    """Whichever parameter is refused, neither is changed."""
    layer = Linear(3, 2, seed=0)
    W, b = layer.W.copy(), layer.b.copy()
    for bad in ({"W": np.zeros((3, 2)), "b": np.zeros(3)},
                {"W": np.zeros((2, 3)), "b": np.zeros(2)},
                {"W": np.zeros((3, 2)), "b": np.zeros(2, bool)}):
        with pytest.raises((ValueError, TypeError)):
            layer.load_state_dict(bad)
        np.testing.assert_array_equal(layer.W, W)
        np.testing.assert_array_equal(layer.b, b)


def test_linear_errors():
    with pytest.raises(RuntimeError, match="before forward"):
        Linear(2, 2).backward(np.ones((1, 2)))
    layer = Linear(2, 2)
    layer.forward(np.ones((1, 2)))
    layer.backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="twice after one forward"):
        layer.backward(np.ones((1, 2)))
    with pytest.raises(TypeError, match="in_features must be an int"):
        Linear(3.0, 2)
    with pytest.raises(TypeError, match="dtype"):
        Linear(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="in_features"):
        Linear(-1, 2)
    with pytest.raises(TypeError, match="x is float32, W is float64"):
        Linear(2, 2)(np.ones((1, 2), np.float32))


def test_linear_docstring_example():
    import doctest
    import fastlinear._linear as mod
    result = doctest.testmod(mod, verbose=False)
    assert result.attempted > 0 and result.failed == 0
