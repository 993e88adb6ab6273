"""Spectral indices of the paper (section 3.3) and the per-date feature stack.

* NDVI = (B8 - B4) / (B8 + B4)
* NDWI = (B3 - B8) / (B3 + B8)   (McFeeters 1996, open water: NDWI > 0)
* BI   = sqrt((B4**2 + B3**2) / 2)   (brightness index, in reflectance units)

All are computed in float32. A normalised difference whose denominator is zero
(both bands 0, e.g. a zero-filled pixel) is defined as 0: "no contrast" rather than
NaN, so a stray pixel never poisons a model's normalisation statistics.

Band names come from the dataset (``B2``, ``B3``, ``B4``, ``B8``, ...). An index whose
bands are absent is skipped, never faked; a dataset that already carries a band
named like an index (say ``NDVI``) keeps its own.
"""
from __future__ import annotations

import numpy as np

INDEX_BANDS = {"NDVI": ("B8", "B4"), "NDWI": ("B3", "B8"), "BI": ("B4", "B3")}
PAPER_BANDS = ("B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12")


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b) in float32; 0 where a + b == 0."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    num, den = a - b, a + b
    out = np.zeros(np.broadcast(num, den).shape, np.float32)
    np.divide(num, den, out=out, where=den != 0)
    return out


def ndvi(b8, b4) -> np.ndarray:
    """Normalised difference vegetation index, (B8 - B4) / (B8 + B4)."""
    return normalized_difference(b8, b4)


def ndwi(b3, b8) -> np.ndarray:
    """McFeeters' normalised difference water index, (B3 - B8) / (B3 + B8)."""
    return normalized_difference(b3, b8)


def brightness_index(b4, b3) -> np.ndarray:
    """Brightness index sqrt((B4^2 + B3^2) / 2), same units as the bands."""
    b4 = np.asarray(b4, np.float32)
    b3 = np.asarray(b3, np.float32)
    return np.sqrt((b4 * b4 + b3 * b3) / np.float32(2))


_FUNCTIONS = {"NDVI": ndvi, "NDWI": ndwi, "BI": brightness_index}


def available_indices(band_names) -> list[str]:
    """Indices computable from ``band_names`` and not already present, in paper order."""
    names = list(band_names)
    return [idx for idx, needed in INDEX_BANDS.items()
            if idx not in names and all(b in names for b in needed)]


def feature_names(band_names) -> list[str]:
    """Names of the stacked features: the bands, then the computable indices."""
    return list(band_names) + available_indices(band_names)


def add_indices(bands: np.ndarray, band_names, axis: int = -3) -> np.ndarray:
    """Append the paper's indices to a band stack.

    Args:
        bands: reflectances with the band axis at ``axis``; e.g. (T, C, H, W) with
            axis=-3 (the default) or (N, T, C) with axis=-1.
        band_names: names of the C bands, in order.

    Returns:
        float32 array with C + n_indices features along ``axis``, ordered as
        :func:`feature_names` (13 features for the paper's 10 bands).
    """
    bands = np.asarray(bands, np.float32)
    names = list(band_names)
    if bands.shape[axis] != len(names):
        raise ValueError(f"{bands.shape[axis]} bands on axis {axis} but "
                         f"{len(names)} band names {names}")
    def band(name):                                # a view, not a copy
        where = [slice(None)] * bands.ndim
        where[axis] = names.index(name)
        return bands[tuple(where)]

    extra = [_FUNCTIONS[idx](*(band(b) for b in INDEX_BANDS[idx]))
             for idx in available_indices(names)]
    if not extra:
        return bands
    return np.concatenate([bands, np.stack(extra, axis=axis)], axis=axis)
