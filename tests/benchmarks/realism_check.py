"""Dev-only check: does training behave on a small, hard, paper-like dataset?

    python tests/benchmarks/realism_check.py [--out DIR] [--runs 5] [--models ...] [--keep]

Builds the dataset of ``tests/data/make_hard_dataset.py`` (overlapping classes,
unmasked clouds, a few hundred training pixels) in DIR/data, runs
``run_benchmark.py`` on it into DIR/bench (output streamed), then reads
DIR/bench/results.json and prints PASS / FAIL for each criterion:

  (a) no run of a CNN has its best epoch <= 2 (1-based): undertrained / stopped early;
  (b) the std of test macro-F1 over the TempCNN runs is <= 0.03: stable training;
  (c) every model's confidence map has a maximum > 0.5: not a flat, uncalibrated output;
  (d) informational: TempCNN vs iota2 base test macro-F1 (on real data the paper's
      criterion is TempCNN >= RF base - 0.01; not enforced on this synthetic set).

Without --out, DIR is a temporary folder, removed at the end unless --keep.
Exit status 0 when every criterion passes, 1 otherwise (2: the benchmark failed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests", "data"))
from make_hard_dataset import make_hard_dataset  # noqa: E402
from sits_ref.benchmark import FORESTS, MODELS  # noqa: E402
from sits_ref.geotiff import read_window  # noqa: E402

MIN_BEST_EPOCH = 3          # (a): best epoch (1-based) must be at least this
MAX_TEMPCNN_STD = 0.03      # (b)
MIN_MAX_CONFIDENCE = 0.5    # (c)
RF_MARGIN = 0.01            # (d)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="work folder (default: a temporary one)")
    p.add_argument("--runs", type=int, default=5, help="trainings per model (5)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                   metavar="MODEL", help=f"subset of {', '.join(MODELS)}")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (0)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return p.parse_args(argv)


def run_benchmark(manifest, bench, runs, models) -> int:
    """run_benchmark.py in a subprocess from the repository root, output streamed."""
    cmd = [sys.executable, "run_benchmark.py", "--data", manifest, "--out", bench,
           "--runs", str(runs), "--models", *models]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def check_epochs(results, models) -> bool:
    """(a) Best epoch of every CNN run, and epochs run; missing fields are reported."""
    cnns = [m for m in models if m not in FORESTS]
    if not cnns:
        return verdict("(a) best epochs", None, "no CNN run")
    ok, seen = True, False
    for m in cnns:
        cells = []
        for r in results.get(m, {}).get("runs", []):
            best, epochs = r.get("best_epoch"), r.get("epochs")
            cells.append(f"{'missing' if best is None else best}/"
                         f"{'missing' if epochs is None else epochs}")
            if best is not None:
                seen = True
                ok &= best >= MIN_BEST_EPOCH
        print(f"  {m:<14} best epoch / epochs run: {', '.join(cells) or 'missing'}")
    return verdict(f"(a) no CNN run has best epoch <= {MIN_BEST_EPOCH - 1}",
                   ok if seen else None, "" if seen else "no best_epoch in results.json")


def check_stability(results, models) -> bool:
    """(b) Spread of TempCNN's test macro-F1 over its runs."""
    if "tempcnn" not in models:
        return verdict("(b) TempCNN test macro-F1 std", None, "tempcnn not run")
    res = results.get("tempcnn", {})
    scores = [r.get("test", {}).get("macro_f1") for r in res.get("runs", [])]
    std = res.get("test_macro_f1_std")
    print("  TempCNN test macro-F1 per run: "
          + ", ".join("missing" if s is None else f"{s:.3f}" for s in scores))
    ok = std is not None and std <= MAX_TEMPCNN_STD
    return verdict(f"(b) TempCNN test macro-F1 std <= {MAX_TEMPCNN_STD}", ok,
                   "missing" if std is None else f"std {std:.4f}")


def check_confidence(results, models, bench) -> bool:
    """(c) Max (and mean) of each model's confidence map."""
    ok = True
    for m in models:
        rel = results.get(m, {}).get("confidence")
        path = os.path.join(bench, rel) if rel else None
        if path is None or not os.path.exists(path):
            print(f"  {m:<14} confidence map missing")
            ok = False
            continue
        conf = read_window(path).astype(np.float64)
        print(f"  {m:<14} confidence max {conf.max():.3f}, mean {conf.mean():.3f}")
        ok &= bool(conf.max() > MIN_MAX_CONFIDENCE)
    return verdict(f"(c) every model's max confidence > {MIN_MAX_CONFIDENCE}", ok)


def compare_forest(results) -> None:
    """(d) Informational: TempCNN against the iota2 base Random Forest."""
    cnn, rf = (results.get(m, {}).get("test_macro_f1_mean") for m in ("tempcnn", "rf_base"))
    if cnn is None or rf is None:
        print("(d) info: TempCNN vs RF base: missing (run both tempcnn and rf_base)")
        return
    met = "met" if cnn >= rf - RF_MARGIN else "not met"
    print(f"(d) info: test macro-F1 TempCNN {cnn:.3f} vs RF base {rf:.3f} "
          f"(real-data criterion TempCNN >= RF base - {RF_MARGIN}: {met})")


def verdict(name, ok, detail="") -> bool:
    """Print PASS / FAIL / SKIP (``ok`` None) for a criterion; False only for FAIL."""
    word = "SKIP" if ok is None else "PASS" if ok else "FAIL"
    print(f"{word}  {name}" + (f" ({detail})" if detail else ""))
    return ok is not False


def main(argv=None) -> int:
    args = parse_args(argv)
    work = os.path.abspath(args.out) if args.out else tempfile.mkdtemp(prefix="realism_")
    start = time.perf_counter()
    try:
        manifest = make_hard_dataset(os.path.join(work, "data"), seed=args.seed)
        print(f"dataset: {manifest} ({time.perf_counter() - start:.1f} s)", flush=True)
        bench = os.path.join(work, "bench")
        if run_benchmark(manifest, bench, args.runs, args.models) != 0:
            print("run_benchmark.py failed", file=sys.stderr)
            return 2
        with open(os.path.join(bench, "results.json")) as f:
            results = json.load(f)["models"]
        print(f"\n=== realism check: {args.runs} run(s) of {', '.join(args.models)} ===")
        passed = [check_epochs(results, args.models), check_stability(results, args.models),
                  check_confidence(results, args.models, bench)]
        compare_forest(results)
        print(f"wall time {time.perf_counter() - start:.0f} s")
        print("ALL PASS" if all(passed) else f"{passed.count(False)} criterion(s) FAILED")
        return 0 if all(passed) else 1
    finally:
        if not args.out and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif not args.out:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
