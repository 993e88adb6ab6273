"""sits_ref.geotiff against files written by GDAL (tests/data/make_geotiff_fixtures.py)."""
import json
import os

import numpy as np
import pytest

from sits_ref.geotiff import (GeoRef, GeoTiffError, create_geotiff, read_info,
                              read_window, write_geotiff)

DATA = os.path.join(os.path.dirname(__file__), "data", "geotiff")
with open(os.path.join(DATA, "expected.json")) as _f:
    EXPECTED = json.load(_f)
UTM = GeoRef((356040.0, 10.0, 0.0, 4835680.0, 0.0, -10.0), 32631)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reads_gdal_georeferencing_like_gdal(name):
    info = read_info(os.path.join(DATA, name))
    exp = EXPECTED[name]
    assert info.georef.transform == pytest.approx(tuple(exp["transform"]), abs=1e-9)
    assert info.georef.epsg == exp["epsg"]
    assert info.georef.nodata == exp["nodata"]
    assert (info.count, info.height, info.width) == tuple(exp["shape"])
    assert info.dtype == np.dtype(exp["dtype"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reads_gdal_pixels(name):
    truth = np.load(os.path.join(DATA, name.replace(".tif", ".npy")))
    assert np.array_equal(read_window(os.path.join(DATA, name)), truth)


@pytest.mark.parametrize("window", [(0, 0, 1, 1), (3, 5, 20, 30), (15, 17, 25, 33),
                                    (39, 49, 1, 1), (16, 16, 16, 16)])
def test_window_reads_only_the_window(window):
    """Windows across tile boundaries (16x16 tiles) equal slices of the full image."""
    path = os.path.join(DATA, "tiled_pixel_interleave.tif")
    r, c, h, w = window
    truth = np.load(path.replace(".tif", ".npy"))
    assert np.array_equal(read_window(path, window), truth[:, r:r + h, c:c + w])


def test_window_outside_image_is_refused():
    with pytest.raises(GeoTiffError, match="outside the image"):
        read_window(os.path.join(DATA, "rotated.tif"), (5, 5, 10, 10))


def test_classified_map_round_trip(tmp_path):
    classes = np.random.default_rng(0).integers(0, 9, (37, 45)).astype(np.uint8)
    path = tmp_path / "map.tif"
    write_geotiff(path, classes, UTM.window(3, 7), nodata=0,
                  colormap={1: (230, 0, 77), 2: (0, 166, 0)}, metadata={"CLASS_1": "Built up"})
    info = read_info(path)
    # window(3, 7) moves the origin by 7 columns east and 3 rows south, 10 m each
    assert info.georef.transform == (356110.0, 10.0, 0.0, 4835650.0, 0.0, -10.0)
    assert info.georef.epsg == 32631 and info.georef.nodata == 0
    assert np.array_equal(read_window(path)[0], classes)
    import tifffile
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.photometric == tifffile.PHOTOMETRIC.PALETTE
        assert tuple(page.colormap[:, 1] // 257) == (230, 0, 77)
        assert "Built up" in page.tags[42112].value


def test_multiband_and_streamed_writes_round_trip(tmp_path):
    cube = np.random.default_rng(1).normal(size=(4, 20, 30)).astype(np.float32)
    write_geotiff(tmp_path / "cube.tif", cube, UTM, nodata=-9999.5)
    assert np.array_equal(read_window(tmp_path / "cube.tif"), cube)
    assert read_info(tmp_path / "cube.tif").georef.nodata == -9999.5
    with create_geotiff(tmp_path / "conf.tif", 20, 30, np.float32, UTM) as img:
        img[5:10] = 0.25
    out = read_window(tmp_path / "conf.tif")[0]
    assert out[5:10].min() == 0.25 and out[:5].max() == 0 and out[10:].max() == 0
    assert read_info(tmp_path / "conf.tif").georef == UTM


def test_streamed_write_is_stored_in_strips_read_one_by_one(tmp_path):
    import tifffile
    values = np.arange(150 * 7, dtype=np.float32).reshape(150, 7)
    with create_geotiff(tmp_path / "conf.tif", 150, 7, np.float32, UTM) as img:
        img[:] = values
    with tifffile.TiffFile(tmp_path / "conf.tif") as tif:
        assert tif.pages.first.rowsperstrip == 64 and len(tif.pages.first.dataoffsets) == 3
    assert np.array_equal(read_window(tmp_path / "conf.tif", (130, 2, 20, 3))[0],
                          values[130:150, 2:5])


def test_failed_streamed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with create_geotiff(tmp_path / "conf.tif", 20, 30, np.float32, UTM):
            raise RuntimeError("crash mid-way")
    assert os.listdir(tmp_path) == []


def test_missing_file(tmp_path):
    with pytest.raises(GeoTiffError, match="nope.tif: file not found"):
        read_info(tmp_path / "nope.tif")


def test_not_a_tiff(tmp_path):
    (tmp_path / "bad.tif").write_text("hello")
    with pytest.raises(GeoTiffError, match="bad.tif: not a readable TIFF"):
        read_info(tmp_path / "bad.tif")


def test_tiff_without_georeferencing(tmp_path):
    import tifffile
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((5, 5), np.uint8))
    with pytest.raises(GeoTiffError, match="plain.tif: no georeferencing"):
        read_info(tmp_path / "plain.tif")
