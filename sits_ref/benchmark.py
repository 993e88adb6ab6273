"""The paper's benchmark (Table 4): every model, N runs, one polygon split.

Data flow: dataset -> polygon split (seeded, shared by all models and runs) ->
labelled pixels / grid tiles -> each model trained ``runs`` times with seeds seed,
seed+1, ... -> metrics on the validation and test pixels, each once -> the best run
(validation macro-F1) maps the whole scene, and its scores are re-computed from that
map file, so the table reports the map the user gets.

Each finished run is written at once, atomically, to ``OUT/runs/MODEL_runK.json``
(plus the CNN checkpoint), so ``resume=True`` skips it after a crash or Ctrl-C.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from . import metrics
from .atomic import write_json
from .context import AutoContext, AutoContextClassifier, Neighbourhood, Superpixels
from .distributed import Group
from .fast import fast_model
from .forest import RandomForest
from .models import MODELS as CNNS, build_model, count_parameters
from .geotiff import read_window
from .predict import ForestClassifier, TorchClassifier, predict_scene
from .samples import (VAL_FRACTION, Normalizer, Pixels, SampleBuilder, Split, Tiles,
                      class_profiles, oversample, split_polygons)
from .checkpoint import load_checkpoint, save_checkpoint
from .train import TrainConfig, evaluate, train_model

FORESTS = {"rf_ctx": "iota2 ctx", "rf_base": "iota2 base"}
# Every model of the benchmark, name -> display name, in the column order of the
# paper's Table 4: the CNNs of sits_ref.models, then the forests.
MODELS = {**{name: cnn.display_name for name, cnn in CNNS.items()}, **FORESTS}


@dataclass
class Options:
    """Benchmark settings (the command-line options of run_benchmark.py)."""

    data: str
    out: str = "results"
    models: list = field(default_factory=lambda: list(MODELS))
    runs: int = 5             # the paper's 5 trainings per model
    epochs: int = 100         # at most: early stopping ends training (see train.py)
    patience: int = 5         # the paper's
    min_epochs: int = 10      # early stopping may not trigger before
    min_steps: int = 20       # optimizer steps per epoch at least (small data)
    average_steps: int = 20   # scored weights: average over about this many steps
    seed: int = 0
    device: str = "cpu"
    patch_batch: int = 8      # tiles per step (8 x 22 x 22 inputs): sparse labels give few
                              # tiles, small batches give more optimizer steps per pass
    pixel_batch: int = 32     # pixels per step for TempCNN (its original batch size)
    patch_size: int = 16      # grid squares; see the README ("Patches") for why not 32
    val_fraction: float = VAL_FRACTION
    n_trees: int = 100        # the paper's forest (section 2.1)
    ctx_out_of_fold: int = 0  # iota2 ctx training histograms: 0 as iota2, k: k folds
    block: int = 256          # whole-scene map blocks, pixels a side (memory, not results)
    resume: bool = False

    def fingerprint(self) -> dict:
        """Settings that change results: a resumed run must share them."""
        keys = ("data", "epochs", "patience", "min_epochs", "min_steps", "average_steps",
                "seed", "patch_batch", "pixel_batch", "patch_size", "val_fraction", "n_trees",
                "ctx_out_of_fold")
        return {k: getattr(self, k) for k in keys}


def evaluation(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """:func:`sits_ref.metrics.scores` of class indices ``y_pred`` against ``y_true``."""
    return metrics.scores(metrics.confusion_matrix(y_true, y_pred, n_classes))


class Experiment:
    """Samples shared by all models: split, pixels, tiles, normalisation.

    Every score comes from one prediction path, the one that makes the map: pixel
    models predict each labelled pixel, patch models predict grid tiles read with
    their real neighbourhood (:meth:`SampleBuilder.tiles`), and each labelled pixel
    is scored once.
    """

    def __init__(self, dataset, opts: Options, log=print):
        self.ds, self.opts, self.log = dataset, opts, log
        polygons = dataset.polygons("train")
        train_builder = SampleBuilder(dataset, polygons)
        codes = [p.code for p in polygons]
        train, val = split_polygons(codes, train_builder.bounds, opts.val_fraction, opts.seed)
        self._warn_shared(codes, train)
        self.builders = {"train": train_builder, "val": train_builder}
        self.sets = {"train": train, "val": val}
        self.splits = ["val"]
        if dataset.has_polygons("test"):
            test = dataset.polygons("test")
            self.builders["test"] = SampleBuilder(dataset, test)
            self.sets["test"] = Split(np.arange(len(test)))
            self.splits.append("test")
        else:
            log("no test polygons in the manifest: reporting validation only")
        self._pixels, self._tiles = {}, {}
        if len(self.pixels("train").y) == 0:
            raise ValueError(f"{dataset.polygon_files['train']}: no valid labelled pixel "
                             "in the training polygons (all outside the grid or nodata)")
        self.norm = Normalizer.fit(self.pixels("train").x)
        self.superpixels = Superpixels(dataset, seed=opts.seed)
        self._hood = None
        n_val = len(val.members) - len(val.cuts)
        log(f"split: {len(train.members) - len(train.cuts)} train / {n_val} validation "
            f"polygons{f' + {len(train.cuts)} shared' if train.cuts else ''}; "
            + ", ".join(f"{s} {len(self.pixels(s).y)} px" for s in ["train"] + self.splits))

    def _warn_shared(self, codes, train) -> None:
        """One warning naming the classes whose single polygon is cut in two."""
        if not train.cuts:
            return
        names = dict(zip(self.ds.class_codes, self.ds.class_names))
        shared = ", ".join(f"{codes[i]} {names[codes[i]]!r}" for i in sorted(train.cuts))
        counts = ", ".join(f"{c}: {codes.count(c)}" for c in sorted(set(codes)))
        warnings.warn(f"{self.ds.polygon_files['train']}: class(es) {shared} have a single "
                      f"training polygon (polygons per class: {counts}); each is cut in two, "
                      f"{1 - self.opts.val_fraction:.0%} / {self.opts.val_fraction:.0%} of its "
                      "extent for training / validation, so their validation pixels are not "
                      "independent of the training pixels", stacklevel=2)

    def pixels(self, split) -> Pixels:
        if split not in self._pixels:
            self._pixels[split] = self.builders[split].pixels(self.sets[split])
        return self._pixels[split]

    def tiles(self, split, halo: int) -> Tiles:
        if (split, halo) not in self._tiles:
            self._tiles[split, halo] = self.builders[split].tiles(
                self.sets[split], self.opts.patch_size, halo)
        return self._tiles[split, halo]

    def cnn_data(self, model, split: str):
        """Normalised tensors X (N, F, T, h, w), Y (N, h, w) of ``split`` for ``model``:
        labelled pixels (h = w = 1) for a pixel model (halo 0), tiles otherwise."""
        if model.halo == 0:
            px = self.pixels(split)
            x, y = self.norm(px.x)[..., None, None], px.y[:, None, None]
        else:
            tiles = self.tiles(split, model.halo)
            x, y = self.norm(tiles.x), tiles.y
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)

    def training_data(self, model, seed: int):
        """(X, Y, rows) of the training set, classes balanced by pixel count
        (:func:`sits_ref.samples.oversample`)."""
        x, y = self.cnn_data(model, "train")
        rows, labels = oversample(y.numpy(), seed)
        return x, torch.from_numpy(labels), torch.from_numpy(rows)

    def cnn_predictions(self, model, split: str):
        """(y_true, y_pred) over the labelled pixels of ``split``, each once."""
        fast = fast_model(model.to(self.opts.device).eval())
        _, y_true, y_pred = evaluate(fast, *self.cnn_data(model, split), device=self.opts.device)
        return y_true, y_pred

    def forest_features(self, split: str) -> np.ndarray:
        """(N, F * T) pixel features of ``split``, feature-major."""
        px = self.pixels(split)
        return px.x.reshape(len(px.x), px.x.shape[1] * px.x.shape[2])

    def profiles(self) -> dict:
        """Per-class temporal profiles (:func:`sits_ref.samples.class_profiles`) of the
        labelled pixels of the training polygons (training and validation sides), raw
        and normalised as the CNNs see them: the data of the paper's Figures 7 and 8."""
        parts = [self.pixels(split) for split in ("train", "val")]
        x, y = np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts])
        mean, std, count = class_profiles(x, y, len(self.ds.classes))
        norm_mean, norm_std, _ = class_profiles(self.norm(x), y, len(self.ds.classes))
        return {"features": self.ds.feature_names, "dates": self.ds.dates,
                "count": count.tolist(), "mean": mean.tolist(), "std": std.tolist(),
                "normalised_mean": norm_mean.tolist(), "normalised_std": norm_std.tolist()}

    def neighbourhood(self) -> Neighbourhood:
        """The superpixels holding training pixels, for the auto-context forest."""
        if self._hood is None:
            self._hood = Neighbourhood(self.superpixels, self.pixels("train").index)
        return self._hood


def map_values(path: str, index: np.ndarray, width: int, band_rows: int = 256) -> np.ndarray:
    """Values of a single-band raster at flat pixel indices ``row * width + col``,
    read in row bands that hold such pixels (never the whole map at once)."""
    rows, cols = np.divmod(np.asarray(index, np.int64), width)
    out = np.zeros(len(rows), np.int64)
    for r0 in np.unique(rows // band_rows) * band_rows:
        sel = np.flatnonzero((rows >= r0) & (rows < r0 + band_rows))
        r1 = rows[sel].max() + 1
        band = read_window(path, (int(r0), 0, int(r1 - r0), width))[0]
        out[sel] = band[rows[sel] - r0, cols[sel]]
    return out


def train_cnn(exp: Experiment, name: str, seed: int, log=print, group=None):
    """One training run of CNN ``name`` (registry name) with ``seed``, on the oversampled
    training set, early-stopped on the validation set: (trained model, history).
    ``group``: the processes sharing the training (:mod:`sits_ref.distributed`)."""
    opts, ds = exp.opts, exp.ds
    torch.manual_seed(seed)                                    # initial weights
    model = build_model(name, len(ds.feature_names), len(ds.dates), len(ds.classes))
    config = TrainConfig(epochs=opts.epochs, patience=opts.patience,
                         min_epochs=min(opts.min_epochs, opts.epochs), min_steps=opts.min_steps,
                         average_steps=opts.average_steps,
                         batch_size=opts.pixel_batch if model.halo == 0 else opts.patch_batch,
                         seed=seed, device=opts.device)
    history = train_model(model, exp.training_data(model, seed), exp.cnn_data(model, "val"),
                          config, log=log, inference=fast_model, group=group)
    return model, history


def fit_forest(exp: Experiment, name: str, seed: int):
    """rf_base: a RandomForest on pixel features; rf_ctx: the auto-context forests
    (an :class:`AutoContextClassifier`)."""
    y = exp.pixels("train").y
    if name == "rf_base":
        return RandomForest(n_trees=exp.opts.n_trees, random_state=seed).fit(
            exp.forest_features("train"), y)
    model = AutoContext(len(exp.ds.classes), seed=seed, n_trees=exp.opts.n_trees,
                        out_of_fold=exp.opts.ctx_out_of_fold)
    return AutoContextClassifier(model.fit(exp.neighbourhood(), y), exp.superpixels)


def iteration_scores(exp: Experiment, per_iteration: dict) -> list[dict]:
    """Macro-F1 of each auto-context iteration: [{iteration, val_macro_f1,
    test_macro_f1}], from ``per_iteration`` = {split: [predicted class indices of the
    split's labelled pixels, one array per iteration]}."""
    n_classes = len(exp.ds.classes)
    scores = []
    for i in range(len(per_iteration["val"])):
        row = {"iteration": i}
        for split, preds in per_iteration.items():
            y_true = exp.pixels(split).y
            row[f"{split}_macro_f1"] = evaluation(y_true, preds[i], n_classes)["macro_f1"]
        scores.append(row)
    return scores


def best_run_classifier(exp: Experiment, name: str, best: dict, checkpoint: str):
    """The classifier of the best run, for the scene map: a forest is fitted again with
    the run's seed (the same forest), a CNN is read from its ``checkpoint``."""
    if name == "rf_base":
        return ForestClassifier(fit_forest(exp, name, best["seed"]), len(exp.ds.classes))
    if name == "rf_ctx":
        return fit_forest(exp, name, best["seed"])
    model, meta = load_checkpoint(checkpoint, feature_names=exp.ds.feature_names,
                                  dates=exp.ds.dates)
    return TorchClassifier(model, meta["norm_mean"], meta["norm_std"], exp.opts.device)


def score_map(path: str, pixels: Pixels, class_codes, width: int) -> dict:
    """Scores of a class-map GeoTIFF (class codes) on labelled ``pixels`` (class
    indices, flat indices into a grid ``width`` wide), each pixel once."""
    codes = map_values(path, pixels.index, width)
    if not np.isin(codes, class_codes).all():
        raise ValueError(f"{path}: labelled pixels hold codes {sorted(set(codes.tolist()))}"
                         f", expected class codes {list(class_codes)}")
    index = np.zeros(256, np.int64)           # class code -> class index
    index[class_codes] = np.arange(len(class_codes))
    return evaluation(pixels.y, index[codes], len(class_codes))


class Benchmark:
    """Runs the models of ``opts`` and collects their results.

    Under torchrun (``group`` of several processes) every process trains each CNN run
    together (:func:`sits_ref.train.train_model`); the main process alone logs, fits
    the forests, maps the scene and writes files, and :meth:`run_all` returns {} on
    the others.
    """

    def __init__(self, dataset, opts: Options, log=print, group=None):
        self.group = group or Group()
        self.ds, self.opts = dataset, opts
        self.log = log if self.group.main else (lambda line: None)
        self.run_dir = os.path.join(opts.out, "runs")
        self._check_resume()
        self.exp = Experiment(dataset, opts, self.log)   # inputs checked before any write
        if self.group.main:
            os.makedirs(self.run_dir, exist_ok=True)
            os.makedirs(os.path.join(opts.out, "maps"), exist_ok=True)
            write_json(os.path.join(opts.out, "config.json"), opts.fingerprint())
            write_json(os.path.join(opts.out, "profiles.json"), self.exp.profiles())
        self.started = time.perf_counter()

    def _check_resume(self) -> None:
        path = os.path.join(self.opts.out, "config.json")
        if self.opts.resume and os.path.exists(path):
            with open(path) as f:
                previous = json.load(f)
            if previous != self.opts.fingerprint():
                raise ValueError(f"{path}: --resume with different settings "
                                 f"({previous} vs {self.opts.fingerprint()})")

    def _run_path(self, name: str, run: int, ext: str = "json") -> str:
        return os.path.join(self.run_dir, f"{name}_run{run}.{ext}")

    def run_all(self) -> dict:
        """Train and evaluate every model; returns {model: model summary}."""
        results = {}
        total = len(self.opts.models) * self.opts.runs
        for m, name in enumerate(self.opts.models):
            runs = []
            for run in range(self.opts.runs):
                done = m * self.opts.runs + run
                path = self._run_path(name, run)
                if self.opts.resume and os.path.exists(path):
                    with open(path) as f:
                        runs.append(json.load(f))
                    self.log(f"[{MODELS[name]} run {run + 1}/{self.opts.runs}] finished "
                             "earlier, skipped (--resume)")
                    continue
                elapsed = time.perf_counter() - self.started
                eta = elapsed / done * (total - done) if done else float("nan")
                self.log(f"[{MODELS[name]} run {run + 1}/{self.opts.runs}] seed "
                         f"{self.opts.seed + run}; elapsed {elapsed:.0f} s, ETA {eta:.0f} s")
                result = self.run_one(name, run)
                if self.group.main:
                    write_json(path, result)
                    runs.append(result)
            if self.group.main:
                results[name] = self.summarise(name, runs)
        return results

    def run_one(self, name: str, run: int) -> dict | None:
        """Result of one run (None on a process other than the main one)."""
        seed = self.opts.seed + run
        if name in FORESTS:
            return self._run_forest(name, run, seed) if self.group.main else None
        return self._run_cnn(name, run, seed)

    def _run_cnn(self, name, run, seed) -> dict | None:
        exp, ds = self.exp, self.ds
        prefix = f"  [{MODELS[name]} run {run + 1}/{self.opts.runs}] "
        start = time.perf_counter()
        model, history = train_cnn(exp, name, seed, log=lambda line: self.log(prefix + line),
                                   group=self.group)
        seconds = time.perf_counter() - start
        if not self.group.main:
            return None
        result = self._record(name, run, seed, seconds, count_parameters(model),
                              {s: exp.cnn_predictions(model, s) for s in exp.splits})
        result["epochs"] = len(history["epochs"])
        result["best_epoch"] = history["best_epoch"]
        result["history"] = [{k: e[k] for k in ("epoch", "train_loss", "val_loss", "val_f1")}
                             for e in history["epochs"]]
        save_checkpoint(self._run_path(name, run, "pt"), model, name, {},
                        exp.norm.mean, exp.norm.std, ds.class_codes, ds.class_names,
                        ds.feature_names, extra={"seed": seed}, dates=ds.dates,
                        pixel_size=abs(ds.georef.transform[1]),
                        class_colors=[c.color for c in ds.classes])
        return result

    def _run_forest(self, name, run, seed) -> dict:
        start = time.perf_counter()
        forest = fit_forest(self.exp, name, seed)
        seconds = time.perf_counter() - start
        prefix = f"  [{MODELS[name]} run {run + 1}/{self.opts.runs}] "
        self.log(f"{prefix}fitted {self.opts.n_trees} trees in {seconds:.1f} s")
        if name == "rf_base":
            return self._record(name, run, seed, seconds, None, {
                s: (self.exp.pixels(s).y, forest.predict(self.exp.forest_features(s)))
                for s in self.exp.splits})
        per_iteration = {s: forest.predict_pixels(self.exp.pixels(s).index)
                         for s in self.exp.splits}
        iterations = iteration_scores(self.exp, per_iteration)
        for it in iterations:
            self.log(f"{prefix}iteration {it['iteration']}: " + ", ".join(
                f"{k.replace('_', ' ')} {v:.3f}" for k, v in it.items() if k != "iteration"))
        result = self._record(name, run, seed, seconds, None, {
            s: (self.exp.pixels(s).y, per_iteration[s][-1]) for s in self.exp.splits})
        result["iterations"] = iterations
        return result

    def _record(self, name, run, seed, seconds, n_params, preds) -> dict:
        out = {"model": name, "run": run, "seed": seed, "train_seconds": seconds,
               "n_parameters": n_params}
        for split, (y_true, y_pred) in preds.items():
            out[split] = evaluation(y_true, y_pred, len(self.ds.classes))
        self.log(f"  [{MODELS[name]} run {run + 1}/{self.opts.runs}] "
                 + ", ".join(f"{s} macro-F1 {out[s]['macro_f1']:.3f}" for s in preds)
                 + f" ({seconds:.1f} s)")
        return out

    def summarise(self, name: str, runs: list) -> dict:
        """Best run (validation macro-F1), its scene map, and mean +- std over runs.

        The best run's validation and test scores are then re-computed from the map
        file itself (:func:`score_map`), so the table's per-class F1 are the scores of
        the map the user receives.
        """
        best = max(runs, key=lambda r: r["val"]["macro_f1"])
        summary = {"display_name": MODELS[name], "n_parameters": best["n_parameters"],
                   "best_run": best["run"], "runs": runs,
                   "train_seconds_mean": float(np.mean([r["train_seconds"] for r in runs]))}
        summary.update(self._map(name, best))
        for split in self.exp.splits:
            rescored = score_map(os.path.join(self.opts.out, summary["map"]),
                                 self.exp.pixels(split), self.ds.class_codes, self.ds.width)
            if rescored["confusion_matrix"] != best[split]["confusion_matrix"]:
                self.log(f"  [{MODELS[name]}] {split}: map scores macro-F1 "
                         f"{rescored['macro_f1']:.4f}, tiles {best[split]['macro_f1']:.4f} "
                         "(float rounding between block shapes); the map's are kept")
            best[split] = rescored
        best["scored_from"] = "map"
        for split in self.exp.splits:
            scores = [r[split]["macro_f1"] for r in runs]
            summary[f"{split}_macro_f1_mean"] = float(np.mean(scores))
            summary[f"{split}_macro_f1_std"] = float(np.std(scores))
        return summary

    def _map(self, name: str, best: dict) -> dict:
        maps = os.path.join(self.opts.out, "maps")
        out_map = os.path.join(maps, f"{name}_map.tif")
        out_conf = os.path.join(maps, f"{name}_confidence.tif")
        record = os.path.join(maps, f"{name}.json")
        if self.opts.resume and os.path.exists(record) and os.path.exists(out_map):
            with open(record) as f:
                previous = json.load(f)
            if previous["best_run"] == best["run"]:
                return previous
        self.log(f"[{MODELS[name]}] whole-scene map with run {best['run'] + 1}")
        classifier = best_run_classifier(self.exp, name, best,
                                         self._run_path(name, best["run"], "pt"))
        seconds = predict_scene(classifier, self.ds, out_map, out_conf,
                                block=self.opts.block,
                                log=lambda line: self.log(f"  [{MODELS[name]}]" + line))
        info = {"best_run": best["run"], "map": os.path.relpath(out_map, self.opts.out),
                "confidence": os.path.relpath(out_conf, self.opts.out),
                "inference_seconds": seconds}
        write_json(record, info)
        return info

