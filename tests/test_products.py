"""Sentinel-2 product folders: readers, 20 m -> 10 m, masks, gap-filling, bad input.

The folders are written by tests/data/make_products.py from the real Theia L3A Bouconne
crop when it is at hand (else a synthetic cube of the same shape), with synthetic
masks at known places.
"""
import json
import os
import shutil
import sys

import numpy as np
import pytest

from sits_ref.dataset import DatasetError, load_dataset, main as dataset_main
from sits_ref.gapfill import day_numbers, fill_gaps, regular_dates
from sits_ref.geotiff import write_geotiff
from sits_ref.products import ProductError, find_products

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
from make_products import BANDS, GEOREF, NODATA, source_cube, write_products  # noqa: E402

LAYOUTS = ["theia_l3a", "theia_l2a", "per_band"]


@pytest.fixture(scope="module")
def cube():
    return source_cube()[0]


@pytest.fixture(scope="module", params=LAYOUTS)
def written(request, tmp_path_factory, cube):
    folder = tmp_path_factory.mktemp(request.param)
    expected, valid, dates = write_products(str(folder), request.param, cube)
    return request.param, folder, expected, valid, dates


# ------------------------------------------------------------------ reading


def test_reader_gives_the_10m_values_and_masks(written):
    layout, folder, expected, valid, dates = written
    products = find_products(folder)
    assert (products.layout, products.tile, products.dates) == (layout, "T31TCJ", dates)
    assert products.georef.transform == GEOREF.transform and products.georef.epsg == 32631
    values, ok = products.read()
    np.testing.assert_array_equal(ok, valid)
    np.testing.assert_array_equal(values[np.broadcast_to(valid[:, None], values.shape)],
                                  expected[np.broadcast_to(valid[:, None], values.shape)])
    assert 0 < (~valid).sum() < valid.size // 10        # clouds, strip, saturation


def test_20m_band_is_nearest_neighbour_by_hand(written):
    # B5 (index 4) on the 20 m grid: pixel (1, 2) of the 20 m file covers 10 m rows 2-3,
    # cols 4-5, and nothing else
    _, folder, _, _, _ = written
    products = find_products(folder)
    from sits_ref.geotiff import read_window
    coarse = read_window(products.files[3]["B5"])[0]
    values, _ = products.read()
    np.testing.assert_array_equal(values[3, 4, 2:4, 4:6], np.full((2, 2), coarse[1, 2]))
    assert values[3, 4, 2, 6] == coarse[1, 3]


def test_nodata_value_in_one_band_invalidates_the_observation(tmp_path, cube):
    """A band holding -10000 where the mask says valid: that date is invalid there."""
    from sits_ref.geotiff import read_window
    write_products(str(tmp_path / "S2"), "theia_l3a", cube[:3])
    path = next((tmp_path / "S2").glob("SENTINEL2X_20180513*/*_FRC_B4.tif"))
    values = read_window(path)[0]
    values[10, 20] = NODATA
    write_geotiff(path, values, GEOREF, nodata=NODATA)
    _, ok = find_products(tmp_path / "S2").read()
    assert not ok[1, 10, 20] and ok[0, 10, 20] and ok[2, 10, 20] and ok[1, 10, 21]


@pytest.mark.parametrize("window", [(0, 0, 30, 37), (3, 5, 11, 20), (29, 36, 1, 1),
                                    (1, 1, 7, 3)])
def test_windowed_read_equals_whole(written, window):
    _, folder, _, _, _ = written
    products = find_products(folder)
    values, ok = products.read()
    r, c, h, w = window
    part, part_ok = products.read(window)
    np.testing.assert_array_equal(part, values[:, :, r:r + h, c:c + w])
    np.testing.assert_array_equal(part_ok, ok[:, r:r + h, c:c + w])


def test_reader_equals_hand_stacked_geotiff(written, tmp_path):
    """A manifest naming the product folder reads exactly what a hand-made stack of the
    same values (invalid observations written as no data) reads, gap-filled."""
    layout, folder, expected, valid, dates = written
    stack = np.where(valid[:, None], expected, NODATA).astype(np.int16)
    write_geotiff(tmp_path / "stack.tif", stack.reshape(-1, *stack.shape[2:]),
                  GEOREF.__class__(GEOREF.transform, 32631, NODATA), nodata=NODATA)
    (tmp_path / "stack.json").write_text(json.dumps(
        {"images": ["stack.tif"], "dates": dates, "bands": BANDS, "scale": 1e-4}))
    (tmp_path / "products.json").write_text(json.dumps({"products": str(folder)}))
    by_hand, by_reader = (load_dataset(tmp_path / f).read_features()
                          for f in ("stack.json", "products.json"))
    np.testing.assert_array_equal(by_reader[1], by_hand[1])
    np.testing.assert_allclose(by_reader[0], by_hand[0], rtol=0, atol=0)
    assert by_reader[1].sum() == valid.any(axis=0).sum()


def test_blocked_reads_equal_whole_after_gap_filling(written):
    _, folder, _, _, _ = written
    ds = load_dataset(folder)
    whole, ok = ds.read_bands()
    for r0 in range(0, 30, 7):
        part, part_ok = ds.read_bands((r0, 0, min(7, 30 - r0), 37))
        np.testing.assert_array_equal(part, whole[:, :, r0:r0 + 7])
        np.testing.assert_array_equal(part_ok, ok[r0:r0 + 7])


def test_only_never_valid_pixels_are_left_out(written):
    _, folder, _, valid, _ = written
    ds = load_dataset(folder)
    bands, ok = ds.read_bands()
    np.testing.assert_array_equal(ok, valid.any(axis=0))
    assert not ok[0:2, 30:32].any() and ok.sum() == ok.size - 4
    assert (bands[:, :, ~ok] == 0).all() and np.isfinite(bands).all()


# ------------------------------------------------------------------ gap-filling


def test_gap_filling_by_hand():
    # one pixel, one band, dates at days 0, 10, 20, 30, 40; valid at 0 and 30 only
    values = np.array([1.0, 99, 99, 4, 99])[:, None, None]
    valid = np.array([1, 0, 0, 1, 0], bool)[:, None]
    filled, ok = fill_gaps(values, valid, [0, 10, 20, 30, 40])
    assert filled[:, 0, 0].tolist() == [1, 2, 3, 4, 4] and ok.tolist() == [True]
    # onto other dates: before the first valid, between, after the last
    filled, _ = fill_gaps(values, valid, [0, 10, 20, 30, 40], [-5, 5, 15, 35])
    assert filled[:, 0, 0].tolist() == [1, 1.5, 2.5, 4]


def test_gap_filling_per_pixel_and_never_valid():
    values = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)   # (T, C, P)
    valid = np.array([[True, False], [False, False], [True, False]])
    filled, ok = fill_gaps(values, valid, [0, 1, 3])
    assert ok.tolist() == [True, False]
    # pixel 0, band 1: values 2 (day 0) and 10 (day 3) -> day 1: 2 + (10 - 2) / 3
    assert filled[1, 1, 0] == pytest.approx(2 + 8 / 3)
    assert (filled[:, :, 1] == 0).all()


def test_offset_is_added_before_scaling(tmp_path, cube):
    write_products(str(tmp_path / "S2"), "per_band", cube[:2])
    (tmp_path / "m.json").write_text(json.dumps({"products": "S2", "offset": -1000}))
    bands, _ = load_dataset(tmp_path / "m.json").read_bands((5, 6, 1, 1))
    # date 1, B2 (10 m): digital number - 1000, times 1/10000 (hand computation)
    assert bands[1, 0, 0, 0] == pytest.approx((int(cube[1, 0, 5, 6]) - 1000) * 1e-4)


def test_gap_filling_with_only_complete_and_never_valid_pixels():
    values = np.arange(1, 13, dtype=np.float32).reshape(3, 2, 2)       # (T, C, P)
    before = values.copy()
    valid = np.array([[True, False]] * 3)
    filled, ok = fill_gaps(values, valid, [0, 1, 3])
    assert ok.tolist() == [True, False]
    np.testing.assert_array_equal(filled[:, :, 0], values[:, :, 0])
    assert (filled[:, :, 1] == 0).all()
    np.testing.assert_array_equal(values, before)                      # input untouched


def test_regular_date_grid_in_a_manifest(written, tmp_path, cube):
    _, folder, _, _, dates = written
    (tmp_path / "m.json").write_text(json.dumps({"products": str(folder), "date_grid": {
        "start": "2018-05-01", "end": "2018-11-01", "step_days": 10}}))
    ds = load_dataset(tmp_path / "m.json")
    assert ds.dates == regular_dates("2018-05-01", "2018-11-01", 10) and len(ds.dates) == 19
    assert ds.observation_dates == dates
    bands, ok = ds.read_bands()
    values, valid = ds.source.read()
    expected, _ = fill_gaps(values * np.float32(1e-4), valid, day_numbers(dates),
                            day_numbers(ds.dates))
    np.testing.assert_array_equal(bands, expected)
    assert bands.shape == (19, 10, 30, 37)
    # by hand: B2 at (25, 36), valid on 2018-04-29 and 2018-05-13; 2018-05-01 lies 2 of
    # their 14 days after the first
    first, second = (float(v) * 1e-4 for v in cube[:2, 0, 25, 36])
    assert bands[0, 0, 25, 36] == pytest.approx(first + 2 / 14 * (second - first), rel=1e-5)


# ------------------------------------------------------------------ describe


def test_describe_prints_tile_dates_bands_masks_and_valid_shares(written, capsys):
    layout, folder, _, valid, dates = written
    assert dataset_main(["describe", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "tile T31TCJ" in out and layout in out
    assert "EPSG:32631" in out and "30 x 37 px" in out
    assert "resampled to 10 m by nearest neighbour: B5 B6 B7 B8A B11 B12" in out
    assert {"theia_l3a": "FLG", "theia_l2a": "CLM", "per_band": "SCL"}[layout] in out
    for date, share in zip(dates, valid.mean(axis=(1, 2))):
        assert f"{date}  {100 * share:5.1f} %" in out
    assert "never valid: 4 px" in out


# ------------------------------------------------------------------ bad input


@pytest.fixture
def l3a(tmp_path, cube):
    write_products(str(tmp_path / "s2"), "theia_l3a", cube[:3])
    return tmp_path / "s2"


def _product(folder, i):
    return sorted(p for p in folder.iterdir() if p.is_dir())[i]


def _error(folder):
    with pytest.raises(ProductError) as info:
        find_products(folder)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_date_missing_a_band(l3a):
    os.remove(next(_product(l3a, 1).glob("*_FRC_B11.tif")))
    assert "date 2018-05-13 has no band B11" in _error(l3a)


def test_two_tiles_in_one_folder(l3a):
    other = _product(l3a, 2)
    for path in list(other.rglob("*.tif")):
        os.rename(path, path.with_name(path.name.replace("T31TCJ", "T31TDJ")))
    assert "mixes tiles T31TCJ" in _error(l3a) and "T31TDJ" in _error(l3a)


def test_a_band_at_an_unexpected_resolution(l3a):
    path = next(_product(l3a, 0).glob("*_FRC_B4.tif"))        # a 10 m band at 20 m
    x0, _, _, y0, _, _ = GEOREF.transform
    write_geotiff(path, np.zeros((15, 19), np.int16),
                  GEOREF.__class__((x0, 20.0, 0.0, y0, 0.0, -20.0), 32631))
    message = _error(l3a)
    assert message.startswith(str(path)) and "pixel size 20 x 20, expected 10" in message


def test_an_unreadable_mask(l3a):
    mask = next(_product(l3a, 1).glob("MASKS/*_FLG_R1.tif"))
    mask.write_bytes(b"not a tiff")
    assert _error(l3a).startswith(str(mask))


def test_a_missing_mask(l3a):
    os.remove(next(_product(l3a, 1).glob("MASKS/*_FLG_R1.tif")))
    assert "date 2018-05-13 has no FLG mask" in _error(l3a)


def test_an_unparseable_file_name(l3a):
    path = next(_product(l3a, 0).glob("*_FRC_B2.tif"))
    bad = path.parent / path.name.replace("20180429-000000-000", "2018-04-29")
    os.rename(path, bad)
    message = _error(l3a)
    assert message.startswith(str(bad)) and "cannot parse" in message


def test_two_products_for_one_date(l3a):
    first = _product(l3a, 0)
    twin = l3a / first.name.replace("000000-000", "101010-000")
    shutil.copytree(first, twin)
    for path in list(twin.rglob("*.tif")):
        os.rename(path, path.with_name(path.name.replace("000000-000", "101010-000")))
    assert "two products for date 2018-04-29" in _error(l3a)


def test_per_band_folder_without_a_date(tmp_path, cube):
    write_products(str(tmp_path / "s2"), "per_band", cube[:2])
    folder = _product(tmp_path / "s2", 0)
    os.rename(folder, tmp_path / "s2" / "S2B_31TCJ_first_L2A")
    assert "cannot read a date from its folder name 'S2B_31TCJ_first_L2A'" in \
        _error(tmp_path / "s2")


def test_mixed_levels_and_empty_folder(l3a, tmp_path, cube):
    write_products(str(tmp_path / "l2a"), "theia_l2a", cube[:2])
    shutil.move(str(_product(tmp_path / "l2a", 0)), l3a)
    assert "mixes Theia L2A and L3A products" in _error(l3a)
    (tmp_path / "empty").mkdir()
    assert "no Sentinel-2 products found" in _error(tmp_path / "empty")


def test_manifest_names_a_bad_product_folder(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"products": "nowhere"}))
    with pytest.raises(DatasetError, match="nowhere: not a folder"):
        load_dataset(tmp_path / "m.json")


# ------------------------------------------------------------------ training and prediction


def _write_polygons(folder):
    """Two classes over the crop: class 1 on the left, class 2 on the right (train),
    and one test square each."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conftest import write_shapefile
    x0, _, _, y0, _, _ = GEOREF.transform

    def square(col, row, size):
        xa, ya = x0 + 10 * col, y0 - 10 * row
        return [(xa, ya), (xa + 10 * size, ya), (xa + 10 * size, ya - 10 * size),
                (xa, ya - 10 * size), (xa, ya)]

    write_shapefile(folder / "train.shp", [([square(5, 2, 6)], 1), ([square(6, 14, 5)], 1),
                                           ([square(22, 3, 6)], 2), ([square(24, 16, 6)], 2),
                                           ([square(2, 22, 5)], 1), ([square(28, 22, 5)], 2)])
    write_shapefile(folder / "test.shp", [([square(12, 24, 4)], 1), ([square(18, 24, 4)], 2)])


CLASSES = [{"code": 1, "name": "left", "color": "#e6004d"},
           {"code": 2, "name": "right", "color": "#00a600"}]


def test_benchmark_runs_on_a_product_folder_manifest(tmp_path, cube):
    import run_benchmark
    write_products(str(tmp_path / "S2"), "theia_l3a", cube)
    _write_polygons(tmp_path)
    manifest = tmp_path / "it.json"
    manifest.write_text(json.dumps({"products": "S2", "train_polygons": "train.shp",
                                    "test_polygons": "test.shp", "class_field": "code",
                                    "classes": CLASSES}))
    out = tmp_path / "out"
    assert run_benchmark.main(["--data", str(manifest), "--quick", "--models", "tempcnn",
                               "rf_base", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["dates"] == load_dataset(manifest).dates
    from sits_ref.geotiff import read_window
    classes = read_window(out / results["models"]["tempcnn"]["map"])[0]
    assert (classes == 0).sum() == 4 and not classes[0:2, 30:32].any()   # never valid only


def _checkpoint(tmp_path, ds, **kw):
    from sits_ref.checkpoint import save_checkpoint
    from sits_ref.models import build_model
    nf = len(ds.feature_names)
    model = build_model("tempcnn", nf, len(ds.dates), 2)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, "tempcnn", {}, np.zeros(nf), np.ones(nf), [1, 2],
                    ["left", "right"], ds.feature_names, dates=kw.get("dates", ds.dates),
                    pixel_size=kw.get("pixel_size", 10.0),
                    class_colors=[(230, 0, 77), (0, 166, 0)])
    return str(path)


def test_predict_a_product_folder_without_polygons(tmp_path, cube, capsys):
    from sits_ref.geotiff import read_info, read_window
    from sits_ref.predict import main as predict_main
    write_products(str(tmp_path / "S2"), "per_band", cube)
    ckpt = _checkpoint(tmp_path, load_dataset(tmp_path / "S2"))
    out = tmp_path / "map.tif"
    assert predict_main(["--model", ckpt, "--data", str(tmp_path / "S2"), "--out", str(out),
                         "--block", "16"]) == 0
    classes = read_window(out)[0]
    assert set(np.unique(classes)) <= {0, 1, 2} and (classes == 0).sum() == 4
    info = read_info(out)
    assert info.georef.transform == GEOREF.transform and info.georef.epsg == 32631
    import tifffile
    with tifffile.TiffFile(out) as tif:                   # colours from the checkpoint
        assert tuple(tif.pages.first.colormap[:, 2] // 257) == (0, 166, 0)


@pytest.mark.parametrize("case", ["dates", "pixel_size"])
def test_predict_refuses_a_checkpoint_for_other_data(case, tmp_path, cube, capsys):
    from sits_ref.predict import main as predict_main
    write_products(str(tmp_path / "S2"), "theia_l3a", cube)
    ds = load_dataset(tmp_path / "S2")
    other = {"dates": {"dates": [d.replace("2018", "2019") for d in ds.dates]},
             "pixel_size": {"pixel_size": 20.0}}[case]
    ckpt = _checkpoint(tmp_path, ds, **other)
    args = ["--model", ckpt, "--data", str(tmp_path / "S2"), "--out", str(tmp_path / "m.tif")]
    assert predict_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and {"dates": "trained on dates 2019-04-29",
                                     "pixel_size": "trained on 20 m pixels"}[case] in err
    assert not (tmp_path / "m.tif").exists()


def test_predict_on_the_model_dates(tmp_path, cube):
    """--model-dates gap-fills the series onto the checkpoint's dates."""
    from sits_ref.predict import main as predict_main
    write_products(str(tmp_path / "S2"), "theia_l3a", cube)
    grid = regular_dates("2018-05-01", "2018-11-01", 30)
    ckpt = _checkpoint(tmp_path, load_dataset(tmp_path / "S2"), dates=grid)
    args = ["--model", ckpt, "--data", str(tmp_path / "S2"), "--out", str(tmp_path / "m.tif")]
    assert predict_main(args) == 2                   # 7 observation dates, 7 other dates
    assert predict_main(args + ["--model-dates"]) == 0
    assert (tmp_path / "m.tif").exists()
