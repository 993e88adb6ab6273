"""Polygon split, labelled pixels, patches, oversampling and normalisation."""
import numpy as np
import pytest

from sits_ref.dataset import load_dataset
from sits_ref.samples import (UNLABELLED, Normalizer, SampleBuilder, oversample,
                              split_polygons, tile_window)


def test_split_is_stratified_disjoint_and_seeded():
    codes = [1] * 10 + [2] * 3 + [5] * 1 + [7] * 2
    train, val = split_polygons(codes, 0.3, seed=4)
    assert set(train).isdisjoint(val) and sorted([*train, *val]) == list(range(16))
    codes = np.array(codes)
    # by hand: class 1 -> round(3.0) = 3 val; class 2 -> round(0.9) = 1; class 5 (one
    # polygon) -> 0, train only; class 7 -> round(0.6) = 1 val, 1 train
    assert [int((codes[val] == c).sum()) for c in (1, 2, 5, 7)] == [3, 1, 0, 1]
    assert set(codes[train]) == {1, 2, 5, 7}
    again = split_polygons(codes, 0.3, seed=4)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    assert not np.array_equal(split_polygons(codes, 0.3, seed=5)[1], val)


def test_tile_window_by_hand():
    # a 5 x 6 polygon window in a 100 x 100 grid gets one centred 8 x 8 patch:
    # rows 10 + 5//2 - 4 = 8, cols 20 + 6//2 - 4 = 19
    assert tile_window((10, 20, 5, 6), 8, 100, 100) == [(8, 19, 8, 8)]
    # near the border it is shifted inside
    assert tile_window((0, 97, 3, 3), 8, 100, 100) == [(0, 92, 8, 8)]
    # a 20-row polygon is tiled by rows 0, 8 and 12 (last tile flush with the end)
    assert [w[0] for w in tile_window((0, 0, 20, 4), 8, 100, 100)] == [0, 8, 12]
    # grids smaller than the patch give grid-sized patches
    assert tile_window((1, 1, 2, 2), 32, 10, 12) == [(0, 0, 10, 12)]


def test_pixels_are_exactly_the_polygon_interiors(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    builder = SampleBuilder(ds, ds.polygons("train"))
    px = builder.pixels([0, 1, 2, 3])
    # squares of 4, 5, 4 and 6 pixels a side, aligned on pixel edges
    assert len(px.y) == 16 + 25 + 16 + 36
    assert px.x.shape == (93, 7, 3)  # (N, features, dates)
    assert np.bincount(px.y).tolist() == [16 + 25, 16 + 36]
    rows, cols = np.divmod(px.index[px.polygon == 0], ds.width)
    assert rows.min() == 1 and rows.max() == 4 and cols.min() == 1 and cols.max() == 4
    feats, _ = ds.read_features()
    r, c = rows[0], cols[0]
    assert np.array_equal(px.x[px.polygon == 0][0], feats[:, :, r, c].T)


def test_patches_label_only_pixels_of_their_own_set(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    builder = SampleBuilder(ds, ds.polygons("train"))
    patches = builder.patches([0, 2], size=16)
    assert patches.x.shape[1:] == (7, 3, 16, 16) and patches.y.shape[1:] == (16, 16)
    labelled = set()
    for y, (r, c, h, w) in zip(patches.y, patches.windows):
        rows, cols = np.nonzero(y != UNLABELLED)
        labelled |= set(zip(rows + r, cols + c))
    # polygons 0 (rows/cols 1-4) and 2 (rows 2-5, cols 14-17); never 1 or 3
    expected = {(r, c) for r in range(1, 5) for c in range(1, 5)} | \
               {(r, c) for r in range(2, 6) for c in range(14, 18)}
    assert labelled == expected
    assert set(patches.klass.tolist()) == {0, 1}


def test_oversample_raises_minorities_to_the_median():
    klass = np.array([0] * 10 + [1] * 3 + [2] * 1 + [3] * 5)
    idx = oversample(klass, seed=0)
    # median of counts (10, 3, 1, 5) is 4: classes 1 and 2 are raised to 4, 0 and 3 kept
    assert np.bincount(klass[idx]).tolist() == [10, 4, 4, 5]
    counts = np.bincount(idx, minlength=19)
    assert counts[13] == 4                           # the lone class-2 sample, 4 times
    assert sorted(counts[10:13]) == [1, 1, 2]        # 3 class-1 samples + 1 random draw
    assert (counts[:10] == 1).all() and (counts[14:] == 1).all()


def test_normalizer_by_hand():
    x = np.array([[[1.0, 3.0], [10.0, 10.0]], [[5.0, 7.0], [10.0, 10.0]]])  # (N=2, F=2, T=2)
    norm = Normalizer.fit(x)
    # feature 0 values 1, 3, 5, 7: mean 4, population std sqrt(5); feature 1 constant -> std 1
    assert norm.mean.tolist() == [4.0, 10.0]
    assert norm.std == pytest.approx([np.sqrt(5), 1.0])
    assert norm(x)[0, 0, 0] == pytest.approx(-3 / np.sqrt(5))
    assert norm(x)[:, 1].max() == 0


def test_polygon_inside_an_earlier_patch_gets_no_patch_of_its_own(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    builder = SampleBuilder(ds, ds.polygons("train"))
    # 8 x 8 windows: polygon 0 (rows/cols 1-4) gets window (0, 0); polygon 1 (rows
    # 10-14, cols 2-6) does not fit in it and gets its own window
    assert builder.patches([0, 1], size=8, margin=0).windows.tolist() == \
        [[0, 0, 8, 8], [8, 0, 8, 8]]
    # 20 x 24 windows hold the whole grid: polygon 1 (its window starts at column 2)
    # lies in polygon 0's window with a margin of 2, so one patch labels both
    one = builder.patches([0, 1], size=32, margin=2)
    assert len(one.windows) == 1
    assert (one.y[0] != UNLABELLED).sum() == 16 + 25
    # with a margin of 3 it does not fit: each polygon keeps its own window
    assert len(builder.patches([0, 1], size=32, margin=3).windows) == 2
