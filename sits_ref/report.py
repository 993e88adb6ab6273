"""Benchmark outputs: Table 4 (text, Markdown, CSV) and the report with pictures.

Per-class F1 and the "Mean" rows are those of each model's best run (highest
validation macro-F1), as in the paper; the reliability rows give macro-F1 mean +- std
over all runs.

``OUT/report.md`` gathers Table 4, the quicklooks (:mod:`sits_ref.quicklook`), the
paper's Figures 7-9, confusion matrices and training curves (:mod:`sits_ref.figures`,
drawn only when matplotlib is installed), and the run settings, all linked relatively
so it renders in any Markdown viewer. It is built from the output folder alone
(results.json, profiles.json, maps/) plus the input the run read, so

    python -m sits_ref.report OUT [--window ROW COL HEIGHT WIDTH] [--rgb-date DATE]

rebuilds it, e.g. after ``--resume`` or after installing the ``plots`` extra.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

import numpy as np

from .atomic import write_text
from .dataset import DatasetError, load_dataset
from .geotiff import read_window
from .quicklook import class_map_quicklook, confidence_quicklook, palette, rgb_bands, \
    rgb_quicklook, stretch
from .samples import pixel_window
from .vectors import polygon_bounds

FIG9_SIZE = 256          # pixels a side of the Figure 9 window (2.56 km at 10 m)
PLOTS_HINT = 'pip install -e ".[plots]" in the repository, or pip install matplotlib'
GREY = (128, 128, 128)


def table_rows(results: dict, class_names, splits) -> list[list[str]]:
    """Rows of the table; the first row is the header, section rows have one cell."""
    names = list(results)
    rows = [["Class name"] + [results[m]["display_name"] for m in names]]
    label = {"val": "validation", "test": "test"}
    for split in splits:
        rows.append([f"F1 scores on {label[split]} set"])
        best = {m: results[m]["runs"][results[m]["best_run"]][split] for m in names}
        for k, cname in enumerate(class_names):
            rows.append([cname] + [f"{best[m]['f1'][k]:.3f}" for m in names])
        rows.append(["Mean"] + [f"{best[m]['macro_f1']:.3f}" for m in names])
    n_runs = len(results[names[0]]["runs"])
    rows.append(["Efficiency and reliability"])
    rows.append(["# parameters"] + [_thousands(results[m]["n_parameters"]) for m in names])
    rows.append(["Training (s per run)"] + [f"{results[m]['train_seconds_mean']:.1f}"
                                             for m in names])
    rows.append(["Inference, whole scene (s)"] + [f"{results[m]['inference_seconds']:.1f}"
                                                   for m in names])
    rows.append(["Epochs run (min–max)"] + [_span(results[m]["runs"], "epochs") for m in names])
    rows.append(["Best epoch (min–max)"] + [_span(results[m]["runs"], "best_epoch")
                                            for m in names])
    for split in splits:
        rows.append([f"{label[split].capitalize()} F1 ± std on {n_runs} trainings"]
                    + [f"{results[m][f'{split}_macro_f1_mean']:.3f}±"
                       f"{results[m][f'{split}_macro_f1_std']:.3f}" for m in names])
    return rows


def _span(runs, key) -> str:
    """'lo–hi' of an integer field over runs ('NA' for forests, which have none)."""
    values = [r[key] for r in runs if key in r]
    if not values:
        return "NA"
    return f"{min(values)}–{max(values)}" if min(values) != max(values) else f"{values[0]}"


def _thousands(n) -> str:
    return "NA" if n is None else f"{n / 1000:.0f} k"


def to_text(rows) -> str:
    """Fixed-width table for the terminal."""
    width = max(len(r) for r in rows)
    cols = [max(len(r[i]) for r in rows if len(r) == width) for i in range(width)]
    lines = []
    for r in rows:
        if len(r) == 1:
            lines.append("")
            lines.append(r[0])
        else:
            lines.append("  ".join(c.ljust(cols[0]) if i == 0 else c.rjust(cols[i])
                                   for i, c in enumerate(r)))
    return "\n".join(lines)


def to_markdown(rows) -> str:
    """GitHub Markdown table; section rows become bold rows."""
    width = len(rows[0])
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" + "---:|" * (width - 1)]
    for r in rows[1:]:
        cells = [f"**{r[0]}**"] + [""] * (width - 1) if len(r) == 1 else r
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def confusion_csv(cm, class_names) -> str:
    """Confusion matrix as CSV: rows are reference classes, columns predictions."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["reference \\ predicted"] + list(class_names))
    for name, row in zip(class_names, cm):
        writer.writerow([name] + list(row))
    return buf.getvalue()


def write_confusions(out_dir: str, results: dict, class_names, splits) -> None:
    """OUT/confusion/MODEL_SPLIT.csv for each model's best run."""
    folder = os.path.join(out_dir, "confusion")
    os.makedirs(folder, exist_ok=True)
    for name, res in results.items():
        best = res["runs"][res["best_run"]]
        for split in splits:
            write_text(os.path.join(folder, f"{name}_{split}.csv"),
                       confusion_csv(best[split]["confusion_matrix"], class_names))


def busiest_window(windows, height: int, width: int, size: int = FIG9_SIZE) -> tuple:
    """The ``size`` x ``size`` window (clipped to the grid) holding the most labelled
    area, for Figure 9: each polygon's pixel window ``(row0, col0, h, w)`` adds its
    area h * w to the cell (size / 4 pixels a side) holding its centre, and the window
    covering the heaviest 4 x 4 cells wins (the first one on a tie)."""
    cell = max(1, size // 4)
    n = max(1, min(size, height, width) // cell)        # cells per window side
    grid = np.zeros((-(-height // cell), -(-width // cell)))
    for r0, c0, h, w in windows:
        grid[(r0 + h // 2) // cell, (c0 + w // 2) // cell] += h * w
    sums = np.lib.stride_tricks.sliding_window_view(
        np.pad(grid, ((0, n - 1), (0, n - 1))), (n, n)).sum(axis=(-2, -1))
    i, j = np.unravel_index(np.argmax(sums), sums.shape)
    h, w = min(size, height), min(size, width)
    return min(i * cell, height - h), min(j * cell, width - w), h, w


def _classes(results: dict) -> tuple[list, dict]:
    """Class names and {code: (r, g, b)} of a results.json (grey without colours)."""
    entries = results["dataset"]["classes"]
    return ([c["name"] for c in entries],
            {c["code"]: tuple(c.get("color", GREY)) for c in entries})


def _load_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: not found ({what})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def _input_dataset(results: dict, log):
    """The dataset the run read, or None (with one line why) when it is gone."""
    try:
        return load_dataset(results["dataset"]["manifest"])
    except (DatasetError, OSError) as exc:
        log(f"report: input not readable, no RGB quicklook ({exc})")
        return None


def date_index(dataset, rgb_date) -> int:
    if rgb_date is None:
        return len(dataset.dates) // 2
    if rgb_date not in dataset.dates:
        raise ValueError(f"--rgb-date {rgb_date}: not a date of the series "
                         f"({', '.join(dataset.dates)})")
    return dataset.dates.index(rgb_date)


def write_quicklooks(out_dir: str, results: dict, dataset, date: int | None) -> dict:
    """OUT/quicklooks/*.png: each model's classes and confidence, and the input in true
    colour at date index ``date``; returns {key: path relative to OUT}."""
    folder = os.path.join(out_dir, "quicklooks")
    os.makedirs(folder, exist_ok=True)
    _, colors = _classes(results)
    made = {}
    for name, res in results["models"].items():
        made[f"{name}_map"] = f"quicklooks/{name}_map.png"
        class_map_quicklook(os.path.join(out_dir, res["map"]),
                            os.path.join(out_dir, made[f"{name}_map"]), colors)
        made[f"{name}_confidence"] = f"quicklooks/{name}_confidence.png"
        confidence_quicklook(os.path.join(out_dir, res["confidence"]),
                             os.path.join(out_dir, made[f"{name}_confidence"]))
    if dataset is not None and date is not None:
        made["rgb"] = f"quicklooks/input_rgb_{dataset.dates[date]}.png"
        rgb_quicklook(dataset, date, os.path.join(out_dir, made["rgb"]))
    return made


def figure_window(dataset, window, height: int, width: int) -> tuple:
    """Figure 9's window: ``window`` when given (checked), else :func:`busiest_window`
    around the test polygons (training polygons without a test file, scene centre
    without a readable input)."""
    if window is not None:
        r0, c0, h, w = window
        if r0 < 0 or c0 < 0 or h < 1 or w < 1 or r0 + h > height or c0 + w > width:
            raise ValueError(f"--window {window}: not inside the {height} x {width} grid")
        return tuple(window)
    if dataset is None or not dataset.polygon_files:
        h, w = min(FIG9_SIZE, height), min(FIG9_SIZE, width)
        return (height - h) // 2, (width - w) // 2, h, w
    which = "test" if dataset.has_polygons("test") else "train"
    windows = [pixel_window(polygon_bounds(p.geometry), dataset.georef.transform, height,
                            width) for p in dataset.polygons(which)]
    return busiest_window([w for w in windows if w is not None], height, width)


def _coloured(codes: np.ndarray, colors: dict) -> np.ndarray:
    """(h, w, 3) uint8 picture of class codes; nodata (0) white."""
    image = palette(colors)[codes]
    image[codes == 0] = 255
    return image


def write_figures(out_dir: str, results: dict, dataset, date, window) -> dict:
    """OUT/figures/*.png: Figures 7, 8 and 9, confusion matrices and training curves;
    returns {key: path relative to OUT}. Raises ModuleNotFoundError without matplotlib."""
    from . import figures                     # the optional extra, imported on demand
    folder = os.path.join(out_dir, "figures")
    os.makedirs(folder, exist_ok=True)
    names, colors = _classes(results)
    color_list = [colors[c["code"]] for c in results["dataset"]["classes"]]
    made = {}
    profiles_path = os.path.join(out_dir, "profiles.json")
    if os.path.exists(profiles_path):
        profiles = _load_json(profiles_path, "class profiles")
        made["fig7"] = "figures/fig7_profiles.png"
        figures.profiles_figure(os.path.join(out_dir, made["fig7"]), profiles, names,
                                color_list)
        made["fig8"] = "figures/fig8_normalised_profiles.png"
        figures.normalised_profiles_figure(os.path.join(out_dir, made["fig8"]), profiles,
                                           names)
    r0, c0, h, w = window
    panels = []
    if dataset is not None and date is not None:
        rgb, valid = rgb_bands(dataset, date, window)
        panels.append((f"input {dataset.dates[date]} (B4/B3/B2)", stretch(rgb, valid)))
    for name, res in results["models"].items():
        codes = read_window(os.path.join(out_dir, res["map"]), window)[0]
        panels.append((res["display_name"], _coloured(codes, colors)))
    made["fig9"] = "figures/fig9_maps.png"
    figures.maps_figure(os.path.join(out_dir, made["fig9"]), panels, names, color_list)
    label = {"val": "validation", "test": "test"}
    for name, res in results["models"].items():
        best = res["runs"][res["best_run"]]
        made[f"{name}_confusion"] = f"figures/{name}_confusion.png"
        figures.confusion_figure(
            os.path.join(out_dir, made[f"{name}_confusion"]),
            {label[s]: best[s]["confusion_matrix"] for s in results["splits"]}, names,
            f"{res['display_name']} (run {res['best_run'] + 1})")
        if all("history" in run for run in res["runs"]):
            made[f"{name}_curves"] = f"figures/{name}_training.png"
            figures.training_curves_figure(os.path.join(out_dir, made[f"{name}_curves"]),
                                           res["runs"], res["display_name"])
    return made


def report_markdown(results: dict, quicklooks: dict, figures: dict | None,
                    window: tuple) -> str:
    """The text of report.md (links relative to the output folder)."""
    ds, models = results["dataset"], results["models"]
    names, _ = _classes(results)
    runs = len(next(iter(models.values()))["runs"])
    out = [f"# Benchmark report: {ds['name']}", "",
           f"{len(models)} models x {runs} runs on {len(ds['dates'])} dates x "
           f"{len(ds['features'])} features, {ds['height']} x {ds['width']} px "
           f"(EPSG:{ds['epsg']}), {len(names)} classes. Maps in full resolution: "
           "`maps/*.tif` (GeoTIFF, open in QGIS).", ""]
    if figures is None:
        out += [f"Figures were skipped: matplotlib is not installed ({PLOTS_HINT}); then "
                "`python -m sits_ref.report OUT` draws them.", ""]
    out += ["## Table 4", "", to_markdown(table_rows(models, names, results["splits"]))]
    out += ["## Maps", ""]
    if figures:
        r0, c0, h, w = window
        out += ["### Figure 9: the same window classified by each model", "",
                f"![Figure 9]({figures['fig9']})", "",
                f"Rows {r0}-{r0 + h - 1}, columns {c0}-{c0 + w - 1} of the scene.", ""]
    out += ["### Quicklooks", "", "| model | classes | confidence (black 0, white 1) |",
            "|---|---|---|"]
    for name, res in models.items():
        out.append(f"| {res['display_name']} | ![{name} classes]({quicklooks[name + '_map']})"
                   f" | ![{name} confidence]({quicklooks[name + '_confidence']}) |")
    if "rgb" in quicklooks:
        out += ["", "Input in true colour (B4/B3/B2, 2-98 % stretch):", "",
                f"![input RGB]({quicklooks['rgb']})"]
    out.append("")
    if figures:
        if "fig7" in figures:
            out += ["## Temporal profiles (Figures 7 and 8)", "",
                    "Labelled pixels of the training polygons: mean +- 1 std per class "
                    "(Figure 7), and the mean of each normalised feature per class "
                    "(Figure 8).", "", f"![Figure 7]({figures['fig7']})", "",
                    f"![Figure 8]({figures['fig8']})", ""]
        out += ["## Confusion matrices (best run; colour: share of the reference row)", ""]
        out += [f"![{name} confusion]({figures[name + '_confusion']})\n" for name in models]
        out += ["## Training curves", ""]
        out += [f"![{name} training]({figures[name + '_curves']})\n" for name in models
                if name + "_curves" in figures]
    out += ["## Run settings", "", "| setting | value |", "|---|---|"]
    out += [f"| {key} | {value} |" for key, value in results["options"].items()]
    out += [f"| wall time (s) | {results['wall_seconds']:.0f} |"]
    out += [f"| {key} | {value} |" for key, value in results.get("versions", {}).items()]
    return "\n".join(out) + "\n"


def build_report(out_dir: str, window=None, rgb_date=None, log=print) -> str:
    """Write OUT/report.md with its quicklooks and (matplotlib installed) figures from
    an output folder of run_benchmark.py; returns the report's path."""
    results = _load_json(os.path.join(out_dir, "results.json"),
                         "run run_benchmark.py with this --out first")
    dataset = _input_dataset(results, log)
    height, width = results["dataset"]["height"], results["dataset"]["width"]
    date = None
    if dataset is not None and all(b in dataset.bands for b in ("B4", "B3", "B2")):
        date = date_index(dataset, rgb_date)
    window = figure_window(dataset, window, height, width)
    quicklooks = write_quicklooks(out_dir, results, dataset, date)
    try:
        figures = write_figures(out_dir, results, dataset, date, window)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("matplotlib"):
            raise
        figures = None
        log(f"figures skipped: matplotlib is not installed ({PLOTS_HINT})")
    path = os.path.join(out_dir, "report.md")
    write_text(path, report_markdown(results, quicklooks, figures, window))
    log(f"report: {path} ({len(quicklooks)} quicklooks, "
        f"{len(figures) if figures else 0} figures)")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sits_ref.report",
                                description="Rebuild OUT/report.md and its pictures.")
    p.add_argument("out", help="output folder of run_benchmark.py")
    p.add_argument("--window", type=int, nargs=4, metavar=("ROW", "COL", "HEIGHT", "WIDTH"),
                   help="Figure 9 window in pixels (default: around the test polygons)")
    p.add_argument("--rgb-date", help="date of the RGB quicklook, YYYY-MM-DD "
                                      "(default: the middle date)")
    args = p.parse_args(argv)
    try:
        build_report(args.out, args.window, args.rgb_date)
    except (ValueError, OSError) as exc:
        print(f"python -m sits_ref.report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
