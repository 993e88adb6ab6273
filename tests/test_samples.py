"""Polygon split, labelled pixels, tiles, oversampling and normalisation."""
import numpy as np
import pytest

from sits_ref.dataset import load_dataset
from sits_ref.samples import (UNLABELLED, Normalizer, SampleBuilder, Split, grid_tiles,
                              input_window, oversample, split_polygons)


def test_split_is_stratified_disjoint_and_seeded():
    codes = [1] * 10 + [2] * 3 + [5] * 1 + [7] * 2
    train, val = split_polygons(codes, val_fraction=0.3, seed=4)
    train, val = train.members, val.members
    assert set(train).isdisjoint(val) and sorted([*train, *val]) == list(range(16))
    codes = np.array(codes)
    # by hand: class 1 -> round(3.0) = 3 val; class 2 -> round(0.9) = 1; class 5 (one
    # polygon, no bounds given) -> 0, train only; class 7 -> round(0.6) = 1 val, 1 train
    assert [int((codes[val] == c).sum()) for c in (1, 2, 5, 7)] == [3, 1, 0, 1]
    assert set(codes[train]) == {1, 2, 5, 7}
    again = split_polygons(codes, val_fraction=0.3, seed=4)
    assert np.array_equal(again[0].members, train) and np.array_equal(again[1].members, val)
    assert not np.array_equal(split_polygons(codes, val_fraction=0.3, seed=5)[1].members, val)


def test_single_polygon_class_is_cut_along_its_longer_side():
    codes = [1, 1, 2]
    bounds = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [100, 50, 200, 60]], float)
    train, val = split_polygons(codes, bounds, val_fraction=0.3, seed=0)
    assert 2 in train.members and 2 in val.members
    # polygon 2 is 100 wide, 10 high: cut across x at 100 + 0.7 * 100 = 170
    assert train.cuts == {2: (0, pytest.approx(170.0), True)}
    assert val.cuts == {2: (0, pytest.approx(170.0), False)}
    assert set(train.members) - {2} and set(val.members) - {2}   # class 1 split as usual


def test_single_polygon_pixels_go_to_train_or_val_never_both(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    polygons = ds.polygons("train")[:3]   # class 1 twice, class 2 once (rows 2-5, cols 14-17)
    builder = SampleBuilder(ds, polygons)
    train, val = split_polygons([p.code for p in polygons], builder.bounds, 0.3, seed=0)
    tr, va = builder.pixels(train), builder.pixels(val)
    shared_tr = set(tr.index[tr.polygon == 2].tolist())
    shared_va = set(va.index[va.polygon == 2].tolist())
    assert shared_tr.isdisjoint(shared_va)
    assert len(shared_tr | shared_va) == 16
    # square 4 px wide from x = col 14: cut at 14 + 0.7 * 4 = 16.8 px; centres 14.5,
    # 15.5, 16.5 train, 17.5 validates -> 12 / 4 pixels
    assert (len(shared_tr), len(shared_va)) == (12, 4)
    assert {i % ds.width for i in shared_va} == {17}


def test_grid_tiles_and_input_windows_by_hand():
    # windows touching grid squares (0,0), (0,1) and (1,1) of an 8-px grid
    assert grid_tiles([(2, 6, 2, 4), (9, 9, 1, 1)], 8, 20, 12) == \
        [(0, 0, 8, 8), (0, 8, 8, 4), (8, 8, 8, 4)]
    # a square with a 3-px halo: 14 px side, shifted inside the 100 x 100 scene
    assert input_window((8, 8, 8, 8), 8, 3, 100, 100) == (5, 5, 14, 14)
    assert input_window((0, 0, 8, 8), 8, 3, 100, 100) == (0, 0, 14, 14)
    assert input_window((96, 96, 4, 4), 8, 3, 100, 100) == (86, 86, 14, 14)
    # scenes smaller than the window give the whole scene
    assert input_window((0, 8, 8, 4), 8, 3, 20, 12) == (0, 0, 14, 12)


def test_pixels_are_exactly_the_polygon_interiors(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    builder = SampleBuilder(ds, ds.polygons("train"))
    px = builder.pixels(Split(np.arange(4)))
    # squares of 4, 5, 4 and 6 pixels a side, aligned on pixel edges
    assert len(px.y) == 16 + 25 + 16 + 36
    assert px.x.shape == (93, 7, 3)  # (N, features, dates)
    assert np.bincount(px.y).tolist() == [16 + 25, 16 + 36]
    rows, cols = np.divmod(px.index[px.polygon == 0], ds.width)
    assert rows.min() == 1 and rows.max() == 4 and cols.min() == 1 and cols.max() == 4
    feats, _ = ds.read_features()
    r, c = rows[0], cols[0]
    assert np.array_equal(px.x[px.polygon == 0][0], feats[:, :, r, c].T)


def test_tiles_label_each_pixel_once_with_real_neighbourhood(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    builder = SampleBuilder(ds, ds.polygons("train"))
    split = Split(np.array([0, 2]))
    tiles = builder.tiles(split, size=8, halo=2)
    # polygons 0 (rows/cols 1-4) and 2 (rows 2-5, cols 14-17) touch 8-px squares
    # (0,0), (0,1) and (0,2); input windows are 12 x 12, inside the 20 x 24 grid
    assert tiles.windows.tolist() == [[0, 0, 12, 12], [0, 6, 12, 12], [0, 12, 12, 12]]
    assert tiles.x.shape == (3, 7, 3, 12, 12) and tiles.y.shape == (3, 12, 12)
    labelled = []
    for y, (r, c, h, w) in zip(tiles.y, tiles.windows):
        rows, cols = np.nonzero(y != UNLABELLED)
        labelled += list(zip(rows + r, cols + c))
    expected = {(r, c) for r in range(1, 5) for c in range(1, 5)} | \
               {(r, c) for r in range(2, 6) for c in range(14, 18)}
    assert len(labelled) == len(expected) and set(labelled) == expected   # once each
    feats, _ = ds.read_features((0, 6, 12, 12))
    assert np.array_equal(tiles.x[1], feats.transpose(1, 0, 2, 3))


def test_oversample_raises_minority_pixels_to_the_median():
    klass = np.array([0] * 10 + [1] * 3 + [2] * 1 + [3] * 5)
    rows, labels = oversample(klass, seed=0)
    # median of counts (10, 3, 1, 5) is 4: classes 1 and 2 are raised to 4, 0 and 3 kept
    assert np.bincount(labels).tolist() == [10, 4, 4, 5]
    assert np.array_equal(klass[rows], labels)
    counts = np.bincount(rows, minlength=19)
    assert counts[13] == 4                           # the lone class-2 sample, 4 times
    assert sorted(counts[10:13]) == [1, 1, 2]        # 3 class-1 samples + 1 random draw
    assert (counts[:10] == 1).all() and (counts[14:] == 1).all()


def test_oversample_tiles_by_pixel_count_copies_carry_one_class():
    y = np.full((3, 2, 3), UNLABELLED)
    y[0] = 0                        # 6 px of class 0
    y[1, 0, :2] = 1                 # 2 px of class 1, sharing a tile with 3 px of class 2
    y[1, 1, :] = 2
    y[2, 0, :2] = 2                 # 2 more px of class 2 -> counts (6, 2, 5), median 5
    rows, labels = oversample(y, seed=0)
    # class 1 needs 3 more px: one whole repetition of tile 1 (2 px), then 1 px more,
    # which only tile 1 can give: tile 1 is copied twice, its copies labelled 1 only
    assert rows.tolist() == [0, 1, 2, 1, 1]
    assert [(labels == c).sum() for c in range(3)] == [6, 6, 5]
    for copy in labels[3:]:
        assert set(np.unique(copy)) == {UNLABELLED, 1}
    assert np.array_equal(labels[:3], y)


def test_normalizer_by_hand():
    x = np.array([[[1.0, 3.0], [10.0, 10.0]], [[5.0, 7.0], [10.0, 10.0]]])  # (N=2, F=2, T=2)
    norm = Normalizer.fit(x)
    # feature 0 values 1, 3, 5, 7: mean 4, population std sqrt(5); feature 1 constant -> std 1
    assert norm.mean.tolist() == [4.0, 10.0]
    assert norm.std == pytest.approx([np.sqrt(5), 1.0])
    assert norm(x)[0, 0, 0] == pytest.approx(-3 / np.sqrt(5))
    assert norm(x)[:, 1].max() == 0
