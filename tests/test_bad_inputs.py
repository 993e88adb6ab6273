"""Bad inputs, one broken thing each: every one gets ONE line naming the file and what
was expected. Each broken input is made here from the `tiny_dataset` fixture."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tifffile

from conftest import TINY_GEOREF, edit_manifest, square, write_shapefile
from sits_ref.dataset import DatasetError, load_dataset
from sits_ref.geotiff import GeoRef, GeoTiffError, read_window, write_geotiff

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UTM_CRS = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32631"}}


def error_line(call, error=DatasetError) -> str:
    """The message of the error ``call()`` raises, checked to be one line."""
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


def load_error(manifest) -> str:
    return error_line(lambda: load_dataset(manifest))


def check_error(manifest) -> str:
    """Error of the first full check (loading, then polygons and pixels)."""
    return error_line(lambda: load_dataset(manifest).check())


def write_geojson(path, features, crs=UTM_CRS):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": code},
         "geometry": {"type": "Polygon", "coordinates": rings}} for rings, code in features]}
    if crs is not None:
        doc["crs"] = crs
    path.write_text(json.dumps(doc))


def truncate(path, size=None) -> None:
    """Cut a file to ``size`` bytes (default: half), as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2 if size is None else size])


def strip_ends(path) -> int:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        return max(o + n for o, n in zip(page.dataoffsets, page.databytecounts))


# 1. Shapefiles

def test_shapefile_without_dbf(tiny_dataset, tmp_path):
    os.remove(tmp_path / "train.dbf")
    assert check_error(tiny_dataset) == \
        f"{tmp_path / 'train.shp'}: shapefile is missing its .dbf (attributes) file"


def test_shapefile_without_shx_still_reads(tiny_dataset, tmp_path):
    """pyshp reads the geometry sequentially: a missing .shx index is not an error."""
    os.remove(tmp_path / "train.shx")
    assert len(load_dataset(tiny_dataset).polygons("train")) == 4


def test_shapefile_with_corrupt_dbf(tiny_dataset, tmp_path):
    (tmp_path / "train.dbf").write_bytes(b"garbage")
    assert check_error(tiny_dataset).startswith(
        f"{tmp_path / 'train.shp'}: not a readable shapefile (")


def test_empty_shapefile(tiny_dataset, tmp_path):
    (tmp_path / "train.shp").write_bytes(b"")
    assert check_error(tiny_dataset).startswith(
        f"{tmp_path / 'train.shp'}: not a readable shapefile (")


# 2. Truncated or unreadable GeoTIFFs

def test_truncated_geotiff_is_refused_at_load(tiny_dataset, tmp_path):
    path = tmp_path / "date1.tif"
    end = strip_ends(path)
    truncate(path)
    size = os.path.getsize(path)
    assert load_error(tiny_dataset) == \
        f"{path}: truncated: strip 7 ends at byte {end} but the file has {size} bytes"


def test_corrupt_geotiff_pixels_name_the_file(tiny_dataset, tmp_path):
    path = tmp_path / "date1.tif"
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages.first.dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[offset:offset + 64] = b"\xff" * 64  # the first strip's deflate stream
    path.write_bytes(bytes(data))
    ds = load_dataset(tiny_dataset)
    message = error_line(ds.read_bands, GeoTiffError)
    assert message.startswith(f"{path}: cannot decode pixels (file truncated or corrupt: ")


def test_geotiff_cut_inside_its_header_gives_one_line(tiny_dataset, tmp_path, caplog):
    """tifffile's log lines about the lost tags are held back: only our error shows."""
    truncate(tmp_path / "date2.tif", 300)
    message = load_error(tiny_dataset)
    assert message.startswith(f"{tmp_path / 'date2.tif'}: truncated or corrupt: the header "
                              "lists 0 strip offsets and 1 byte counts for 8 strips")
    assert not [r for r in caplog.records if r.name == "tifffile"]


def test_empty_image_file(tiny_dataset, tmp_path):
    (tmp_path / "date0.tif").write_bytes(b"")
    assert load_error(tiny_dataset).startswith(
        f"{tmp_path / 'date0.tif'}: not a readable TIFF (")


def test_text_file_named_tif(tiny_dataset, tmp_path):
    (tmp_path / "date0.tif").write_text("not an image\n")
    assert load_error(tiny_dataset).startswith(
        f"{tmp_path / 'date0.tif'}: not a readable TIFF (")


def test_tiff_without_georeferencing(tiny_dataset, tmp_path):
    tifffile.imwrite(tmp_path / "date1.tif", np.zeros((4, 20, 24), np.int16),
                     photometric="minisblack", planarconfig="separate")
    assert load_error(tiny_dataset) == (
        f"{tmp_path / 'date1.tif'}: no georeferencing (expected ModelPixelScale + "
        "ModelTiepoint or ModelTransformation tags)")


def test_image_in_another_crs(tiny_dataset, tmp_path):
    write_geotiff(tmp_path / "date2.tif", np.zeros((4, 20, 24), np.int16),
                  GeoRef(TINY_GEOREF.transform, 32630))
    assert load_error(tiny_dataset).startswith(
        f"{tmp_path / 'date2.tif'}: grid EPSG:32630 ")


def test_image_of_another_shape(tiny_dataset, tmp_path):
    write_geotiff(tmp_path / "date1.tif", np.zeros((4, 20, 23), np.int16), TINY_GEOREF)
    assert load_error(tiny_dataset) == (f"{tmp_path / 'date1.tif'}: shape 20x23 differs from "
                                        f"{tmp_path / 'date0.tif'}: 20x24")


def test_missing_image(tiny_dataset, tmp_path):
    edit_manifest(tiny_dataset, images=["date0.tif", "date1.tif", "gone.tif"])
    assert load_error(tiny_dataset) == f"{tmp_path / 'gone.tif'}: file not found"


def test_wrong_band_count(tiny_dataset, tmp_path):
    edit_manifest(tiny_dataset, bands=["B3", "B4", "B8", "B11", "B12"])
    assert load_error(tiny_dataset) == \
        f"{tmp_path / 'date0.tif'}: 4 bands, expected 5 (5 bands)"


def test_stack_with_wrong_band_count(tiny_dataset, tmp_path):
    write_geotiff(tmp_path / "stack.tif", np.zeros((8, 20, 24), np.int16), TINY_GEOREF)
    edit_manifest(tiny_dataset, images=["stack.tif"])
    assert load_error(tiny_dataset) == \
        f"{tmp_path / 'stack.tif'}: 8 bands, expected 12 (4 bands x 3 dates)"


# 3. NaN / inf in float images: a warning, and the observations are nodata (gap-filled)

def test_nan_and_inf_are_nodata_with_one_warning_per_file(tiny_dataset, tmp_path):
    cube = read_window(tmp_path / "date1.tif").astype(np.float32)
    cube[0, 2, 3] = np.nan
    cube[3, 5, 7] = np.inf
    cube[:, 9, 9] = np.nan  # one pixel, every band
    write_geotiff(tmp_path / "date1.tif", cube, TINY_GEOREF, nodata=-10000)
    ds = load_dataset(tiny_dataset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds.check()
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'date1.tif'}: 3 pixel(s) (0.62 %) hold NaN or inf; treated as nodata "
        "(gap-filled in time)"]
    bands, valid = ds.read_bands()
    assert valid.all() and np.isfinite(bands).all()    # the other dates fill them
    for r, c in ((2, 3), (5, 7), (9, 9)):             # date 1 between dates 0 and 2
        assert np.all((bands[1, :, r, c] - bands[0, :, r, c])
                      * (bands[1, :, r, c] - bands[2, :, r, c]) <= 1e-9)


def test_clean_dataset_checks_silently(tiny_dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(tiny_dataset).check()


# 4-5. GeoJSON: open rings, coordinates that cannot be lon/lat, crs members

def test_geojson_ring_not_closed(tiny_dataset, tmp_path):
    ring = square(15, 11, 6)[:-1]
    write_geojson(tmp_path / "train.geojson", [([square(1, 1, 4)], 1), ([square(2, 10, 5)], 1),
                                               ([square(14, 2, 4)], 2), ([ring], 2)])
    edit_manifest(tiny_dataset, train_polygons="train.geojson")
    x0, y0 = ring[0]
    x1, y1 = ring[-1]
    assert check_error(tiny_dataset) == (
        f"{tmp_path / 'train.geojson'}: feature 3: ring 0 is not closed (first vertex "
        f"({x0}, {y0}) != last ({x1}, {y1})); GeoJSON rings must repeat the first vertex")


def test_geojson_malformed_coordinates(tiny_dataset, tmp_path):
    write_geojson(tmp_path / "train.geojson", [([square(1, 1, 4)], 1), ([[1, 2, 3]], 2)])
    edit_manifest(tiny_dataset, train_polygons="train.geojson")
    assert check_error(tiny_dataset) == (
        f"{tmp_path / 'train.geojson'}: feature 1: malformed Polygon coordinates (expected "
        "lists of rings of [x, y] positions)")


def test_geojson_without_crs_but_projected_coordinates(tiny_dataset, tmp_path):
    write_geojson(tmp_path / "train.geojson", [([square(0, 0, 4)], 1)], crs=None)
    edit_manifest(tiny_dataset, train_polygons="train.geojson")
    assert check_error(tiny_dataset) == (
        f"{tmp_path / 'train.geojson'}: no 'crs' member, so coordinates are read as lon/lat "
        "(RFC 7946), but x=356040.0, y=4835680.0 cannot be lon/lat; add a crs member "
        "(e.g. EPSG:32631) or reproject")


def test_geojson_with_gdal_crs_member_is_read_in_that_crs(tiny_dataset, tmp_path):
    write_geojson(tmp_path / "train.geojson", [([square(1, 1, 4)], 1), ([square(14, 2, 4)], 2)])
    edit_manifest(tiny_dataset, train_polygons="train.geojson")
    ds = load_dataset(tiny_dataset)
    ds.check()
    assert [p.code for p in ds.polygons("train")] == [1, 2]


def test_geojson_with_unrecognised_crs_member(tiny_dataset, tmp_path):
    write_geojson(tmp_path / "train.geojson", [([square(1, 1, 4)], 1)],
                  crs={"type": "link", "properties": {"href": "x.prj"}})
    edit_manifest(tiny_dataset, train_polygons="train.geojson")
    assert check_error(tiny_dataset).startswith(
        f"{tmp_path / 'train.geojson'}: unrecognised GeoJSON crs ")


# Other polygon problems

def test_polygons_in_another_crs(tiny_dataset, tmp_path):
    write_shapefile(tmp_path / "train.shp", [([square(1, 1, 4)], 1)],
                    wkt='GEOGCS["WGS 84",DATUM["WGS_1984"],AUTHORITY["EPSG","4326"]]')
    assert check_error(tiny_dataset) == (
        f"{tmp_path / 'train.shp'}: polygons are in EPSG:4326 but the images are in "
        "EPSG:32631; reproject the polygons")


def test_no_class_field(tiny_dataset, tmp_path):
    write_shapefile(tmp_path / "train.shp", [([square(1, 1, 4)], 1)], field="landcover")
    assert check_error(tiny_dataset) == \
        f"{tmp_path / 'train.shp'}: no class field 'code' (fields are landcover)"


def test_unknown_class_code(tiny_dataset, tmp_path):
    write_shapefile(tmp_path / "train.shp", [([square(1, 1, 4)], 1), ([square(14, 2, 4)], 7)])
    assert check_error(tiny_dataset) == \
        f"{tmp_path / 'train.shp'}: record 1: unknown class code 7 (expected one of [1, 2])"


def test_all_polygons_outside_the_image(tiny_dataset, tmp_path):
    write_shapefile(tmp_path / "train.shp", [([square(100, 100, 4)], 1)])
    assert check_error(tiny_dataset).startswith(
        f"{tmp_path / 'train.shp'}: none of the 1 polygons overlaps the image extent ")


def test_missing_test_polygons_file_is_found_by_check(tiny_dataset, tmp_path):
    edit_manifest(tiny_dataset, test_polygons="test.shp")
    assert check_error(tiny_dataset) == f"{tmp_path / 'test.shp'}: file not found"


# 7. A manifest class without training polygons

def test_class_without_polygon_warns_once(tiny_dataset, tmp_path):
    doc = json.loads(tiny_dataset.read_text())
    edit_manifest(tiny_dataset, classes=doc["classes"] + [
        {"code": 5, "name": "Shrubland", "color": "#a6f200"}])
    ds = load_dataset(tiny_dataset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds.check()
        ds.polygons("train")
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'train.shp'}: no polygon for class 5 'Shrubland' of manifest.json: "
        "no model can learn it; macro-F1 means leave it out wherever it has no reference "
        "pixel"]


# 6. Manifest

def test_date_not_in_the_calendar(tiny_dataset):
    edit_manifest(tiny_dataset, dates=["2018-02-15", "2018-13-45", "2018-04-15"])
    assert load_error(tiny_dataset) == (f"{tiny_dataset}: dates[1] '2018-13-45' is not a "
                                        "calendar date (expected YYYY-MM-DD)")


def test_date_in_another_format(tiny_dataset):
    edit_manifest(tiny_dataset, dates=["2018-02-15", "15/03/2018", "2018-04-15"])
    assert load_error(tiny_dataset) == (f"{tiny_dataset}: dates[1] '15/03/2018' is not a "
                                        "calendar date (expected YYYY-MM-DD)")


def test_dates_not_increasing(tiny_dataset):
    edit_manifest(tiny_dataset, dates=["2018-02-15", "2018-06-15", "2018-05-15"])
    assert load_error(tiny_dataset) == (f"{tiny_dataset}: dates must be strictly increasing: "
                                        "dates[2] 2018-05-15 is not after dates[1] 2018-06-15")


def test_fewer_dates_than_images(tiny_dataset):
    edit_manifest(tiny_dataset, dates=["2018-02-15", "2018-03-15"])
    assert load_error(tiny_dataset) == (f"{tiny_dataset}: 3 images for 2 dates (expected one "
                                        "image per date, or one image stacking all dates)")


def test_dates_not_a_list(tiny_dataset):
    edit_manifest(tiny_dataset, dates="2018-02-15")
    assert load_error(tiny_dataset) == (f"{tiny_dataset}: 'dates' must be a non-empty list "
                                        'of strings, got "2018-02-15"')


def test_scale_not_a_number(tiny_dataset):
    edit_manifest(tiny_dataset, scale="1e-4x")
    assert load_error(tiny_dataset) == f"{tiny_dataset}: scale '1e-4x' is not a number"


def test_empty_manifest(tiny_dataset):
    tiny_dataset.write_text("")
    assert load_error(tiny_dataset).startswith(f"{tiny_dataset}: not a readable JSON manifest (")


def test_bad_json_manifest(tiny_dataset):
    tiny_dataset.write_text(tiny_dataset.read_text()[:-10])
    assert load_error(tiny_dataset).startswith(f"{tiny_dataset}: not a readable JSON manifest (")


def test_manifest_not_an_object(tiny_dataset):
    tiny_dataset.write_text("[1, 2]")
    assert load_error(tiny_dataset).startswith(f"{tiny_dataset}: not a manifest (expected a "
                                               "JSON object with fields images, dates")


# End to end: run_benchmark.py prints one line and exits 2, for each error family

def _break_dates(manifest, tmp_path):
    edit_manifest(manifest, dates=["2018-02-15", "2018-02-30", "2018-04-15"])
    return manifest


def _break_image(manifest, tmp_path):
    truncate(tmp_path / "date1.tif")
    return tmp_path / "date1.tif"


def _break_shapefile(manifest, tmp_path):
    os.remove(tmp_path / "train.dbf")
    return tmp_path / "train.shp"


def _break_geojson(manifest, tmp_path):
    write_geojson(tmp_path / "train.geojson", [([square(0, 0, 4)], 1)], crs=None)
    edit_manifest(manifest, train_polygons="train.geojson")
    return tmp_path / "train.geojson"


@pytest.mark.parametrize("breaker", [_break_dates, _break_image, _break_shapefile,
                                     _break_geojson])
def test_run_benchmark_prints_one_line_and_exits_2(tiny_dataset, tmp_path, breaker):
    bad_file = breaker(tiny_dataset, tmp_path)
    proc = subprocess.run([sys.executable, "run_benchmark.py", "--data", str(tiny_dataset),
                           "--models", "rf_base", "--quick", "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert lines[0].startswith(f"run_benchmark.py: error: {bad_file}: ")
    assert not (tmp_path / "out").exists()          # checked before anything is written


def test_run_benchmark_with_nan_pixels_warns_and_maps_them_as_nodata(tiny_dataset, tmp_path):
    for t in range(3):
        cube = read_window(tmp_path / f"date{t}.tif").astype(np.float32)
        cube[:, 2, 3] = np.nan                 # every date, inside training polygon 0
        cube[1, 15, 20] = np.inf if t == 1 else cube[1, 15, 20]    # one date: filled
        write_geotiff(tmp_path / f"date{t}.tif", cube, TINY_GEOREF, nodata=-10000)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "run_benchmark.py", "--data", str(tiny_dataset),
                           "--models", "tempcnn", "rf_base", "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"{tmp_path / 'date1.tif'}: 2 pixel(s) (0.42 %) hold NaN or inf; treated as " \
        "nodata" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    for name in ("tempcnn", "rf_base"):
        classes = read_window(out / results["models"][name]["map"])[0]
        assert np.flatnonzero(classes == 0).tolist() == [2 * 24 + 3]   # never valid only
