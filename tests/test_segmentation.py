"""Tests of sits_ref.segmentation (numpy only)."""
import numpy as np
import pytest

from sits_ref.segmentation import slic


def quadrants(noise=0.05, seed=0):
    """40 x 40 image of 4 known objects (quadrants), 6 features each."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((40, 40), dtype=int)
    truth[:20, 20:] = 1
    truth[20:, :20] = 2
    truth[20:, 20:] = 3
    means = rng.normal(0, 1, (4, 6)) * 3
    img = means[truth] + rng.normal(0, noise, (40, 40, 6))
    return img.astype(np.float32), truth


def test_slic_recovers_known_objects():
    img, truth = quadrants()
    labels = slic(img, n_segments=4, compactness=0.1, n_iter=5)
    assert labels.shape == (40, 40) and labels.dtype == np.int32
    # one label per true object, and different objects get different labels
    for k in range(4):
        assert np.unique(labels[truth == k]).size == 1
    assert np.unique(labels).size == 4


def test_slic_follows_boundaries_off_the_grid():
    # an object boundary not on the initial grid (column 14, grid step 20)
    img = np.zeros((40, 40, 3), dtype=np.float32)
    img[:, 14:] = 5.0
    labels = slic(img, n_segments=4, compactness=0.05, n_iter=10)
    left, right = labels[:, :14], labels[:, 14:]
    assert not np.intersect1d(np.unique(left), np.unique(right)).size


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(H, W, F\)"):
        slic(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        slic(np.full((4, 4, 2), np.nan))
