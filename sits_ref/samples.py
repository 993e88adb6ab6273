"""Training samples from sparse polygon labels (paper sections 3.1-3.2).

* Polygons are split into train / validation at polygon level, stratified by class
  (70 / 30, seeded); the test polygons stay untouched. A class with a single polygon
  cannot be split that way: that polygon is cut in two along its longer side (the
  first 70 % of its extent trains, the rest validates), with a warning that its
  validation pixels are then not independent of its training pixels.
* Every labelled pixel is used once per pass, whatever the model:
  - pixel models (TempCNN, the forest) get each labelled pixel once (:meth:`pixels`);
  - patch models get the ``size`` x ``size`` squares of a fixed grid over the scene
    that hold labelled pixels (:meth:`tiles`). Grid squares do not overlap, so each
    labelled pixel is labelled in exactly one of them; each square is read with its
    real neighbourhood (``halo`` pixels, the models' receptive radius), whose pixels
    are context only (unlabelled). A pixel is thus seen in training with the same
    neighbourhood as in the whole-scene map, and validation / test scores computed
    on these tiles are the map's predictions.
* Oversampling (:func:`oversample`) balances classes by labelled-pixel count.
* Features are normalised per feature with statistics of the training pixels only.

Labels are rasterised per window (never a whole-scene label raster), so the memory use
is set by the number of labelled polygons, not by the scene size. Arrays follow the
model convention: features (N, F, T, h, w) / (N, F, T), labels (N, h, w) / (N,).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .rasterize import rasterize
from .vectors import polygon_bounds

UNLABELLED = -1
VAL_FRACTION = 0.3   # the paper's 70 / 30 polygon split (section 3.2)


@dataclass
class Tiles:
    """Grid squares holding labelled pixels, each with its neighbourhood.

    x: (N, F, T, h, w) float32 features of the input windows (square + halo, shifted
    inside the scene at its borders, so all have one shape); y: (N, h, w) int64 class
    index of the square's labelled pixels, UNLABELLED elsewhere (halo, unlabelled,
    invalid); windows: (N, 4) input windows (row0, col0, h, w) in the scene.
    """

    x: np.ndarray
    y: np.ndarray
    windows: np.ndarray


@dataclass
class Pixels:
    """Labelled pixels. x: (N, F, T) float32; y: (N,) int64 class index;
    index: (N,) flat scene index row * width + col; polygon: (N,) polygon id."""

    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    polygon: np.ndarray


@dataclass
class Split:
    """Which polygons (positions in their file) label a sample set.

    ``members``: the polygons whose pixels are labelled. ``cuts``: polygons shared
    with another set, labelled only on one side of a cut: {position: (axis, value,
    below)}, axis 0 = x (map easting), 1 = y; a pixel centre counts when its
    coordinate is < value (below=True) or >= value (below=False).
    """

    members: np.ndarray
    cuts: dict = field(default_factory=dict)


def split_polygons(codes, bounds=None, val_fraction: float = VAL_FRACTION, seed: int = 0):
    """Stratified polygon-level split: returns (train, val) :class:`Split` s.

    For each class, ``round(val_fraction * n)`` polygons go to validation, but at least
    one stays in training and, when a class has two or more, at least one goes to
    validation. A class with a single polygon is shared when its ``bounds`` (xmin,
    ymin, xmax, ymax) are given: the polygon is cut across its longer side, the first
    ``1 - val_fraction`` of its extent training, the rest validating. Without bounds
    such a class is training-only.
    """
    codes = np.asarray(codes)
    rng = np.random.default_rng(seed)
    train, val, train_cuts, val_cuts = [], [], {}, {}
    for code in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == code))
        if len(members) == 1 and bounds is not None:
            i = int(members[0])
            xmin, ymin, xmax, ymax = bounds[i]
            axis = 0 if xmax - xmin >= ymax - ymin else 1
            lo, hi = (xmin, xmax) if axis == 0 else (ymin, ymax)
            cut = lo + (1 - val_fraction) * (hi - lo)
            train.append(i)
            val.append(i)
            train_cuts[i], val_cuts[i] = (axis, cut, True), (axis, cut, False)
            continue
        n_val = int(round(val_fraction * len(members)))
        n_val = min(max(n_val, 1 if len(members) > 1 else 0), len(members) - 1)
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return (Split(np.sort(np.array(train, int)), train_cuts),
            Split(np.sort(np.array(val, int)), val_cuts))


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


def grid_tiles(windows, size: int, height: int, width: int) -> list[tuple]:
    """The squares of the ``size`` grid (origin at pixel (0, 0), clipped to the scene)
    that intersect any of ``windows`` (row0, col0, h, w), in row-major order."""
    keys = set()
    for r0, c0, h, w in windows:
        keys.update((tr, tc) for tr in range(r0 // size, (r0 + h - 1) // size + 1)
                    for tc in range(c0 // size, (c0 + w - 1) // size + 1))
    return [(tr * size, tc * size, min(size, height - tr * size), min(size, width - tc * size))
            for tr, tc in sorted(keys)]


def input_window(tile, size: int, halo: int, height: int, width: int) -> tuple:
    """The (size + 2 halo)-pixel square window that holds ``tile`` and its ``halo``
    neighbourhood, shifted to lie inside the scene (clipped only when the scene is
    smaller). At a scene border the window's edge is the scene's edge, where the
    models zero-pad exactly as they do in the whole-scene map."""
    r, c = tile[:2]
    side_r, side_c = min(size + 2 * halo, height), min(size + 2 * halo, width)
    r0 = min(max(r - halo, 0), height - side_r)
    c0 = min(max(c - halo, 0), width - side_c)
    return r0, c0, side_r, side_c


class SampleBuilder:
    """Cuts labelled pixels and tiles out of a dataset for a set of polygons.

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

    def labels(self, window, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """(labels, ids) of ``window``: the class index where the pixel's polygon is in
        ``split`` (on the kept side of its cut, if any), else UNLABELLED; and the burnt
        polygon ids (:meth:`burn_ids`)."""
        ids = self.burn_ids(window)
        keep = np.zeros(len(self.polygons) + 1, bool)
        keep[np.asarray(split.members, int) + 1] = True
        lookup = np.concatenate([[UNLABELLED], self.class_index])
        labels = np.where(keep[ids], lookup[ids], UNLABELLED)
        if split.cuts:
            x0, dx, _, y0, _, dy = self.ds.georef.window(*window[:2]).transform
            centre = (x0 + dx * (np.arange(window[3]) + 0.5)[None, :],
                      y0 + dy * (np.arange(window[2]) + 0.5)[:, None])
            for i, (axis, cut, below) in split.cuts.items():
                wrong = (centre[axis] >= cut) if below else (centre[axis] < cut)
                labels[(ids == i + 1) & wrong] = UNLABELLED
        return labels, ids

    def _polygon_window(self, i: int):
        return pixel_window(self.bounds[i], self.ds.georef.transform,
                            self.ds.height, self.ds.width)

    def _features(self, window) -> tuple[np.ndarray, np.ndarray]:
        feats, valid = self.ds.read_features(window)  # (T, F, h, w)
        return np.ascontiguousarray(feats.transpose(1, 0, 2, 3)), valid

    def pixels(self, split: Split) -> Pixels:
        """Every valid labelled pixel of ``split``, once each."""
        xs, ys, idx, pid = [], [], [], []
        for i in np.asarray(split.members, int):
            window = self._polygon_window(i)
            if window is None:
                continue
            labels, ids = self.labels(window, split)
            feats, valid = self._features(window)
            rows, cols = np.nonzero((ids == i + 1) & (labels != UNLABELLED) & valid)
            xs.append(feats[:, :, rows, cols].transpose(2, 0, 1))
            ys.append(labels[rows, cols])
            idx.append((rows + window[0]) * self.ds.width + cols + window[1])
            pid.append(np.full(len(rows), i))
        n_feat, n_dates = len(self.ds.feature_names), len(self.ds.dates)
        return Pixels(_concat(xs, (0, n_feat, n_dates), np.float32), _concat(ys, (0,), np.int64),
                      _concat(idx, (0,), np.int64), _concat(pid, (0,), np.int64))

    def tiles(self, split: Split, size: int, halo: int) -> Tiles:
        """The ``size`` x ``size`` grid squares holding labelled pixels of ``split``,
        read with ``halo`` pixels of neighbourhood (see :func:`input_window`).

        Only the square's own pixels are labelled, so each labelled pixel is labelled
        in exactly one tile; the halo is context. Squares whose labelled pixels are all
        invalid (nodata) are dropped.
        """
        H, W = self.ds.height, self.ds.width
        windows = [w for w in map(self._polygon_window, np.asarray(split.members, int)) if w]
        xs, ys, wins = [], [], []
        for tile in grid_tiles(windows, size, H, W):
            win = input_window(tile, size, halo, H, W)
            labels, _ = self.labels(win, split)
            feats, valid = self._features(win)
            inside = np.zeros(labels.shape, bool)
            inside[tile[0] - win[0]:tile[0] - win[0] + tile[2],
                   tile[1] - win[1]:tile[1] - win[1] + tile[3]] = True
            labels[~(inside & valid)] = UNLABELLED
            if (labels != UNLABELLED).any():
                xs.append(feats)
                ys.append(labels)
                wins.append(win)
        side = (min(size + 2 * halo, H), min(size + 2 * halo, W))
        n_feat, n_dates = len(self.ds.feature_names), len(self.ds.dates)
        return Tiles(_stack(xs, (0, n_feat, n_dates, *side), np.float32),
                     _stack(ys, (0, *side), np.int64), _stack(wins, (0, 4), np.int64))


def _concat(parts, empty_shape, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(empty_shape, dtype)


def _stack(parts, empty_shape, dtype) -> np.ndarray:
    return np.stack(parts).astype(dtype) if parts else np.zeros(empty_shape, dtype)


def oversample(y, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Balance classes by labelled-pixel count, for pixel or tile samples.

    y: (N,) or (N, h, w) labels, UNLABELLED ignored. Each class with fewer labelled
    pixels than the median class count is raised to about that count by adding
    copies of the samples that hold it (every such sample as many whole times as
    fits, then random samples until the count is reached); a copy keeps the labels
    of that class only, so it adds pixels of the minority class and of no other.
    Larger classes are left as they are.

    Returns (rows, labels): rows (M,) indexes the samples (the N originals first,
    then the copies) and labels (M, ...) are their labels. For pixel samples this is
    plain repetition of minority pixels.
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    flat = y.reshape(len(y), -1)
    classes = np.unique(flat[flat != UNLABELLED])
    if classes.size == 0:
        return np.arange(len(y)), y.copy()
    per_sample = np.stack([(flat == c).sum(axis=1) for c in classes])   # (C, N)
    counts = per_sample.sum(axis=1)
    target = int(np.ceil(np.median(counts)))
    rows, labels = [np.arange(len(y))], [y]
    for c, n_c, total in zip(classes, per_sample, counts):
        holders = np.flatnonzero(n_c)
        reps, extra = divmod(max(target - total, 0), total)
        order = rng.permutation(holders)
        n_extra = int(np.searchsorted(np.cumsum(n_c[order]), extra, side="left")) + 1 \
            if extra else 0
        copies = np.concatenate([np.tile(holders, reps), order[:n_extra]])
        rows.append(copies)
        labels.append(np.where(y[copies] == c, c, UNLABELLED))
    return np.concatenate(rows), np.concatenate(labels)


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


def class_profiles(x: np.ndarray, y: np.ndarray, n_classes: int):
    """Per-class temporal profiles of pixel samples (the paper's Figures 7 and 8).

    x: (N, F, T) features, y: (N,) class indices. Returns (mean, std, count): mean and
    std (K, F, T) float64 over the pixels of each class (0 for a class without pixels),
    and count (K,) its number of pixels.
    """
    x = np.asarray(x, np.float64)
    count = np.bincount(y, minlength=n_classes)[:n_classes]
    mean = np.zeros((n_classes,) + x.shape[1:])
    std = np.zeros_like(mean)
    for k in np.flatnonzero(count):
        mean[k], std[k] = x[y == k].mean(axis=0), x[y == k].std(axis=0)
    return mean, std, count
