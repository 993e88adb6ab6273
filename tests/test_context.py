"""iota2 ctx: superpixel label histograms, the iterated forests, blocked scene maps."""
import numpy as np
import pytest

from sits_ref.context import (AutoContext, AutoContextClassifier, Neighbourhood, Superpixels,
                              label_histograms)
from sits_ref.dataset import load_dataset
from sits_ref.forest import RandomForest
from sits_ref.predict import predict_scene
from sits_ref.geotiff import read_window
from sits_ref.samples import SampleBuilder, Split


def test_label_histograms_by_hand():
    # superpixel 0 holds labels 2, 2, 0; superpixel 1 holds 1; superpixel 2 is empty
    labels = np.array([2, 1, 2, 0])
    segments = np.array([0, 1, 0, 0])
    hist = label_histograms(labels, segments, n_segments=3, n_classes=3)
    np.testing.assert_allclose(hist, [[1 / 3, 0, 2 / 3], [0, 1, 0], [0, 0, 0]])


def _train(ds, seed=0, **kw):
    polygons = ds.polygons("train")
    px = SampleBuilder(ds, polygons).pixels(Split(np.arange(len(polygons))))
    superpixels = Superpixels(ds, tile=16, object_size=4, seed=0)
    hood = Neighbourhood(superpixels, px.index)
    params = dict(n_trees=5, min_samples_split=4)
    params.update(kw)
    model = AutoContext(len(ds.classes), iterations=3, seed=seed, **params).fit(hood, px.y)
    return model, superpixels, hood, px


def test_neighbourhood_holds_the_superpixels_of_the_training_pixels(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    _, superpixels, hood, px = _train(ds)
    # each training pixel is found at its place among the neighbourhood's pixels
    feats, _ = ds.read_features()
    stack = feats.transpose(2, 3, 1, 0).reshape(ds.height * ds.width, -1)
    np.testing.assert_array_equal(hood.x[hood.at], stack[px.index])
    # every superpixel of the neighbourhood holds at least one training pixel
    assert set(np.unique(hood.segment)) == set(np.unique(hood.segment[hood.at]))


def test_iteration_zero_is_the_base_forest(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    model, _, hood, px = _train(ds, seed=3)
    base = RandomForest(n_trees=5, min_samples_split=4, random_state=3).fit(hood.x[hood.at], px.y)
    x = np.random.default_rng(0).uniform(0, 0.5, (50, hood.x.shape[1])).astype(np.float32)
    np.testing.assert_array_equal(model.forests[0].predict_proba(x), base.predict_proba(x))
    # later forests see the K histogram values appended to the pixel features
    assert model.forests[1].n_features_in_ == hood.x.shape[1] + len(ds.classes)


def test_later_forests_are_trained_on_the_histograms_of_the_previous_one(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    model, _, hood, px = _train(ds)
    labels0 = model.forests[0].predict(hood.x)
    hist = label_histograms(labels0, hood.segment, hood.n_segments, len(ds.classes))
    again = RandomForest(n_trees=5, min_samples_split=4, random_state=[0, 1]).fit(
        np.hstack([hood.x, hist[hood.segment]])[hood.at], px.y)
    x = np.hstack([hood.x, hist[hood.segment]])
    np.testing.assert_array_equal(model.forests[1].predict_proba(x), again.predict_proba(x))


def test_same_seed_same_forests_other_seed_differs(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    a, _, hood, _ = _train(ds, seed=1)
    b, _, _, _ = _train(ds, seed=1)
    c, _, _, _ = _train(ds, seed=2)
    x = np.hstack([hood.x, np.full((len(hood.x), len(ds.classes)), 0.5)])
    assert np.array_equal(a.forests[2].predict_proba(x), b.forests[2].predict_proba(x))
    assert not np.array_equal(a.forests[2].predict_proba(x), c.forests[2].predict_proba(x))


def test_blocked_scene_map_equals_whole_square_prediction(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    model, superpixels, _, _ = _train(ds)
    clf = AutoContextClassifier(model, superpixels)
    predict_scene(clf, ds, tmp_path / "map.tif", tmp_path / "conf.tif", block=8, log=None,
                  budget_mb=0.01)
    blocked = read_window(tmp_path / "map.tif")[0]
    # whole-square prediction, square by square, by hand
    whole = np.zeros((ds.height, ds.width), np.uint8)
    for square in range(4):                       # 20 x 24 grid in 16-px squares: 2 x 2
        r0, c0, h, w = superpixels.window(square)
        final = model.predict_square(*superpixels.read(square))[-1]
        whole[r0:r0 + h, c0:c0 + w] = np.array(ds.class_codes)[final.argmax(1)].reshape(h, w)
    np.testing.assert_array_equal(blocked, whole)
    # and the per-pixel path used for validation and test scores agrees with the map
    index = np.arange(ds.height * ds.width)
    final = clf.predict_pixels(index)[-1]
    np.testing.assert_array_equal(np.array(ds.class_codes)[final].reshape(ds.height, ds.width),
                                  blocked)


def test_window_crossing_a_square_is_refused(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    model, superpixels, _, _ = _train(ds)
    with pytest.raises(ValueError, match="crosses a 16-pixel context square"):
        AutoContextClassifier(model, superpixels).proba(None, (10, 10, 8, 8))


def test_out_of_fold_histograms_do_not_leak_training_labels():
    """On pure noise a forest 'predicts' its own training pixels well (it memorised
    them) but does no better than chance on pixels it never saw: in-fold training
    labels leak the truth into the histograms, out-of-fold ones do not."""
    from types import SimpleNamespace
    rng = np.random.default_rng(0)
    n = 600
    hood = SimpleNamespace(x=rng.normal(size=(n, 6)).astype(np.float32),
                           segment=np.arange(n) // 6, n_segments=n // 6, at=np.arange(n))
    y = rng.integers(0, 3, n)
    accuracy = {}
    for folds in (0, 2):
        model = AutoContext(3, iterations=2, seed=0, out_of_fold=folds, n_trees=10,
                            min_samples_split=2)
        model.forests = [model._forest(0).fit(hood.x, y)]
        accuracy[folds] = (model._training_labels(0, hood.x, hood, y) == y).mean()
    assert accuracy[0] > 0.9                       # memorised
    assert abs(accuracy[2] - 1 / 3) < 0.08         # chance: nothing leaks
