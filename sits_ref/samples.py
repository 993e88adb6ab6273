"""Training samples from sparse polygon labels (paper sections 3.1-3.2).

* Polygons are split into train / validation at polygon level, stratified by class
  (70 / 30, seeded); the test polygons stay untouched.
* Patch models get 32 x 32 windows around each polygon (a larger polygon is tiled by
  several windows) with a label mask: the class index of pixels that belong to a
  polygon of the same set, -1 (unlabelled) elsewhere.
* Pixel models (TempCNN, the forest) get every labelled pixel once.
* Minority classes are oversampled by repetition; features are normalised per
  feature with statistics of the training pixels only.

Labels are rasterised per window (never a whole-scene label raster), so the memory use
is set by the number of labelled polygons, not by the scene size. Arrays follow the
model convention: features (N, F, T, h, w) / (N, F, T), labels (N, h, w) / (N,).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rasterize import rasterize
from .vectors import polygon_bounds

UNLABELLED = -1


@dataclass
class Patches:
    """Windows of features and labels. x: (N, F, T, h, w) float32; y: (N, h, w) int64;
    windows: (N, 4) int (row0, col0, h, w) in the scene; klass: (N,) class index of the
    polygon each patch was made for (used for oversampling)."""

    x: np.ndarray
    y: np.ndarray
    windows: np.ndarray
    klass: np.ndarray


@dataclass
class Pixels:
    """Labelled pixels. x: (N, F, T) float32; y: (N,) int64 class index;
    index: (N,) flat scene index row * width + col; polygon: (N,) polygon id."""

    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    polygon: np.ndarray


def split_polygons(codes, val_fraction: float = 0.3, seed: int = 0):
    """Stratified polygon-level split: returns (train, val) arrays of positions.

    For each class, ``round(val_fraction * n)`` polygons go to validation, but at least
    one stays in training (a class with one polygon is training-only) and, when a class
    has two or more, at least one goes to validation.
    """
    codes = np.asarray(codes)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for code in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == code))
        n_val = int(round(val_fraction * len(members)))
        n_val = min(max(n_val, 1 if len(members) > 1 else 0), len(members) - 1)
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return np.sort(np.array(train, int)), np.sort(np.array(val, int))


def pixel_window(bounds, transform, height: int, width: int):
    """(row0, col0, h, w) of the pixels whose centres may fall inside ``bounds``,
    clipped to the grid; None when empty. North-up transforms only."""
    xmin, ymin, xmax, ymax = bounds
    x0, dx, _, y0, _, dy = transform
    c0 = max(int(np.floor((xmin - x0) / dx)), 0)
    c1 = min(int(np.ceil((xmax - x0) / dx)), width)
    r0 = max(int(np.floor((ymax - y0) / dy)), 0)
    r1 = min(int(np.ceil((ymin - y0) / dy)), height)
    if c1 <= c0 or r1 <= r0:
        return None
    return r0, c0, r1 - r0, c1 - c0


def tile_window(window, size: int, height: int, width: int) -> list[tuple]:
    """Cover ``window`` with size x size windows inside the grid (a small window gets
    one centred patch; a large one is tiled, the last tile flush with its end)."""
    r0, c0, h, w = window
    size_r, size_c = min(size, height), min(size, width)

    def starts(start, extent, tile, limit):
        if extent <= tile:
            first = start + extent // 2 - tile // 2
            return [min(max(first, 0), limit - tile)]
        out = list(range(start, start + extent - tile, tile)) + [start + extent - tile]
        return [min(max(s, 0), limit - tile) for s in out]

    return [(r, c, size_r, size_c) for r in starts(r0, h, size_r, height)
            for c in starts(c0, w, size_c, width)]


class SampleBuilder:
    """Cuts labelled pixels and patches out of a dataset for a list of polygons.

    Args:
        dataset: a :class:`sits_ref.dataset.Dataset`.
        polygons: all polygons of one file (train or test); ids are positions here.
    """

    def __init__(self, dataset, polygons):
        self.ds = dataset
        self.polygons = polygons
        self.bounds = np.array([polygon_bounds(p.geometry) for p in polygons])
        index = {code: k for k, code in enumerate(dataset.class_codes)}
        self.class_index = np.array([index[p.code] for p in polygons], np.int64)

    def burn_ids(self, window) -> np.ndarray:
        """Polygon position + 1 of each pixel of ``window`` (0: no polygon); a later
        polygon overwrites an earlier one, as in GDAL."""
        r0, c0, h, w = window
        sub = self.ds.georef.window(r0, c0).transform
        x0, dx, _, y0, _, dy = sub
        wx = (x0, y0 + h * dy, x0 + w * dx, y0)
        hit = np.flatnonzero((self.bounds[:, 0] < wx[2]) & (self.bounds[:, 2] > wx[0])
                             & (self.bounds[:, 1] < wx[3]) & (self.bounds[:, 3] > wx[1]))
        shapes = ((self.polygons[i].geometry, i + 1) for i in hit)
        return rasterize(shapes, (h, w), sub, fill=0, dtype=np.int32)

    def _labels(self, ids: np.ndarray, members: np.ndarray) -> np.ndarray:
        """Class index where the pixel's polygon is in ``members``, else UNLABELLED."""
        keep = np.zeros(len(self.polygons) + 1, bool)
        keep[members + 1] = True
        lookup = np.concatenate([[UNLABELLED], self.class_index])
        return np.where(keep[ids], lookup[ids], UNLABELLED)

    def _polygon_window(self, i: int):
        return pixel_window(self.bounds[i], self.ds.georef.transform,
                            self.ds.height, self.ds.width)

    def _features(self, window) -> tuple[np.ndarray, np.ndarray]:
        feats, valid = self.ds.read_features(window)  # (T, F, h, w)
        return np.ascontiguousarray(feats.transpose(1, 0, 2, 3)), valid

    def pixels(self, members) -> Pixels:
        """Every valid pixel of the polygons at positions ``members``, once each."""
        members = np.asarray(members, int)
        xs, ys, idx, pid = [], [], [], []
        for i in members:
            window = self._polygon_window(i)
            if window is None:
                continue
            ids = self.burn_ids(window)
            feats, valid = self._features(window)
            rows, cols = np.nonzero((ids == i + 1) & valid)
            xs.append(feats[:, :, rows, cols].transpose(2, 0, 1))
            ys.append(np.full(len(rows), self.class_index[i]))
            idx.append((rows + window[0]) * self.ds.width + cols + window[1])
            pid.append(np.full(len(rows), i))
        n_feat, n_dates = len(self.ds.feature_names), len(self.ds.dates)
        cat = (lambda parts, shape, dtype: np.concatenate(parts).astype(dtype) if parts
               else np.zeros(shape, dtype))
        return Pixels(cat(xs, (0, n_feat, n_dates), np.float32), cat(ys, (0,), np.int64),
                      cat(idx, (0,), np.int64), cat(pid, (0,), np.int64))

    def patches(self, members, size: int = 32, margin: int = 3) -> Patches:
        """size x size windows covering each polygon at ``members``; labels keep the
        pixels of any polygon in ``members`` (others are unlabelled).

        A polygon lying inside an earlier window with ``margin`` pixels to spare (the
        models' receptive radius) gets no window of its own: it is already learned,
        with its full spatial context, from that window. On the sample this drops 40 %
        of the patches, and no labelled pixel is counted twice as often as another
        because its polygon happens to sit near others.
        """
        members = np.asarray(members, int)
        xs, ys, wins, klass = [], [], [], []
        for i in members:
            window = self._polygon_window(i)
            if window is None or any(_inside(window, w, margin) for w in wins):
                continue
            for win in tile_window(window, size, self.ds.height, self.ds.width):
                feats, valid = self._features(win)
                labels = self._labels(self.burn_ids(win), members)
                labels[~valid] = UNLABELLED
                if (labels != UNLABELLED).any():
                    xs.append(feats)
                    ys.append(labels)
                    wins.append(win)
                    klass.append(self.class_index[i])
        return Patches(np.stack(xs).astype(np.float32), np.stack(ys).astype(np.int64),
                       np.array(wins, int), np.array(klass, np.int64))


def _inside(inner, outer, margin: int) -> bool:
    """True if window ``inner`` lies in ``outer`` at least ``margin`` pixels from its
    edges (windows are (row0, col0, h, w))."""
    r, c, h, w = inner
    R, C, H, W = outer
    return r >= R + margin and c >= C + margin and r + h <= R + H - margin \
        and c + w <= C + W - margin


def oversample(klass, seed: int = 0) -> np.ndarray:
    """Indices that repeat the samples of minority classes until each class has at
    least the median class count (whole repetitions, then random draws without
    replacement for the remainder); larger classes are left as they are.

    Raising minorities to the median rather than to the largest class keeps an epoch
    short for patch models while Shrubland / Non-vegetated still weigh several times
    their natural share.
    """
    klass = np.asarray(klass)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(klass, return_counts=True)
    target = int(np.ceil(np.median(counts)))
    out = []
    for c, n in zip(classes, counts):
        members = np.flatnonzero(klass == c)
        reps, extra = divmod(max(target, n), n)
        out.append(np.tile(members, reps))
        out.append(rng.choice(members, size=extra, replace=False))
    return rng.permutation(np.concatenate(out))


@dataclass
class Normalizer:
    """Per-feature standardisation, (x - mean) / std over axis 1 of (N, F, ...)."""

    mean: np.ndarray  # (F,) float32
    std: np.ndarray  # (F,) float32

    @classmethod
    def fit(cls, x: np.ndarray) -> "Normalizer":
        """Statistics over all samples and dates of the training pixels x (N, F, T)."""
        x = np.asarray(x, np.float64)
        axes = tuple(a for a in range(x.ndim) if a != 1)
        std = x.std(axis=axes)
        return cls(x.mean(axis=axes).astype(np.float32),
                   np.where(std > 0, std, 1.0).astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return ((x - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32)
