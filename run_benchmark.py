"""Run the paper's benchmark (Table 4) on a dataset manifest; default: the bundled sample.

    python run_benchmark.py                      # 6 models x 5 runs on data_sample/
    python run_benchmark.py --quick              # smoke run: 1 run, 2 short epochs, 10 trees
    python run_benchmark.py --data my/manifest.json --models tempcnn cnn3d --runs 3
    torchrun --standalone --nproc-per-node 2 run_benchmark.py   # CNNs trained by 2 processes

Writes OUT/results.json, OUT/table.md, OUT/confusion/*.csv, OUT/maps/*.tif (class map
and confidence per model), OUT/runs/* (one JSON and checkpoint per finished run;
``--resume`` skips those after an interruption) and OUT/report.md with its pictures
(OUT/quicklooks/, and OUT/figures/ when matplotlib is installed).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

from sits_ref.atomic import write_json, write_text
from sits_ref.benchmark import MODELS, Benchmark, Options
from sits_ref.dataset import DatasetError, load_dataset
from sits_ref.distributed import from_environment
from sits_ref.report import build_report, date_index, figure_window, table_rows, to_markdown, \
    to_text, write_confusions

HERE = os.path.dirname(os.path.abspath(__file__))


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one clear line and exit status 2, no usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = OneLineParser(prog="run_benchmark.py", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.join(HERE, "data_sample", "manifest.json"),
                   help="dataset manifest (default: the bundled sample)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                   metavar="MODEL", help=f"subset of {', '.join(MODELS)}")
    p.add_argument("--runs", type=positive, default=5, help="trainings per model (5)")
    p.add_argument("--epochs", type=positive, default=100, help="maximum epochs (100)")
    p.add_argument("--patience", type=positive, default=5, help="early-stopping patience (5)")
    p.add_argument("--min-epochs", type=positive, default=10,
                   help="epochs before early stopping may trigger (10)")
    p.add_argument("--min-steps", type=positive, default=20,
                   help="optimizer steps per epoch at least; small data repeat passes (20)")
    p.add_argument("--average-steps", type=positive, default=20,
                   help="weights validated and kept: running average over about this "
                        "many optimizer steps (20; 1: the raw weights)")
    p.add_argument("--patch-size", type=positive, default=16,
                   help="side of the grid squares the patch CNNs train on (16; paper: 32)")
    p.add_argument("--ctx-out-of-fold", type=int, default=0, metavar="K",
                   help="iota2 ctx: training histograms from K superpixel folds "
                        "(0: from the forest itself, as iota2)")
    p.add_argument("--seed", type=int, default=0, help="split and first run seed (0)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--out", default="results", help="output folder (results)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 run, 2 epochs of 5 steps, 10 trees")
    p.add_argument("--resume", action="store_true",
                   help="skip runs already finished in --out")
    p.add_argument("--rgb-date", help="date of the report's RGB quicklook, YYYY-MM-DD "
                                      "(default: the middle date)")
    p.add_argument("--figure-window", type=int, nargs=4,
                   metavar=("ROW", "COL", "HEIGHT", "WIDTH"),
                   help="pixel window of the report's Figure 9 (default: around the "
                        "test polygons)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device is available")
    elif args.device != "cpu":
        p.error(f"--device must be cpu or cuda, got {args.device!r}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    group = from_environment(args.device)        # one process unless run by torchrun
    say = print if group.main else (lambda *a, **k: None)

    opts = Options(data=os.path.abspath(args.data), out=args.out, models=args.models,
                   runs=args.runs, epochs=args.epochs, patience=args.patience,
                   min_epochs=args.min_epochs, min_steps=args.min_steps,
                   average_steps=args.average_steps,
                   patch_size=args.patch_size, ctx_out_of_fold=args.ctx_out_of_fold,
                   seed=args.seed, device=args.device, resume=args.resume)
    if args.quick:
        opts.runs, opts.epochs, opts.min_epochs, opts.min_steps, opts.n_trees = 1, 2, 1, 5, 10
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda msg, *a, **k: say(f"warning: {msg}")
            dataset = load_dataset(opts.data)
            dataset.check()          # polygons and pixel values, before anything is written
            say(f"dataset {dataset.name}: {len(dataset.dates)} dates x "
                  f"{len(dataset.feature_names)} features, {dataset.height} x "
                  f"{dataset.width} px, EPSG:{dataset.georef.epsg}, "
                  f"{len(dataset.classes)} classes")
            _check_report_options(args, dataset)
            bench = Benchmark(dataset, opts, group=group)
            results = bench.run_all()
    except (DatasetError, ValueError, OSError) as exc:
        say(f"run_benchmark.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("\ninterrupted: finished runs are kept; rerun with --resume to continue",
            file=sys.stderr)
        return 130
    if not group.main:
        return 0                 # the main process writes the results
    splits = bench.exp.splits
    rows = table_rows(results, dataset.class_names, splits)
    wall = time.perf_counter() - start
    write_json(os.path.join(opts.out, "results.json"), {
        "schema": "sits_ref.results/1",
        "dataset": {"name": dataset.name, "manifest": opts.data, "dates": dataset.dates,
                    "features": dataset.feature_names, "height": dataset.height,
                    "width": dataset.width, "epsg": dataset.georef.epsg,
                    "classes": [{"code": c.code, "name": c.name, "color": list(c.color)}
                                for c in dataset.classes]},
        "options": vars(opts), "splits": splits, "wall_seconds": wall,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__},
        "models": results})
    write_text(os.path.join(opts.out, "table.md"), to_markdown(rows))
    write_confusions(opts.out, results, dataset.class_names, splits)
    print("\n" + to_text(rows))
    build_report(opts.out, args.figure_window, args.rgb_date)
    print(f"\nwall time {wall:.0f} s; results in {opts.out}/ (report.md, results.json, "
          "table.md, confusion/, maps/)")
    return 0


def _check_report_options(args, dataset) -> None:
    """--rgb-date and --figure-window refused before any training, not after."""
    date_index(dataset, args.rgb_date)
    if args.figure_window is not None:
        figure_window(None, args.figure_window, dataset.height, dataset.width)


if __name__ == "__main__":
    sys.exit(main())
