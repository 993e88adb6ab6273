"""iota2's auto-context forest, "iota2 ctx" (Derksen et al. 2020), in numpy.

What iota2 does with ``enable_autoContext`` (OTB's TrainAutoContext / AutoContext
applications), and where each step is here:

1. **Superpixels**, computed once on the image time series (SLIC on the per-pixel
   features, :func:`sits_ref.segmentation.slic`). To bound memory on a whole tile they
   are computed on fixed ``tile`` x ``tile`` squares of the scene grid: a superpixel
   never crosses a square's border, so every step below runs square by square and a
   block of the map gets the same superpixels as the whole scene (:class:`Superpixels`).
2. **Iteration 0**: a forest on the pixel features, i.e. the base forest ("iota2 base").
3. **Iteration i > 0**: the forest of iteration i - 1 labels every pixel of each
   superpixel that holds training pixels; each superpixel gets the normalised
   histogram of the labels predicted in it, one value per class
   (:func:`label_histograms`); each training pixel gets its superpixel's histogram
   appended to its features, and the forest of iteration i is trained on them
   (:meth:`AutoContext.fit`).
4. **Classification** repeats the iterations over the scene, square by square: label
   every pixel with forest 0, histogram per superpixel, classify with forest 1 on the
   features plus histograms, and so on; the last forest makes the map
   (:meth:`AutoContext.predict_square`).

``ITERATIONS = 3`` forests (0, 1, 2) is iota2's default (``autoContext_iterations``).
Every forest has the paper's hyperparameters (100 trees, depth 50, 20 samples to
split: :class:`sits_ref.forest.RandomForest`'s defaults). Invalid (nodata) pixels are
classified but never counted in a histogram.
"""
from __future__ import annotations

import numpy as np

from .forest import RandomForest
from .segmentation import slic

ITERATIONS = 3        # iota2's default autoContext_iterations
SQUARE = 512          # side of the segmentation squares, pixels (memory: ~150 MB of features)
OBJECT_SIZE = 10      # mean superpixel side, pixels (n_segments = square area / 100)


def label_histograms(labels, segments, n_segments: int, n_classes: int) -> np.ndarray:
    """(n_segments, n_classes) share of each class among the ``labels`` predicted in
    each superpixel (``segments`` gives each label's superpixel, 0..n_segments-1);
    a superpixel without any label gets zeros."""
    counts = np.bincount(np.asarray(segments) * n_classes + np.asarray(labels),
                         minlength=n_segments * n_classes).reshape(n_segments, n_classes)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


class Superpixels:
    """SLIC superpixels of a dataset, computed on fixed squares of its grid.

    Args:
        dataset: a :class:`sits_ref.dataset.Dataset`.
        tile: side of the squares, in pixels.
        object_size: mean superpixel side in pixels.
        seed: seed of the segmentation.
    """

    def __init__(self, dataset, tile: int = SQUARE, object_size: int = OBJECT_SIZE,
                 seed: int = 0):
        self.ds, self.tile, self.object_size, self.seed = dataset, tile, object_size, seed
        self._last = None

    def square_of(self, rows, cols) -> np.ndarray:
        """Square number of each pixel (row-major over the squares of the grid)."""
        per_row = -(-self.ds.width // self.tile)
        return (np.asarray(rows) // self.tile) * per_row + np.asarray(cols) // self.tile

    def locate(self, flat_index) -> tuple[np.ndarray, np.ndarray]:
        """(square, position within the square's h * w pixels) of each pixel given as
        row * width + col."""
        rows, cols = np.divmod(np.asarray(flat_index, np.int64), self.ds.width)
        squares = self.square_of(rows, cols)
        local = np.empty_like(rows)
        for square in np.unique(squares):
            sel = squares == square
            r0, c0, _, w = self.window(square)
            local[sel] = (rows[sel] - r0) * w + cols[sel] - c0
        return squares, local

    def window(self, square: int) -> tuple:
        """(row0, col0, h, w) of a square, clipped to the grid."""
        tr, tc = divmod(int(square), -(-self.ds.width // self.tile))
        r0, c0 = tr * self.tile, tc * self.tile
        return r0, c0, min(self.tile, self.ds.height - r0), min(self.tile, self.ds.width - c0)

    def read(self, square: int):
        """Pixel features x (h * w, F * T) float32 (feature-major, like the forests'),
        superpixel of each pixel (h * w,) int64 (0..n-1 within the square) and
        validity (h * w,) bool. The last square read is cached."""
        if self._last is None or self._last[0] != square:
            r0, c0, h, w = self.window(square)
            feats, valid = self.ds.read_features((r0, c0, h, w))   # (T, F, h, w)
            stack = np.ascontiguousarray(feats.transpose(2, 3, 1, 0)).reshape(h, w, -1)
            n_segments = max(1, (h * w) // self.object_size ** 2)
            segments = slic(stack, n_segments=n_segments, seed=self.seed)
            self._last = (square, stack.reshape(h * w, -1), segments.ravel().astype(np.int64),
                          valid.ravel())
        return self._last[1:]


class Neighbourhood:
    """The valid pixels of every superpixel that holds one of the given pixels.

    x (M, F * T) features, segment (M,) superpixel ids numbered across squares
    (0..n_segments-1), and ``at`` (N,): where each given pixel is among the M.
    Training the auto-context needs only these pixels, not the whole scene.
    """

    def __init__(self, superpixels: Superpixels, flat_index):
        squares, local = superpixels.locate(flat_index)
        xs, segs, self.at = [], [], np.zeros(len(squares), np.int64)
        offset = n_pixels = 0
        for square in np.unique(squares):
            x, seg, valid = superpixels.read(square)
            sel = np.flatnonzero(squares == square)
            members = np.flatnonzero(valid & np.isin(seg, seg[local[sel]]))
            self.at[sel] = n_pixels + np.searchsorted(members, local[sel])
            xs.append(x[members])
            segs.append(seg[members] + offset)
            offset += int(seg.max()) + 1
            n_pixels += len(members)
        n_feats = len(superpixels.ds.feature_names) * len(superpixels.ds.dates)
        self.x = np.concatenate(xs) if xs else np.zeros((0, n_feats), np.float32)
        self.segment = np.concatenate(segs) if segs else np.zeros(0, np.int64)
        self.n_segments = offset


class AutoContext:
    """The iterated forests of iota2's auto-context (see the module doc).

    Args:
        n_classes: K; labels are class indices 0..K-1 and histograms have K columns.
        iterations: number of forests (iota2's default: 3).
        seed: forest 0 uses ``seed`` (so it is the base forest of that seed), forest
            i the seed sequence (seed, i).
        out_of_fold: 0 (iota2's behaviour): the histograms the next forest is trained
            on come from the forest that was trained on those very pixels, which
            predicts its own training pixels almost perfectly, so training histograms
            are cleaner than the ones it meets on new pixels. k > 1: superpixels are
            dealt into k seeded folds and the training histograms of each fold's
            superpixels come from a forest trained without that fold's pixels (k
            extra forests per iteration). Classification always uses the full forests.
        forest_params: passed to every :class:`RandomForest` (defaults: the paper's).
    """

    def __init__(self, n_classes: int, iterations: int = ITERATIONS, seed: int = 0,
                 out_of_fold: int = 0, **forest_params):
        self.n_classes, self.iterations, self.seed = n_classes, iterations, seed
        self.out_of_fold = out_of_fold
        self.forest_params = forest_params
        self.forests = []

    def _forest(self, i: int) -> RandomForest:
        return RandomForest(random_state=self.seed if i == 0 else [self.seed, i],
                            **self.forest_params)

    def _training_labels(self, i: int, x, hood: Neighbourhood, y) -> np.ndarray:
        """Labels of the neighbourhood's pixels for the next iteration's histograms:
        from forest i, or out of fold (see ``out_of_fold``)."""
        labels = self.forests[i].predict(x) if len(x) else np.zeros(0, np.int64)
        if self.out_of_fold < 2:
            return labels
        rng = np.random.default_rng([self.seed, i, self.out_of_fold])
        fold = rng.integers(0, self.out_of_fold, hood.n_segments)[hood.segment]  # per pixel
        for k in range(self.out_of_fold):
            kept = fold[hood.at] != k                       # training pixels outside fold k
            if len(np.unique(y[kept])) < 2:
                continue                                    # keep forest i's labels there
            forest = self._forest(i).fit(x[hood.at[kept]], y[kept])
            held = fold == k
            labels[held] = forest.predict(x[held])
        return labels

    def fit(self, hood: Neighbourhood, y) -> "AutoContext":
        """Train the forests on the pixels ``hood.at`` of ``hood`` with labels ``y``."""
        y = np.asarray(y)
        hist = None
        self.forests = []
        for i in range(self.iterations):
            x = hood.x if hist is None else np.hstack([hood.x, hist[hood.segment]])
            self.forests.append(self._forest(i).fit(x[hood.at], y))
            if i + 1 < self.iterations:
                labels = self._training_labels(i, x, hood, y)
                hist = label_histograms(labels, hood.segment, hood.n_segments, self.n_classes)
        return self

    def predict_square(self, x, segment, valid) -> list[np.ndarray]:
        """Class probabilities (N, K) of the pixels of one square after each
        iteration; the last is the classification. ``x`` (N, F * T), ``segment``
        (N,) superpixels, ``valid`` (N,): only valid pixels enter the histograms."""
        n_segments = int(segment.max()) + 1 if len(segment) else 0
        hist, probas = None, []
        for forest in self.forests:
            features = x if hist is None else np.hstack([x, hist[segment]])
            proba = np.zeros((len(x), self.n_classes), np.float32)
            proba[:, forest.classes_] = forest.predict_proba(features)
            probas.append(proba)
            hist = label_histograms(proba.argmax(1)[valid], segment[valid], n_segments,
                                    self.n_classes)
        return probas


class AutoContextClassifier:
    """Whole-scene auto-context: (T, F, h, w) window features -> (K, h, w)
    probabilities, square by square. Used by :func:`sits_ref.predict.predict_scene`.

    A window must lie inside one square. The scene is streamed in row bands thinner
    than a square, so the final probabilities of the squares of the current row of
    squares are kept (K x square area float32 each, ~8 MB for 8 classes) and each
    square is classified once; memory is set by the scene width, not its height.
    """

    halo = 0

    def __init__(self, model: AutoContext, superpixels: Superpixels):
        self.model, self.superpixels = model, superpixels
        self.tile = superpixels.tile
        self._row, self._finals = None, {}

    def square_probas(self, square: int) -> list[np.ndarray]:
        """Per-iteration probabilities (N, K) of every pixel of a square."""
        return self.model.predict_square(*self.superpixels.read(square))

    def _final(self, square: int) -> np.ndarray:
        row = self.superpixels.window(square)[0]
        if row != self._row:
            self._row, self._finals = row, {}
        if square not in self._finals:
            self._finals[square] = self.square_probas(square)[-1]
        return self._finals[square]

    def proba(self, feats, window) -> np.ndarray:
        """(K, h, w) final probabilities of ``window`` (row0, col0, h, w); the window's
        own features ``feats`` are not needed (the square is read whole)."""
        r, c, h, w = window
        square = int(self.superpixels.square_of(r, c))
        r0, c0, sh, sw = self.superpixels.window(square)
        if r + h > r0 + sh or c + w > c0 + sw:
            raise ValueError(f"window {window} crosses a {self.tile}-pixel context square")
        final = self._final(square).reshape(sh, sw, -1)
        return np.ascontiguousarray(final[r - r0:r - r0 + h, c - c0:c - c0 + w].transpose(2, 0, 1))

    def predict_pixels(self, flat_index) -> list[np.ndarray]:
        """Predicted class index of each pixel (row * width + col) after each
        iteration: a list of ``iterations`` arrays (N,)."""
        squares, local = self.superpixels.locate(flat_index)
        out = [np.zeros(len(squares), np.int64) for _ in self.model.forests]
        for square in np.unique(squares):
            sel = np.flatnonzero(squares == square)
            for k, proba in enumerate(self.square_probas(square)):
                out[k][sel] = proba[local[sel]].argmax(1)
        return out
