"""Benchmark outputs: a table shaped like the paper's Table 4, Markdown, CSV, JSON.

Per-class F1 and the "Mean" rows are those of each model's best run (highest
validation macro-F1), as in the paper; the reliability rows give macro-F1 mean +- std
over all runs.
"""
from __future__ import annotations

import csv
import io
import os

from .atomic import write_text


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
