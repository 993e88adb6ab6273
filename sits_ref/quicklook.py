"""Quicklooks: small PNG pictures of class maps, confidence maps and the input.

A scene is shrunk by an integer factor ``f`` so that its long side is at most
``max_side`` pixels (2048 by default): each f x f block of a class map becomes its most
frequent class (block mode), each block of a confidence map or of reflectances its mean.
Rasters are read in row bands of a multiple of f rows, so memory stays bounded by one
band plus the small picture, whatever the scene size.
"""
from __future__ import annotations

import math

import numpy as np

from .geotiff import read_info, read_window
from .png import write_png

MAX_SIDE = 2048         # pixels on the long side of a quicklook
READ_ROWS = 256         # rows of a single-band raster read at once (rounded to f)
READ_BUDGET_MB = 256    # memory for one band of the input time series (RGB quicklook)
RGB_BANDS = ("B4", "B3", "B2")
STRETCH = (2, 98)       # percentiles mapped to 0 and 255 in the RGB quicklook


def reduction_factor(height: int, width: int, max_side: int = MAX_SIDE) -> int:
    """The smallest integer f with ceil(max(height, width) / f) <= max_side."""
    return max(1, math.ceil(max(height, width) / max_side))


def _blocks(values: np.ndarray, factor: int, fill) -> np.ndarray:
    """(ceil(h/f), ceil(w/f), f*f) blocks of a (h, w) array; edges padded with ``fill``."""
    h, w = values.shape
    rows, cols = -(-h // factor), -(-w // factor)
    padded = np.full((rows * factor, cols * factor), fill, values.dtype)
    padded[:h, :w] = values
    return (padded.reshape(rows, factor, cols, factor).transpose(0, 2, 1, 3)
            .reshape(rows, cols, factor * factor))


def block_mode(classes: np.ndarray, factor: int, nodata: int = 0) -> np.ndarray:
    """Most frequent value of each ``factor`` x ``factor`` block of a class map.

    ``nodata`` is not counted unless the whole block is nodata; on a tie the smaller
    class code wins. Blocks at the right and bottom edges may be partial.
    """
    blocks = _blocks(classes, factor, nodata)
    mode = np.full(blocks.shape[:2], nodata, classes.dtype)
    best = np.zeros(blocks.shape[:2], np.int64)
    for value in np.unique(blocks):            # ascending, so ties keep the smaller
        if value == nodata:
            continue
        count = (blocks == value).sum(axis=-1)
        more = count > best
        mode[more], best[more] = value, count[more]
    return mode


def block_mean(values: np.ndarray, valid: np.ndarray, factor: int):
    """(mean of the valid pixels of each block, whether a block has one); invalid
    blocks get 0."""
    total = _blocks(np.where(valid, values, 0).astype(np.float64), factor, 0.0).sum(-1)
    count = _blocks(valid, factor, False).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0), count > 0


def _reduce_raster(path, reduce, max_side: int) -> np.ndarray:
    """``reduce(band, factor)`` applied to a single-band GeoTIFF in row bands."""
    info = read_info(path)
    factor = reduction_factor(info.height, info.width, max_side)
    step = factor * max(1, READ_ROWS // factor)
    parts = []
    for row0 in range(0, info.height, step):
        rows = min(step, info.height - row0)
        parts.append(reduce(read_window(path, (row0, 0, rows, info.width))[0], factor))
    return np.concatenate(parts)


def palette(colors: dict) -> np.ndarray:
    """(256, 3) uint8 colours indexed by class code, from {code: (r, g, b)}; codes
    without a colour are black (0 is nodata, drawn transparent)."""
    table = np.zeros((256, 3), np.uint8)
    for code, rgb in colors.items():
        table[int(code)] = rgb
    return table


def class_map_quicklook(map_path, png_path, colors: dict, max_side: int = MAX_SIDE):
    """PNG of a class-code map (uint8, 0 = nodata) with class ``colors``
    ({code: (r, g, b)}), nodata transparent; returns its (height, width)."""
    small = _reduce_raster(map_path, lambda band, f: block_mode(band, f), max_side)
    write_png(png_path, small.astype(np.uint8), palette(colors), transparent=0)
    return small.shape


def confidence_quicklook(conf_path, png_path, max_side: int = MAX_SIDE):
    """Grey PNG of a confidence map (probabilities 0-1, 0 = nodata): black 0, white 1;
    returns its (height, width)."""
    def reduce(band, factor):
        return block_mean(band, band > 0, factor)[0]

    small = _reduce_raster(conf_path, reduce, max_side)
    write_png(png_path, np.round(np.clip(small, 0, 1) * 255).astype(np.uint8))
    return small.shape


def stretch(rgb: np.ndarray, valid: np.ndarray, percentiles=STRETCH) -> np.ndarray:
    """(h, w, 3) uint8 of (3, h, w) values: each channel's ``percentiles`` over the
    valid pixels map to 0 and 255 (clipped between); invalid pixels are black."""
    out = np.zeros(rgb.shape[1:] + (3,), np.uint8)
    if not valid.any():
        return out
    for k, channel in enumerate(rgb):
        low, high = np.percentile(channel[valid], percentiles)
        scaled = (channel - low) / (high - low if high > low else 1.0)
        out[..., k] = np.where(valid, np.round(np.clip(scaled, 0, 1) * 255), 0)
    return out


def rgb_bands(dataset, date: int, window=None):
    """((3, h, w) reflectances B4, B3, B2 at date index ``date``, valid (h, w)) of a
    :class:`sits_ref.dataset.Dataset`, gap-filled like the models' input."""
    missing = [b for b in RGB_BANDS if b not in dataset.bands]
    if missing:
        raise ValueError(f"{dataset.manifest_path}: no band {', '.join(missing)} for an "
                         f"RGB picture (bands: {', '.join(dataset.bands)})")
    bands, valid = dataset.read_bands(window)
    return bands[date, [dataset.bands.index(b) for b in RGB_BANDS]], valid


def rgb_quicklook(dataset, date: int, png_path, max_side: int = MAX_SIDE):
    """True-colour PNG (B4/B3/B2, 2-98 % stretch) of the input at date index ``date``;
    returns its (height, width). Reads the whole series once, in row bands."""
    factor = reduction_factor(dataset.height, dataset.width, max_side)
    row_bytes = 2 * 4 * len(dataset.dates) * len(dataset.bands) * dataset.width
    step = factor * max(1, int(READ_BUDGET_MB * 2**20 / (row_bytes * factor)))
    means, valids = [], []
    for row0 in range(0, dataset.height, step):
        rows = min(step, dataset.height - row0)
        rgb, valid = rgb_bands(dataset, date, (row0, 0, rows, dataset.width))
        reduced = [block_mean(channel, valid, factor) for channel in rgb]
        means.append(np.stack([m for m, _ in reduced]))
        valids.append(reduced[0][1])
    small = stretch(np.concatenate(means, axis=1), np.concatenate(valids))
    write_png(png_path, small)
    return small.shape[:2]
