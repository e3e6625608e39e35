#!/usr/bin/env python3
"""Mutation testing: does the fast test subset catch plausible one-line bugs?

Each mutant below replaces one short exact substring of a source file.  For
each, the script applies it, rebuilds the changed extension in place
(``python setup.py build_ext --inplace`` recompiles only what changed), runs
the tests of that file with a timeout, restores the original bytes (always,
on errors and Ctrl-C too), and prints whether a test failed (the mutant is
killed) and which one failed first.  At the end it rebuilds the clean tree.

A pattern that does not occur exactly once is an error: the list must follow
the code.  A mutant may carry an ``equivalent`` note saying why no test can
observe it; any other survivor makes the exit status 1.

Usage (from a tree built in place, ``pip install -e . --no-build-isolation``)::

    python tools/mutants.py                  # all mutants
    python tools/mutants.py --list
    python tools/mutants.py --only colsum-float32-pairs blocked-db-flag
    python tools/mutants.py --timeout 300    # seconds per test run
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The fast subset, in two orders: with -x a run stops at its first failure, so
# the file most likely to kill a mutant comes first (the math for the kernels).
API_FIRST = ("tests/test_errors.py", "tests/test_threads.py", "tests/test_linear.py",
             "tests/test_math.py", "tests/test_properties.py")
MATH_FIRST = ("tests/test_math.py", "tests/test_properties.py", "tests/test_errors.py",
              "tests/test_threads.py", "tests/test_linear.py")
# The tests of each source, where not API_FIRST.
ACTIVATION_TESTS = ("tests/test_activations.py",)
PLAN_TESTS = ("tests/test_plans.py",)
OPTIM_TESTS = ("tests/test_optim.py",)
# The files that pin these properties run first: a run stops at its first failure.
PLANNER_TESTS = ("tests/test_plan_file_cases.py", "tests/test_planner_rounds.py",
                 "tests/test_warnings.py", "tests/test_plans.py")
POOL_TESTS = ("tests/test_pool_adaptation.py", "tests/test_threads.py")
STEP_TESTS = ("tests/test_step.py",)
SKLEARN_TESTS = ("tests/test_sklearn.py",)
TESTS_OF = {"fastlinear/dask.py": ("tests/test_dask.py",),
            **{f"fastlinear/{k}.pyx": MATH_FIRST
               for k in ("_blas", "_colsum", "_gemm", "_forward", "_backward")}}


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    pattern: str
    replacement: str
    equivalent: str = ""  # why no test can observe the change, for a mutant expected to survive
    tests: tuple = ()  # the test files to run, where not those of its source (TESTS_OF)

    def compiled(self):
        """Whether the mutated file is compiled into an extension (a rebuild is needed)."""
        return self.file.endswith((".pyx", ".h"))

    def test_files(self):
        return self.tests or TESTS_OF.get(self.file, API_FIRST)


def _m(name, file, pattern, replacement, equivalent="", tests=()):
    return Mutant(name, "fastlinear/" + file, pattern, replacement, equivalent, tests)


MUTANTS = [
    # db: column sums of dy (all paths).
    _m("colsum-float32-pairs", "_colsum.pyx",
       "(<double>r0[j * s1] + <double>r1[j * s1]) + (<double>r2[j * s1] + <double>r3[j * s1])",
       "(r0[j * s1] + r1[j * s1]) + (r2[j * s1] + r3[j * s1])"),
    _m("colsum-row-read-twice", "_colsum.pyx", "r3 = r2 + s0", "r3 = r2"),
    _m("colsum-remainder-row-dropped", "_colsum.pyx", "while i < rows:", "while i + 1 < rows:"),
    _m("colsum-column-stride", "_colsum.pyx", "_add_rows(a, s0, s1, rows, cols, acc)",
       "_add_rows(a, s0, 1, rows, cols, acc)"),
    _m("colsum-combine-overwrites", "_colsum.pyx", "s = out[e] if accumulate and scale == 1 else 0.0",
       "s = 0.0"),
    _m("colsum-combine-first-chunk", "_colsum.pyx", "s = s + parts[c * width + e]",
       "s = s + parts[e]"),
    # Leading dimensions, layouts and memory spans.
    _m("layout-single-row-ld", "_blas.pyx", "ld[0] = s0 // item if r > 1 else max(c, 1)",
       "ld[0] = s0 // item"),
    _m("layout-single-column-ld", "_blas.pyx", "ld[0] = s1 // item if c > 1 else max(r, 1)",
       "ld[0] = s1 // item",
       equivalent="the 'T' branch never sees c <= 1: a single column with unit row "
                  "stride satisfies the 'N' test first"),
    _m("layout-overlapping-rows", "_blas.pyx", "s0 // item >= c", "s0 // item >= 1"),
    _m("layout-column-stride", "_blas.pyx", "(c <= 1 or s1 == item)", "(c <= 1 or s1 % item == 0)"),
    _m("extent-last-element", "_blas.pyx", "high = cnp.PyArray_ITEMSIZE(a)", "high = 0",
       tests=API_FIRST),
    _m("extent-negative-stride", "_blas.pyx", "low += step", "low -= step", tests=API_FIRST),
    _m("blas-split-k-overwrites", "_blas.pyx", "beta_k = 1", "beta_k = beta"),
    _m("blas-empty-k-not-zeroed", "_blas.pyx", "if beta == 0:", "if beta == 1:"),
    # Tiled products and the split-k partial sums.
    _m("partials-replace", "_gemm.pyx", "acc[j] = acc[j] + w[j]", "acc[j] = w[j]"),
    _m("partials-first-slice-only", "_gemm.pyx", "w = work + q * size + i * n + j0",
       "w = work + i * n + j0"),
    _m("partials-never-added", "_gemm.pyx", "if tiles[c].tk > 1:", "if tiles[c].tk < 1:"),
    _m("tile-bias-overwritten", "_gemm.pyx", "beta = prod.accumulate or bias != NULL",
       "beta = prod.accumulate"),
    # Forward.
    _m("forward-reads-y-without-bias", "_forward.pyx", "<floating>(1 if b != NULL else 0)",
       "<floating>1"),
    _m("forward-bias-bytes", "_forward.pyx", "memcpy(y + i * M_out, b, M_out * sizeof(floating))",
       "memcpy(y + i * M_out, b, M_out)"),
    # Backward: accumulate flags, the fused row blocks, dx with and without W^T.
    _m("blocked-db-flag", "_backward.pyx", "db, accumulate[2], ops.scale, num_threads",
       "db, accumulate[1], ops.scale, num_threads"),
    _m("blocked-dW-flag", "_backward.pyx", "ops.M_out, dW, accumulate[1]",
       "ops.M_out, dW, accumulate[2]"),
    _m("blocked-dx-flag", "_backward.pyx", "<floating>accumulate[0]", "<floating>accumulate[1]"),
    _m("blocked-partial-dW-overwritten", "_backward.pyx", "<floating>(i != first)", "<floating>0"),
    _m("blocked-db-column-stride", "_backward.pyx",
       "cdef Py_ssize_t s1 = 1 if ops.tdy == b'N' else ops.lddy", "cdef Py_ssize_t s1 = 1"),
    _m("tiled-db-flag", "_backward.pyx",
       "not ops.act:\n        column_sums(dy, s0, s1, ops.N, ops.M_out, db, accumulate[2]",
       "not ops.act:\n        column_sums(dy, s0, s1, ops.N, ops.M_out, db, accumulate[1]"),
    _m("tiled-dx-flag", "_backward.pyx", "NULL, accumulate[0], dx", "NULL, accumulate[1], dx"),
    _m("dx-copy-of-WT-ld", "_backward.pyx", "WT, b'N', ops.M_in", "WT, b'N', ops.M_out"),
    _m("dx-copy-of-WT-from-any-W", "_backward.pyx", "dx is not None and tW == b'N'",
       "dx is not None"),
    _m("dx-W-not-transposed", "_backward.pyx", "ops.tWT, ops.ldWT = other_trans(tW), ldW",
       "ops.tWT, ops.ldWT = tW, ldW"),
    # Activations (each run against the activation tests).
    _m("relu-forward-skipped", "_activation_loops.h", "FL_NAME(fl_keep)(r, r, r, n, 1);", "(void)0;",
       tests=ACTIVATION_TESTS),
    _m("relu-grad-at-zero", "_activation_loops.h", "FL_NAME(fl_keep)(g, s, o, n, 0);",
       "FL_NAME(fl_keep)(g, s, o, n, 1);", tests=ACTIVATION_TESTS),
    _m("relu-grad-at-zero-strided", "_activation_loops.h", "return s <= 0 ? 0 : g;", "return s < 0 ? 0 : g;",
       tests=ACTIVATION_TESTS),
    _m("tanh-grad-sign", "_activation_loops.h", "return one - s * s;", "return one + s * s;",
       tests=ACTIVATION_TESTS),
    _m("sigmoid-grad-sign", "_activation_loops.h", "return s * (one - s);", "return s * (one + s);",
       tests=ACTIVATION_TESTS),
    _m("gelu-grad-pdf-dropped", "_activation_loops.h", "* (FL_T)FL_INV_SQRT_2PI)", "* (FL_T)0)",
       tests=ACTIVATION_TESTS),
    _m("expf-taylor-term", "_activations.h", "p = p * r + 1.0f / 120;", "p = p * r + 1.0f / 100;",
       tests=ACTIVATION_TESTS),
    _m("expf-underflow-not-zero", "_activations.h", "result = x < lo ? 0.0f : result;", "result = result;",
       tests=ACTIVATION_TESTS),
    _m("erff-numerator-term", "_activations.h", "p = p * x2 - 7.34990630326855e-04f;",
       "p = p * x2 - 7.3e-04f;", tests=ACTIVATION_TESTS),
    _m("erff-not-clamped", "_activations.h", "x = x > 4.0f ? 4.0f : x;", "x = x;", tests=ACTIVATION_TESTS),
    _m("gelu-tanh-cubic", "_activation_loops.h", "(z + (FL_T)FL_KAPPA * z * z * z)",
       "(z + (FL_T)FL_KAPPA * z * z)", tests=ACTIVATION_TESTS),
    _m("split-k-activation-skipped", "_gemm.pyx",
       "if prod.act or prod.aux != NULL:  # the row is complete", "if False:",
       tests=ACTIVATION_TESTS),
    _m("tile-pre-activation-unwritten", "_gemm.pyx",
       "if tiles.tk == 1 and (prod.act or prod.aux != NULL):", "if tiles.tk == 1 and prod.act:",
       tests=ACTIVATION_TESTS),
    _m("dz-scratch-layout-ignored", "_backward.pyx", "ldg = M_out if ops.tdy == b'N' else n",
       "ldg = M_out", tests=ACTIVATION_TESTS),
    _m("dz-buffer-layout-ignored", "_backward.pyx", "ldg = M_out if ops.tdy == b'N' else ops.N",
       "ldg = M_out", tests=ACTIVATION_TESTS),
    _m("dz-buffer-db-overlap-unchecked", "_api.pyx",
       'return _apart(dz, lo, hi, "dz", db, ("db",), 0)', "return 0", tests=ACTIVATION_TESTS),
    _m("saved-overlap-unchecked", "_api.pyx", "_apart(a, lo, hi, name, saved, names, 5)", "0",
       tests=ACTIVATION_TESTS),
    # The SGD step (lr=): dW added into W by its product, db into b.
    _m("step-dx-after-W-written", "_backward.pyx",
       "if count == 2 and <const void*>dW == <const void*>WT:", "if False:", tests=STEP_TESTS),
    _m("step-alpha-dropped", "_gemm.pyx", "k1 - k0, <floating>prod.alpha,", "k1 - k0, 1,",
       tests=STEP_TESTS),
    _m("step-combine-unscaled", "_colsum.pyx", "s = scale * s + (out[e] if accumulate else 0.0)",
       "s = s + (out[e] if accumulate else 0.0)", tests=STEP_TESTS),
    _m("step-b-not-accumulated", "_api.pyx", "add and db is not None or lr is not None",
       "add and db is not None", tests=STEP_TESTS),
    _m("step-W-dy-overlap-unchecked", "_api.pyx",
       '"W (stepped by lr)", W, M_out, typenum, names, x, None, dy,',
       '"W (stepped by lr)", W, M_out, typenum, names, x, None, None,', tests=STEP_TESTS),
    # Plans (run against the planner's tests).
    _m("plan-file-identity-unchecked", "_planfile.py", 'if section["identity"] == identity:',
       "if True:", tests=PLAN_TESTS),
    _m("plan-file-key-unchecked", "_planfile.py", "        parse_key(key)\n", "",
       tests=PLAN_TESTS),
    _m("plan-file-others-writable", "_planfile.py",
       "st.st_uid != os.geteuid() or st.st_mode & 0o022", "st.st_uid != os.geteuid()",
       tests=PLAN_TESTS),
    _m("plan-file-foreign-replaced", "_planfile.py",
       "if not (self.owned and os.path.isfile(self.path) and not os.path.islink(self.path)):",
       "if False:", tests=PLAN_TESTS),
    _m("plan-file-read-only-replaced", "_planfile.py", "if _read_only(self.path):", "if False:",
       tests=PLAN_TESTS),
    _m("plan-file-other-sections-dropped", "_planfile.py",
       'sections = [s for s in sections if s["identity"] != identity]', "sections = []",
       tests=PLAN_TESTS),
    _m("plan-file-link-replaced", "_planfile.py", "target = os.path.realpath(self.path)",
       "target = self.path", tests=PLAN_TESTS),
    _m("warning-every-time", "_warn.py", "if cause in _given:", "if False:", tests=PLAN_TESTS),
    _m("plan-noise-wins", "_plans.py", "if _paired(times, best, plans[0]) > MARGIN:", "if False:",
       tests=PLAN_TESTS),
    _m("plan-file-written-in-file-mode", "_plans.py", 'if self.mode != "measure" or len(plans) == 1:',
       "if len(plans) == 1:", tests=PLAN_TESTS),
    # Written independently of this list, against the plan file, the planner and the pool.
    _m("plan-file-other-identity-warns", "_planfile.py", "if others and not plans:", "if others:",
       tests=PLANNER_TESTS),
    _m("plan-file-cache-link-replaced", "_planfile.py",
       "self.owned and os.path.isfile(self.path) and not os.path.islink(self.path)",
       "self.owned and os.path.isfile(self.path)", tests=PLANNER_TESTS),
    _m("plan-file-tasks-bound", "_planfile.py", '1 <= entry["tasks"] <= MAX_TASKS',
       '1 <= entry["tasks"] < 1024', tests=PLANNER_TESTS),
    _m("warning-import-frames-counted", "_warn.py", "            frame = frame.f_back\n",
       "            frame, level = frame.f_back, level + 1\n", tests=PLANNER_TESTS),
    _m("planner-screen-slowest-round", "_plans.py", "key=lambda plan: min(screened[plan])",
       "key=lambda plan: max(screened[plan])", tests=PLANNER_TESTS),
    _m("planner-file-budget-ignored", "_plans.py",
       'self.measures[key] = (entry.get("margin"), entry["budget"])',
       'self.measures.setdefault(key, (entry.get("margin"), entry["budget"]))', tests=PLANNER_TESTS),
    _m("planner-screen-rounds-unbounded", "_plans.py", "budget / BUDGET * 25,", "budget / BUDGET * 1e9,",
       tests=PLANNER_TESTS),
    _m("tune-kinds", "_plans.py", 'for kind in ("f", "b11", "b01"):', 'for kind in ("f", "b11", "b10"):',
       tests=PLANNER_TESTS),
    _m("pool-one-strike", "_pool.h", "if (lost && fl_strikes >= 2) {", "if (lost && fl_strikes >= 1) {",
       tests=POOL_TESTS),
    _m("pool-alone-past-max", "_pool.h", "fl_alone_next < FL_ALONE_MAX / 4 ? 4 * fl_alone_next",
       "fl_alone_next < FL_ALONE_MAX ? 4 * fl_alone_next", tests=POOL_TESTS),
    _m("pool-judged-while-planning", "_pool.h", "    polling = polling && fl_adaptive;\n", "",
       tests=POOL_TESTS),
    # Optimizer steps (fastlinear.optim).
    _m("adam-first-moment-rate", "_optim.pyx", "m[i] = beta1 * m[i] + c1 * g",
       "m[i] = beta1 * m[i] + c2 * g", tests=OPTIM_TESTS),
    _m("adam-eps-inside-root", "_optim.pyx", "root = <floating>sqrt(v[i])",
       "root = <floating>sqrt(v[i] + eps)", tests=OPTIM_TESTS),
    _m("sgd-nesterov-plain", "_optim.pyx", "param[i] = param[i] + (momentum * step - lr * grad[i])",
       "param[i] = param[i] + step", tests=OPTIM_TESTS),
    _m("optim-last-chunk", "_optim.pyx", "_adam(a, t * CHUNK, min(a.size, (t + 1) * CHUNK), <double>0)",
       "_adam(a, t * CHUNK, min(a.size - 1, (t + 1) * CHUNK), <double>0)", tests=OPTIM_TESTS),
    _m("optim-overlap-unchecked", "optim.py", "if np.shares_memory(a, b):", "if False:",
       tests=OPTIM_TESTS),
    _m("adam-float32-add", "_optim.pyx",
       "param[i] = <floating>(<double>param[i] + (lr * m[i]) / <double>(root + eps))",
       "param[i] = param[i] + <floating>((lr * m[i]) / <double>(root + eps))", tests=OPTIM_TESTS),
    _m("sgd-nesterov-without-velocity", "optim.py",
       "if velocity is None and (momentum != 0.0 or nesterov):",
       "if velocity is None and momentum != 0.0:", tests=OPTIM_TESTS),
    # scikit-learn's estimators (fastlinear.sklearn) and the L2 pass they run.
    _m("decay-remainder-dropped", "_optim.pyx", "for j in range(hi - i):",
       "for j in range(hi - i - 1):", tests=SKLEARN_TESTS),
    _m("decay-first-chunk-only", "_optim.pyx", "total += a.sums[t]", "total += a.sums[0]",
       tests=SKLEARN_TESTS),
    _m("decay-overwrites", "_optim.pyx", "            grad[i + j] = grad[i + j] + decay * param[i + j]",
       "            grad[i + j] = decay * param[i + j]", tests=SKLEARN_TESTS),
    _m("sklearn-l2-gradient-dropped", "sklearn.py", "squares = sum(_decay_norm(W, dW, decay)",
       'squares = sum(np.einsum("ij,ij->", W, W)', tests=SKLEARN_TESTS),
    _m("sklearn-adam-step-count", "sklearn.py", "            inner.t += 1\n", "",
       tests=SKLEARN_TESTS),
    _m("sklearn-sample-weight-sum", "sklearn.py", "delta *= (sample_weight / sw_sum)",
       "delta *= (sample_weight / n_samples)", tests=SKLEARN_TESTS),
    _m("sklearn-sparse-derivative", "sklearn.py",
       "                if i < last:\n                    DERIVATIVES",
       "                if False:\n                    DERIVATIVES", tests=SKLEARN_TESTS),
    # Validation and dispatch.
    _m("plan-narrow-rows", "_api.pyx", "N >= NARROW_ROWS", "N > NARROW_ROWS"),
    _m("dtype-non-native-any-float", "_api.pyx", 'dt.kind == "f" and dt.itemsize in (4, 8)',
       'dt.kind == "f"'),
    _m("dtype-same-kind", "_api.pyx", "a is not None and a.dtype != dtype",
       "a is not None and a.dtype.kind != dtype.kind"),
    _m("weights-limit-M_in-only", "_api.pyx", "max(dims[0], dims[1]) > BLAS_INT_MAX",
       "dims[0] > BLAS_INT_MAX", tests=MATH_FIRST),
    _m("dy-rows-unchecked", "_api.pyx",
       "cnp.PyArray_DIM(<cnp.ndarray>dy, 0) == cnp.PyArray_DIM(<cnp.ndarray>x, 0)", "True"),
    _m("out-leading-dims-unchecked", "_api.pyx", "for i in range(nd - 1):",
       "for i in range(nd - 2):"),
    _m("out-read-only-accepted", "_api.pyx", "if not cnp.PyArray_ISWRITEABLE(o):", "if False:"),
    _m("overlap-by-bounds-only", "_api.pyx", "alo < hi and lo < ahi and _overlap(o, a)",
       "alo < hi and lo < ahi"),
    _m("overlap-dW-dx-unchecked", "_api.pyx",
       '"dW", want_dW, W, M_out, typenum, names, x, W, dy, dx, None, saved)',
       '"dW", want_dW, W, M_out, typenum, names, x, W, dy, None, None, saved)'),
    _m("overlap-out-b-unchecked", "_api.pyx", "_FORWARD_NAMES, x, W, b)",
       "_FORWARD_NAMES, x, W, None)"),
    _m("unwanted-buffer-ignored", "_api.pyx", "if not need:", "if False:"),
    _m("accumulate-into-copy-lost", "_api.pyx", "if keep:", "if False:", tests=MATH_FIRST),
    _m("num-threads-zero-on-serial", "_api.pyx", "1 <= num_threads <= MAX_THREADS",
       "0 <= num_threads <= MAX_THREADS"),
    _m("num-threads-no-upper-bound", "_threads.py", "if not 1 <= n <= MAX_THREADS:",
       "if not 1 <= n:"),
    _m("num-threads-bool", "_threads.py", "isinstance(n, bool) or not hasattr",
       "not hasattr"),
    # The Linear class.
    _m("linear-zero-features-rejected", "_linear.py", "if n.__index__() < 0:",
       "if n.__index__() <= 0:"),
    _m("linear-init-bound-out", "_linear.py", "1.0 / math.sqrt(in_features)",
       "1.0 / math.sqrt(out_features)"),
    _m("linear-grads-overwritten", "_linear.py", "accumulate=True", "accumulate=False"),
    _m("linear-zero-grad-rebinds", "_linear.py", "self.dW.fill(0)",
       "self.dW = np.zeros_like(self.W)"),
    _m("linear-pending-released-early", "_linear.py", 'x = getattr(self._pending, "x", None)',
       'x, self._pending.x = getattr(self._pending, "x", None), None'),
    _m("linear-load-copies-before-checks", "_linear.py", "new[name] = value",
       'np.copyto(target, value, casting="same_kind")'),
    _m("linear-load-accepts-bool", "_linear.py", 'not in "fiu"', 'not in "fiub"'),
    # fastlinear.dask.
    _m("dask-db-partials-replaced", "dask.py", "db += part_db", "db = part_db"),
    _m("dask-tree-groups-overlap", "dask.py", "level[j:j + fan_in]", "level[j:j + fan_in + 1]"),
    _m("dask-dy-not-rechunked", "dask.py", "if dy.chunks[0] != x.chunks[0]:", "if False:"),
    _m("dask-column-chunks-kept", "dask.py", "a if a.numblocks[1] == 1 else a.rechunk({1: -1})",
       "a"),
]


def source(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


def check_patterns(mutants):
    """Error lines for mutants whose pattern does not occur exactly once."""
    errors = []
    for m in mutants:
        count = source(m.file).count(m.pattern.encode())
        if count != 1:
            errors.append(f"{m.name}: pattern occurs {count} times in {m.file}: {m.pattern!r}")
    return errors


class BuildError(Exception):
    pass


def build():
    """Rebuild in place whatever extension changed; raises BuildError with the log's end."""
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError((proc.stdout + proc.stderr)[-3000:])


# A line of pytest's short summary: "FAILED <test id> - <message>" (ids may hold spaces).
FAILED = re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.M)


def run_tests(files, timeout):
    """('killed' or 'survived', what killed it) for one run of the tests."""
    # Bytecode of a mutated module must never be cached, and hypothesis starts
    # from an empty example database each time: runs do not depend on earlier ones.
    with tempfile.TemporaryDirectory() as storage:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", HYPOTHESIS_STORAGE_DIRECTORY=storage)
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE",
               "--hypothesis-seed=0", "-m", "not slow", *files]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return "killed", f"timeout after {timeout:g} s"
        finally:
            if proc.poll() is None:  # Ctrl-C or another error: end the run we started
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if proc.returncode == 0:
        return "survived", ""
    if proc.returncode < 0:
        return "killed", f"crash (signal {-proc.returncode})"
    failed = FAILED.search(out)
    if failed:
        return "killed", failed.group(1)
    return "killed", f"pytest exit {proc.returncode}: " + (out.strip().splitlines() or [""])[-1]


def run_mutant(m, timeout, stale):
    """Apply, build, test and restore one mutant; ``stale``: an extension was
    restored since the last build, so its clean source must be rebuilt first."""
    original = source(m.file)
    path = os.path.join(ROOT, m.file)
    try:
        with open(path, "wb") as f:
            f.write(original.replace(m.pattern.encode(), m.replacement.encode(), 1))
        if stale or m.compiled():
            try:
                build()
            except BuildError as e:
                print(e, file=sys.stderr)
                return "error", "does not build (log above)"
        return run_tests(m.test_files(), timeout)
    finally:
        with open(path, "wb") as f:
            f.write(original)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds one test run may take (default 300)")
    args = parser.parse_args(argv)

    mutants = MUTANTS
    names = [m.name for m in MUTANTS]
    if len(set(names)) != len(names):
        sys.exit("duplicate mutant names")
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            sys.exit(f"unknown mutants: {', '.join(unknown)} (see --list)")
        mutants = [m for m in MUTANTS if m.name in args.only]
    errors = check_patterns(mutants)
    if errors:
        sys.exit("patterns that no longer match exactly once:\n  " + "\n  ".join(errors))
    if args.list:
        for m in mutants:
            note = f"  (equivalent: {m.equivalent})" if m.equivalent else ""
            print(f"{m.name:34} {m.file:24} {m.pattern!r} -> {m.replacement!r}{note}")
        return 0

    # Built from clean sources first, so that each run differs from them by one mutant.
    try:
        build()
    except BuildError as e:
        sys.exit(f"the unmutated tree does not build:\n{e}")
    start = time.monotonic()
    rows = []
    width = max(len(m.name) for m in mutants)
    print(f"{'mutant':{width}}  {'file':22}  {'result':10}  {'s':>5}  killed by")
    try:
        # Grouped by file: consecutive mutants of one module rebuild it once each.
        for m in sorted(mutants, key=lambda m: m.file):
            t0 = time.monotonic()
            stale = bool(rows) and rows[-1][0].compiled()
            result, by = run_mutant(m, args.timeout, stale)
            if result == "survived" and m.equivalent:
                by = "equivalent: " + m.equivalent
            rows.append((m, result))
            print(f"{m.name:{width}}  {m.file[len('fastlinear/'):]:22}  {result:10}  "
                  f"{time.monotonic() - t0:5.1f}  {by}", flush=True)
    finally:
        print("rebuilding the clean tree", flush=True)
        build()

    killed = sum(r == "killed" for _, r in rows)
    equivalent = [m for m, r in rows if r == "survived" and m.equivalent]
    live = [m for m, r in rows if r == "survived" and not m.equivalent]
    wrongly_equivalent = [m for m, r in rows if r == "killed" and m.equivalent]
    broken = [m for m, r in rows if r == "error"]
    print(f"\n{len(rows)} mutants: {killed} killed ({100 * killed / len(rows):.1f}%), "
          f"{len(equivalent)} equivalent, {len(live)} surviving; "
          f"{killed}/{len(rows) - len(equivalent)} of the non-equivalent killed; "
          f"{time.monotonic() - start:.0f} s")
    for m in live:
        print(f"SURVIVED: {m.name} ({m.file}: {m.pattern!r} -> {m.replacement!r}): add a test "
              "that kills it, or an equivalent note saying why none can")
    for m in wrongly_equivalent:
        print(f"KILLED BUT LISTED AS EQUIVALENT: {m.name}: drop its equivalent note")
    for m in broken:
        print(f"ERROR: {m.name} does not build: fix its replacement")
    return 1 if live or wrongly_equivalent or broken else 0


if __name__ == "__main__":
    sys.exit(main())
