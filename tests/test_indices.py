"""Indices against values computed by hand."""
import numpy as np
import pytest

from sits_ref.indices import (PAPER_BANDS, add_indices, brightness_index, feature_names,
                              ndvi, ndwi)


def test_ndvi_ndwi_bi_by_hand():
    # B3 = 0.05, B4 = 0.10, B8 = 0.30 (reflectance)
    # NDVI = (0.30 - 0.10) / (0.30 + 0.10) = 0.5
    # NDWI = (0.05 - 0.30) / (0.05 + 0.30) = -0.25 / 0.35 = -5/7
    # BI   = sqrt((0.10^2 + 0.05^2) / 2) = sqrt(0.00625) = 0.0790569415
    assert ndvi(0.30, 0.10) == pytest.approx(0.5, abs=1e-7)
    assert ndwi(0.05, 0.30) == pytest.approx(-5 / 7, abs=1e-7)
    assert brightness_index(0.10, 0.05) == pytest.approx(0.0790569415, abs=1e-7)


def test_water_has_positive_ndwi_and_negative_ndvi():
    # water: B3 = 0.06, B4 = 0.04, B8 = 0.02 -> NDWI = 0.04/0.08 = 0.5, NDVI = -0.02/0.06
    assert ndwi(0.06, 0.02) == pytest.approx(0.5, abs=1e-7)
    assert ndvi(0.02, 0.04) == pytest.approx(-1 / 3, abs=1e-7)


def test_zero_denominator_is_zero_not_nan():
    out = ndvi(np.array([0.0, 0.2]), np.array([0.0, 0.0]))
    assert out.dtype == np.float32
    assert out.tolist() == [0.0, 1.0]


def test_paper_stack_has_13_features_in_order():
    rng = np.random.default_rng(0)
    bands = rng.uniform(0.01, 0.5, size=(11, 10, 4, 5)).astype(np.float32)  # (T, C, H, W)
    feats = add_indices(bands, PAPER_BANDS)
    assert feats.shape == (11, 13, 4, 5) and feats.dtype == np.float32
    assert feature_names(PAPER_BANDS)[10:] == ["NDVI", "NDWI", "BI"]
    b3, b4, b8 = bands[:, 1], bands[:, 2], bands[:, 3]
    assert np.allclose(feats[:, 10], (b8 - b4) / (b8 + b4), atol=1e-6)
    assert np.allclose(feats[:, 11], (b3 - b8) / (b3 + b8), atol=1e-6)
    assert np.allclose(feats[:, 12], np.sqrt((b4 ** 2 + b3 ** 2) / 2), atol=1e-6)
    assert np.array_equal(feats[:, :10], bands)


def test_pixel_layout_axis():
    bands = np.array([[[0.05, 0.10, 0.30]]], np.float32)  # (N=1, T=1, C=3): B3, B4, B8
    feats = add_indices(bands, ["B3", "B4", "B8"], axis=-1)
    assert feats.shape == (1, 1, 6)
    assert feats[0, 0, 3:] == pytest.approx([0.5, -5 / 7, 0.0790569415], abs=1e-6)


def test_missing_bands_skip_the_index_and_existing_index_is_kept():
    assert feature_names(["NDVI"]) == ["NDVI"]
    assert feature_names(["B4", "B8"]) == ["B4", "B8", "NDVI"]
    assert feature_names(["B3", "B4", "B8", "NDVI"]) == ["B3", "B4", "B8", "NDVI", "NDWI", "BI"]
    single = np.ones((3, 1, 2, 2), np.float32)
    assert add_indices(single, ["NDVI"]).shape == (3, 1, 2, 2)


def test_band_name_count_mismatch():
    with pytest.raises(ValueError, match="2 bands on axis -3 but 3 band names"):
        add_indices(np.zeros((1, 2, 3, 3)), ["B3", "B4", "B8"])
