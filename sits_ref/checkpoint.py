"""Checkpoints of trained CNNs: one self-describing file per model.

A checkpoint holds the weights and everything needed to use them on new data: the
model's name and keyword arguments, the feature normalisation, the class codes, names
and colours, and what the data must be like: the feature names, the dates and the
pixel size it was trained on. It loads with ``torch.load(path,
weights_only=True)`` (plain types and tensors only, no pickled code).
"""
import os

import numpy as np
import torch

from .atomic import atomic_path
from .models import build_model

FORMAT = "sits_ref.checkpoint/1"
_KEYS = ("format", "model_name", "model_kwargs", "n_features", "n_dates", "n_classes",
         "state_dict", "norm_mean", "norm_std", "class_codes", "class_names",
         "feature_names", "extra")


def _check_plain(obj, where):
    """Only tensors and plain python types may enter a checkpoint."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is not str/int")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not (obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor))):
        raise TypeError(f"{where}: {type(obj).__name__} is not a plain type or tensor")


def save_checkpoint(path, model, model_name, model_kwargs, norm_mean, norm_std,
                    class_codes, class_names, feature_names, extra=None, dates=None,
                    pixel_size=None, class_colors=None):
    """Write one file loadable with ``torch.load(path, weights_only=True)``.

    norm_mean / norm_std: arrays (stored as float32 tensors); class_codes: the
    nomenclature codes of classes 0..K-1; feature_names: the C features; dates
    ('YYYY-MM-DD', T of them), pixel_size (CRS units) and class_colors ((r, g, b) per
    class) are optional and checked / used when the model is applied.
    Written to a temporary name then renamed, so a crash never leaves half a file.
    """
    n_classes, n_features = model.n_classes, model.n_features
    if not (len(class_codes) == len(class_names) == n_classes):
        raise ValueError(f"{len(class_codes)} class codes / {len(class_names)} names "
                         f"for a {n_classes}-class model")
    if len(feature_names) != n_features:
        raise ValueError(f"{len(feature_names)} feature names for a {n_features}-feature model")
    ckpt = {
        "format": FORMAT, "model_name": str(model_name), "model_kwargs": dict(model_kwargs),
        "n_features": int(n_features), "n_dates": int(model.n_dates), "n_classes": int(n_classes),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "norm_mean": torch.as_tensor(np.asarray(norm_mean, dtype=np.float32)),
        "norm_std": torch.as_tensor(np.asarray(norm_std, dtype=np.float32)),
        "class_codes": [int(c) for c in class_codes],
        "class_names": [str(c) for c in class_names],
        "feature_names": [str(f) for f in feature_names],
        "extra": extra if extra is not None else {},
        "dates": None if dates is None else [str(d) for d in dates],
        "pixel_size": None if pixel_size is None else float(pixel_size),
        "class_colors": None if class_colors is None else [[int(v) for v in c]
                                                           for c in class_colors],
    }
    _check_plain(ckpt, "checkpoint")
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path, n_features=None, n_dates=None, feature_names=None, dates=None,
                    pixel_size=None):
    """-> (model in eval mode on cpu, meta dict without the state_dict).

    Raises ValueError (with the reason) if the file is not a sits_ref
    checkpoint, lacks keys, its weights do not fit the model it names, or it
    does not fit the data: n_features, n_dates, feature_names, dates or pixel_size
    different (dates and pixel size are checked when the checkpoint records them).
    meta["norm_mean"] / ["norm_std"] are float32 numpy arrays.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, foreign objects, truncated files
        raise ValueError(f"{path}: not a sits_ref checkpoint (cannot load safely: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a sits_ref checkpoint (format tag {FORMAT!r} missing)")
    missing = [k for k in _KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: checkpoint is missing keys {missing}")
    for name, want in (("n_features", n_features), ("n_dates", n_dates)):
        if want is not None and int(want) != ckpt[name]:
            raise ValueError(f"{path}: checkpoint {name}={ckpt[name]} but the data has {want}")
    if feature_names is not None and list(feature_names) != ckpt["feature_names"]:
        raise ValueError(f"{path}: checkpoint feature_names {ckpt['feature_names']} "
                         f"differ from the data's {list(feature_names)}")
    if dates is not None and ckpt.get("dates") and list(dates) != ckpt["dates"]:
        raise ValueError(f"{path}: trained on dates {', '.join(ckpt['dates'])}, the data "
                         f"has {', '.join(dates)} (--model-dates interpolates the series "
                         "onto the model's dates)")
    if pixel_size is not None and ckpt.get("pixel_size") and \
            abs(float(pixel_size) - ckpt["pixel_size"]) > 1e-6 * ckpt["pixel_size"]:
        raise ValueError(f"{path}: trained on {ckpt['pixel_size']:g} m pixels, the data "
                         f"has {float(pixel_size):g} m pixels")
    try:
        model = build_model(ckpt["model_name"], ckpt["n_features"], ckpt["n_dates"],
                            ckpt["n_classes"], **ckpt["model_kwargs"])
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: state_dict does not fit model {ckpt['model_name']!r}: {e}") from e
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    meta["norm_mean"], meta["norm_std"] = ckpt["norm_mean"].numpy(), ckpt["norm_std"].numpy()
    return model, meta
