"""The paper's figures and the run's diagnostics, drawn with matplotlib (an optional
extra: ``pip install "sits_ref[plots]"``).

Only :mod:`sits_ref.report` imports this module, and only when matplotlib is
installed; the rest of the package never needs it. Figures use matplotlib's object API
(``Figure``, no pyplot), so nothing depends on a display or a global backend. Each is
saved as a PNG of a fixed size, its figure size in inches times ``DPI``, written
atomically. Class colours are (r, g, b) 0-255, as in the manifest.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .atomic import atomic_path

DPI = 100
FIG7_FEATURES = ("NDVI", "NDWI", "BI", "B12")   # the panels of the paper's Figure 7


def _save(fig: Figure, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _unit(color) -> tuple:
    return tuple(c / 255 for c in color)


def _class_legend(fig: Figure, class_names, colors, ncol: int = 4) -> None:
    handles = [Patch(facecolor=_unit(c), edgecolor="black", linewidth=0.5, label=n)
               for n, c in zip(class_names, colors)]
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)


def _dates(dates) -> np.ndarray:
    return np.array(dates, dtype="datetime64[D]")


def profiles_figure(path, profiles: dict, class_names, colors,
                    features=FIG7_FEATURES) -> None:
    """Figure 7: a panel per feature of ``features`` present in ``profiles`` (as
    written by the benchmark: features, dates, count, mean, std), a curve per class:
    the mean over its labelled pixels, shaded +- 1 standard deviation.
    Size: 4.5 in per panel x 4.5 in, i.e. (450 n) x 450 px."""
    present = [f for f in features if f in profiles["features"]]
    dates = _dates(profiles["dates"])
    mean, std = np.asarray(profiles["mean"]), np.asarray(profiles["std"])
    fig = Figure(figsize=(4.5 * len(present), 4.5), dpi=DPI)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, feature in zip(axes, present):
        f = profiles["features"].index(feature)
        for k, color in enumerate(colors):
            if profiles["count"][k]:
                ax.plot(dates, mean[k, f], color=_unit(color), linewidth=1.5)
                ax.fill_between(dates, mean[k, f] - std[k, f], mean[k, f] + std[k, f],
                                color=_unit(color), alpha=0.2, linewidth=0)
        ax.set_title(feature)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.subplots_adjust(bottom=0.35, wspace=0.3)
    _class_legend(fig, class_names, colors)
    _save(fig, path)


def normalised_profiles_figure(path, profiles: dict, class_names, ncol: int = 4) -> None:
    """Figure 8: a panel per class with labelled pixels, a curve per normalised feature
    (its mean over the class's pixels, in standard deviations of the training pixels).
    Size: 4 in per column x 3 in per row + 1 in for the legend."""
    classes = [k for k, n in enumerate(profiles["count"]) if n]
    nrow = -(-len(classes) // ncol)
    dates = _dates(profiles["dates"])
    mean = np.asarray(profiles["normalised_mean"])
    fig = Figure(figsize=(4 * ncol, 3 * nrow + 1), dpi=DPI)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharey=True).ravel()
    for ax, k in zip(axes, classes):
        for f, name in enumerate(profiles["features"]):
            ax.plot(dates, mean[k, f], linewidth=1.2, label=name,
                    marker="*" if name == "NDVI" else None)
        ax.set_title(f"{class_names[k]} ({profiles['count'][k]} px)", fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    for ax in axes[len(classes):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 13), fontsize=8,
               frameon=False)
    fig.subplots_adjust(bottom=1.2 / (3 * nrow + 1), hspace=0.6)
    _save(fig, path)


def maps_figure(path, panels, class_names, colors, ncol: int = 4) -> None:
    """Figure 9: the same window side by side, ``panels`` = [(title, (h, w, 3) uint8
    image)], e.g. the input in true colour then each model's classes in their colours,
    with a legend of class names and colours.
    Size: 3.5 in per column x 3.5 in per row + 1 in for the legend."""
    nrow = -(-len(panels) // ncol)
    cols = min(ncol, len(panels))
    fig = Figure(figsize=(3.5 * cols, 3.5 * nrow + 1), dpi=DPI)
    axes = fig.subplots(nrow, cols, squeeze=False).ravel()
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.4 / (3.5 * nrow + 1),
                        bottom=1.0 / (3.5 * nrow + 1), wspace=0.05, hspace=0.15)
    _class_legend(fig, class_names, colors, ncol=min(4, len(class_names)))
    _save(fig, path)


def confusion_figure(path, matrices: dict, class_names, title: str) -> None:
    """Confusion matrices, a panel per split (``matrices`` = {label: (K, K) counts},
    rows reference, columns predicted): colour is the row-normalised share (recall on
    the diagonal), each cell shows its count. Size: 6 in per panel x 6 in."""
    fig = Figure(figsize=(6 * len(matrices), 6), dpi=DPI)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    ticks = np.arange(len(class_names))
    for ax, (label, cm) in zip(axes, matrices.items()):
        cm = np.asarray(cm)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), n in np.ndenumerate(cm):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks(ticks, class_names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(ticks, class_names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(f"{title}, {label}", fontsize=10)
    width, gap = 6 * len(matrices), 2.1        # inches; the gap holds the class names
    panel = (width - 0.2 - gap * len(matrices)) / len(matrices)
    fig.subplots_adjust(left=gap / width, right=1 - 0.2 / width, bottom=0.28,
                        wspace=gap / panel)
    _save(fig, path)


def training_curves_figure(path, runs, title: str) -> None:
    """Training curves of every run of a CNN (``runs`` = results.json run records with
    ``history`` and ``best_epoch``): training (solid) and validation (dashed) loss, and
    validation macro-F1 with the best epoch (kept weights) starred. Size: 10 in x 4 in."""
    fig = Figure(figsize=(10, 4), dpi=DPI)
    loss_ax, f1_ax = fig.subplots(1, 2)
    for run in runs:
        epochs = [e["epoch"] for e in run["history"]]
        line, = loss_ax.plot(epochs, [e["train_loss"] for e in run["history"]],
                             label=f"run {run['run'] + 1}")
        loss_ax.plot(epochs, [e["val_loss"] for e in run["history"]], "--",
                     color=line.get_color())
        f1 = {e["epoch"]: e["val_f1"] for e in run["history"]}
        f1_ax.plot(epochs, [f1[e] for e in epochs], color=line.get_color())
        if run["best_epoch"] in f1:       # 0 when no epoch was ever scored
            f1_ax.plot([run["best_epoch"]], [f1[run["best_epoch"]]], "*", markersize=12,
                       color=line.get_color())
    loss_ax.set(title=f"{title}: loss (solid train, dashed validation)", xlabel="epoch")
    f1_ax.set(title=f"{title}: validation macro-F1 (* best epoch)", xlabel="epoch")
    for ax in (loss_ax, f1_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.legend(fontsize=8)
    fig.subplots_adjust(wspace=0.25)
    _save(fig, path)
