"""Plans: every candidate computes the right result, and plan files are trusted only when valid."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _helpers import DTYPES, assert_close, make, reference, run_script, planner_problem

import fastlinear
from fastlinear import _planfile, _plans, _problem
from fastlinear import linear_backward, linear_forward
from fastlinear._parallel import PATHS, make_plan

KINDS = ["f", "b11", "b01", "b10"]
# Shapes with several candidates: around the serial bound, mid-size products in
# the small-kernel range, tall and narrow ones where row blocks compete.
PLANNED_SHAPES = [(32, 64, 128), (64, 784, 256), (128, 512, 512), (2049, 33, 7), (5000, 64, 16),
                  (300, 40, 300)]


@pytest.fixture
def plan_file(tmp_path):
    """A planner measuring into a fresh file; the suite's own settings afterwards."""
    path = tmp_path / "plans.json"
    fastlinear.set_planning("measure", path)
    yield path
    fastlinear.set_planning(os.environ["FASTLINEAR_PLANS"], os.environ["FASTLINEAR_PLAN_FILE"])


def _run(plan, x, W, b, dy, num_threads, kind="b11"):
    y = linear_forward(x, W, b, num_threads=num_threads, _plan=plan)
    g = linear_backward(x, W, dy, bias=b is not None, need_dx=kind[1] == "1",
                        need_dW=kind[2] == "1", num_threads=num_threads, _plan=plan)
    return (y,) + tuple(g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", PLANNED_SHAPES, ids=str)
def test_every_candidate_matches_the_reference(rng, shape, dtype):
    """Whatever this machine picks, every plan the planner may pick is right,
    in C and Fortran layouts, with the same bits for any thread count."""
    N, M_in, M_out = shape
    x, W, dy = make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, (N, M_out), dtype)
    b = make(rng, M_out, dtype)
    ry, rdx, rdW, rdb = reference(x, W, b, dy)
    plans = {p for kind in KINDS for p in _plans.candidates(planner_problem(kind, N, M_in, M_out))}
    assert len(plans) > 1, "a shape here must have several candidates"
    for plan in sorted(plans):
        for xs, Ws, dys in [(x, W, dy), (np.asfortranarray(x), np.asfortranarray(W), np.asfortranarray(dy))]:
            y, dx, dW, db = _run(plan, xs, Ws, b, dys, 2)
            assert_close(y, ry, dtype, M_in)
            assert_close(dx, rdx, dtype, M_out)
            assert_close(dW, rdW, dtype, N)
            assert_close(db, rdb, dtype, N)
            for t in (1, 3):
                for got, want in zip(_run(plan, xs, Ws, b, dys, t), (y, dx, dW, db)):
                    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", PLANNED_SHAPES, ids=str)
def test_candidates(shape):
    """The built-in plan comes first, there are no duplicates, and each is a plan."""
    for kind in KINDS:
        plans = _plans.candidates(planner_problem(kind, *shape))
        assert plans[0] == planner_problem(kind, *shape).builtin_plan()
        assert len(set(plans)) == len(plans)
        for plan in plans:
            assert _plans.plan_to_json(plan)["path"] in PATHS


@pytest.mark.parametrize("vendor, family, small_kernels, cut", [
    ("AuthenticAMD", "25", True, True),     # Zen 4, where the cut was measured to gain
    ("AuthenticAMD", "25", False, False),   # a BLAS without small-matrix kernels
    ("GenuineIntel", "6", True, False),     # the same kernels, but the cut measured a loss
    ("AuthenticAMD", "26", True, False),    # not measured: left to the planner
    (None, None, True, False),              # no /proc/cpuinfo
])
def test_built_in_plans_cut_for_small_kernels_only_where_measured(monkeypatch, vendor, family,
                                                                 small_kernels, cut):
    fields = {} if vendor is None else {"vendor_id": vendor, "cpu family": family}
    monkeypatch.setattr(_problem, "_cpuinfo", lambda: fields)
    monkeypatch.setattr(_problem, "small_kernels", lambda: small_kernels)
    assert _problem.builtin_small_kernels() == cut
    # (128, 512, 512): a tiled backward in the small-kernel range.
    assert _plans.plan_to_json(planner_problem("b11", 128, 512, 512).builtin_plan())["small_kernels"] == cut
    tiled = [_plans.plan_to_json(p) for p in _plans.candidates(planner_problem("b11", 128, 512, 512))]
    assert {p["small_kernels"] for p in tiled if p["path"] == "tiled"} == {True, False}


@pytest.mark.parametrize("kind", KINDS)
def test_small_problems_have_one_candidate(kind):
    (plan,) = _plans.candidates(planner_problem(kind, 8, 8, 8))
    assert _plans.plan_to_json(plan)["path"] == "serial"


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_across_thread_counts_with_planning(plan_file, dtype):
    rng = np.random.default_rng(7)
    for N, M_in, M_out in PLANNED_SHAPES:
        x, W, dy = make(rng, (N, M_in), dtype), make(rng, (M_in, M_out), dtype), make(rng, (N, M_out), dtype)
        b = make(rng, M_out, dtype)
        results = []
        for t in (1, 2, 3, 4):
            y = fastlinear.linear_forward(x, W, b, num_threads=t)
            results.append((y,) + tuple(fastlinear.linear_backward(x, W, dy, num_threads=t)))
        for other in results[1:]:
            for a, c in zip(results[0], other):
                np.testing.assert_array_equal(a, c)
    assert _own_plans(plan_file), "the planner measured and wrote nothing"


def test_plans_are_written_and_reused(plan_file):
    """A second process reads the plans and measures nothing."""
    fastlinear.tune([(64, 784, 256)], dtypes=["float64"])
    keys = set(_own_plans(plan_file))
    assert any(k.startswith("f:float64:7:784:256") for k in keys)
    out = run_script(f"""
        import json, numpy as np, fastlinear
        fastlinear.set_planning("measure", {str(plan_file)!r})
        x, W = np.ones((64, 784)), np.ones((784, 256))
        fastlinear.linear_forward(x, W)
        fastlinear.linear_backward(x, W, np.ones((64, 256)))
        print(json.dumps(fastlinear._config.config()["plans"]))
    """)
    summary = json.loads(out.splitlines()[-1])
    assert summary["measured_here"] == 0 and summary["planning_seconds"] == 0
    assert set(_own_plans(plan_file)) == keys


def test_a_pinned_plan_is_used(plan_file, rng):
    """The plan in the file decides how a call runs: the bits are those of that plan."""
    x, W, dy = make(rng, (64, 784), np.float64), make(rng, (784, 256), np.float64), make(rng, (64, 256), np.float64)
    for path, small_kernels in [("serial", False), ("tiled", True), ("tiled", False)]:
        plan = make_plan(PATHS[path], small_kernels, 2)
        plan_file.write_text(json.dumps(_file_of({"b11:float64:7:784:256": _plans.plan_to_json(plan)})))
        fastlinear.set_planning("file", plan_file)
        got = fastlinear.linear_backward(x, W, dy, bias=False)
        want = linear_backward(x, W, dy, bias=False, _plan=plan)
        for a, c in zip(got, want):
            if a is not None:
                np.testing.assert_array_equal(a, c)
    assert _plans.planner.summary()["measured_here"] == 0


def _file_of(plans, identity=None):
    """A plan file's content with one section: ``plans`` for this process's identity."""
    return {"format": _planfile.FORMAT, "sections": [
        {"identity": _plans.identity() if identity is None else identity, "plans": plans}]}


def _own_plans(path):
    """The plan entries of this process's identity in the file at ``path``."""
    data = json.loads(path.read_text())
    assert data["format"] == _planfile.FORMAT
    (section,) = [s for s in data["sections"] if s["identity"] == _plans.identity()]
    return section["plans"]


def _valid_file(plan_json):
    return _file_of({"f:float64:7:784:256": plan_json})


def _with_section(plan_json, **changes):
    data = _valid_file(plan_json)
    data["sections"][0].update(changes)
    return data


@pytest.mark.parametrize("content, why", [
    ("{not json", "not JSON"),
    (json.dumps([1, 2]), "not a fastlinear plan file"),
    (json.dumps({"format": 99, "plans": {}}), "not a fastlinear plan file"),
    (json.dumps(_with_section({"path": "tiled", "small_kernels": False, "tasks": 2, "blas": "scipy"},
                              identity={"cpu": "another"})), "other CPU"),
    (json.dumps(_with_section({"path": "tiled", "small_kernels": False, "tasks": 2, "blas": "scipy"},
                              identity=dict(_plans.identity(), fastlinear="0.0.1"))), "other CPU"),
    (json.dumps(_valid_file({"path": "gpu", "small_kernels": False, "tasks": 2, "blas": "scipy"})), "corrupt"),
    (json.dumps(_valid_file({"path": "tiled", "small_kernels": False, "tasks": 2})), "corrupt"),
    (json.dumps(_valid_file({"path": "tiled", "small_kernels": False, "tasks": 2,
                             "blas": "cublas"})), "corrupt"),
    (json.dumps(_valid_file({"path": "tiled", "small_kernels": 1, "tasks": 2, "blas": "scipy"})), "corrupt"),
    (json.dumps(_valid_file({"path": "tiled", "small_kernels": False, "tasks": -3, "blas": "scipy"})), "corrupt"),
    (json.dumps(_valid_file({"path": "tiled", "small_kernels": False, "tasks": 2, "blas": "scipy", "x": 1})), "corrupt"),
    (json.dumps(_file_of({"f:float16:7:784:256": {"path": "tiled", "small_kernels": False,
                                                   "tasks": 2, "blas": "scipy"}})), "corrupt"),
    (json.dumps(_file_of({"os.system('x')": {"path": "tiled", "small_kernels": False,
                                             "tasks": 2, "blas": "scipy"}})), "corrupt"),
    (json.dumps(_valid_file({"path": "tiled", "small_kernels": False, "tasks": 2, "blas": "scipy",
                             "margin": "wide", "budget": 0.03})), "corrupt"),
    (json.dumps(_valid_file({"path": "tiled", "small_kernels": False, "tasks": 2, "blas": "scipy",
                             "margin": -1.0, "budget": 0.03})), "corrupt"),
    (json.dumps(_valid_file({"path": "tiled", "small_kernels": False, "tasks": 2, "blas": "scipy",
                             "margin": 1.5})), "corrupt"),
    # The format right, a section without its identity, in either layout.
    (json.dumps({"format": _planfile.FORMAT, "sections": [{"plans": {}}]}), "corrupt"),
    (json.dumps({"format": 2, "plans": {}}), "corrupt"),
    (json.dumps({"format": _planfile.FORMAT, "sections": {"identity": {}, "plans": {}}}), "corrupt"),
])
def test_untrusted_plan_files_are_ignored(plan_file, rng, content, why):
    plan_file.write_text(content)
    fastlinear.set_planning("file", plan_file)
    x, W = make(rng, (64, 784), np.float64), make(rng, (784, 256), np.float64)
    with pytest.warns(RuntimeWarning, match=why):
        y = fastlinear.linear_forward(x, W)
    assert_close(y, x @ W, np.float64, 784)
    assert plan_file.read_text() == content  # "file" mode never writes
    fastlinear.set_planning("off")
    np.testing.assert_array_equal(fastlinear.linear_forward(x, W), y)  # the built-in plan


def _planned_call(rng, path):
    """One call of a class with several candidates, measuring into ``path``; its warnings."""
    import warnings
    fastlinear.set_planning("measure", path)
    x, W = make(rng, (64, 784), np.float64), make(rng, (784, 256), np.float64)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        y = fastlinear.linear_forward(x, W)
        fastlinear.linear_forward(x, W)  # the same cause again
    assert_close(y, x @ W, np.float64, 784)
    return [w for w in got if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("content", [
    b'{"my": "settings"}\n',                               # a user's JSON
    bytes(np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8)),  # random bytes
    b"",
    json.dumps({"format": _planfile.FORMAT, "sections": "yes"}).encode(),  # a corrupt plan file
], ids=["json", "random", "empty", "corrupt"])
def test_a_file_that_is_not_a_plan_file_is_never_written(plan_file, rng, content):
    """Measured plans stay in memory; the user's bytes are unchanged, one warning
    names the file and points at the user's own line."""
    plan_file.write_bytes(content)
    got = _planned_call(rng, plan_file)
    assert plan_file.read_bytes() == content
    assert _plans.planner.summary()["measured_here"] == 1
    assert len(got) == 1, [str(w.message) for w in got]
    assert str(plan_file) in str(got[0].message) and got[0].filename == __file__
    assert sorted(os.listdir(plan_file.parent)) == ["plans.json"]  # no leftovers beside it


def test_a_directory_at_the_plan_path_is_left_alone(plan_file, rng):
    plan_file.mkdir()
    (plan_file / "inside").write_text("mine")
    got = _planned_call(rng, plan_file)
    assert len(got) == 1 and os.listdir(plan_file) == ["inside"]
    assert (plan_file / "inside").read_text() == "mine"


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX file modes")
def test_a_read_only_plan_file_is_never_replaced(plan_file, rng):
    """Even where the folder is writable (or the user is root), a file without its write bit."""
    content = json.dumps(_file_of({})).encode()
    plan_file.write_bytes(content)
    os.chmod(plan_file, 0o444)
    got = _planned_call(rng, plan_file)
    assert plan_file.read_bytes() == content and len(got) == 1 and "read-only" in str(got[0].message)


def test_other_identities_keep_their_plans(plan_file, rng):
    """A pinned file shared by several machines: this one's section is added beside theirs."""
    entry = {"path": "serial", "small_kernels": False, "tasks": 7, "blas": "scipy"}
    other = dict(_plans.identity(), cpu="another CPU")
    plan_file.write_text(json.dumps(_file_of({"f:float64:7:784:256": entry}, identity=other)))
    got = _planned_call(rng, plan_file)
    assert len(got) == 1 and "other CPU" in str(got[0].message)
    sections = json.loads(plan_file.read_text())["sections"]
    assert {"identity": other, "plans": {"f:float64:7:784:256": entry}} in sections
    assert "f:float64:7:784:256" in _own_plans(plan_file)
    assert _planned_call(rng, plan_file) == []  # read back: no warning, nothing measured
    assert _plans.planner.summary()["measured_here"] == 0


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX file modes")
@pytest.mark.parametrize("mode", [0o644, 0o600, 0o640])
def test_a_rewritten_plan_file_keeps_its_permissions(plan_file, rng, mode):
    """A file readers share keeps being readable by them after fastlinear adds its plans."""
    plan_file.write_text(json.dumps(_file_of({})))
    os.chmod(plan_file, mode)
    _planned_call(rng, plan_file)
    assert _own_plans(plan_file) and (plan_file.stat().st_mode & 0o777) == mode


def test_a_plan_file_of_the_earlier_layout_is_kept_as_a_section(plan_file, rng):
    entry = {"path": "serial", "small_kernels": False, "tasks": 7, "blas": "scipy"}
    old = {"format": 2, "identity": {"cpu": "elsewhere"}, "plans": {"f:float64:7:784:256": entry}}
    plan_file.write_text(json.dumps(old))
    _planned_call(rng, plan_file)
    sections = json.loads(plan_file.read_text())["sections"]
    assert {"identity": {"cpu": "elsewhere"}, "plans": {"f:float64:7:784:256": entry}} in sections


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_a_linked_plan_file_is_updated_through_its_link(plan_file, rng, tmp_path):
    real = tmp_path / "real.json"
    real.write_text(json.dumps(_file_of({})))
    plan_file.symlink_to(real)
    _planned_call(rng, plan_file)
    assert plan_file.is_symlink() and _own_plans(real)


def test_the_default_cache_file_is_replaced_when_corrupt(tmp_path, monkeypatch, rng):
    """The one file fastlinear owns: its own cache file, which it may rewrite."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        fastlinear.set_planning("measure", None)
        path = _plans.planner.path()
        assert path.startswith(str(tmp_path))
        os.makedirs(os.path.dirname(path), mode=0o700)
        with open(path, "wb") as f:
            f.write(b"\x00garbage")
        os.chmod(path, 0o600)
        got = _planned_call(rng, None)
        assert len(got) == 1 and "not JSON" in str(got[0].message)
        with open(path) as f:
            assert json.load(f)["format"] == _planfile.FORMAT
    finally:
        fastlinear.set_planning(os.environ["FASTLINEAR_PLANS"], os.environ["FASTLINEAR_PLAN_FILE"])


def test_plans_carry_their_margin(plan_file):
    """Each measured plan records how far it led, and show_config lists the close calls."""
    chosen = fastlinear.tune([(64, 784, 256)], dtypes=["float64"], budget=0.01)
    for key, entry in chosen.items():
        assert entry["margin"] > 0 and entry["budget"] == 0.01 and entry == _own_plans(plan_file)[key]
    summary = _plans.planner.summary()
    assert summary["close_calls"] == sorted(k for k, e in chosen.items() if e["margin"] < 1.05)
    with pytest.raises(ValueError, match="budget"):
        fastlinear.tune([(64, 784, 256)], budget=0)


def test_a_kept_plan_wins_its_paired_rounds(monkeypatch):
    """measure keeps a candidate over the built-in plan only if it wins the median
    of paired rounds, not one lucky round."""
    plans = _plans.candidates(planner_problem("b11", 64, 784, 256))
    assert len(plans) >= 3
    lucky, steady = plans[1], plans[2]

    def fake_timed_rounds(call, chosen, rounds, repeats=None):
        # lucky: fastest once, slow otherwise; steady: 10% faster than built in every round
        times = {plans[0]: [1.0] * rounds, steady: [0.9] * rounds, lucky: [0.5] + [1.3] * (rounds - 1)}
        return {p: times.get(p, [2.0] * rounds) for p in chosen}

    monkeypatch.setattr(_plans, "_timed_rounds", fake_timed_rounds)
    monkeypatch.setattr(_plans, "_placed_calls", lambda problem: [None])
    monkeypatch.setattr(_plans, "_repeats", lambda call, chosen: (dict.fromkeys(chosen, 1), 1.0))
    monkeypatch.setattr(_plans, "SETTLE", 0)
    best, margin = _plans.measure(planner_problem("b11", 64, 784, 256, dtype="float64"), plans)
    assert best == steady and margin == pytest.approx(1.0 / 0.9)

    def close(call, chosen, rounds, repeats=None):  # 2% faster: within the noise margin, the built-in plan stays
        return {p: [0.98 if p == steady else 1.0] * rounds for p in chosen}

    monkeypatch.setattr(_plans, "_timed_rounds", close)
    best, margin = _plans.measure(planner_problem("b11", 64, 784, 256, dtype="float64"), plans)
    assert best == plans[0] and margin == pytest.approx(0.98)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX file ownership")
@pytest.mark.parametrize("mode", [0o666, 0o664, 0o620, 0o646, 0o602])
def test_a_plan_file_others_can_write_is_ignored(plan_file, rng, mode):
    """Group- or world-writable: its plans could be anyone's, so none is used and it is not written."""
    content = json.dumps(_valid_file({"path": "serial", "small_kernels": False, "tasks": 2,
                                      "blas": "scipy"})).encode()
    plan_file.write_bytes(content)
    os.chmod(plan_file, mode)
    got = _planned_call(rng, plan_file)
    assert len(got) == 1 and "another user" in str(got[0].message)
    assert plan_file.read_bytes() == content
    assert _plans.planner.summary()["measured_here"] == 1


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX file ownership")
def test_a_cache_file_others_can_write_is_ignored(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fastlinear.set_planning("measure", None)
    try:
        path = _plans.planner.path()
        assert path.startswith(str(tmp_path))
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            json.dump(_valid_file({"path": "serial", "small_kernels": False, "tasks": 2,
                                   "blas": "scipy"}), f)
        os.chmod(path, 0o666)
        fastlinear.set_planning("file", None)
        with pytest.warns(RuntimeWarning, match="another user"):
            fastlinear.linear_forward(make(rng, (64, 784), np.float64), make(rng, (784, 256), np.float64))
    finally:
        fastlinear.set_planning(os.environ["FASTLINEAR_PLANS"], os.environ["FASTLINEAR_PLAN_FILE"])


def test_off_gives_the_built_in_plans(tmp_path):
    path = tmp_path / "never.json"
    fastlinear.set_planning("off", path)
    try:
        for kind in KINDS:
            for shape in PLANNED_SHAPES:
                assert _plans.planner.choose(planner_problem(kind, *shape, dtype="float64")) == planner_problem(kind, *shape).builtin_plan()
        fastlinear.linear_forward(np.ones((64, 784)), np.ones((784, 256)))
        assert not path.exists()
        assert _plans.planner.summary() == {"mode": "off", "file": None, "plans": 0,
                                            "measured_here": 0, "planning_seconds": 0.0,
                                            "plans_per_blas": {}, "close_calls": []}
    finally:
        fastlinear.set_planning(os.environ["FASTLINEAR_PLANS"], os.environ["FASTLINEAR_PLAN_FILE"])


def test_environment_chooses_the_mode(tmp_path):
    path = tmp_path / "plans.json"
    env = dict(os.environ, FASTLINEAR_PLANS="off", FASTLINEAR_PLAN_FILE=str(path))
    code = "import fastlinear, numpy as np; fastlinear.linear_forward(np.ones((64, 784)), np.ones((784, 256))); print(fastlinear._config.config()['plans']['mode'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout
    assert out.strip() == "off" and not path.exists()
    env["FASTLINEAR_PLANS"] = "sometimes"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=tmp_path, check=True)
    assert proc.stdout.strip() == "measure" and "FASTLINEAR_PLANS" in proc.stderr


def test_set_planning_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        fastlinear.set_planning("fast")
    with pytest.raises(TypeError, match="plan_file"):
        fastlinear.set_planning("measure", 3)


def test_two_processes_planning_at_once(tmp_path):
    """Both finish, the file is valid, and both ran with the plans it holds."""
    path = tmp_path / "plans.json"
    code = textwrap.dedent(f"""
        import json, numpy as np, fastlinear
        from fastlinear import _plans
        fastlinear.set_planning("measure", {str(path)!r})
        fastlinear.tune([(64, 784, 256), (5000, 64, 16), (128, 512, 512)], dtypes=["float64"])
        print(json.dumps({{k: _plans.plan_to_json(v, *_plans.planner.measures[k])
                          for k, v in _plans.planner.plans.items()}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    saved = _own_plans(path)
    for out, _ in outs:
        assert json.loads(out.splitlines()[-1]) == saved
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".plans-")]  # no leftovers


def test_show_config_reports_plans(plan_file, capsys):
    fastlinear.tune([(64, 784, 256)], dtypes=["float32"])
    fastlinear.show_config()
    out = capsys.readouterr().out
    assert str(plan_file) in out and "measured_here" in out


def test_tune_from_the_command_line(tmp_path):
    path = tmp_path / "plans.json"
    env = dict(os.environ, FASTLINEAR_PLAN_FILE=str(path), FASTLINEAR_PLANS="measure")
    out = subprocess.run([sys.executable, "-m", "fastlinear", "tune", "64,784,256",
                          "--dtypes", "float64"], env=env, capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout
    assert "f:float64:7:784:256" in out and "planned in" in out
    assert "f:float64:7:784:256" in _own_plans(path)
    bad = subprocess.run([sys.executable, "-m", "fastlinear", "tune", "64,784"], env=env,
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "N,M_in,M_out" in bad.stderr


def test_tune_measures_only_in_measure_mode(tmp_path):
    fastlinear.set_planning("off", tmp_path / "plans.json")
    try:
        with pytest.raises(ValueError, match="'off'"):
            fastlinear.tune([(64, 784, 256)])
    finally:
        fastlinear.set_planning(os.environ["FASTLINEAR_PLANS"], os.environ["FASTLINEAR_PLAN_FILE"])
