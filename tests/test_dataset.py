"""Manifest loading and the bad datasets it must refuse with a clear message."""
import json

import numpy as np
import pytest

from conftest import TINY_GEOREF, edit_manifest, square, write_shapefile
from sits_ref.dataset import DatasetError, load_dataset
from sits_ref.geotiff import GeoRef, write_geotiff


def test_tiny_dataset_loads_with_features(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    assert (ds.height, ds.width) == (20, 24)
    assert ds.georef == TINY_GEOREF
    assert ds.feature_names == ["B3", "B4", "B8", "B11", "NDVI", "NDWI", "BI"]
    feats, valid = ds.read_features((2, 3, 5, 6))
    assert feats.shape == (3, 7, 5, 6) and valid.all()
    bands, _ = ds.read_bands()
    # left half of date 0: B4 ~ 0.12, B8 ~ 0.25 (DN x 0.0001), noise +-0.005
    assert abs(bands[0, 1, :, :12].mean() - 0.12) < 0.002
    assert ds.class_codes == [1, 2]
    assert [p.code for p in ds.polygons("train")] == [1, 1, 2, 2]


def test_stacked_layout_equals_per_date_files(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    bands, _ = ds.read_bands()
    raw = np.round(bands / 0.0001).astype(np.int16).reshape(12, 20, 24)  # date-major
    write_geotiff(tmp_path / "stack.tif", raw, TINY_GEOREF)
    edit_manifest(tiny_dataset, images=["stack.tif"])
    stacked = load_dataset(tiny_dataset)
    assert stacked.source.stacked
    assert np.allclose(stacked.read_bands()[0], bands, atol=1e-6)


def test_nodata_observation_is_filled_and_never_valid_pixel_is_invalid(tiny_dataset,
                                                                       tmp_path):
    from sits_ref.geotiff import read_window
    cubes = [read_window(tmp_path / f"date{t}.tif") for t in range(3)]
    cubes[1][2, 4, 5] = -10000                 # one band of one date: that date is invalid
    for cube in cubes:
        cube[:, 6, 7] = -10000                 # every date: the pixel is never valid
    for t, cube in enumerate(cubes):
        write_geotiff(tmp_path / f"date{t}.tif", cube, TINY_GEOREF, nodata=-10000)
    bands, valid = load_dataset(tiny_dataset).read_bands()
    assert valid.sum() == 20 * 24 - 1 and not valid[6, 7]
    assert (bands[:, :, 6, 7] == 0).all()
    # 2018-03-15 lies 28 of the 59 days from 2018-02-15 to 2018-04-15: every band of
    # that date is interpolated linearly in time (hand computation)
    before, after = cubes[0][:, 4, 5] * 1e-4, cubes[2][:, 4, 5] * 1e-4
    np.testing.assert_allclose(bands[1, :, 4, 5], before + 28 / 59 * (after - before),
                               rtol=1e-5)
    np.testing.assert_allclose(bands[0, :, 4, 5], before, rtol=1e-6)


def test_missing_manifest_and_missing_field(tiny_dataset, tmp_path):
    with pytest.raises(DatasetError, match="nothing.json: manifest not found"):
        load_dataset(tmp_path / "nothing.json")
    doc = json.loads(tiny_dataset.read_text())
    del doc["bands"]
    tiny_dataset.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="missing field.*bands"):
        load_dataset(tiny_dataset)


def test_missing_image(tiny_dataset):
    edit_manifest(tiny_dataset, images=["date0.tif", "gone.tif", "date2.tif"])
    with pytest.raises(DatasetError, match="gone.tif: file not found"):
        load_dataset(tiny_dataset)


def test_dates_with_different_shapes(tiny_dataset, tmp_path):
    write_geotiff(tmp_path / "date2.tif", np.zeros((4, 19, 24), np.int16), TINY_GEOREF)
    with pytest.raises(DatasetError, match="date2.tif: shape 19x24 differs from .*date0.tif: 20x24"):
        load_dataset(tiny_dataset)


def test_dates_with_different_crs(tiny_dataset, tmp_path):
    other = GeoRef(TINY_GEOREF.transform, 32630, -10000)
    write_geotiff(tmp_path / "date1.tif", np.zeros((4, 20, 24), np.int16), other)
    with pytest.raises(DatasetError, match="date1.tif: grid EPSG:32630"):
        load_dataset(tiny_dataset)


def test_wrong_band_count(tiny_dataset):
    edit_manifest(tiny_dataset, bands=["B3", "B4", "B8"])
    with pytest.raises(DatasetError, match="date0.tif: 4 bands, expected 3"):
        load_dataset(tiny_dataset)


def test_polygons_in_another_crs_name_both(tiny_dataset, tmp_path):
    write_shapefile(tmp_path / "train.shp", [([square(1, 1, 4)], 1)],
                    wkt='GEOGCS["WGS 84",DATUM["WGS_1984"],AUTHORITY["EPSG","4326"]]')
    with pytest.raises(DatasetError, match="polygons are in EPSG:4326 but the images are in EPSG:32631"):
        load_dataset(tiny_dataset).polygons("train")


def test_polygons_wholly_outside(tiny_dataset, tmp_path):
    write_shapefile(tmp_path / "train.shp", [([square(1, 1, 4)], 1), ([square(14, 2, 4)], 2),
                                              ([square(100, 100, 4)], 2)])
    with pytest.warns(UserWarning, match="skipped 1 polygon"):
        assert len(load_dataset(tiny_dataset).polygons("train")) == 2
    write_shapefile(tmp_path / "train.shp", [([square(100, 100, 4)], 2)])
    with pytest.raises(DatasetError, match="none of the 1 polygons overlaps"):
        load_dataset(tiny_dataset).polygons("train")


def test_shapefile_without_class_field(tiny_dataset, tmp_path):
    write_shapefile(tmp_path / "train.shp", [([square(1, 1, 4)], 1)], field="landcover")
    with pytest.raises(DatasetError, match="no class field 'code'"):
        load_dataset(tiny_dataset).polygons("train")


def test_unknown_class_code_in_dataset(tiny_dataset, tmp_path):
    write_shapefile(tmp_path / "train.shp", [([square(1, 1, 4)], 9)])
    with pytest.raises(DatasetError, match=r"unknown class code 9 \(expected one of \[1, 2\]\)"):
        load_dataset(tiny_dataset).polygons("train")


def test_bad_class_table(tiny_dataset):
    edit_manifest(tiny_dataset, classes=[{"code": 0, "name": "x"}])
    with pytest.raises(DatasetError, match="code 0 outside 1..255"):
        load_dataset(tiny_dataset)
    edit_manifest(tiny_dataset, classes=[{"code": 1, "name": "x", "color": "red"}])
    with pytest.raises(DatasetError, match="color 'red'"):
        load_dataset(tiny_dataset)
