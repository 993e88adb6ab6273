"""iota2 ctx features: object statistics per fixed tile, same for pixels and windows."""
import numpy as np
import pytest

from sits_ref.context import ObjectContext
from sits_ref.dataset import load_dataset


def test_context_is_the_object_mean_and_std_of_each_feature(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    ctx = ObjectContext(ds, tile=16, object_size=4)
    window = ctx.for_window((0, 0, 16, 16))            # (256, 2 * 7 * 3)
    feats, _ = ds.read_features((0, 0, 16, 16))          # (T, F, h, w)
    stack = feats.transpose(2, 3, 1, 0).reshape(256, -1)  # pixel features, F-major
    means, stds = window[:, :21], window[:, 21:]
    # pixels sharing an object share its statistics; check them by hand per object
    for key in np.unique(means[:, 0]):
        members = means[:, 0] == key
        assert np.allclose(means[members], stack[members].mean(0), atol=1e-5)
        assert np.allclose(stds[members], stack[members].std(0), atol=1e-5)
    # the scene's two halves (columns < 12 and >= 12) differ strongly: no object
    # straddles the boundary at column 12
    labels_left = set(np.round(means.reshape(16, 16, -1)[:, :12, 0], 6).ravel())
    labels_right = set(np.round(means.reshape(16, 16, -1)[:, 12:, 0], 6).ravel())
    assert not labels_left & labels_right


def test_pixels_and_windows_agree_across_tiles(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    ctx = ObjectContext(ds, tile=16, object_size=4)
    rows, cols = np.array([0, 15, 16, 19, 3]), np.array([0, 15, 20, 23, 18])
    by_pixel = ctx.for_pixels(rows * ds.width + cols)
    for k, (r, c) in enumerate(zip(rows, cols)):
        tr, tc = r // 16 * 16, c // 16 * 16
        h, w = min(16, ds.height - tr), min(16, ds.width - tc)
        block = ctx.for_window((tr, tc, h, w)).reshape(h, w, -1)
        assert np.array_equal(by_pixel[k], block[r - tr, c - tc])
    with pytest.raises(ValueError, match="crosses a 16-pixel context tile"):
        ctx.for_window((10, 10, 8, 8))
