"""Object context features for the "iota2 ctx" forest (Derksen et al. 2020).

The scene is segmented into superpixels (:func:`sits_ref.segmentation.slic` on the
per-pixel feature stack) and each pixel gets the mean and standard deviation of every
feature over its object, stacked after its own features.

To keep memory bounded on a whole tile, segmentation runs on fixed ``tile`` x ``tile``
squares of the scene grid (objects never cross a tile border). The squares depend
only on the grid, so a pixel gets the same context whether it is read for training or
inside any inference block: blocked inference equals whole-scene inference as long as
inference blocks are the tiles themselves (see :attr:`ObjectContext.tile`).
"""
from __future__ import annotations

import numpy as np

from .segmentation import object_features, slic


class ObjectContext:
    """Per-pixel object statistics of a dataset, computed tile by tile and cached.

    Args:
        dataset: a :class:`sits_ref.dataset.Dataset`.
        tile: side of the segmentation squares, in pixels.
        object_size: mean superpixel side in pixels (n_segments = tile area / size^2).
        seed: seed of the segmentation.
    """

    def __init__(self, dataset, tile: int = 512, object_size: int = 10, seed: int = 0):
        self.ds = dataset
        self.tile = tile
        self.object_size = object_size
        self.seed = seed
        self._cache = {}

    def _tile_features(self, tr: int, tc: int) -> np.ndarray:
        """(h, w, 2 * F * T) object mean and std for tile (tr, tc); last one cached."""
        key = (tr, tc)
        if key not in self._cache:
            r0, c0 = tr * self.tile, tc * self.tile
            h = min(self.tile, self.ds.height - r0)
            w = min(self.tile, self.ds.width - c0)
            feats, _ = self.ds.read_features((r0, c0, h, w))  # (T, F, h, w)
            stack = feats.transpose(2, 3, 1, 0).reshape(h, w, -1)  # F-major like pixels
            n_segments = max(1, (h * w) // (self.object_size ** 2))
            labels = slic(stack, n_segments=n_segments, seed=self.seed)
            self._cache = {key: object_features(stack, labels).astype(np.float32)}
        return self._cache[key]

    def for_pixels(self, flat_index: np.ndarray) -> np.ndarray:
        """Context features (N, 2 * F * T) of pixels given as row * width + col."""
        rows, cols = np.divmod(np.asarray(flat_index), self.ds.width)
        tiles = (rows // self.tile) * (self.ds.width // self.tile + 1) + cols // self.tile
        out = None
        for t in np.unique(tiles):
            sel = np.flatnonzero(tiles == t)
            tr, tc = rows[sel[0]] // self.tile, cols[sel[0]] // self.tile
            feats = self._tile_features(tr, tc)
            if out is None:
                out = np.empty((len(rows), feats.shape[-1]), np.float32)
            out[sel] = feats[rows[sel] - tr * self.tile, cols[sel] - tc * self.tile]
        if out is None:           # no pixel asked for
            n_feats = 2 * len(self.ds.feature_names) * len(self.ds.dates)
            out = np.zeros((0, n_feats), np.float32)
        return out

    def for_window(self, window) -> np.ndarray:
        """Context features (h * w, 2 * F * T) of a window lying inside one tile."""
        r, c, h, w = window
        tr, tc = r // self.tile, c // self.tile
        if (r + h - 1) // self.tile != tr or (c + w - 1) // self.tile != tc:
            raise ValueError(f"window {window} crosses a {self.tile}-pixel context tile")
        feats = self._tile_features(tr, tc)
        r0, c0 = r - tr * self.tile, c - tc * self.tile
        return feats[r0:r0 + h, c0:c0 + w].reshape(h * w, -1)

