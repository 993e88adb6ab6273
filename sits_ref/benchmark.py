"""The paper's benchmark (Table 4): every model, N runs, one polygon split.

Data flow: dataset -> polygon split (seeded, shared by all models and runs) ->
pixel / patch samples -> each model trained ``runs`` times with seeds seed, seed+1, ...
-> metrics on validation and test pixels -> the best run (validation macro-F1) maps
the whole scene.

Each finished run is written at once, atomically, to ``OUT/runs/MODEL_runK.json``
(plus the CNN checkpoint), so ``resume=True`` skips it after a crash or Ctrl-C.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import metrics
from .context import ObjectContext
from .forest import RandomForest
from .models import build_model, count_parameters
from .predict import ForestClassifier, TorchClassifier, predict_scene
from .samples import Normalizer, SampleBuilder, oversample, split_polygons
from .train import TrainConfig, load_checkpoint, save_checkpoint, train_model

# Column order and names of the paper's Table 4.
MODELS = {"tempcnn": "TempCNN", "cnn3d": "3D-CNN", "cnn2d": "2D-CNN",
          "spatiotempcnn": "SpatioTempCNN", "rf_ctx": "iota2 ctx", "rf_base": "iota2 base"}
PIXEL_CNNS = ("tempcnn",)
FORESTS = ("rf_base", "rf_ctx")


@dataclass
class Options:
    """Benchmark settings (the command-line options of run_benchmark.py)."""

    data: str
    out: str = "results"
    models: list = field(default_factory=lambda: list(MODELS))
    runs: int = 5
    epochs: int = 20
    patience: int = 5
    seed: int = 0
    device: str = "cpu"
    patch_batch: int = 8      # 32 x 32 patches per step (~17 steps / epoch on the sample)
    pixel_batch: int = 128    # pixels per step for TempCNN
    patch_size: int = 32
    val_fraction: float = 0.3
    n_trees: int = 100
    block: int = 256
    resume: bool = False

    def fingerprint(self) -> dict:
        """Settings that change results: a resumed run must share them."""
        keys = ("data", "epochs", "patience", "seed", "patch_batch", "pixel_batch", "patch_size",
                "val_fraction", "n_trees")
        return {k: getattr(self, k) for k in keys}


def write_json(path: str, obj) -> None:
    """Write JSON atomically (temporary name, then rename)."""
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def evaluation(y_true: np.ndarray, y_pred: np.ndarray, class_names) -> dict:
    """Confusion matrix, OA, kappa, per-class precision / recall / F1, macro-F1."""
    cm = metrics.confusion_matrix(y_true, y_pred, len(class_names))
    precision, recall, f1 = metrics.precision_recall_f1(cm)
    return {"n_pixels": int(cm.sum()), "confusion_matrix": cm.tolist(),
            "overall_accuracy": float(metrics.overall_accuracy(cm)),
            "kappa": float(metrics.cohen_kappa(cm)), "macro_f1": float(metrics.macro_f1(cm)),
            "precision": [float(v) for v in precision], "recall": [float(v) for v in recall],
            "f1": [float(v) for v in f1]}


class Experiment:
    """Samples shared by all models: split, pixels, patches, normalisation."""

    def __init__(self, dataset, opts: Options, log=print):
        self.ds, self.opts, self.log = dataset, opts, log
        polygons = dataset.polygons("train")
        self.train_ids, self.val_ids = split_polygons([p.code for p in polygons],
                                                      opts.val_fraction, opts.seed)
        train_builder = SampleBuilder(dataset, polygons)
        self.builders = {"train": train_builder, "val": train_builder}
        self.members = {"train": self.train_ids, "val": self.val_ids}
        self.splits = ["val"]
        if dataset.has_polygons("test"):
            test = dataset.polygons("test")
            self.builders["test"] = SampleBuilder(dataset, test)
            self.members["test"] = np.arange(len(test))
            self.splits.append("test")
        else:
            log("no test polygons in the manifest: reporting validation only")
        self._pixels, self._patches = {}, {}
        self.norm = Normalizer.fit(self.pixels("train").x)
        self.context = ObjectContext(dataset, seed=opts.seed) \
            if "rf_ctx" in opts.models else None
        log(f"split: {len(self.train_ids)} train / {len(self.val_ids)} validation polygons; "
            + ", ".join(f"{s} {len(self.pixels(s).y)} px" for s in ["train"] + self.splits))

    def pixels(self, split):
        if split not in self._pixels:
            self._pixels[split] = self.builders[split].pixels(self.members[split])
        return self._pixels[split]

    def patches(self, split):
        if split not in self._patches:
            self._patches[split] = self.builders[split].patches(self.members[split],
                                                               self.opts.patch_size)
        return self._patches[split]

    def cnn_data(self, name: str, split: str, seed: int | None = None):
        """Normalised tensors (X (N, F, T, h, w), Y (N, h, w)); oversampled if seeded."""
        if name in PIXEL_CNNS:
            px = self.pixels(split)
            x, y, klass = self.norm(px.x)[..., None, None], px.y[:, None, None], px.y
        else:
            pt = self.patches(split)
            x, y, klass = self.norm(pt.x), pt.y, pt.klass
        if seed is not None:
            idx = oversample(klass, seed)
            x, y = x[idx], y[idx]
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)

    def cnn_predictions(self, model, name: str, split: str):
        """(y_true, y_pred) over the unique labelled pixels of ``split``."""
        x, y = self.cnn_data(name, split)
        model.eval()
        preds = []
        with torch.no_grad():
            for k in range(0, len(x), 256):
                batch = x[k:k + 256].to(self.opts.device)
                preds.append(model(batch).argmax(1).cpu())
        pred = torch.cat(preds).numpy()
        if name in PIXEL_CNNS:
            return y[:, 0, 0].numpy(), pred[:, 0, 0]
        return self._unique_pixels(split, y.numpy(), pred)

    def _unique_pixels(self, split, y, pred):
        """Patches overlap: keep each labelled scene pixel once."""
        wins = self.patches(split).windows
        n, h, w = y.shape
        rows = wins[:, 0, None, None] + np.arange(h)[None, :, None]
        cols = wins[:, 1, None, None] + np.arange(w)[None, None, :]
        flat = np.broadcast_to(rows * self.ds.width + cols, y.shape)
        mask = y >= 0
        _, first = np.unique(flat[mask], return_index=True)
        return y[mask][first], pred[mask][first]

    def forest_features(self, name: str, split: str) -> np.ndarray:
        px = self.pixels(split)
        x = px.x.reshape(len(px.x), -1)
        if name == "rf_ctx":
            x = np.concatenate([x, self.context.for_pixels(px.index)], axis=1)
        return x


class Benchmark:
    """Runs the models of ``opts`` and collects their results."""

    def __init__(self, dataset, opts: Options, log=print):
        self.ds, self.opts, self.log = dataset, opts, log
        self.run_dir = os.path.join(opts.out, "runs")
        os.makedirs(self.run_dir, exist_ok=True)
        os.makedirs(os.path.join(opts.out, "maps"), exist_ok=True)
        self._check_resume()
        self.exp = Experiment(dataset, opts, log)
        self.started = time.perf_counter()

    def _check_resume(self) -> None:
        path = os.path.join(self.opts.out, "config.json")
        if self.opts.resume and os.path.exists(path):
            with open(path) as f:
                previous = json.load(f)
            if previous != self.opts.fingerprint():
                raise ValueError(f"{path}: --resume with different settings "
                                 f"({previous} vs {self.opts.fingerprint()})")
        write_json(path, self.opts.fingerprint())

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
                write_json(path, result)
                runs.append(result)
            results[name] = self.summarise(name, runs)
        return results

    def run_one(self, name: str, run: int) -> dict:
        seed = self.opts.seed + run
        if name in FORESTS:
            return self._run_forest(name, run, seed)
        return self._run_cnn(name, run, seed)

    def _run_cnn(self, name, run, seed) -> dict:
        exp, ds = self.exp, self.ds
        torch.manual_seed(seed)
        model = build_model(name, len(ds.feature_names), len(ds.dates), len(ds.classes))
        config = TrainConfig(epochs=self.opts.epochs, patience=self.opts.patience,
                             batch_size=self.opts.pixel_batch if name in PIXEL_CNNS
                             else self.opts.patch_batch, seed=seed,
                             device=self.opts.device)
        prefix = f"  [{MODELS[name]} run {run + 1}/{self.opts.runs}] "
        start = time.perf_counter()
        history = train_model(model, exp.cnn_data(name, "train", seed),
                              exp.cnn_data(name, "val"), config,
                              log=lambda line: self.log(prefix + line))
        seconds = time.perf_counter() - start
        result = self._record(name, run, seed, seconds, count_parameters(model),
                              {s: exp.cnn_predictions(model, name, s) for s in exp.splits})
        result["epochs"] = len(history["epochs"])
        result["best_epoch"] = history["best_epoch"]
        save_checkpoint(self._run_path(name, run, "pt"), model, name, {},
                        exp.norm.mean, exp.norm.std, ds.class_codes, ds.class_names,
                        ds.feature_names, extra={"seed": seed, "n_dates": len(ds.dates)})
        return result

    def _forest(self, name, seed) -> RandomForest:
        exp = self.exp
        forest = RandomForest(n_trees=self.opts.n_trees, random_state=seed)
        return forest.fit(exp.forest_features(name, "train"), exp.pixels("train").y)

    def _run_forest(self, name, run, seed) -> dict:
        start = time.perf_counter()
        forest = self._forest(name, seed)
        seconds = time.perf_counter() - start
        preds = {s: (self.exp.pixels(s).y, forest.predict(self.exp.forest_features(name, s)))
                 for s in self.exp.splits}
        self.log(f"  [{MODELS[name]} run {run + 1}/{self.opts.runs}] fitted "
                 f"{self.opts.n_trees} trees in {seconds:.1f} s")
        return self._record(name, run, seed, seconds, None, preds)

    def _record(self, name, run, seed, seconds, n_params, preds) -> dict:
        out = {"model": name, "run": run, "seed": seed, "train_seconds": seconds,
               "n_parameters": n_params}
        for split, (y_true, y_pred) in preds.items():
            out[split] = evaluation(y_true, y_pred, self.ds.class_names)
        self.log(f"  [{MODELS[name]} run {run + 1}/{self.opts.runs}] "
                 + ", ".join(f"{s} macro-F1 {out[s]['macro_f1']:.3f}" for s in preds)
                 + f" ({seconds:.1f} s)")
        return out

    def summarise(self, name: str, runs: list) -> dict:
        """Best run (validation macro-F1), mean +- std over runs, and its scene map."""
        best = max(runs, key=lambda r: r["val"]["macro_f1"])
        summary = {"display_name": MODELS[name], "n_parameters": best["n_parameters"],
                   "best_run": best["run"], "runs": runs,
                   "train_seconds_mean": float(np.mean([r["train_seconds"] for r in runs]))}
        for split in self.exp.splits:
            scores = [r[split]["macro_f1"] for r in runs]
            summary[f"{split}_macro_f1_mean"] = float(np.mean(scores))
            summary[f"{split}_macro_f1_std"] = float(np.std(scores))
        summary.update(self._map(name, best))
        return summary

    def _classifier(self, name: str, best: dict):
        if name in FORESTS:
            return ForestClassifier(self._forest(name, best["seed"]),
                                    self.exp.context if name == "rf_ctx" else None)
        model, meta = load_checkpoint(self._run_path(name, best["run"], "pt"),
                                      feature_names=self.ds.feature_names,
                                      n_dates=len(self.ds.dates))
        return TorchClassifier(model, meta["norm_mean"], meta["norm_std"], self.opts.device)

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
        seconds = predict_scene(self._classifier(name, best), self.ds, out_map, out_conf,
                                block=self.opts.block,
                                log=lambda line: self.log(f"  [{MODELS[name]}]" + line))
        info = {"best_run": best["run"], "map": os.path.relpath(out_map, self.opts.out),
                "confidence": os.path.relpath(out_conf, self.opts.out),
                "inference_seconds": seconds}
        write_json(record, info)
        return info

