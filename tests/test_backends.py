"""Optional BLAS backends: each found one is a candidate, a broken one is a warning and SciPy's."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _helpers import DTYPES, assert_close, make, reference, run_script, planner_problem

import fastlinear
from fastlinear import _backends, _plans
from fastlinear import linear_backward, linear_forward
from fastlinear._parallel import PATHS, make_plan, plan_fields

MKL = _backends.SLOTS["mkl"]
FOUND = _backends.backends.found()
needs_mkl = pytest.mark.skipif("mkl" not in FOUND, reason="MKL is not installed or cannot "
                               f"load: {_backends.backends.missing.get('mkl')}")
# Each optional backend, its tests skipped where it is not installed or cannot load.
OPTIONAL = [pytest.param(name, marks=pytest.mark.skipif(
    name not in FOUND, reason=f"not installed or cannot load: {_backends.backends.missing.get(name)}"))
    for name in _backends.OPTIONAL]


@pytest.mark.parametrize("name", sorted(_backends.OPTIONAL))
def test_an_installed_backend_is_found(name):
    """Where the extra is installed, its library loads: the tests of its plans then run."""
    if _backends._library(name) is None:
        pytest.skip(f"the {name} extra is not installed")
    assert name in FOUND, _backends.backends.missing


@pytest.mark.parametrize("kind", ["f", "b11", "b01"])
def test_every_backend_found_is_a_candidate(kind):
    backends = {plan_fields(p)[3] for p in _plans.candidates(planner_problem(kind, 64, 784, 256))}
    assert backends == set(_backends.backends.usable())
    assert plan_fields(planner_problem(kind, 64, 784, 256).builtin_plan())[3] == _backends.SLOTS["scipy"]


@pytest.mark.parametrize("name", OPTIONAL)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
def test_backend_plans_match_the_reference(rng, dtype, path, activation, name):
    """Every path, fused or not, against float64 NumPy, with the same bits for 1-4 threads."""
    N, M_in, M_out = 600, 40, 300
    x, W, dy = make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, (N, M_out), dtype)
    b = make(rng, M_out, dtype)
    ry, rdx, rdW, rdb = reference(x, W, b, dy)
    runs = []
    for small_kernels in (False, True):
        plan = make_plan(PATHS[path], small_kernels, 2, _backends.SLOTS[name])
        for threads in (1, 2, 3, 4):
            z = np.empty((N, M_out), dtype)
            y = linear_forward(x, W, b, activation=activation, z=z, num_threads=threads, _plan=plan)
            grads = linear_backward(x, W, dy, activation=activation,
                                    y=y if activation == "relu" else None,
                                    z=z if activation == "gelu" else None, num_threads=threads,
                                    _plan=plan)
            runs.append((small_kernels, (y, z) + tuple(grads)))
    for small_kernels, got in runs:
        y, z = got[:2]
        assert_close(z, ry, dtype, M_in)
        if activation == "relu":
            assert_close(y, np.maximum(ry, 0), dtype, M_in)
        if activation is None:
            assert_close(y, ry, dtype, M_in)
            assert_close(got[2], rdx, dtype, M_out)
            assert_close(got[3], rdW, dtype, N)
            assert_close(got[4], rdb, dtype, N)
    for small_kernels, got in runs:
        want = next(r for s, r in runs if s == small_kernels)
        for a, c in zip(got, want):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name", OPTIONAL)
def test_pinning_a_backend(rng, name):
    fastlinear.set_blas(name)
    try:
        for kind in ("f", "b11"):
            plans = _plans.candidates(planner_problem(kind, 64, 784, 256))
            assert {plan_fields(p)[3] for p in plans} == {_backends.SLOTS[name]}
        x, W = make(rng, (64, 784), np.float64), make(rng, (784, 256), np.float64)
        assert_close(fastlinear.linear_forward(x, W), x @ W, np.float64, 784)
    finally:
        fastlinear.set_blas("auto")


@needs_mkl
def test_no_intel_openmp_is_loaded():
    out = run_script("""
        import numpy as np, fastlinear
        fastlinear.set_planning("off")
        fastlinear.set_blas("mkl")
        fastlinear.linear_forward(np.ones((64, 784)), np.ones((784, 256)))
        maps = open("/proc/self/maps").read()
        print("libmkl_rt" in maps, "libiomp5" in maps)
    """)
    assert out.split() == ["True", "False"]


def test_pinning_scipy_loads_no_other(tmp_path):
    env = dict(os.environ, FASTLINEAR_BLAS="scipy", FASTLINEAR_PLANS="measure",
               FASTLINEAR_PLAN_FILE=str(tmp_path / "plans.json"))
    code = ("import json, numpy as np, fastlinear; "
            "fastlinear.tune([(64, 784, 256)], dtypes=['float32']); "
            "maps = open('/proc/self/maps').read(); "
            "print('libmkl_rt' in maps, 'scipy_openblas32' in maps); "
            "print(json.dumps(fastlinear._config.config()['plans']['plans_per_blas']))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout.splitlines()
    assert out[0] == "False False"
    assert json.loads(out[1]) == {"scipy": 3}


@pytest.mark.parametrize("name", sorted(_backends.OPTIONAL))
def test_a_broken_library_is_a_warning_and_scipy(tmp_path, name):
    """A file that is not a library, and a library that is not the backend: no crash,
    SciPy's BLAS."""
    garbage = tmp_path / "libnot_a_blas.so.2"
    garbage.write_bytes(b"\x7fELF not really")
    for path in (str(garbage), "libm.so.6"):
        with pytest.raises(OSError):
            _backends.BACKENDS[name].load(path)
        out = run_script(f"""
            import warnings, numpy as np, fastlinear
            from fastlinear import _backends
            _backends._library = lambda name: {path!r}
            fastlinear.set_planning("off")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fastlinear.set_blas({name!r})
                x, W = np.arange(12.0).reshape(3, 4), np.ones((4, 2))
                y = fastlinear.linear_forward(x, W)
            print(sorted(fastlinear._config.config()["blas_backends"]), y.sum(),
                  any("not using" in str(w.message) for w in caught))
        """)
        assert out.split() == ["['scipy']", "132.0", "True"]


@pytest.mark.parametrize("name", OPTIONAL)
def test_a_library_loaded_elsewhere_is_left_alone(name):
    """Loaded by another part of the process first: its settings are that part's, so a
    warning and SciPy's BLAS."""
    out = run_script(f"""
        import ctypes, warnings, fastlinear
        from fastlinear import _backends
        ctypes.CDLL(_backends._library({name!r}))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fastlinear.set_blas({name!r})
            print(sorted(_backends.backends.found()))
        print(any("is loaded by another library" in str(w.message) for w in caught))
    """)
    assert out.split() == ["['scipy']", "True"]


@pytest.mark.parametrize("name", sorted(_backends.OPTIONAL))
def test_a_pinned_backend_that_fails_under_measure(tmp_path, rng, name):
    """Pinned but not installed, or not loadable, under the default planning mode on
    calls big enough to be planned: a warning, SciPy's BLAS in every plan measured
    and in the file, and right results."""
    garbage = tmp_path / "libnot_a_blas.so.2"
    garbage.write_bytes(b"\x7fELF not really")
    x, W, dy = make(rng, (64, 100), np.float64), make(rng, (100, 50), np.float64), make(rng, (64, 50), np.float64)
    b = make(rng, 50, np.float64)
    for kind in ("f", "b11"):
        assert len(_plans.candidates(planner_problem(kind, 64, 100, 50))) > 1, "the calls must be measured"
    inputs, outputs = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(inputs, x=x, W=W, b=b, dy=dy)
    for i, library in enumerate([None, str(garbage), "libm.so.6"]):
        plan_file = tmp_path / f"plans-{i}.json"
        # A fresh process: this one may have loaded the real library, which is then kept.
        out = run_script(f"""
            import json, warnings, numpy as np, fastlinear
            from fastlinear import _backends, _plans
            _backends._library = lambda name: {library!r}
            fastlinear.set_planning("measure", {str(plan_file)!r})
            a = np.load({str(inputs)!r})
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fastlinear.set_blas({name!r})
                y = fastlinear.linear_forward(a["x"], a["W"], a["b"])
                g = fastlinear.linear_backward(a["x"], a["W"], a["dy"])
            np.savez({str(outputs)!r}, y=y, dx=g.dx, dW=g.dW, db=g.db)
            measured = _plans.planner.summary()
            fastlinear.set_planning("file", {str(plan_file)!r})  # what the file holds
            print(json.dumps({{"warnings": [str(w.message) for w in caught],
                              "backends": sorted(fastlinear._config.config()["blas_backends"]),
                              "measured": measured, "saved": _plans.planner.summary()}}))
        """)
        report = json.loads(out.splitlines()[-1])
        label = _backends.BACKENDS[name].label
        why = f"{label} was chosen but" if library is None else f"not using {label}: {library}"
        assert any(why in w and "SciPy's BLAS" in w for w in report["warnings"]), report["warnings"]
        assert report["backends"] == ["scipy"]
        assert report["measured"]["measured_here"] == 2
        for summary in (report["measured"], report["saved"]):
            assert summary["plans_per_blas"] == {"scipy": 2}, summary
        got = np.load(outputs)
        for key, want, k in zip(("y", "dx", "dW", "db"), reference(x, W, b, dy), (100, 50, 64, 64)):
            assert_close(got[key], want, np.float64, k)


@pytest.mark.skipif("openblas" not in FOUND, reason="the openblas extra is not installed")
def test_openblas_is_held_at_one_thread(rng):
    """Resized from outside (threadpoolctl sees the library), it computes single-threaded
    again, with the same bits."""
    import ctypes
    lib = ctypes.CDLL(_backends._library("openblas"))
    lib.scipy_openblas_get_num_threads.restype = ctypes.c_int
    x, W = make(rng, (300, 200), np.float32), make(rng, (200, 100), np.float32)
    plan = make_plan(PATHS["tiled"], False, 2, _backends.SLOTS["openblas"])
    want = linear_forward(x, W, num_threads=2, _plan=plan)
    lib.scipy_openblas_set_num_threads(2)
    got = linear_forward(x, W, num_threads=2, _plan=plan)
    assert lib.scipy_openblas_get_num_threads() == 1
    np.testing.assert_array_equal(got, want)


def test_choosing_a_backend_checks_its_name(tmp_path):
    with pytest.raises(ValueError, match="auto"):
        fastlinear.set_blas("blis")
    env = dict(os.environ, FASTLINEAR_BLAS="fastest")
    proc = subprocess.run([sys.executable, "-c", "import fastlinear; print(fastlinear._backends.backends.choice)"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, check=True)
    assert proc.stdout.strip() == "auto" and "FASTLINEAR_BLAS" in proc.stderr


@pytest.mark.parametrize("name, choices", [("FASTLINEAR_BLAS", ("auto", "scipy", "mkl")),
                                           ("FASTLINEAR_PLANS", ("measure", "file", "off"))])
def test_settings_from_the_environment_ignore_case_and_spaces(monkeypatch, recwarn, name, choices):
    """Each choice however it is capitalised or padded; unset or empty gives the default;
    anything else the default, with one warning naming the variable."""
    for value, expected in [(choices[1].upper(), choices[1]), (f" {choices[2].title()}\t", choices[2]),
                            ("", choices[0])]:
        monkeypatch.setenv(name, value)
        assert _backends.env_choice(name, choices) == expected
    monkeypatch.delenv(name)
    assert _backends.env_choice(name, choices) == choices[0]
    assert not [w for w in recwarn if name in str(w.message)]
    monkeypatch.setenv(name, "fastest-of-all")
    monkeypatch.setattr(fastlinear._warn, "_given", set())  # as in a fresh process
    with pytest.warns(RuntimeWarning, match=name):
        assert _backends.env_choice(name, choices) == choices[0]


def test_a_plan_for_a_backend_not_loaded_is_refused(rng):
    x, W = make(rng, (4, 3), np.float64), make(rng, (3, 2), np.float64)
    unused = 3  # a slot no backend registers
    with pytest.raises(ValueError, match="no such plan"):
        linear_forward(x, W, num_threads=1, _plan=make_plan(PATHS["tiled"], False, 2, unused))


@needs_mkl
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_mkl_plans_in_a_forked_child(rng):
    """A child forked after MKL plans ran computes with them too."""
    import multiprocessing
    x, W = make(rng, (300, 200), np.float64), make(rng, (200, 100), np.float64)
    plan = make_plan(PATHS["tiled"], False, 2, MKL)
    want = linear_forward(x, W, num_threads=2, _plan=plan)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply(linear_forward, (x, W), {"num_threads": 2, "_plan": plan})
    np.testing.assert_array_equal(got, want)


def test_a_call_without_products_has_one_backend():
    """db alone calls no BLAS: choosing its backend would measure noise."""
    plans = _plans.candidates(planner_problem("b00", 4096, 1024, 1024))
    assert {plan_fields(p)[3] for p in plans} == {_backends.backends.default()}


def test_auto_looks_for_every_optional_backend(tmp_path):
    """Under "auto" every optional backend is looked for: with a library that does
    not load for each, each is a warning and listed as missing, and SciPy's BLAS
    computes the products."""
    garbage = tmp_path / "libnot_a_blas.so.2"
    garbage.write_bytes(b"\x7fELF not really")
    out = run_script(f"""
        import json, warnings, numpy as np, fastlinear
        from fastlinear import _backends
        _backends._library = lambda name: {str(garbage)!r}
        fastlinear.set_planning("off")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fastlinear.set_blas("auto")
            found = sorted(_backends.backends.found())
            y = fastlinear.linear_forward(np.arange(12.0).reshape(3, 4), np.ones((4, 2)))
        print(json.dumps({{"found": found, "missing": sorted(_backends.backends.missing),
                          "sum": float(y.sum()),
                          "warnings": [str(w.message) for w in caught]}}))
    """)
    report = json.loads(out.splitlines()[-1])
    assert report["found"] == ["scipy"]
    assert report["missing"] == sorted(_backends.OPTIONAL)
    assert report["sum"] == 132.0
    for name in _backends.OPTIONAL:
        label = _backends.BACKENDS[name].label
        assert any(f"not using {label}" in w for w in report["warnings"]), report["warnings"]
