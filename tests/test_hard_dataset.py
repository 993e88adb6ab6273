"""The hard synthetic dataset (tests/data/make_hard_dataset.py): deterministic, loadable,
sparse labels as specified, and classes that genuinely overlap."""
import os
import sys

import numpy as np
import pytest

from sits_ref.dataset import load_dataset
from sits_ref.rasterize import rasterize

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
from make_hard_dataset import make_hard_dataset  # noqa: E402


@pytest.fixture(scope="module")
def hard(tmp_path_factory):
    return load_dataset(make_hard_dataset(tmp_path_factory.mktemp("hard")))


def labelled(ds, split):
    """Band time series (N, T * C) and class index (N,) of the pixels of ``split``."""
    codes = rasterize(((p.geometry, p.code) for p in ds.polygons(split)),
                      (ds.height, ds.width), ds.georef.transform, fill=0, dtype=np.int32)
    rows, cols = np.nonzero(codes)
    bands, valid = ds.read_bands()
    assert valid[rows, cols].all()
    index = {c: k for k, c in enumerate(ds.class_codes)}
    return (bands[:, :, rows, cols].reshape(-1, len(rows)).T,
            np.array([index[c] for c in codes[rows, cols]]))


def test_same_seed_gives_identical_files(tmp_path, hard):
    other = os.path.dirname(make_hard_dataset(tmp_path / "again"))
    here = os.path.dirname(hard.manifest_path)
    names = sorted(os.listdir(here))
    assert names == sorted(os.listdir(other))
    for name in names:
        with open(os.path.join(here, name), "rb") as a, open(os.path.join(other, name), "rb") as b:
            assert a.read() == b.read(), name


def test_grid_dates_bands(hard):
    assert (hard.height, hard.width) == (120, 120)
    assert len(hard.dates) == 11 and hard.dates[0] == "2018-02-15"
    assert hard.bands == ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
    assert hard.georef.epsg == 32631
    assert hard.georef.transform == (356040.0, 10.0, 0.0, 4835680.0, 0.0, -10.0)


def test_sparse_labels(hard):
    train = hard.polygons("train")
    x, y = labelled(hard, "train")
    assert 200 <= len(y) <= 500
    per_class = np.bincount([hard.class_codes.index(p.code) for p in train],
                            minlength=len(hard.classes))
    assert per_class.min() >= 4
    xt, yt = labelled(hard, "test")
    assert 0.5 * len(y) <= len(yt) <= 2 * len(y)
    assert set(yt) == set(range(len(hard.classes)))


def test_classes_overlap(hard):
    """Nearest class mean on raw band time series: better than chance, far from perfect."""
    x, y = labelled(hard, "train")
    xt, yt = labelled(hard, "test")
    means = np.stack([x[y == k].mean(0) for k in range(len(hard.classes))])
    pred = ((xt[:, None] - means) ** 2).sum(-1).argmin(1)
    accuracy = (pred == yt).mean()
    assert 1 / len(hard.classes) < accuracy < 0.9


@pytest.mark.filterwarnings("ignore:.*no polygon for class")
def test_absent_class_has_test_polygons_only(tmp_path):
    ds = load_dataset(make_hard_dataset(tmp_path, absent_class=True))
    train = {p.code for p in ds.polygons("train")}
    test = {p.code for p in ds.polygons("test")}
    absent = set(ds.class_codes) - train
    assert len(absent) == 1 and absent <= test
