"""Whole-scene inference: blocked = whole image, georeferenced outputs, the CLI."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from sits_ref.dataset import load_dataset
from sits_ref.forest import RandomForest
from sits_ref.geotiff import read_info, read_window, write_geotiff
from sits_ref.models import build_model
from sits_ref.predict import (READ_BYTES_PER_VALUE, ForestClassifier, TorchClassifier,
                              band_rows, classify_band, main, predict_scene)
from sits_ref.checkpoint import save_checkpoint

from conftest import TINY_GEOREF, edit_manifest
from test_pictures import decode_png

NODATA_PIXELS = [(0, 0), (7, 13), (19, 23)]   # (row, col) nodata on every date


@pytest.fixture
def scene(tiny_dataset):
    """The 20 x 24 tiny dataset with textured (random) pixels, 3 pixels nodata on every
    date (never valid) and one pixel, (5, 5), nodata on one date (gap-filled)."""
    rng = np.random.default_rng(1)
    for t, name in enumerate(["date0.tif", "date1.tif", "date2.tif"]):
        cube = read_window(tiny_dataset.parent / name)
        cube += rng.integers(-400, 400, cube.shape).astype(np.int16)
        for r, c in NODATA_PIXELS:
            cube[2, r, c] = -10000
        if t == 1:
            cube[0, 5, 5] = -10000
        write_geotiff(tiny_dataset.parent / name, cube, TINY_GEOREF, nodata=-10000)
    return load_dataset(tiny_dataset)


def torch_classifier(name, ds):
    torch.manual_seed(0)
    model = build_model(name, len(ds.feature_names), len(ds.dates), len(ds.classes))
    with torch.no_grad():               # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    feats, _ = ds.read_features()
    flat = feats.transpose(1, 0, 2, 3).reshape(feats.shape[1], -1)
    return TorchClassifier(model, flat.mean(1), flat.std(1) + 1e-3)


def forest_classifier(ds):
    rng = np.random.default_rng(0)
    n_feats = len(ds.feature_names) * len(ds.dates)
    X = rng.uniform(-0.2, 0.6, (300, n_feats)).astype(np.float32)
    y = (X[:, 2] + X[:, -1] > 0.4).astype(int)
    forest = RandomForest(n_trees=5, min_samples_split=4, random_state=0).fit(X, y)
    return ForestClassifier(forest, len(ds.classes))


def whole_image_proba(clf, ds):
    feats, valid = ds.read_features()
    if isinstance(clf, ForestClassifier):
        t, f, h, w = feats.shape
        x = feats.transpose(2, 3, 1, 0).reshape(h * w, f * t)
        return clf.forest.predict_proba(x).T.reshape(-1, h, w), valid
    return clf.proba(feats), valid


def blocked_proba(clf, ds, block, budget_mb):
    rows = band_rows(clf, ds, block, budget_mb)
    parts = [classify_band(clf, ds, r, min(rows, ds.height - r), block)
             for r in range(0, ds.height, rows)]
    return np.concatenate([p for p, _ in parts], 1), np.concatenate([v for _, v in parts])


def check_blocked_equals_whole(clf, ds, tmp_path, blocks_and_budgets):
    whole, valid = whole_image_proba(clf, ds)
    assert valid.sum() == valid.size - len(NODATA_PIXELS)
    codes = np.array([0] + ds.class_codes)
    expected = np.where(valid, codes[1 + whole.argmax(0)], 0)
    for block, budget in blocks_and_budgets:
        proba, v = blocked_proba(clf, ds, block, budget)
        np.testing.assert_array_equal(v, valid)
        np.testing.assert_allclose(proba, whole, atol=1e-5, err_msg=f"block {block}")
        out, conf = tmp_path / f"map{block}.tif", tmp_path / f"conf{block}.tif"
        seconds = predict_scene(clf, ds, out, conf, block=block, budget_mb=budget,
                                log=None)
        assert seconds >= 0
        np.testing.assert_array_equal(read_window(out)[0], expected)
        np.testing.assert_allclose(read_window(conf)[0], np.where(valid, whole.max(0), 0),
                                   atol=1e-5)


TINY_BUDGET = 1e-3   # MiB: forces 1-row bands (a 24-px row costs ~3 KiB)


@pytest.mark.parametrize("name", ["tempcnn", "cnn2d", "cnn3d", "spatiotempcnn"])
def test_blocked_cnn_inference_equals_whole_image(name, scene, tmp_path):
    clf = torch_classifier(name, scene)
    assert clf.halo == (0 if name == "tempcnn" else 3)
    check_blocked_equals_whole(clf, scene, tmp_path,
                               [(5, 384), (7, 384), (16, 384), (16, 0.02), (64, 384)])


def test_band_height_follows_memory_budget(scene):
    clf = torch_classifier("cnn2d", scene)
    assert band_rows(clf, scene, 16) == 16                  # a narrow scene: block rows
    per_row = scene.width * 3 * 4 * READ_BYTES_PER_VALUE / 2 ** 20   # MiB per band row
    assert band_rows(clf, scene, 16, budget_mb=10 * per_row) == 10 - 2 * clf.halo
    assert band_rows(clf, scene, 16, budget_mb=TINY_BUDGET) == 1


def test_blocked_forest_equals_whole_image(scene, tmp_path):
    check_blocked_equals_whole(forest_classifier(scene), scene, tmp_path,
                               [(5, 384), (7, 384), (16, TINY_BUDGET)])


class _SquareClassifier:
    """Any classifier working in context squares (as the auto-context forest)."""
    halo, tile = 0, 8


def test_band_height_divides_the_context_square(scene, tmp_path):
    clf = _SquareClassifier()
    # a 7-row budget gives 4-row bands, the largest divisor of the 8-px square
    per_row = scene.width * 3 * 4 * READ_BYTES_PER_VALUE / 2 ** 20   # MiB per band row
    assert band_rows(clf, scene, 8, budget_mb=7 * per_row) == 4
    with pytest.raises(ValueError, match="divide"):
        predict_scene(clf, scene, tmp_path / "m.tif", block=5, log=None)


def test_outputs_are_georeferenced_class_maps(scene, tmp_path):
    clf = torch_classifier("tempcnn", scene)
    out, conf = tmp_path / "map.tif", tmp_path / "conf.tif"
    lines = []
    predict_scene(clf, scene, out, conf, block=8, log=lines.append)
    assert "ETA" in lines[-2]
    assert lines[-1] == "  3 px without any valid observation: nodata (0) in the map"
    for path, dtype in ((out, np.uint8), (conf, np.float32)):
        info = read_info(path)
        assert info.georef.transform == scene.georef.transform
        assert info.georef.epsg == scene.georef.epsg
        assert (info.height, info.width, info.dtype) == (scene.height, scene.width, dtype)
    assert read_info(out).georef == scene.georef.__class__(
        scene.georef.transform, scene.georef.epsg, 0)          # nodata 0 in the map
    classes = read_window(out)[0]
    assert set(np.unique(classes)) <= {0, *scene.class_codes}
    assert all(classes[r, c] == 0 for r, c in NODATA_PIXELS)
    assert (classes > 0).sum() == classes.size - len(NODATA_PIXELS)
    import tifffile
    with tifffile.TiffFile(out) as tif:
        cmap = tif.pages.first.colormap
    assert cmap is not None
    for c in scene.classes:
        assert tuple(cmap[:, c.code] // 257) == c.color
    assert not list(tmp_path.glob(".*partial"))


@pytest.fixture
def checkpoint(scene, tmp_path):
    def save(name="ckpt.pt", n_features=None, n_dates=None):
        nf = n_features or len(scene.feature_names)
        nd = n_dates or len(scene.dates)
        model = build_model("tempcnn", nf, nd, 2)
        names = (scene.feature_names + [f"X{i}" for i in range(nf)])[:nf]
        save_checkpoint(tmp_path / name, model, "tempcnn", {}, np.zeros(nf), np.ones(nf),
                        scene.class_codes, scene.class_names, names)
        return str(tmp_path / name)
    return save


def test_cli_writes_map_and_confidence(scene, checkpoint, tmp_path, capsys):
    out = tmp_path / "out" / "map.tif"
    out.parent.mkdir()
    rc = main(["--model", checkpoint(), "--data", scene.manifest_path, "--out", str(out),
               "--block", "8"])
    assert rc == 0
    assert out.exists() and (tmp_path / "out" / "map_confidence.tif").exists()
    assert read_info(out).georef.transform == scene.georef.transform
    assert "wrote" in capsys.readouterr().out
    codes = read_window(out)[0]               # small scene: the quicklook is the map itself
    with open(tmp_path / "out" / "map.png", "rb") as f:
        look = decode_png(f.read())
    assert np.array_equal(look["pixels"], codes)
    assert (tmp_path / "out" / "map_confidence.png").exists()


@pytest.mark.parametrize("case", ["missing", "features", "dates", "manifest", "classes"])
def test_cli_errors_return_2_with_one_line(case, scene, checkpoint, tmp_path, capsys):
    ckpt = {"missing": str(tmp_path / "nope.pt"),
            "features": checkpoint("f.pt", n_features=5),
            "dates": checkpoint("d.pt", n_dates=4)}.get(case) or checkpoint()
    data = scene.manifest_path
    if case == "manifest":
        data = str(tmp_path / "bad.json")
        (tmp_path / "bad.json").write_text("{not json")
    if case == "classes":
        edit_manifest(tmp_path / "manifest.json",
                      classes=[{"code": 5, "name": "a"}, {"code": 6, "name": "b"}])
    rc = main(["--model", ckpt, "--data", data, "--out", str(tmp_path / "m.tif")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error:") and err.count("\n") == 1
    assert not (tmp_path / "m.tif").exists()


def test_cli_several_scenes_write_a_folder_and_resume_skips(scene, checkpoint, tmp_path,
                                                            capsys):
    other = tmp_path / "other.json"
    shutil.copy(scene.manifest_path, other)
    out = tmp_path / "maps"
    args = ["--model", checkpoint(), "--data", scene.manifest_path, str(other), "--out",
            str(out), "--block", "8"]
    assert main(args) == 0
    assert sorted(os.listdir(out)) == sorted(f"{n}_{k}.{e}" for n in ("manifest", "other")
                                             for k in ("map", "confidence")
                                             for e in ("tif", "png"))
    assert np.array_equal(read_window(out / "manifest_map.tif"),
                          read_window(out / "other_map.tif"))
    capsys.readouterr()
    (out / "other_map.tif").unlink()               # as if the run had died on it
    assert main(args + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert "manifest_map.tif: exists, skipped (--resume)" in printed
    assert "wrote " + str(out / "other_map.tif") in printed


@pytest.mark.parametrize("case, message", [
    ("confidence", "--confidence names one file"),
    ("same name", "several inputs named manifest"),
])
def test_cli_several_scenes_bad_arguments(case, message, scene, checkpoint, tmp_path, capsys):
    other = tmp_path / "x.json"
    shutil.copy(scene.manifest_path, other)
    data = [scene.manifest_path, str(other) if case == "confidence" else scene.manifest_path]
    extra = ["--confidence", "c.tif"] if case == "confidence" else []
    args = ["--model", checkpoint(), "--data", *data, "--out", str(tmp_path / "maps"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "maps").exists()


def test_prefetched_reads_in_order_and_raises_the_readers_error():
    from sits_ref.predict import _prefetched
    assert list(_prefetched(lambda w: w * 10, [1, 2, 3])) == [10, 20, 30]
    assert list(_prefetched(lambda w: w, [])) == []

    def read(window):
        if window == 2:
            raise ValueError("cannot decode window 2")
        return window
    got = []
    with pytest.raises(ValueError, match="window 2"):
        for value in _prefetched(read, [1, 2, 3]):
            got.append(value)
    assert got == [1]


def test_raw_band_cut_gives_the_window_read(scene):
    # the whole-scene path (read a band as stored, convert column blocks) equals reading
    # each block's window directly
    values, observed = scene.read_raw((1, 0, 5, scene.width))
    assert values.dtype == np.int16
    bands, valid = scene.bands_from_raw(values[..., 3:11], observed[..., 3:11])
    direct, direct_valid = scene.read_bands((1, 3, 5, 8))
    assert bands.dtype == np.float32
    assert np.array_equal(bands, direct) and np.array_equal(valid, direct_valid)


_RSS_DROP = """
import numpy as np, sys
from sits_ref.predict import keep_freed_memory
def rss_mib():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
if sys.argv[1] == "keep":
    assert keep_freed_memory()
a = np.ones(40 * 2 ** 20 // 8)       # 40 MiB, written
before = rss_mib()
del a
print(before - rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_keep_freed_memory_keeps_a_freed_block_mapped():
    # by default glibc gives a freed 40 MiB block back to the system (RSS drops by
    # ~40 MiB); once keep_freed_memory() is called it keeps it for the next allocation
    def drop(mode):
        out = subprocess.run([sys.executable, "-c", _RSS_DROP, mode], capture_output=True,
                             text=True, check=True)
        return float(out.stdout)
    assert drop("default") > 30
    assert drop("keep") < 5
