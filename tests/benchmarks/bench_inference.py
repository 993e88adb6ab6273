"""Dev-only benchmark: whole-scene inference speed and memory, against the FLOP bound.

Run from the repository root (2 torch threads, as on the reference 2-core machine):

    python tests/benchmarks/bench_inference.py [--block 512] [--runs 3] [--rows 512]
        [--rows-3d 192] [--width 10980] [--workdir /tmp/sits_bench] [--skip-e2e]

Prints:

(a) the measured torch matmul rate of each run: large fp32 matmuls (2048^2 and
    4096^2), in GFLOP/s (2 n^3 FLOPs per n x n product);
(b) for TempCNN, 2D-CNN, 3D-CNN and SpatioTempCNN (13 features x 11 dates x 8 classes,
    random init, eval mode), in ``runs`` consecutive runs: FLOPs per pixel, model-only
    throughput of the fast twin (:mod:`sits_ref.fast`) on one ``block`` x ``block``
    window (+ halo, whose extra work is charged to the model), the FLOP-bound
    throughput (that run's matmul rate / FLOPs per pixel), their ratio and the time
    extrapolated to a 10980 x 10980 tile, then the spread over runs; and the Random
    Forest (100 trees fitted on the labelled pixels of ``data_sample``) in px/s on
    the same block. Each run measures the matmul rate and every model in 3 rounds
    and keeps each one's best (:func:`model_runs`);
(c) end to end ``predict_scene`` (read, features, model, write) on a synthetic wide
    scene (11 GeoTIFFs of 10 int16 bands, ``rows`` x ``width``, strips of 16 rows,
    deflate, as our writer and Theia write them) and on a half-height one, each
    model in a fresh subprocess: seconds, px/s, peak memory (VmHWM) and the ratio to
    the best model-only px/s.

FLOPs are counted analytically with forward hooks on a small block: every Conv1d/2d/3d
and Linear layer counts 2 x (outputs x inputs per output), i.e. 2 x multiply-adds,
padding included ('same' zero padding computes the full kernel at the borders);
BatchNorm, ReLU, softmax and the normalisation are not counted (they are the memory
bound part that the bound leaves out). Per pixel = total / (block pixels).

Targets (issue 17): model only within 1.2x of the FLOP bound for TempCNN and 2D-CNN,
1.5x for 3D-CNN and SpatioTempCNN, in every run; end to end >= 0.8x model only, a
TempCNN tile under 20 min; peak memory <= 1.5 GiB for TempCNN, 2D-CNN and the forest,
<= 3 GiB for the 3D models, whatever the scene size.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, ROOT)
from sits_ref.fast import fast_model  # noqa: E402
from sits_ref.models import build_model  # noqa: E402
from sits_ref.predict import keep_freed_memory  # noqa: E402

C, T, K = 13, 11, 8
TILE = 10980
BANDS = ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
NAMES = {"tempcnn": "TempCNN", "cnn2d": "2D-CNN", "cnn3d": "3D-CNN",
         "spatiotempcnn": "SpatioTempCNN", "forest": "RF (100 trees)",
         "forest_ctx": "RF ctx (3 x 100)"}
BUDGET_GIB = {"tempcnn": 1.5, "cnn2d": 1.5, "forest": 1.5, "forest_ctx": 1.5, "cnn3d": 3.0,
              "spatiotempcnn": 3.0}
FAST = ("tempcnn", "cnn2d")          # the models with the speed targets


def peak_mib() -> float:
    """Peak resident memory of this process (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def best_time(fn, repeat=3) -> float:
    fn()                                           # warm-up (allocations, kernels)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


# ----------------------------------------------------------------------- (a) matmul rate
def matmul_gflops() -> float:
    """fp32 matmul rate, GFLOP/s: the best of 3 products of 2048^2 and of 4096^2."""
    rates = []
    for n in (2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        rates.append(2 * n ** 3 / best_time(lambda: a @ b, 3) / 1e9)
    return max(rates)


# ----------------------------------------------------------------------- (b) model only
def flops_per_pixel(model, size=16) -> float:
    """2 x multiply-adds of every conv/linear layer per output pixel (forward hooks)."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Linear):
            total[0] += 2 * out.numel() * mod.in_features
        else:   # ConvNd: each output value takes (in / groups) x kernel volume MACs
            kernel = int(np.prod(mod.kernel_size))
            total[0] += 2 * out.numel() * mod.in_channels // mod.groups * kernel

    layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, layers)]
    with torch.no_grad():
        model(torch.randn(1, C, T, size, size))
    for h in handles:
        h.remove()
    return total[0] / size ** 2


def model_runs(names, block, runs, rounds) -> dict:
    """Model-only throughput (px/s) of each model's fast twin on one ``block`` x
    ``block`` window (+ halo) and the matmul rate, in ``runs`` consecutive runs.

    In a run, ``rounds`` rounds each measure the matmul rate then every model (best
    of 2 calls); the run keeps each one's best, so a slow spell of the machine hits
    the bound and the models alike. Returns {"rate": [GFLOP/s per run], name:
    {"flops", "plain", "px_s": [per run]}}.
    """
    out = {"rate": []}
    nets, inputs = {}, {}
    for name in names:
        torch.manual_seed(0)
        model = build_model(name, C, T, K).eval()
        nets[name] = fast_model(model)
        inputs[name] = nets[name].prepare(         # in the layout predict_scene gives it
            torch.randn(1, C, T, block + 2 * model.halo, block + 2 * model.halo))
        with torch.inference_mode():
            plain = best_time(lambda: model(inputs[name]), repeat=1)
        out[name] = {"flops": flops_per_pixel(model), "plain": block ** 2 / plain,
                     "px_s": []}
    with torch.inference_mode():
        for _ in range(runs):
            rate, best = 0.0, dict.fromkeys(names, 0.0)
            for _ in range(rounds):
                rate = max(rate, matmul_gflops())
                for name in names:
                    seconds = best_time(lambda: nets[name](inputs[name]), 2)
                    best[name] = max(best[name], block ** 2 / seconds)
            out["rate"].append(rate)
            for name in names:
                out[name]["px_s"].append(best[name])
    return out


def sample_pixels():
    """The sample dataset and its labelled training pixels."""
    from sits_ref.dataset import load_dataset
    from sits_ref.samples import SampleBuilder, Split
    ds = load_dataset(os.path.join(ROOT, "data_sample", "manifest.json"))
    polygons = ds.polygons("train")
    return ds, SampleBuilder(ds, polygons).pixels(Split(np.arange(len(polygons))))


def sample_forest(n_trees=100, seed=0):
    """RandomForest fitted on the labelled training pixels of data_sample."""
    from sits_ref.forest import RandomForest
    _, pix = sample_pixels()
    X = pix.x.reshape(len(pix.x), -1)              # (N, F * T), F-major like inference
    t = time.perf_counter()
    forest = RandomForest(n_trees=n_trees, random_state=seed).fit(X, pix.y)
    return forest, X, time.perf_counter() - t


def sample_auto_context(seed=0):
    """iota2 ctx (3 iterations of 100 trees) fitted on the sample's training pixels."""
    from sits_ref.context import AutoContext, Neighbourhood, Superpixels
    ds, pix = sample_pixels()
    return AutoContext(K, seed=seed).fit(Neighbourhood(Superpixels(ds), pix.index), pix.y)


def forest_throughput(forest, X, block) -> float:
    rng = np.random.default_rng(0)
    rows = X[rng.integers(0, len(X), block * block)]
    rows += rng.normal(0, 0.01, rows.shape).astype(np.float32)
    return block ** 2 / best_time(lambda: forest.predict_proba(rows), 1)


# ----------------------------------------------------------------------- (c) end to end
def write_scene(folder, rows, width, seed=0) -> str:
    """Synthetic scene: 25-px fields of 8 classes with per-class spectra per date."""
    from sits_ref.geotiff import GeoRef, write_geotiff
    manifest = os.path.join(folder, "manifest.json")
    if os.path.exists(manifest):
        return manifest
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    cell = 25
    fields = rng.integers(0, K, (rows // cell + 1, width // cell + 1))
    cls = np.repeat(np.repeat(fields, cell, 0), cell, 1)[:rows, :width]
    georef = GeoRef((300000.0, 10.0, 0.0, 4900020.0, 0.0, -10.0), 32631, -10000)
    images, dates = [], []
    for t in range(T):
        spectra = rng.integers(300, 4500, (K, len(BANDS))).astype(np.int16)
        cube = np.empty((len(BANDS), rows, width), np.int16)
        for b in range(len(BANDS)):
            cube[b] = spectra[cls, b] + rng.integers(-60, 60, (rows, width), dtype=np.int16)
        cube[:, :, :3] = -10000                      # a nodata strip on the west edge
        name = f"S2_{t:02d}.tif"
        write_geotiff(os.path.join(folder, name), cube, georef, nodata=-10000)
        images.append(name)
        dates.append(f"2018-{t + 1:02d}-15")
    doc = {"name": f"synthetic {rows}x{width}", "images": images, "dates": dates,
           "bands": BANDS, "scale": 0.0001, "train_polygons": "none.shp",
           "class_field": "code",
           "classes": [{"code": k + 1, "name": f"class {k + 1}"} for k in range(K)]}
    with open(manifest, "w") as f:
        json.dump(doc, f)
    return manifest


# ----------------------------------------------------------------------- (d) products
def write_l3a_products(folder, rows, width, cloud_share=0.2, seed=0) -> str:
    """Synthetic Theia L3A folder of T dates, ``rows`` x ``width`` at 10 m (B2, B3, B4,
    B8) and half that at 20 m (B5 ... B12), deflate-compressed like a COG, with FLG
    masks flagging ~``cloud_share`` of each date as cloud (blobs of ~100 px)."""
    from sits_ref.geotiff import GeoRef, write_geotiff
    if os.path.exists(os.path.join(folder, "done")):
        return folder
    rng = np.random.default_rng(seed)
    grids = {10: GeoRef((300000.0, 10.0, 0.0, 4900020.0, 0.0, -10.0), 32631),
             20: GeoRef((300000.0, 20.0, 0.0, 4900020.0, 0.0, -20.0), 32631)}
    for t in range(T):
        name = f"SENTINEL2X_2018{t + 1:02d}15-000000-000_L3A_T31TCJ_C_V2-2"
        os.makedirs(os.path.join(folder, name, "MASKS"), exist_ok=True)
        for band in BANDS:
            metres = 10 if band in ("B2", "B3", "B4", "B8") else 20
            shape = (-(-rows // (metres // 10)), -(-width // (metres // 10)))
            values = rng.integers(300, 4500, shape, dtype=np.int16)
            write_geotiff(os.path.join(folder, name, f"{name}_FRC_{band}.tif"), values,
                          grids[metres], nodata=-10000)
        blobs = rng.random((rows // 10 + 1, width // 10 + 1)) < cloud_share
        cloud = np.repeat(np.repeat(blobs, 10, 0), 10, 1)[:rows, :width]
        write_geotiff(os.path.join(folder, name, "MASKS", f"{name}_FLG_R1.tif"),
                      np.where(cloud, 1, 4).astype(np.uint8), grids[10])
    open(os.path.join(folder, "done"), "w").close()
    return folder


def product_rates(folder, band_rows, threads) -> dict:
    """Pixels per second of reading (decode, 20 m -> 10 m, masks) and of gap-filling
    the whole folder in full-width row bands of ``band_rows``, as predict_scene reads."""
    import sits_ref.products as products
    from sits_ref.dataset import load_dataset
    from sits_ref.gapfill import day_numbers, fill_gaps
    products.READ_THREADS = threads
    ds = load_dataset(folder)
    days = day_numbers(ds.observation_dates)
    read_s = fill_s = 0.0
    for r0 in range(0, ds.height, band_rows):
        window = (r0, 0, min(band_rows, ds.height - r0), ds.width)
        t0 = time.perf_counter()
        values, valid = ds.source.read(window)
        t1 = time.perf_counter()
        fill_gaps(values, valid, days)
        fill_s += time.perf_counter() - t1
        read_s += t1 - t0
    pixels = ds.height * ds.width
    return {"read_px_s": pixels / read_s, "fill_px_s": pixels / fill_s,
            "valid_share": float(valid.mean())}


def child(name, manifest, block, forest_path) -> None:
    """One end-to-end run in this (fresh) process; prints a JSON line."""
    from sits_ref.dataset import load_dataset
    from sits_ref.predict import (ForestClassifier, TorchClassifier, keep_freed_memory,
                                  predict_scene)
    torch.set_num_threads(2)
    keep_freed_memory()                              # as python -m sits_ref.predict does
    ds = load_dataset(manifest)
    if name == "forest":
        with open(forest_path, "rb") as f:
            clf = ForestClassifier(pickle.load(f), K)
    elif name == "forest_ctx":
        from sits_ref.context import AutoContextClassifier, Superpixels
        with open(forest_path.replace(".pkl", "_ctx.pkl"), "rb") as f:
            clf = AutoContextClassifier(pickle.load(f), Superpixels(ds))
    else:
        torch.manual_seed(0)
        model = build_model(name, C, T, K)
        clf = TorchClassifier(model, np.full(C, 0.2, np.float32), np.full(C, 0.1, np.float32))
    base = peak_mib()
    out = os.path.join(os.path.dirname(manifest), f"map_{name}.tif")
    seconds = predict_scene(clf, ds, out, out.replace(".tif", "_conf.tif"), block=block,
                            log=None)
    print(json.dumps({"seconds": seconds, "px_s": ds.height * ds.width / seconds,
                      "peak_mib": peak_mib(), "base_mib": base}))


def run_child(name, manifest, block, forest_path) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, manifest,
           str(block), forest_path]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--block", type=int, default=512, help="model-only block side")
    ap.add_argument("--e2e-block", type=int, default=512, help="predict_scene block")
    ap.add_argument("--rows", type=int, default=512, help="end-to-end scene rows")
    ap.add_argument("--rows-3d", type=int, default=192, help="rows for the 3D models")
    ap.add_argument("--width", type=int, default=TILE, help="end-to-end scene width")
    ap.add_argument("--workdir", default="/tmp/sits_bench_inference")
    ap.add_argument("--models",
                    default="tempcnn,cnn2d,cnn3d,spatiotempcnn,forest,forest_ctx")
    ap.add_argument("--runs", type=int, default=3, help="model-only runs (3)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per model-only run (3)")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--skip-products", action="store_true")
    ap.add_argument("--product-rows", type=int, default=128,
                    help="rows of the synthetic 10980-wide L3A product folder")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        name, manifest, block, forest_path = args.child
        return child(name, manifest, int(block), forest_path)
    torch.set_num_threads(2)
    keep_freed_memory()                              # as python -m sits_ref.predict does
    models = args.models.split(",")

    print("load average before (other processes share the cores): "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    cnns = [m for m in models if not m.startswith("forest")]
    checks, model_rates = [], {}
    if cnns:
        r = model_runs(cnns, args.block, args.runs, args.rounds)
        print("(a) torch fp32 matmul, 2 threads, per run: "
              + ", ".join(f"{v:.0f}" for v in r["rate"]) + " GFLOP/s (best of 3 products "
              f"of 2048^2 and of 4096^2, in each of {args.rounds} rounds)")
        print(f"\n(b) model only, one {args.block}x{args.block} block (+ halo), "
              f"{C} features x {T} dates x {K} classes, eval mode, sits_ref.fast "
              f"(plain: the models.py forward, once), {args.runs} consecutive runs")
        print(f"{'model':<15}{'run':>4}{'MFLOP/px':>9}{'px/s':>10}{'bound px/s':>12}"
              f"{'bound/meas':>11}{'tile (min)':>11}{'plain px/s':>11}{'fast/plain':>11}")
        for name in cnns:
            m, ratios = r[name], []
            for run, (px_s, rate) in enumerate(zip(m["px_s"], r["rate"]), 1):
                bound = rate * 1e9 / m["flops"]
                ratios.append(bound / px_s)
                print(f"{NAMES[name]:<15}{run:>4}{m['flops'] / 1e6:>9.2f}{px_s:>10.0f}"
                      f"{bound:>12.0f}{bound / px_s:>11.2f}{TILE ** 2 / px_s / 60:>11.1f}"
                      f"{m['plain']:>11.0f}{px_s / m['plain']:>11.2f}")
            model_rates[name] = max(m["px_s"])
            limit = 1.2 if name in FAST else 1.5
            print(f"{'':<15}spread over runs: px/s {min(m['px_s']):.0f}-{max(m['px_s']):.0f}, "
                  f"bound/meas {min(ratios):.2f}-{max(ratios):.2f}")
            checks.append((f"{NAMES[name]} model within {limit}x of the FLOP bound in every "
                           f"run ({', '.join(f'{x:.2f}' for x in ratios)})",
                           max(ratios) <= limit))
    forest_path = os.path.join(args.workdir, "forest.pkl")
    if "forest" in models:
        forest, X, fit_s = sample_forest()
        px_s = forest_throughput(forest, X, args.block)
        depth = max(t.depth.max() for t in forest.estimators_) \
            if hasattr(forest.estimators_[0], "depth") else "?"
        model_rates["forest"] = px_s
        print(f"{NAMES['forest']:<15}{'-':>4}{'-':>9}{px_s:>10.0f}{'-':>12}{'-':>11}"
              f"{TILE ** 2 / px_s / 60:>11.1f}   (fitted in {fit_s:.0f} s on {len(X)} "
              f"sample pixels, max depth {depth})")
        os.makedirs(args.workdir, exist_ok=True)
        with open(forest_path, "wb") as f:
            pickle.dump(forest, f)
    if "forest_ctx" in models:
        os.makedirs(args.workdir, exist_ok=True)
        with open(forest_path.replace(".pkl", "_ctx.pkl"), "wb") as f:
            pickle.dump(sample_auto_context(), f)

    if not args.skip_e2e:
        print(f"\n(c) end to end predict_scene (block {args.e2e_block}, default memory "
              f"budget), fresh process per model, scene width {args.width}")
        print(f"{'model':<15}{'rows':>6}{'seconds':>9}{'px/s':>9}{'tile (min)':>11}"
              f"{'peak MiB':>10}{'(torch+model)':>14}{'e2e/model':>10}")
        for name in models:
            rows = args.rows_3d if BUDGET_GIB[name] > 1.5 else args.rows
            peaks = []
            for h in (rows // 2, rows):
                folder = os.path.join(args.workdir, f"scene_{h}x{args.width}")
                t = time.perf_counter()
                manifest = write_scene(folder, h, args.width)
                if time.perf_counter() - t > 1:
                    print(f"  (wrote {folder} in {time.perf_counter() - t:.0f} s)")
                r = run_child(name, manifest, args.e2e_block, forest_path)
                peaks.append(r["peak_mib"])
                share = r["px_s"] / model_rates[name] if name in model_rates else float("nan")
                print(f"{NAMES[name]:<15}{h:>6}{r['seconds']:>9.1f}{r['px_s']:>9.0f}"
                      f"{TILE ** 2 / r['px_s'] / 60:>11.1f}{r['peak_mib']:>10.0f}"
                      f"{r['base_mib']:>14.0f}{share:>10.2f}")
            budget = BUDGET_GIB[name] * 1024
            checks.append((f"{NAMES[name]} peak memory {max(peaks):.0f} MiB <= {budget:.0f} "
                           f"MiB (half/full height {peaks[0]:.0f}/{peaks[1]:.0f})",
                           max(peaks) <= budget))
            if name in model_rates:
                checks.append((f"{NAMES[name]} end to end >= 0.8x model only ({share:.2f}: "
                               f"{r['px_s']:.0f} / {model_rates[name]:.0f} px/s, the best "
                               "model-only run)", share >= 0.8))
            if name == "tempcnn":
                minutes = TILE ** 2 / r["px_s"] / 60
                checks.append((f"TempCNN tile end to end under 20 min ({minutes:.1f})",
                               minutes < 20))
    if not args.skip_products:
        folder = os.path.join(args.workdir, f"l3a_{args.product_rows}x{args.width}")
        t = time.perf_counter()
        write_l3a_products(folder, args.product_rows, args.width)
        print(f"\n(d) reading + gap-filling a Theia L3A folder ({T} dates, 4 bands at 10 m, "
              f"6 at 20 m, FLG masks ~20 % cloud), {args.product_rows} x {args.width}, "
              f"32-row bands (written in {time.perf_counter() - t:.0f} s)")
        print(f"{'threads':<9}{'read px/s':>11}{'fill px/s':>11}{'both px/s':>11}"
              f"{'tile (min)':>11}")
        for threads in (1, 4):
            r = product_rates(folder, 32, threads)
            both = 1 / (1 / r["read_px_s"] + 1 / r["fill_px_s"])
            print(f"{threads:<9}{r['read_px_s']:>11.0f}{r['fill_px_s']:>11.0f}{both:>11.0f}"
                  f"{TILE ** 2 / both / 60:>11.1f}")
        for name in [m for m in models if m in model_rates]:
            share = model_rates[name] / (model_rates[name] + both)
            print(f"  {NAMES[name]}: model {model_rates[name]:.0f} px/s; reading + gap-filling "
                  f"take {100 * share:.0f} % of model + reading time")
            checks.append((f"reading + gap-filling under half of {NAMES[name]}'s inference "
                           f"time ({100 * share:.0f} %)", share < 0.5))
    print("load average after: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("\ntargets:")
    for text, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {text}")


if __name__ == "__main__":
    main()
