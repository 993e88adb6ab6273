"""Dev-only benchmark: strong scaling on this machine, 1 process x 2 threads against
2 processes x 1 thread (torchrun, gloo), for inference and for training.

    python tests/benchmarks/bench_distributed.py [--rows 256] [--width 10980]
        [--model tempcnn] [--workdir /tmp/sits_dist] [--epochs 6]

Inference: ``python -m sits_ref.predict`` on a synthetic scene ``rows`` x ``width``
(the generator of bench_inference.py), a random-weight checkpoint of ``--model``:
one scene (row bands shared by the processes) and two scenes (one per process); the
wall time of the whole command (start-up, reading, model, writing, quicklooks) and
pixels per second. The per-tile time and 100 tiles are extrapolated from these
figures and labelled so.

Training: ``run_benchmark.py --models MODEL --runs 1`` on the bundled sample for a fixed
number of epochs; the training seconds of the run (from results.json) and per epoch.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
from bench_inference import TILE, write_scene  # noqa: E402

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", "2"]


def run(cmd, threads: int) -> float:
    """Wall seconds of ``cmd`` with ``threads`` torch threads per process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=ROOT)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def checkpoint(manifest: str, name: str, path: str) -> str:
    import numpy as np
    import torch
    from sits_ref.checkpoint import save_checkpoint
    from sits_ref.dataset import load_dataset
    from sits_ref.models import build_model
    ds = load_dataset(manifest)
    torch.manual_seed(0)
    model = build_model(name, len(ds.feature_names), len(ds.dates), len(ds.classes)).eval()
    f = len(ds.feature_names)
    save_checkpoint(path, model, name, {}, np.zeros(f), np.ones(f), ds.class_codes,
                    ds.class_names, ds.feature_names, dates=ds.dates)
    return path


def inference(args) -> list[tuple]:
    scene = write_scene(os.path.join(args.workdir, "scene"), args.rows, args.width)
    second = os.path.join(args.workdir, "scene", "second.json")   # same pixels, other name
    shutil.copy(scene, second)
    ckpt = checkpoint(scene, args.model, os.path.join(args.workdir, "model.pt"))
    pixels = args.rows * args.width
    rows = []
    for label, data, n_scenes in (("1 scene", [scene], 1), ("2 scenes", [scene, second], 2)):
        for launcher, threads, who in (([sys.executable], 2, "1 process x 2 threads"),
                                       (TORCHRUN, 1, "2 processes x 1 thread")):
            out = os.path.join(args.workdir, "out")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            target = os.path.join(out, "map.tif") if n_scenes == 1 else out
            seconds = run(launcher + ["-m", "sits_ref.predict", "--model", ckpt, "--data",
                                      *data, "--out", target], threads)
            rows.append((label, who, seconds, n_scenes * pixels / seconds))
    return rows


def training(args) -> list[tuple]:
    rows = []
    for launcher, threads, who in (([sys.executable], 2, "1 process x 2 threads"),
                                   (TORCHRUN, 1, "2 processes x 1 thread")):
        out = os.path.join(args.workdir, "train")
        shutil.rmtree(out, ignore_errors=True)
        run(launcher + [os.path.join(ROOT, "run_benchmark.py"), "--models", args.model,
                        "--runs", "1", "--epochs", str(args.epochs), "--min-epochs",
                        str(args.epochs), "--out", out], threads)
        with open(os.path.join(out, "results.json")) as f:
            result = json.load(f)["models"][args.model]["runs"][0]
        rows.append((who, result["train_seconds"], result["train_seconds"] / result["epochs"]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--width", type=int, default=TILE)
    ap.add_argument("--model", default="tempcnn")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--workdir", default="/tmp/sits_dist")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    print(f"inference, {args.model}, scenes of {args.rows} x {args.width} px "
          "(whole command: start-up, read, model, write, quicklooks)")
    results = inference(args)
    base = {label: rate for label, who, _, rate in results if who.startswith("1 process")}
    for label, who, seconds, rate in results:
        print(f"  {label:9s} {who:24s} {seconds:7.1f} s  {rate / 1e3:7.1f} k px/s  "
              f"x{rate / base[label]:.2f}")
    best = max(rate for *_, rate in results)
    tile_min = TILE * TILE / best / 60
    print(f"  extrapolated: one {TILE} x {TILE} tile {tile_min:.1f} min on this machine at "
          f"the best rate; 100 tiles {100 * tile_min / 60:.1f} h on one such machine, "
          f"{100 * tile_min / 60 / 10:.1f} h on 10 (tiles shared, no communication)")

    print(f"\ntraining, {args.model}, bundled sample, 1 run of {args.epochs} epochs")
    train = training(args)
    for who, seconds, per_epoch in train:
        print(f"  {who:24s} {seconds:7.1f} s  {per_epoch:5.2f} s/epoch  "
              f"x{train[0][1] / seconds:.2f}")


if __name__ == "__main__":
    main()
