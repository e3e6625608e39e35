"""docs/performance.md's tables, generated from the result files in bench/results/.

    python tools/performance_tables.py           # rewrite the tables in docs/performance.md
    python tools/performance_tables.py --check   # exit 1 if they differ from what the files give

For each CPU and each benchmark (the file name's prefix: mlp, bench, sklearn, act,
blas, plans), the result file with the latest recorded date becomes one table, with
the CPU, the date and the software versions in its caption; a run with busy
processes beside it (``--load``) or NumPy products mixed in (``--mixed``) gets a
table of its own.  The tables go between the two marker lines below; the rest of
the page is written by hand.  Standard library only.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
PAGE = os.path.join(ROOT, "docs", "performance.md")
BEGIN, END = "<!-- tables: begin -->", "<!-- tables: end -->"
KINDS = {"mlp": "A whole training step: `bench/bench_mlp.py`",
         "bench": "One layer: `bench/bench.py`",
         "sklearn": "scikit-learn's MLPClassifier: `bench/bench_sklearn.py`",
         "act": "Fused activations: `bench/bench_activations.py`",
         "blas": "BLAS backends: `bench/bench_blas.py`",
         "plans": "Plan quality: `bench/plan_quality.py`"}
NAMES = {"python": "Python", "fastlinear": "fastlinear", "numpy": "NumPy", "scipy": "SciPy",
         "threadpoolctl": "threadpoolctl", "torch": "PyTorch", "scikit-learn": "scikit-learn",
         "dask": "dask", "distributed": "distributed", "mkl": "mkl",
         "scipy-openblas32": "scipy-openblas32"}


def fixed(v, digits=3):
    """A measured figure, rounded to ``digits`` decimals."""
    return "–" if v is None else f"{v:.{digits}f}"


def as_recorded(v, digits=None):
    """A transcribed figure, with the digits it was recorded with (less trailing zeros)."""
    return "–" if v is None else repr(round(v, 9))


def load(path):
    """(info, data) of a result file; plan_quality's older files keep their CPU at the top."""
    with open(path) as f:
        data = json.load(f)
    info = dict(data.get("info") or {"cpu": data["cpu"], "versions": {"fastlinear": data["fastlinear"]}})
    stamp = re.search(r"(\d{8})-(\d{2})(\d{2})(\d{2})", os.path.basename(path))
    info.setdefault("date", info.get("time") or (stamp and "{}-{}-{}T{}:{}:{}".format(
        stamp[1][:4], stamp[1][4:6], stamp[1][6:], *stamp.groups()[1:])))
    return info, data


def versions(info):
    found = dict(info.get("versions") or {})
    for key, name in (("python", "python"), ("numpy", "numpy"), ("torch", "torch"),
                      ("sklearn", "scikit-learn")):
        if isinstance(info.get(key), str):
            found.setdefault(name, info[key])
    lib = info.get("fastlinear")
    found.setdefault("fastlinear", lib.get("fastlinear") if isinstance(lib, dict) else lib)
    text = ", ".join(f"{NAMES[k]} {found[k]}" + (f" ({found['fastlinear git']})"
                                                 if k == "fastlinear" and "fastlinear git" in found
                                                 else "")
                     for k in NAMES if found.get(k))
    blas = found.get("blas") or [blas_label(lib) for lib in info.get("blas") or
                                 info.get("threadpool_info") or [] if lib.get("user_api") == "blas"]
    return text + (f"; BLAS: {', '.join(sorted(blas))}" if blas else "")


def blas_label(lib):
    """"SciPy's OpenBLAS 0.3.30 (SkylakeX)" from a threadpoolctl entry."""
    path = lib.get("filepath", "").replace("\\", "/")
    owner = path.split("site-packages/")[-1].split("/")[0].replace(".libs", "")
    owner = {"numpy": "NumPy", "scipy": "SciPy"}.get(owner, owner)
    api = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(lib["internal_api"],
                                                                     lib["internal_api"])
    arch = f" ({lib['architecture']})" if lib.get("architecture") else ""
    return f"{owner}'s {api} {lib.get('version')}{arch}"


def ratio_columns(rows, order):
    return [p for p in order if any(p in r.get("ratio", {}) for r in rows)]


def mlp_table(rows, fmt):
    peers = ratio_columns(rows, ["numpy", "torch", "sklearn", "fl-grads", "fl-1t"])
    parity = any("parity" in r for r in rows)
    head = ["MLP, batch", "dtype", "threads", "fastlinear ms"] + [f"÷ {p}" for p in peers]
    out = [head + (["parity"] if parity else [])]
    for r in rows:
        ms = r.get("median_s", {}).get("fastlinear")
        out.append([f"{'-'.join(map(str, r['sizes']))}, {r['batch']}", r["dtype"], str(r["threads"]),
                    fmt(ms and ms * 1e3)] + [fmt(r["ratio"].get(p)) for p in peers]
                   + ([fmt(r.get("parity"))] if parity else []))
    return out


def bench_table(rows, fmt):
    peers = ratio_columns(rows, ["numpy", "gemm3", "torch"])
    out = [["N, M_in, M_out", "dtype", "threads", "fastlinear ms", "GFLOP/s"]
           + [f"÷ {'BLAS floor' if p == 'gemm3' else p}" for p in peers]]
    for r in rows:
        ms = r.get("median_s", {}).get("fastlinear")
        out.append([", ".join(map(str, r["shape"])), r["dtype"], str(r["threads"]),
                    fmt(ms and ms * 1e3), fmt(r.get("gflops", {}).get("fastlinear"), 1)]
                   + [fmt(r["ratio"].get(p)) for p in peers])
    return out


def sklearn_table(rows, fmt):
    peers = ratio_columns(rows, ["sklearn", "torch"])
    out = [["data, solver, batch", "dtype", "fastlinear fit s"]
           + [f"÷ {p} {what}" for p in peers for what in ("fit", "predict")]]
    for r in rows:
        out.append([f"{r['data']}, {r['solver']}, {r['batch']}", r["dtype"],
                    fmt(r["median_s"]["fastlinear"]["fit"])]
                   + [fmt(r["ratio"].get(p, {}).get(what)) for p in peers for what in ("fit", "predict")])
    return out


def act_table(rows, fmt):
    peers = ratio_columns(rows, ["plain", "unfused", "numpy", "torch"])
    out = [["N, M_in, M_out", "dtype", "f", "fused ms"] + [f"÷ {p}" for p in peers]]
    for r in rows:
        out.append([", ".join(map(str, r["shape"])), r["dtype"], r["activation"],
                    fmt(r["median_s"]["fused"] * 1e3)] + [fmt(r["ratio"].get(p)) for p in peers])
    return out


def blas_table(rows, fmt):
    peers = ratio_columns(rows, ["scipy", "mkl", "openblas", "torch"])
    out = [["N, M_in, M_out", "dtype", "auto ms"] + [f"÷ {p}" for p in peers]
           + ["auto's backend (fwd, bwd)"]]
    for r in rows:
        out.append([", ".join(map(str, r["shape"])), r["dtype"], fmt(r["median_s"]["auto"] * 1e3)]
                   + [fmt(r["ratio"].get(p)) for p in peers]
                   + [", ".join(p["blas"] for p in r["plans"]["auto"])])
    return out


def plans_table(rows, data, fmt):
    """Confirmed ratios, and, where recorded, how many the screening rounds alone put over 5%."""
    ratios = [r["ratio"] for r in rows]
    screened = [r["screen"] for r in rows if "screen" in r]
    return [["classes", "re-measured for", "stored ÷ best: median", "worst", "> 5% slower",
             "> 10% slower", "> 5% slower in the screening rounds"],
            [str(len(ratios)), f"{data['factor']:g}× a first call's budget",
             fmt(statistics.median(ratios)), fmt(max(ratios)), str(sum(v > 1.05 for v in ratios)),
             str(sum(v > 1.10 for v in ratios)),
             str(sum(v > 1.05 for v in screened)) if screened else "–"]]


def markdown(table):
    """Markdown lines of a table (header row first), less the columns where nothing was recorded."""
    keep = [i for i in range(len(table[0])) if any(row[i] != "–" for row in table[1:])]
    table = [[row[i] for i in keep] for row in table]
    numeric = [all(re.fullmatch(r"–|[0-9.]+", row[i]) for row in table[1:])
               for i in range(len(table[0]))]
    lines = ["| " + " | ".join(table[0]) + " |",
             "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in table[1:]]


def section(kind, path, info, data):
    rows = data["rows"]
    table = {"mlp": mlp_table, "bench": bench_table, "sklearn": sklearn_table, "act": act_table,
             "blas": blas_table}.get(kind)
    fmt = as_recorded if "transcribed" in info else fixed
    table = table(rows, fmt) if table else plans_table(rows, data, fmt)
    when = info["date"][:16].replace("T", " ")
    cond = (f", {info['load']} busy process(es) beside it" if info.get("load") else "") + \
           (", a NumPy product in every step" if info.get("mixed") else "")
    name = os.path.basename(path)
    caption = (f"{info['cpu']}"
               + (f", {info['cpus']} CPUs" if info.get("cpus") else "")
               + f", {when}. {versions(info)}. From [{name}](../bench/results/{name})")
    if "transcribed" in info:
        t = info["transcribed"]
        caption += f", transcribed from the recorded run: {t['recorded']}" + \
                   (f" ({t['note']})" if t.get("note") else "")
    return [f"### {KINDS[kind]}{cond}", "", caption + ".", ""] + markdown(table) + [""]


def generate(results=RESULTS):
    """The lines between the markers."""
    latest = {}
    for path in sorted(glob.glob(os.path.join(results, "*.json"))):
        kind = os.path.basename(path).split("-")[0]
        if kind not in KINDS:
            continue
        info, data = load(path)
        key = (info["cpu"], kind, info.get("load") or 0, bool(info.get("mixed")))
        if key not in latest or info["date"] >= latest[key][1]["date"]:
            latest[key] = (path, info, data)
    cpus = sorted({key[0] for key in latest},
                  key=lambda cpu: max(v[1]["date"] for k, v in latest.items() if k[0] == cpu),
                  reverse=True)
    lines = []
    for cpu in cpus:
        lines += [f"## {cpu}", ""]
        for key in sorted((k for k in latest if k[0] == cpu),
                          key=lambda k: (list(KINDS).index(k[1]), k[2], k[3])):
            lines += section(key[1], *latest[key])
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if docs/performance.md is out of date")
    args = parser.parse_args(argv)
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    head, sep, rest = text.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        sys.exit(f"{PAGE} has no lines {BEGIN} and {END}")
    new = head + sep + "\n".join(generate()) + "\n" + END + tail
    if new == text:
        return 0
    if args.check:
        print(f"{os.path.relpath(PAGE, ROOT)} is out of date with bench/results/*.json: "
              "run python tools/performance_tables.py", file=sys.stderr)
        return 1
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"wrote {os.path.relpath(PAGE, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
