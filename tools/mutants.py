#!/usr/bin/env python3
"""Mutation testing: does the fast test subset catch plausible one-line bugs?

Each mutant below replaces one short exact substring of a source file.  It is
anchored by the function it lives in and a pattern: ``_m(name, file, scope,
pattern, replacement)`` replaces ``pattern``, which must occur exactly once in
the body of ``scope``, by ``replacement``.  ``scope`` names a function or class
of a ``.py``/``.pyx``/``.pxd`` file (``def``, ``cdef``, ``cpdef``, ``cdef
inline``, ``class``, ``cdef class``; a method as ``Class.method``, a nested
function as ``outer.inner``), found by indentation, or a C function of a
header (also one named through a macro, as ``FL_NAME(fl_keep)(...)``), found
by brace matching; None is the whole file, for module-level code.  A function
defined more than once (under ``#if`` branches) is searched in all of its
definitions together.  A refactor thus breaks only the mutants whose code
moved or changed.

For each mutant, the script applies it, rebuilds the changed extension in
place (``python setup.py build_ext --inplace`` recompiles only what changed),
runs the tests of that file with a timeout, restores the original bytes
(always, on errors and Ctrl-C too), and prints whether a test failed (the
mutant is killed) and which one failed first.  At the end it rebuilds the
clean tree.

Before anything runs, every anchor is checked: a scope not found, or a pattern
found in it zero times or more than once, is an error, and all of them are
listed at once (file, function, and where the pattern is now), so that the list
can follow the code.  A mutant may carry an ``equivalent`` note saying why no
test can observe it; any other survivor makes the exit status 1.

Usage (from a tree built in place, ``pip install -e . --no-build-isolation``)::

    python tools/mutants.py                  # all mutants
    python tools/mutants.py --check          # only check the anchors (no build): exit 0 or 1
    python tools/mutants.py --list
    python tools/mutants.py --only colsum-float32-pairs blocked-db-flag
    python tools/mutants.py --timeout 300    # seconds per test run
"""
import argparse
import difflib
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
SOFTMAX_TESTS = ("tests/test_softmax.py", "tests/test_sklearn.py")
TESTS_OF = {"fastlinear/dask.py": ("tests/test_dask.py",),
            **{f"fastlinear/{k}.pyx": MATH_FIRST
               for k in ("_blas", "_colsum", "_gemm", "_forward", "_backward")}}


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    scope: "str | None"  # the function (or Class.method) holding the pattern; None: the whole file
    pattern: str  # occurs exactly once in the scope
    replacement: str
    equivalent: str = ""  # why no test can observe the change, for a mutant expected to survive
    tests: tuple = ()  # the test files to run, where not those of its source (TESTS_OF)

    def compiled(self):
        """Whether the mutated file is compiled into an extension (a rebuild is needed)."""
        return self.file.endswith((".pyx", ".h"))

    def test_files(self):
        return self.tests or TESTS_OF.get(self.file, API_FIRST)

    def anchor(self):
        return f"{self.file}:{self.scope or '(whole file)'}"


def _m(name, file, scope, pattern, replacement, equivalent="", tests=()):
    return Mutant(name, "fastlinear/" + file, scope, pattern, replacement, equivalent, tests)


# name, file (in fastlinear/), scope, pattern, replacement[, equivalent=...][, tests=...]
MUTANTS = [
    # db: column sums of dy (all paths).
    _m("colsum-float32-pairs", "_colsum.pyx", "_add_rows",
       "(<double>r0[j * s1] + <double>r1[j * s1]) + (<double>r2[j * s1] + <double>r3[j * s1])",
       "(r0[j * s1] + r1[j * s1]) + (r2[j * s1] + r3[j * s1])"),
    _m("colsum-row-read-twice", "_colsum.pyx", "_add_rows",
       "r3 = r2 + s0", "r3 = r2"),
    _m("colsum-remainder-row-dropped", "_colsum.pyx", "_add_rows",
       "while i < rows:", "while i + 1 < rows:"),
    _m("colsum-column-stride", "_colsum.pyx", "colsum_add",
       "_add_rows(a, s0, s1, rows, cols, acc)", "_add_rows(a, s0, 1, rows, cols, acc)"),
    _m("colsum-combine-overwrites", "_colsum.pyx", "_combine_block",
       "s = out[e] if accumulate and scale == 1 else 0.0", "s = 0.0"),
    _m("colsum-combine-first-chunk", "_colsum.pyx", "_combine_block",
       "s = s + parts[c * width + e]", "s = s + parts[e]"),
    # Leading dimensions, layouts and memory spans.
    _m("layout-single-row-ld", "_blas.pyx", "layout",
       "ld[0] = s0 // item if r > 1 else max(c, 1)", "ld[0] = s0 // item"),
    _m("layout-single-column-ld", "_blas.pyx", "layout",
       "ld[0] = s1 // item if c > 1 else max(r, 1)", "ld[0] = s1 // item",
       equivalent="the 'T' branch never sees c <= 1: a single column with unit row "
                  "stride satisfies the 'N' test first"),
    _m("layout-overlapping-rows", "_blas.pyx", "layout",
       "s0 // item >= c", "s0 // item >= 1"),
    _m("layout-column-stride", "_blas.pyx", "layout",
       "(c <= 1 or s1 == item)", "(c <= 1 or s1 % item == 0)"),
    _m("extent-last-element", "_blas.pyx", "extent",
       "high = cnp.PyArray_ITEMSIZE(a)", "high = 0", tests=API_FIRST),
    _m("extent-negative-stride", "_blas.pyx", "extent",
       "low += step", "low -= step", tests=API_FIRST),
    _m("blas-split-k-overwrites", "_blas.pyx", "split_gemm",
       "beta_k = 1", "beta_k = beta"),
    _m("blas-empty-k-not-zeroed", "_blas.pyx", "split_gemm",
       "if beta == 0:", "if beta == 1:"),
    # Tiled products and the split-k partial sums.
    _m("partials-replace", "_gemm.pyx", "_add_partials",
       "acc[j] = acc[j] + w[j]", "acc[j] = w[j]"),
    _m("partials-first-slice-only", "_gemm.pyx", "_add_partials",
       "w = work + q * size + i * n + j0", "w = work + i * n + j0"),
    _m("partials-never-added", "_gemm.pyx", "_run_products",
       "if tiles[c].slices_k > 1:", "if tiles[c].slices_k < 1:"),
    _m("tile-bias-overwritten", "_gemm.pyx", "_task",
       "beta = prod.accumulate or bias != NULL", "beta = prod.accumulate"),
    # Forward.
    _m("forward-reads-y-without-bias", "_forward.pyx", "_rows",
       "<floating>(1 if b != NULL else 0)", "<floating>1"),
    _m("forward-bias-bytes", "_forward.pyx", "_rows",
       "memcpy(y + i * M_out, b, M_out * sizeof(floating))", "memcpy(y + i * M_out, b, M_out)"),
    # Backward: accumulate flags, the fused row blocks, dx with and without W^T.
    _m("blocked-db-flag", "_backward.pyx", "_blocked",
       "db, accumulate[2]", "db, accumulate[1]"),
    _m("blocked-dW-flag", "_backward.pyx", "_blocked",
       "dW, accumulate[1]", "dW, accumulate[2]"),
    _m("blocked-dx-flag", "_backward.pyx", "_blocked_task",
       "<floating>accumulate[0]", "<floating>accumulate[1]"),
    _m("blocked-partial-dW-overwritten", "_backward.pyx", "_blocked_task",
       "<floating>(i != first)", "<floating>0"),
    _m("blocked-db-column-stride", "_backward.pyx", "_blocked_task",
       "cdef Py_ssize_t s1 = 1 if ops.tdy == b'N' else ops.lddy", "cdef Py_ssize_t s1 = 1"),
    _m("tiled-db-flag", "_backward.pyx", "_separate",
       "not ops.act:\n        column_sums(dy, s0, s1, ops.N, ops.M_out, db, accumulate[2]",
       "not ops.act:\n        column_sums(dy, s0, s1, ops.N, ops.M_out, db, accumulate[1]"),
    _m("tiled-dx-flag", "_backward.pyx", "_separate",
       "accumulate[0], dx", "accumulate[1], dx"),
    _m("dx-copy-of-WT-ld", "_backward.pyx", "_run",
       "WT, b'N', ops.M_in", "WT, b'N', ops.M_out"),
    _m("dx-copy-of-WT-from-any-W", "_backward.pyx", "backward",
       "dx is not None and tW == b'N'", "dx is not None"),
    _m("dx-W-not-transposed", "_backward.pyx", "backward",
       "ops.tWT, ops.ldWT = other_trans(tW), ldW", "ops.tWT, ops.ldWT = tW, ldW"),
    # Activations (each run against the activation tests).
    _m("relu-forward-skipped", "_activation_loops.h", "fl_map",
       "FL_NAME(fl_keep)(r, r, r, n, 1);", "(void)0;", tests=ACTIVATION_TESTS),
    _m("relu-grad-at-zero", "_activation_loops.h", "fl_grad_map",
       "FL_NAME(fl_keep)(g, s, o, n, 0);", "FL_NAME(fl_keep)(g, s, o, n, 1);",
       tests=ACTIVATION_TESTS),
    _m("relu-grad-at-zero-strided", "_activation_loops.h", "fl_grad",
       "return s <= 0 ? 0 : g;", "return s < 0 ? 0 : g;", tests=ACTIVATION_TESTS),
    _m("tanh-grad-sign", "_activation_loops.h", "fl_df",
       "return one - s * s;", "return one + s * s;", tests=ACTIVATION_TESTS),
    _m("sigmoid-grad-sign", "_activation_loops.h", "fl_df",
       "return s * (one - s);", "return s * (one + s);", tests=ACTIVATION_TESTS),
    _m("gelu-grad-pdf-dropped", "_activation_loops.h", "fl_df",
       "* (FL_T)FL_INV_SQRT_2PI)", "* (FL_T)0)", tests=ACTIVATION_TESTS),
    _m("expf-taylor-term", "_activations.h", "fl_expf",
       "p = p * r + 1.0f / 120;", "p = p * r + 1.0f / 100;", tests=ACTIVATION_TESTS),
    _m("expf-underflow-not-zero", "_activations.h", "fl_expf",
       "result = x < lo ? 0.0f : result;", "result = result;", tests=ACTIVATION_TESTS),
    _m("erff-numerator-term", "_activations.h", "fl_erff",
       "p = p * x2 - 7.34990630326855e-04f;", "p = p * x2 - 7.3e-04f;", tests=ACTIVATION_TESTS),
    _m("erff-not-clamped", "_activations.h", "fl_erff",
       "x = x > 4.0f ? 4.0f : x;", "x = x;", tests=ACTIVATION_TESTS),
    _m("gelu-tanh-cubic", "_activation_loops.h", "fl_f",
       "(z + (FL_T)FL_KAPPA * z * z * z)", "(z + (FL_T)FL_KAPPA * z * z)", tests=ACTIVATION_TESTS),
    _m("split-k-activation-skipped", "_gemm.pyx", "_add_partials",
       "if prod.act or prod.aux != NULL:  # the row is complete", "if False:",
       tests=ACTIVATION_TESTS),
    _m("tile-pre-activation-unwritten", "_gemm.pyx", "_task",
       "if tiles.slices_k == 1 and (prod.act or prod.aux != NULL):",
       "if tiles.slices_k == 1 and prod.act:",
       tests=ACTIVATION_TESTS),
    _m("dz-scratch-layout-ignored", "_backward.pyx", "_blocked_task",
       "ldg = M_out if ops.tdy == b'N' else n", "ldg = M_out", tests=ACTIVATION_TESTS),
    _m("dz-buffer-layout-ignored", "_backward.pyx", "_blocked_task",
       "ldg = M_out if ops.tdy == b'N' else ops.N", "ldg = M_out", tests=ACTIVATION_TESTS),
    _m("dz-buffer-db-overlap-unchecked", "_checks.pyx", "check_gradient_buffers",
       'check_apart(dz, "dz", db, "db")', "0", tests=ACTIVATION_TESTS),
    _m("saved-overlap-unchecked", "_api.pyx", "linear_backward",
       "None, None, None, saved)", "None, None, None, None)", tests=ACTIVATION_TESTS),
    # The SGD step (lr=): dW added into W by its product, db into b.
    _m("step-dx-after-W-written", "_backward.pyx", "_separate",
       "if count == 2 and <const void*>dW == <const void*>WT:", "if False:", tests=STEP_TESTS),
    _m("step-alpha-dropped", "_gemm.pyx", "_task",
       "<floating>prod.alpha,", "1,", tests=STEP_TESTS),
    _m("step-combine-unscaled", "_colsum.pyx", "_combine_block",
       "s = scale * s + (out[e] if accumulate else 0.0)", "s = s + (out[e] if accumulate else 0.0)",
       tests=STEP_TESTS),
    _m("step-b-not-accumulated", "_api.pyx", "linear_backward",
       "add and db is not None or step", "add and db is not None", tests=STEP_TESTS),
    _m("step-W-dy-overlap-unchecked", "_checks.pyx", "check_stepped",
       "others.arrays[1] = NULL", "others.arrays[1] = others.arrays[2] = NULL", tests=STEP_TESTS),
    # Plans (run against the planner's tests).
    _m("plan-file-identity-unchecked", "_planfile.py", "PlanFile.read",
       'if section["identity"] == identity:', "if True:", tests=PLAN_TESTS),
    _m("plan-file-key-unchecked", "_planfile.py", "_check_section",
       "        parse_key(key)\n", "", tests=PLAN_TESTS),
    _m("plan-file-others-writable", "_planfile.py", "PlanFile._read_sections",
       "st.st_uid != os.geteuid() or st.st_mode & 0o022", "st.st_uid != os.geteuid()",
       tests=PLAN_TESTS),
    _m("plan-file-foreign-replaced", "_planfile.py", "PlanFile.write",
       "if not (self.owned and os.path.isfile(self.path) and not os.path.islink(self.path)):",
       "if False:", tests=PLAN_TESTS),
    _m("plan-file-read-only-replaced", "_planfile.py", "PlanFile.write",
       "if _read_only(self.path):", "if False:", tests=PLAN_TESTS),
    _m("plan-file-other-sections-dropped", "_planfile.py", "PlanFile.write",
       'sections = [s for s in sections if s["identity"] != identity]', "sections = []",
       tests=PLAN_TESTS),
    _m("plan-file-link-replaced", "_planfile.py", "PlanFile.write",
       "target = os.path.realpath(self.path)", "target = self.path", tests=PLAN_TESTS),
    _m("warning-every-time", "_warn.py", "warn",
       "if cause in _given:", "if False:", tests=PLAN_TESTS),
    _m("plan-noise-wins", "_plans.py", "_measure",
       "if _paired(times, best, plans[0]) > MARGIN:", "if False:", tests=PLAN_TESTS),
    _m("plan-file-written-in-file-mode", "_plans.py", "Planner.choose",
       'if self.mode != "measure" or len(plans) == 1:', "if len(plans) == 1:", tests=PLAN_TESTS),
    # Written independently of this list, against the plan file, the planner and the pool.
    _m("plan-file-other-identity-warns", "_planfile.py", "PlanFile.read",
       "if others and not plans:", "if others:", tests=PLANNER_TESTS),
    _m("plan-file-cache-link-replaced", "_planfile.py", "PlanFile.write",
       "self.owned and os.path.isfile(self.path) and not os.path.islink(self.path)",
       "self.owned and os.path.isfile(self.path)", tests=PLANNER_TESTS),
    _m("plan-file-tasks-bound", "_planfile.py", "_check_entry",
       '1 <= entry["tasks"] <= MAX_TASKS', '1 <= entry["tasks"] < 1024', tests=PLANNER_TESTS),
    _m("warning-import-frames-counted", "_warn.py", "_user_stacklevel",
       "frame = frame.f_back", "frame, level = frame.f_back, level + 1", tests=PLANNER_TESTS),
    _m("planner-screen-slowest-round", "_plans.py", "_measure",
       "key=lambda plan: min(screened[plan])", "key=lambda plan: max(screened[plan])",
       tests=PLANNER_TESTS),
    _m("planner-file-budget-ignored", "_plans.py", "Planner._read",
       'self.measures[key] = (entry.get("margin"), entry["budget"])',
       'self.measures.setdefault(key, (entry.get("margin"), entry["budget"]))',
       tests=PLANNER_TESTS),
    _m("planner-screen-rounds-unbounded", "_plans.py", "timings",
       "budget / BUDGET * 25,", "budget / BUDGET * 1e9,", tests=PLANNER_TESTS),
    _m("planner-one-placement", "_plans.py", "_placed_calls",
       "PLACEMENTS * one <= PLACEMENT_BYTES", "PLACEMENTS * one < PLACEMENT_BYTES",
       tests=PLANNER_TESTS),
    _m("planner-rounds-one-placement", "_plans.py", "_timed_rounds",
       "call = calls[r % len(calls)]", "call = calls[0]", tests=PLANNER_TESTS),
    _m("planner-one-placement-warmed", "_plans.py", "timings",
       "_timed_rounds(calls, plans, len(calls))", "_timed_rounds(calls, plans, 1)",
       tests=PLANNER_TESTS),
    _m("tune-kinds", "_plans.py", "tune",
       'for kind in ("f", "b11", "b01"):', 'for kind in ("f", "b11", "b10"):', tests=PLANNER_TESTS),
    _m("pool-one-strike", "_pool.h", "fl_verdict",
       "if (lost && fl_strikes >= 2) {", "if (lost && fl_strikes >= 1) {", tests=POOL_TESTS),
    _m("pool-alone-past-max", "_pool.h", "fl_verdict",
       "fl_alone_next < FL_ALONE_MAX / 4 ? 4 * fl_alone_next",
       "fl_alone_next < FL_ALONE_MAX ? 4 * fl_alone_next", tests=POOL_TESTS),
    _m("pool-woken-helper-idle", "_pool.h", "fl_helper",
       "if (join)\n", "if (timed)\n", tests=POOL_TESTS),
    _m("pool-woken-helpers-judged", "_pool.h", "fl_parallel_for",
       "judged = polling && fl_adaptive;", "judged = fl_adaptive;", tests=POOL_TESTS),
    _m("pool-judged-while-planning", "_pool.h", "fl_parallel_for",
       "judged = polling && fl_adaptive;", "judged = polling;", tests=POOL_TESTS),
    _m("pool-late-helper-inverted", "_pool.h", "fl_parallel_for",
       "lost = (double)waited * ran > (double)wall * (n - ran)",
       "lost = (double)waited * ran < (double)wall * (n - ran)", tests=POOL_TESTS),
    _m("pool-late-helper-whole-job", "_pool.h", "fl_parallel_for",
       "lost = (double)waited * ran > (double)wall * (n - ran)",
       "lost = (double)waited > (double)wall * (n - ran)", tests=POOL_TESTS),
    _m("pool-helper-end-unrecorded", "_pool.h", "fl_work",
       "if (timed) {", "if (0) {", tests=POOL_TESTS),
    _m("pool-crowded-kept-by-job", "_pool.h", "fl_parallel_for",
       "crowded = fl_crowded;\n        fl_crowded = 0;", "crowded = fl_crowded;", tests=POOL_TESTS),
    _m("pool-late-by-cpu-time", "_pool.h", "fl_parallel_for",
       "(double)wall * (n - ran)", "(double)cpu * (n - ran)", tests=POOL_TESTS),
    _m("pool-crowded-kept-by-fork", "_pool.h", "fl_pool_after_fork",
       "fl_strikes = fl_crowded = 0;", "fl_strikes = 0;", tests=POOL_TESTS),
    _m("pool-crowded-not-lost", "_pool.h", "fl_parallel_for",
       "fl_verdict(1, 0);", "fl_verdict(0, 0);", tests=POOL_TESTS),
    _m("pool-crowded-while-planning", "_pool.h", "fl_helper",
       "fl_crowded |= crowded && fl_adaptive;", "fl_crowded |= crowded;", tests=POOL_TESTS),
    _m("pool-crowded-share-inverted", "_pool.h", "fl_helper",
       "fl_thread_cpu_ns() - cpu < FL_SHARE", "fl_thread_cpu_ns() - cpu > FL_SHARE",
       tests=POOL_TESTS),
    _m("pool-crowded-kept-by-adapt", "_pool.h", "fl_pool_adapt",
       "fl_alone = fl_strikes = fl_crowded = 0;", "fl_alone = fl_strikes = 0;", tests=POOL_TESTS),
    # Optimizer steps (fastlinear.optim).
    _m("adam-first-moment-rate", "_optim.pyx", "_adam",
       "m[i] = beta1 * m[i] + c1 * g", "m[i] = beta1 * m[i] + c2 * g", tests=OPTIM_TESTS),
    _m("adam-eps-inside-root", "_optim.pyx", "_adam",
       "root = <floating>sqrt(v[i])", "root = <floating>sqrt(v[i] + eps)", tests=OPTIM_TESTS),
    _m("sgd-nesterov-plain", "_optim.pyx", "_sgd",
       "param[i] = param[i] + (momentum * step - lr * grad[i])", "param[i] = param[i] + step",
       tests=OPTIM_TESTS),
    _m("optim-last-chunk", "_optim.pyx", "_adam",
       "min(a.size, (t + 1) * CHUNK)", "min(a.size - 1, (t + 1) * CHUNK)", tests=OPTIM_TESTS),
    _m("optim-overlap-unchecked", "optim.py", "_arrays",
       "if np.shares_memory(a, b):", "if False:", tests=OPTIM_TESTS),
    _m("adam-float32-add", "_optim.pyx", "_adam",
       "param[i] = <floating>(<double>param[i] + (lr * m[i]) / <double>(root + eps))",
       "param[i] = param[i] + <floating>((lr * m[i]) / <double>(root + eps))", tests=OPTIM_TESTS),
    _m("sgd-nesterov-without-velocity", "optim.py", "sgd_step",
       "if velocity is None and (momentum != 0.0 or nesterov):",
       "if velocity is None and momentum != 0.0:", tests=OPTIM_TESTS),
    # scikit-learn's estimators (fastlinear.sklearn) and the L2 pass they run.
    _m("decay-remainder-dropped", "_optim.pyx", "_decay",
       "for j in range(hi - i):", "for j in range(hi - i - 1):", tests=SKLEARN_TESTS),
    _m("decay-first-chunk-only", "_optim.pyx", "decay_norm",
       "total += a.sums[t]", "total += a.sums[0]", tests=SKLEARN_TESTS),
    _m("decay-overwrites", "_optim.pyx", "_decay",
       "            grad[i + j] = grad[i + j] + decay * param[i + j]",
       "            grad[i + j] = decay * param[i + j]", tests=SKLEARN_TESTS),
    _m("sklearn-l2-gradient-dropped", "sklearn.py", "_FastlinearMLP._backprop",
       "squares = sum(_decay_norm(W, dW, decay)", 'squares = sum(np.einsum("ij,ij->", W, W)',
       tests=SKLEARN_TESTS),
    _m("sklearn-adam-step-count", "sklearn.py", "_OnePassOptimizer.update_params",
       "            inner.t += 1\n", "", tests=SKLEARN_TESTS),
    _m("sklearn-sample-weight-sum", "sklearn.py", "_FastlinearMLP._output_loss",
       "(sample_weight / sw_sum)", "(sample_weight / n_samples)",
       tests=SKLEARN_TESTS),
    _m("sklearn-sparse-derivative", "sklearn.py", "_FastlinearMLP._backprop",
       "if i < last:", "if False:", tests=SKLEARN_TESTS),
    # Validation and dispatch.
    _m("plan-narrow-rows", "_problem.pyx", "builtin_path",
       "N >= NARROW_ROWS", "N > NARROW_ROWS"),
    _m("dtype-non-native-any-float", "_checks.pyx", "float_array",
       'dt.kind == "f" and dt.itemsize in (4, 8)', 'dt.kind == "f"'),
    _m("dtype-same-kind", "_checks.pyx", "_same_dtype",
       "a is not None and a.dtype != dtype", "a is not None and a.dtype.kind != dtype.kind"),
    _m("weights-limit-M_in-only", "_checks.pyx", "_check_weights",
       "max(dims[0], dims[1]) > BLAS_INT_MAX", "dims[0] > BLAS_INT_MAX", tests=MATH_FIRST),
    _m("dy-rows-unchecked", "_checks.pyx", "check_backward_arrays",
       "cnp.PyArray_DIM(<cnp.ndarray>dy, 0) == cnp.PyArray_DIM(<cnp.ndarray>x, 0)", "True"),
    _m("out-leading-dims-unchecked", "_checks.pyx", "_has_shape_like",
       "for i in range(nd - 1):", "for i in range(nd - 2):"),
    _m("out-read-only-accepted", "_checks.pyx", "check_out",
       "if not cnp.PyArray_ISWRITEABLE(o):", "if False:"),
    _m("overlap-by-bounds-only", "_checks.pyx", "_overlaps",
       "alo < hi and lo < ahi and _overlap(o, a)", "alo < hi and lo < ahi"),
    _m("overlap-dW-dx-unchecked", "_checks.pyx", "check_gradient_buffers",
       "others.arrays[3] = <PyObject*>dx", "others.arrays[3] = NULL"),
    _m("overlap-out-b-unchecked", "_api.pyx", "linear_forward",
       "_FORWARD_NAMES, x, W, b,", "_FORWARD_NAMES, x, W, None,"),
    _m("unwanted-buffer-ignored", "_checks.pyx", "_check_wanted",
       "if not computed:", "if False:"),
    _m("accumulate-into-copy-lost", "_staging.pyx", "target",
       "if keep:", "if False:", tests=MATH_FIRST),
    _m("num-threads-zero-on-serial", "_checks.pyx", "threads_of",
       "1 <= num_threads <= MAX_THREADS", "0 <= num_threads <= MAX_THREADS"),
    _m("num-threads-no-upper-bound", "_threads.py", "check_threads",
       "if not 1 <= n <= MAX_THREADS:", "if not 1 <= n:"),
    _m("num-threads-bool", "_threads.py", "check_threads",
       "isinstance(n, bool) or not hasattr", "not hasattr"),
    # The Linear class.
    _m("linear-zero-features-rejected", "_linear.py", "Linear.__init__",
       "if n.__index__() < 0:", "if n.__index__() <= 0:"),
    _m("linear-init-bound-out", "_linear.py", "Linear.__init__",
       "1.0 / math.sqrt(in_features)", "1.0 / math.sqrt(out_features)"),
    _m("linear-grads-overwritten", "_linear.py", "Linear.backward",
       "accumulate=True", "accumulate=False"),
    _m("linear-zero-grad-rebinds", "_linear.py", "Linear.zero_grad",
       "self.dW.fill(0)", "self.dW = np.zeros_like(self.W)"),
    _m("linear-pending-released-early", "_linear.py", "Linear.backward",
       'x = getattr(self._pending, "x", None)',
       'x, self._pending.x = getattr(self._pending, "x", None), None'),
    _m("linear-load-copies-before-checks", "_linear.py", "Linear.load_state_dict",
       "new[name] = value", 'np.copyto(target, value, casting="same_kind")'),
    _m("linear-load-accepts-bool", "_linear.py", "Linear.load_state_dict",
       'not in "fiu"', 'not in "fiub"'),
    # fastlinear.dask.
    _m("dask-db-partials-replaced", "dask.py", "_sum_partials",
       "db += part_db", "db = part_db"),
    _m("dask-tree-groups-overlap", "dask.py", "linear_backward",
       "level[j:j + fan_in]", "level[j:j + fan_in + 1]"),
    _m("dask-dy-not-rechunked", "dask.py", "linear_backward",
       "if dy.chunks[0] != x.chunks[0]:", "if False:"),
    _m("dask-column-chunks-kept", "dask.py", "_rows",
       "a if a.numblocks[1] == 1 else a.rechunk({1: -1})", "a"),
    # Input checks and settings that fresh bugs got past before their tests existed.
    _m("saved-array-extra-accepted", "_checks.pyx", "check_saved",
       "or (y if gelu else z) is not None ", "", tests=ACTIVATION_TESTS),
    _m("env-choice-case-sensitive", "_backends.py", "env_choice",
       ".strip().lower() or", ".strip() or", tests=("tests/test_backends.py",)),
    # The classifier's output softmax and loss (_softmax.pyx).
    _m("softmax-loss-clip-low", "_softmax.pyx", "_softmax_loss",
       "if clipped < eps:", "if clipped < 0:", tests=SOFTMAX_TESTS),
    _m("softmax-loss-zero-target-nan", "_softmax.pyx", "_softmax_loss",
       "if target != 0 or clipped != clipped:", "if target != 0:", tests=SOFTMAX_TESTS),
    _m("softmax-max-skips-last", "_softmax.pyx", "_softmax_row",
       "for j in range(1, m):", "for j in range(1, m - 1):", tests=SOFTMAX_TESTS),
    _m("softmax-sum-uncompensated", "_softmax.pyx", "_softmax_row",
       "    total += lost\n", "", tests=SOFTMAX_TESTS),
]


def source(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------
# Scopes: where in a file a mutant's pattern is looked for.

# Python and Cython definitions: def, async def, class, cdef/cpdef functions
# (inline, nogil, fused ...), cdef class / struct / union / enum.
_PY_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?(def|class|cpdef|cdef)\b([^\n]*)", re.M)
_CDEF_TYPE = re.compile(r"\s*(?:(?:public|api|packed|readonly)\s+)*"
                        r"(?:class|struct|union|enum)\s+(\w+)")
_FIRST_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")
_IDENT = re.compile(r"\s*([A-Za-z_]\w*)")
_OPEN, _CLOSE = "([{", ")]}"


def _mask_python(text):
    """``text`` with comments and string literals blanked out, at the same
    offsets: only the code's structure is left."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif c in "'\"":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                if text[j] == "\\":
                    j += 1
                elif text[j] == "\n" and len(quote) == 1:
                    break  # an unterminated string ends at its line
                j += 1
            j = min(n, j + len(quote))
            # One placeholder where the string starts (a line holding a string
            # is not blank), its newlines blanked too (a string continues a line).
            out[i:j] = [c] + [" "] * (j - i - 1)
            i = j
        else:
            i += 1
    return "".join(out)


def _mask_c(text):
    """``text`` with C comments, string and character literals and preprocessor
    directives (a macro's body is no function) blanked out, at the same offsets."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        if text[i] == "#" and not text[text.rfind("\n", 0, i) + 1:i].strip():
            j = text.find("\n", i)
            while j > 0 and text[j - 1] == "\\":  # continued on the next line
                j = text.find("\n", j + 1)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text[i] in "'\"":
            j = i + 1
            while j < n and text[j] != text[i] and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(n, j + 1)
        else:
            i += 1
            continue
        out[i:j] = ["\n" if ch == "\n" else " " for ch in text[i:j]]
        i = j
    return "".join(out)


def _logical_line_end(masked, i):
    """The offset of the newline that ends the logical line holding offset ``i``
    (brackets and backslash continuations followed)."""
    depth, n = 0, len(masked)
    while i < n:
        c = masked[i]
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(0, depth - 1)
        elif c == "\\" and masked.startswith("\\\n", i):
            i += 2
            continue
        elif c == "\n" and depth == 0:
            return i
        i += 1
    return n


def _python_defs(text):
    """Every definition in Python or Cython source, as (name, start, end, parent
    index or None), in order: the span runs from the start of its ``def`` line
    to the end of the last line of its body (found by indentation)."""
    masked = _mask_python(text)
    defs = []
    for match in _PY_DEF.finditer(masked):
        indent, keyword, rest = match.groups()
        if keyword in ("def", "class"):
            name = _IDENT.match(rest)
        elif keyword == "cdef" and _CDEF_TYPE.match(rest):
            name = _CDEF_TYPE.match(rest)
        else:  # a cdef or cpdef function: the first name called that follows no "="
            name = _FIRST_CALL.search(rest)
            if name and "=" in rest[:name.start()]:
                name = None
        if not name:
            continue  # a declaration, "cdef extern from ...", a "cdef:" block
        end = last = _logical_line_end(masked, match.start(3))  # the header's end
        while end < len(masked):  # the body: the logical lines indented deeper, or blank
            line_end = _logical_line_end(masked, end + 1)
            line = masked[end + 1:line_end]
            if line.strip():
                if len(line) - len(line.lstrip(" \t")) <= len(indent):
                    break
                last = line_end
            end = line_end
        defs.append((name.group(1), match.start(), last, len(indent)))
    # Parents: the innermost earlier definition whose span holds this one.
    result = []
    for k, (name, start, end, _) in enumerate(defs):
        parent = None
        for p in range(k - 1, -1, -1):
            if defs[p][1] < start and end <= defs[p][2] and defs[p][3] < defs[k][3]:
                parent = p
                break
        result.append((name, start, end, parent))
    return result


def _c_defs(masked, name):
    """The spans of every C function definition called ``name`` (also written
    through a macro, as ``FL_NAME(name)(...)``) in a header masked by _mask_c:
    from the start of the line that names it to its closing brace."""
    spans = []
    for match in re.finditer(r"\b%s\b" % re.escape(name), masked):
        i = match.end()
        wrapped = re.match(r"\s*\)", masked[i:])  # FL_NAME(name)(...)
        if wrapped and re.search(r"\w\s*\(\s*$", masked[max(0, match.start() - 100):match.start()]):
            i += wrapped.end()
        params = re.match(r"\s*\(", masked[i:])
        if not params:
            continue
        i = _close(masked, i + params.end() - 1)
        body = re.match(r"\s*\{", masked[i:])  # a definition, not a call or a prototype
        # At brace depth 0: functions are not nested ("if (...) {" is no function).
        outside = masked.count("{", 0, match.start()) == masked.count("}", 0, match.start())
        if i < 0 or not body or not outside:
            continue
        end = _close(masked, i + body.end() - 1)
        if end < 0:
            continue
        spans.append((masked.rfind("\n", 0, match.start()) + 1, end))
    return spans


def _close(masked, i):
    """The offset just past the bracket that closes the one at ``i``, or -1."""
    depth = 0
    for j in range(i, len(masked)):
        if masked[j] in _OPEN:
            depth += 1
        elif masked[j] in _CLOSE:
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


def scope_spans(text, path, scope):
    """The (start, end) spans of ``scope`` in the source ``text`` of ``path``:
    the whole text for None; in C headers every definition of the function;
    in Python and Cython every definition of a dotted path (``Class.method``,
    ``outer.inner``; a bare name is one not nested in another definition)."""
    if scope is None:
        return [(0, len(text))]
    if path.endswith((".h", ".c")):
        return _c_defs(_mask_c(text), scope)
    defs = _python_defs(text)
    current = [None]
    for part in scope.split("."):
        current = [k for k, (name, _, _, parent) in enumerate(defs)
                   if name == part and parent in current]
    return [(defs[k][1], defs[k][2]) for k in current]


def definitions(text, path):
    """Every scope name of a source (dotted for Python and Cython) with its spans."""
    if path.endswith((".h", ".c")):
        masked = _mask_c(text)
        names = set(re.findall(r"\b([A-Za-z_]\w*)\s*\)?\s*\(", masked))
        found = {name: _c_defs(masked, name) for name in sorted(names)}
        return {name: spans for name, spans in found.items() if spans}
    defs = _python_defs(text)
    found = {}
    for k, (name, start, end, parent) in enumerate(defs):
        while parent is not None:
            name, parent = defs[parent][0] + "." + name, defs[parent][3]
        found.setdefault(name, []).append((start, end))
    return found


class AnchorError(Exception):
    pass


def _line(text, offset):
    return text.count("\n", 0, offset) + 1


def locate(m, text):
    """The offset of ``m.pattern`` in ``text``, the source of ``m.file``; raises
    AnchorError saying what no longer matches and where the pattern is now."""
    spans = scope_spans(text, m.file, m.scope)
    where = f"{m.file}:{m.scope or '(whole file)'}"
    if not spans:
        close = difflib.get_close_matches(m.scope, list(definitions(text, m.file)), n=3,
                                          cutoff=0.5)
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise AnchorError(f"{where}: function {m.scope} not found{hint}")
    at = [start + i for start, end in spans
          for i in _occurrences(text[start:end], m.pattern)]
    lines = "line " + ", ".join(str(_line(text, start)) for start, _ in spans)
    if len(at) == 1:
        return at[0]
    if not at:
        found = definitions(text, m.file)
        elsewhere = [f"{_innermost(found, i, len(m.pattern))} (line {_line(text, i)})"
                     for i in _occurrences(text, m.pattern)]
        if elsewhere:
            hint = f"; it is now in {', '.join(elsewhere)}"
        else:
            body = [line.strip() for start, end in spans for line in text[start:end].splitlines()]
            close = difflib.get_close_matches(m.pattern.strip(), body, n=1, cutoff=0.5)
            hint = f"; the closest line there: {close[0]!r}" if close else ", nor elsewhere"
        raise AnchorError(f"{where} ({lines}): pattern not found: {m.pattern!r}{hint}")
    raise AnchorError(f"{where} ({lines}): pattern found {len(at)} times (lines "
                      f"{', '.join(str(_line(text, i)) for i in at)}), give more of its line: "
                      f"{m.pattern!r}")


def _innermost(found, offset, length):
    """The name of the innermost definition (of ``found``, from definitions())
    holding text[offset:offset + length]."""
    holders = [(end - start, name) for name, spans in found.items()
               for start, end in spans if start <= offset and offset + length <= end]
    return min(holders)[1] if holders else "module-level code (scope None)"


def _occurrences(text, pattern):
    i = text.find(pattern)
    while i >= 0:
        yield i
        i = text.find(pattern, i + 1)


def mutated(m, original):
    """The bytes of ``m.file`` with the mutant applied, from its original bytes."""
    text = original.decode("utf-8")
    at = locate(m, text)
    return (text[:at] + m.replacement + text[at + len(m.pattern):]).encode("utf-8")


def check_anchors(mutants):
    """Error lines for every mutant whose anchor no longer matches exactly once."""
    errors = []
    texts = {}
    for m in mutants:
        if m.file not in texts:
            try:
                texts[m.file] = source(m.file).decode("utf-8")
            except OSError as e:
                texts[m.file] = e
        text = texts[m.file]
        if isinstance(text, OSError):
            errors.append(f"{m.name}: {m.file}: cannot be read ({text.strerror})")
            continue
        if m.pattern == m.replacement:
            errors.append(f"{m.name}: {m.anchor()}: the replacement equals the pattern")
            continue
        try:
            locate(m, text)
        except AnchorError as e:
            errors.append(f"{m.name}: {e}")
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
            f.write(mutated(m, original))
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
    parser.add_argument("--check", action="store_true",
                        help="only check that every anchor matches exactly once (no build): "
                             "exit 0 if all do, else 1")
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
    errors = check_anchors(mutants)
    if errors:
        print(f"{len(errors)} of {len(mutants)} mutant anchors no longer match exactly once "
              "(fix the scope or pattern in the MUTANTS table of tools/mutants.py):\n  "
              + "\n  ".join(errors), file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(mutants)} mutant anchors match, each exactly once "
              f"in {len({m.file for m in mutants})} files")
        return 0
    if args.list:
        for m in mutants:
            note = f"  (equivalent: {m.equivalent})" if m.equivalent else ""
            print(f"{m.name:34} {m.anchor():52} {m.pattern!r} -> {m.replacement!r}{note}")
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
        print(f"SURVIVED: {m.name} ({m.anchor()}: {m.pattern!r} -> {m.replacement!r}): add a test "
              "that kills it, or an equivalent note saying why none can")
    for m in wrongly_equivalent:
        print(f"KILLED BUT LISTED AS EQUIVALENT: {m.name}: drop its equivalent note")
    for m in broken:
        print(f"ERROR: {m.name} does not build: fix its replacement")
    return 1 if live or wrongly_equivalent or broken else 0


if __name__ == "__main__":
    sys.exit(main())
