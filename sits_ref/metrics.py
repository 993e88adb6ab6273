"""Classification metrics from a confusion matrix (numpy only).

Conventions: ``cm[i, j]`` counts samples of true class i predicted as class j
(rows = truth, columns = prediction), classes are 0..K-1. Quantities that are
undefined (division by zero) are returned as 0.0, as documented per function.
"""
import numpy as np


def confusion_matrix(y_true, y_pred, n_classes):
    """(K, K) int64 counts from 1-D integer label arrays of equal length.

    Labels must lie in [0, n_classes); anything else raises ValueError
    (filter unlabelled pixels, e.g. -1, before calling).
    """
    t = np.asarray(y_true).ravel().astype(np.int64)
    p = np.asarray(y_pred).ravel().astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred lengths differ: {t.size} vs {p.size}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} has labels outside [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def overall_accuracy(cm):
    """Fraction of correctly classified samples, trace / total (0.0 if empty)."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else 0.0


def _safe_div(a, b):
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def precision_recall_f1(cm):
    """Per-class precision, recall and F1 as three (K,) float arrays.

    precision_k = cm[k,k] / column k sum  (0.0 if class k is never predicted)
    recall_k    = cm[k,k] / row k sum     (0.0 if class k never occurs)
    f1_k        = 2 p r / (p + r) = 2 cm[k,k] / (row_k + col_k)  (0.0 if p + r = 0)
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    precision = _safe_div(tp, cm.sum(axis=0))
    recall = _safe_div(tp, cm.sum(axis=1))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return precision, recall, f1


def macro_f1(cm):
    """Unweighted mean of per-class F1 over the classes present in the reference
    (row sum > 0); 0.0 if cm is empty.

    A class with no reference pixel in this set (no polygon of it, e.g. a class
    listed in the manifest but never drawn) has no defined recall and is left out
    of the mean; predicting it wrongly still costs the other classes their recall.
    (scikit-learn's default also counts classes that are only predicted, with F1 0.)
    """
    cm = np.asarray(cm)
    present = cm.sum(axis=1) > 0
    if not present.any():
        return 0.0
    return float(precision_recall_f1(cm)[2][present].mean())


def cohen_kappa(cm):
    """Cohen's kappa (p_o - p_e) / (1 - p_e), with p_o the overall accuracy and
    p_e = sum_k row_k * col_k / n^2 the chance agreement. 0.0 when undefined
    (empty matrix or p_e = 1, i.e. truth and prediction are one single class)."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    if n == 0:
        return 0.0
    pe = float((cm.sum(axis=1) * cm.sum(axis=0)).sum() / n**2)
    if pe >= 1.0:
        return 0.0
    return (overall_accuracy(cm) - pe) / (1.0 - pe)


def scores(cm):
    """Every metric of ``cm`` as a plain-python (JSON-ready) dict, the schema of each
    split in results.json: n_pixels, confusion_matrix (K x K lists), overall_accuracy,
    kappa, macro_f1, and per-class lists precision, recall, f1 (class order of cm)."""
    cm = np.asarray(cm)
    precision, recall, f1 = precision_recall_f1(cm)
    return {"n_pixels": int(cm.sum()), "confusion_matrix": cm.astype(np.int64).tolist(),
            "overall_accuracy": overall_accuracy(cm), "kappa": float(cohen_kappa(cm)),
            "macro_f1": macro_f1(cm), "precision": precision.tolist(),
            "recall": recall.tolist(), "f1": f1.tolist()}
