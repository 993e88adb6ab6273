"""The bundled sample: format, georeferencing and golden values."""
import json
import os

import numpy as np
import pytest
import tifffile

from sits_ref.dataset import load_dataset
from sits_ref.samples import SampleBuilder, Split

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "data_sample", "manifest.json")
TABLE1 = ["2018-02-15", "2018-03-15", "2018-04-15", "2018-05-15", "2018-06-15",
          "2018-07-08", "2018-08-15", "2018-09-15", "2018-10-15", "2018-11-15",
          "2018-12-15"]
# Labelled (valid) pixels per class code, counted with GDAL by the dev-only script
# tests/data/make_sample_gdal_counts.py (rasterio.features.rasterize of every shapefile
# record, pixel-centre rule, later records overwrite earlier ones), which wrote
# tests/data/sample_gdal_counts.json with the rasterio / GDAL versions used.
GDAL_COUNTS_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                "sample_gdal_counts.json")
with open(GDAL_COUNTS_JSON) as _f:
    _gdal = json.load(_f)
GDAL_COUNTS = {which: {int(code): n for code, n in _gdal[which]["labelled"].items()}
               for which in ("train", "test")}


@pytest.fixture(scope="module")
def sample():
    return load_dataset(SAMPLE)


def test_sample_mirrors_the_paper(sample):
    assert sample.dates == TABLE1
    assert sample.bands == ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
    assert len(sample.feature_names) == 13
    assert sample.class_codes == [1, 2, 3, 5, 6, 7, 10, 11]
    assert sample.class_names[0] == "Built up" and sample.class_names[-1] == "Water"
    x0, dx, _, y0, _, dy = sample.georef.transform
    assert sample.georef.epsg == 32631 and (dx, dy) == (10.0, -10.0)
    # inside tile 31TCJ: x 300000..409800, y 4790200..4900000
    xmin, ymin, xmax, ymax = sample.bounds
    assert 300000 <= xmin < xmax <= 409800 and 4790200 <= ymin < ymax <= 4900000


def test_golden_pixel_features_from_raw_digital_numbers(sample):
    # raw int16 DNs read by tifffile itself, independent of sits_ref.geotiff
    raw = tifffile.imread(sample.source.images[5])  # 2018-07-08, (10, H, W) band-first
    b3, b4, b8 = (float(raw[i, 100, 120]) for i in (1, 2, 3))
    feats, valid = sample.read_features((100, 120, 1, 1))
    assert valid[0, 0]
    assert feats[5, 2, 0, 0] == pytest.approx(b4 * 1e-4, rel=1e-6)
    assert feats[5, 10, 0, 0] == pytest.approx((b8 - b4) / (b8 + b4), abs=1e-6)
    assert feats[5, 11, 0, 0] == pytest.approx((b3 - b8) / (b3 + b8), abs=1e-6)
    assert feats[5, 12, 0, 0] == pytest.approx(np.sqrt((b4 ** 2 + b3 ** 2) / 2) * 1e-4,
                                               rel=1e-5)


def test_values_look_like_l3a_reflectance(sample):
    bands, valid = sample.read_bands()
    assert valid.mean() > 0.999
    refl = bands[:, :, valid]
    assert 0 <= refl.min() and refl.max() < 1.0
    # vegetation in July: median NIR (B8) well above red (B4), as in real L3A
    assert np.median(refl[5, 3]) > 2 * np.median(refl[5, 2])


@pytest.mark.parametrize("which", ["train", "test"])
def test_labelled_pixels_per_class_match_gdal(sample, which):
    polygons = sample.polygons(which)
    px = SampleBuilder(sample, polygons).pixels(Split(np.arange(len(polygons))))
    counts = np.bincount(px.y, minlength=8)
    assert dict(zip(sample.class_codes, counts.tolist())) == GDAL_COUNTS[which]
