"""Fingerprints of fastlinear's outputs over a fixed set of calls, to compare two builds.

    python tools/same_bits.py write before.json      # with one build installed
    python tools/same_bits.py write after.json       # with the other
    python tools/same_bits.py compare before.json after.json

The calls: the benchmarks' standard shapes, float32 and float64, every
activation, every path (with and without the small-kernel cut), on 1, 2 and 3
threads; each a forward with its pre-activation, a backward with dx, dW and db,
a backward without dx, and an SGD step.  Each output is recorded as a SHA-256
of its bytes, so "compare" says which calls changed by even one bit.
"""
import argparse
import hashlib
import json
import os
import sys

os.environ["FASTLINEAR_PLANS"] = "off"  # the default call takes the built-in plan in both builds

import numpy as np  # noqa: E402

import fastlinear  # noqa: E402
from fastlinear import _gemm, _parallel  # noqa: E402

SHAPES = [(32, 32, 32), (64, 256, 128), (64, 784, 256), (128, 512, 512),
          (256, 1024, 1024), (1024, 1024, 1024), (100000, 64, 16), (33, 700, 600)]
ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "gelu", "gelu_tanh"]
THREADS = (1, 2, 3)


def plans():
    """Every plan on SciPy's BLAS, by name, and the built-in one (None)."""
    out = {"builtin": None}
    for path, code in _parallel.PATHS.items():
        for small in (False, True):
            out[f"{path}{'+small' if small else ''}"] = _parallel.make_plan(
                code, small, _gemm.machine_tasks(), 0)
    return out


def _planned(function, plan):
    """``function`` run with ``plan`` in either build's private spelling."""
    if plan is None:
        return getattr(fastlinear, function)
    api = fastlinear._api
    if hasattr(api, "forward_planned"):  # positional plans
        def call(*args, **kw):
            if function == "linear_forward":
                x, W, b = args
                return api.forward_planned(x, W, b, kw.get("activation"), None, kw.get("z"),
                                           kw["num_threads"], plan)
            x, W, dy = args
            return api.backward_planned(
                x, W, dy, kw.get("activation"), kw.get("y"), kw.get("z"), False, True,
                kw.get("need_dx", True), True, None, None, None, None, False, kw["num_threads"],
                plan, kw.get("lr"), kw.get("b"))
        return call
    return lambda *args, **kw: getattr(fastlinear, function)(*args, _plan=plan, **kw)


def digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def fingerprints():
    out = {}
    for N, M_in, M_out in SHAPES:
        for dtype in ("float32", "float64"):
            rng = np.random.default_rng(N * 7 + M_in * 3 + M_out)
            x = rng.standard_normal((N, M_in)).astype(dtype)
            W = (rng.standard_normal((M_in, M_out)) / np.sqrt(M_in)).astype(dtype)
            b = rng.standard_normal(M_out).astype(dtype)
            dy = rng.standard_normal((N, M_out)).astype(dtype)
            for activation in ACTIVATIONS:
                gelu = activation in ("gelu", "gelu_tanh")
                for name, plan in plans().items():
                    forward, backward = _planned("linear_forward", plan), _planned("linear_backward", plan)
                    for threads in THREADS:
                        key = f"{N}x{M_in}x{M_out}:{dtype}:{activation}:{name}:{threads}"
                        z = np.empty((N, M_out), dtype) if gelu else None
                        y = forward(x, W, b, activation=activation, z=z, num_threads=threads)
                        saved = ({"z": z} if gelu else {"y": y}) if activation else {}
                        g = backward(x, W, dy, activation=activation, num_threads=threads, **saved)
                        g1 = backward(x, W, dy, activation=activation, num_threads=threads,
                                      need_dx=False, **saved)
                        W2, b2 = W.copy(), b.copy()
                        backward(x, W2, dy, activation=activation, num_threads=threads,
                                 lr=0.01, b=b2, **saved)
                        out[key] = [digest(y, z), digest(*g), digest(*g1), digest(W2, b2)]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write").add_argument("file")
    compare = sub.add_parser("compare")
    compare.add_argument("before")
    compare.add_argument("after")
    args = parser.parse_args()
    if args.command == "write":
        prints = fingerprints()
        with open(args.file, "w") as f:
            json.dump(prints, f, indent=0, sort_keys=True)
        print(f"{len(prints)} calls fingerprinted into {args.file}")
        return 0
    with open(args.before) as f:
        before = json.load(f)
    with open(args.after) as f:
        after = json.load(f)
    what = ("forward", "backward", "backward without dx", "SGD step")
    differ = [(key, [w for w, u, v in zip(what, before[key], after.get(key, [None] * 4)) if u != v])
              for key in sorted(before)]
    differ = [(key, parts) for key, parts in differ if parts]
    missing = sorted(set(before) ^ set(after))
    for key, parts in differ:
        print(f"DIFFERENT {key}: {', '.join(parts)}")
    for key in missing:
        print(f"ONLY IN ONE {key}")
    print(f"{len(before) - len(differ)} of {len(before)} calls bitwise identical"
          + (f"; {len(missing)} calls in one file only" if missing else ""))
    return 1 if differ or missing else 0


if __name__ == "__main__":
    sys.exit(main())
