"""Golden and bad-input tests of sits_ref.forest (no scikit-learn needed)."""
import os

import numpy as np
import pytest

from sits_ref.forest import RandomForest, fit_bins, apply_bins

HERE = os.path.dirname(__file__)


def one_tree(**kw):
    """A single deterministic tree: no bootstrap, all features at each node."""
    params = dict(n_trees=1, bootstrap=False, max_features=None, min_samples_split=2, random_state=0)
    params.update(kw)
    return RandomForest(**params)


def test_threshold_between_two_known_values():
    X = np.array([[1.0], [2.0], [3.0], [10.0], [11.0], [12.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    t = one_tree().fit(X, y).estimators_[0]
    assert t.feature[0] == 0
    assert t.threshold[0] == 6.5  # midpoint of 3 and 10
    assert t.n_nodes == 3  # both children pure -> leaves
    assert (t.feature[1:] == -1).all()
    assert t.impurity[0] == pytest.approx(0.5)  # 1 - (1/2)^2 - (1/2)^2


def test_picks_the_informative_feature():
    X = np.array([[5.0, 1], [5.0, 2], [0.0, 1], [0.0, 2]])
    y = np.array([1, 1, 0, 0])
    t = one_tree().fit(X, y).estimators_[0]
    assert t.feature[0] == 0 and t.threshold[0] == 2.5


def test_gini_by_hand_and_leaf_probabilities():
    X = np.arange(4.0)[:, None]
    y = np.array(["a", "a", "a", "b"])
    rf = one_tree(max_depth=0).fit(X, y)
    t = rf.estimators_[0]
    assert t.n_nodes == 1
    assert t.impurity[0] == pytest.approx(1 - (0.75**2 + 0.25**2))  # 0.375
    assert list(rf.classes_) == ["a", "b"]
    np.testing.assert_allclose(rf.predict_proba([[100.0]]), [[0.75, 0.25]])
    assert rf.predict([[100.0]])[0] == "a"


def test_pure_node_stops():
    X = np.arange(40.0)[:, None]
    y = (X[:, 0] >= 30).astype(int)
    t = one_tree().fit(X, y).estimators_[0]
    assert t.n_nodes == 3
    assert t.n_node_samples[1] == 30 and t.impurity[1] == 0 and t.feature[1] == -1


def test_min_samples_split_respected():
    X = np.arange(60.0)[:, None]
    y = np.arange(60) % 2  # alternating: a full tree would go down to single rows
    t = one_tree(min_samples_split=20).fit(X, y).estimators_[0]
    internal = t.feature >= 0
    assert internal.any()
    assert (t.n_node_samples[internal] >= 20).all()
    assert t.n_node_samples[~internal].min() < 20
    assert one_tree(min_samples_split=61).fit(X, y).estimators_[0].n_nodes == 1


def test_max_depth_respected():
    X = np.arange(64.0)[:, None]
    y = np.arange(64) % 2
    for d in (0, 1, 3):
        t = one_tree(max_depth=d).fit(X, y).estimators_[0]
        assert t.depth.max() == d
    full = one_tree(max_depth=None).fit(X, y).estimators_[0]
    assert (full.impurity[full.feature < 0] == 0).all()  # grown to purity


def test_binning_is_exact_on_few_values_and_consistent():
    X = np.array([[0.0], [1.0], [1.0], [4.0]])
    e = fit_bins(X)
    np.testing.assert_array_equal(e[0, :2], [0.5, 2.5])
    assert np.isinf(e[0, 2:]).all()
    np.testing.assert_array_equal(apply_bins(X, e)[:, 0], [0, 1, 1, 2])
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(5000, 3))
    e = fit_bins(Z)
    b = apply_bins(Z, e)
    assert b.max() <= 254
    for f in range(3):  # bin <= j  <=>  x <= edge j
        j = 100
        np.testing.assert_array_equal(b[:, f] <= j, Z[:, f] <= e[f, j])


def test_same_random_state_same_forest():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 8))
    y = (X[:, 0] + X[:, 1] + rng.normal(0, 0.5, 500) > 0).astype(int)
    a = RandomForest(n_trees=10, random_state=3).fit(X, y)
    b = RandomForest(n_trees=10, random_state=3, n_jobs=1).fit(X, y)
    for ta, tb in zip(a.estimators_, b.estimators_):
        np.testing.assert_array_equal(ta.feature, tb.feature)
        np.testing.assert_array_equal(ta.threshold, tb.threshold)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = RandomForest(n_trees=10, random_state=4).fit(X, y)
    assert any(ta.n_nodes != tc.n_nodes or (ta.feature != tc.feature).any()
               for ta, tc in zip(a.estimators_, c.estimators_))


def test_predict_proba_is_mean_of_tree_leaves_and_printout():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 5))
    y = rng.integers(0, 3, 300)
    rf = RandomForest(n_trees=7, random_state=0).fit(X, y)
    ref = np.mean([t.value[t.apply(X)] for t in rf.estimators_], axis=0)
    np.testing.assert_allclose(rf.predict_proba(X, chunk_rows=64), ref, atol=1e-6)
    np.testing.assert_allclose(rf.predict_proba(X).sum(1), 1, atol=1e-5)
    text = rf.estimators_[0].to_text()
    assert "<=" in text and "leaf" in text


def test_agrees_with_sklearn_on_fixture():
    """Fixture recorded by tests/data/make_forest_fixture.py (sklearn, dev only)."""
    d = np.load(os.path.join(HERE, "data", "forest_sklearn.npz"))
    rf = RandomForest(random_state=0).fit(d["X_train"], d["y_train"])
    p = rf.predict(d["X_test"])
    yt = d["y_test"]
    oa = np.mean(p == yt)
    f1 = []
    for c in np.unique(yt):
        tp = np.sum((p == c) & (yt == c))
        f1.append(2 * tp / (np.sum(p == c) + np.sum(yt == c)))
    tol = 0.03  # 800 test rows: one forest's OA varies by ~1 point between seeds
    assert abs(oa - float(d["sklearn_oa"])) < tol, (oa, float(d["sklearn_oa"]))
    assert abs(np.mean(f1) - float(d["sklearn_macro_f1"])) < tol


# ---------------------------------------------------------------- bad input
X_OK = np.arange(20.0).reshape(10, 2)
Y_OK = np.array([0, 1] * 5)


def test_nan_and_inf_features_are_rejected_with_position():
    X = X_OK.copy()
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"row 3, column 1"):
        RandomForest().fit(X, Y_OK)
    X = X_OK.copy()
    X[7, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf.*row 7, column 0"):
        RandomForest().fit(X, Y_OK)
    rf = RandomForest(n_trees=2).fit(X_OK, Y_OK)
    with pytest.raises(ValueError, match="non-finite"):
        rf.predict(np.array([[1.0, -np.inf]]))


def test_length_mismatch():
    with pytest.raises(ValueError, match="X has 10 rows, y has 9"):
        RandomForest().fit(X_OK, Y_OK[:9])


def test_single_class():
    with pytest.raises(ValueError, match="single class"):
        RandomForest().fit(X_OK, np.zeros(10))


def test_predict_before_fit():
    with pytest.raises(RuntimeError, match="not fitted"):
        RandomForest().predict(X_OK)
    with pytest.raises(RuntimeError, match="not fitted"):
        RandomForest().predict_proba(X_OK)


def test_wrong_number_of_features():
    rf = RandomForest(n_trees=2).fit(X_OK, Y_OK)
    with pytest.raises(ValueError, match="X has 3 features, but this forest was fitted with 2"):
        rf.predict(np.zeros((4, 3)))


# ----------------------------------------------------------------------------- degenerate data
# A node with no valid split must become a leaf (as scikit-learn makes it), never crash.

@pytest.mark.parametrize("case", ["constant", "duplicates", "one_sample_per_class",
                                  "all_equal_rows_mixed_labels"])
def test_nodes_without_a_valid_split_become_leaves(case):
    rng = np.random.default_rng(0)
    if case == "constant":            # all-constant features, two balanced classes
        X, y = np.full((40, 3), 0.5), np.r_[np.zeros(20), np.ones(20)]
    elif case == "duplicates":        # random data + 30 identical rows with mixed labels
        X = np.r_[rng.random((100, 5)), np.ones((30, 5))]
        y = np.r_[rng.integers(0, 3, 100), rng.integers(0, 3, 30)]
    elif case == "one_sample_per_class":
        X, y = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([3, 7])
    else:
        X, y = np.zeros((25, 4)), np.arange(25) % 3
    rf = RandomForest(n_trees=5, min_samples_split=2, random_state=0).fit(X, y)
    proba = rf.predict_proba(X)
    assert proba.shape == (len(X), len(np.unique(y)))
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    if case in ("constant", "all_equal_rows_mixed_labels"):
        # nothing to split on: every tree is its (bootstrap) root, a single leaf
        assert all(t.n_nodes == 1 for t in rf.estimators_)
    if case == "duplicates":          # the identical rows all land in the same leaves
        assert np.allclose(proba[100:], proba[100])


def test_random_degenerate_arrays_never_crash():
    """Property-style: many small arrays with few distinct values, repeated rows,
    constant columns and skewed labels; fit and predict must always work."""
    rng = np.random.default_rng(42)
    for trial in range(60):
        n = int(rng.integers(2, 60))
        f = int(rng.integers(1, 6))
        X = rng.integers(0, int(rng.integers(1, 4)), (n, f)).astype(float)  # few values
        X[:, rng.random(f) < 0.4] = 7.0                                     # constant columns
        y = rng.integers(0, int(rng.integers(2, 5)), n)
        y[: max(1, n // 3)] = 0                                             # skewed
        if len(np.unique(y)) < 2:
            y[-1] = 1
        rf = RandomForest(n_trees=3, min_samples_split=int(rng.integers(2, 25)),
                          max_depth=int(rng.integers(1, 60)), random_state=trial)
        proba = rf.fit(X, y).predict_proba(X)
        assert proba.shape == (n, len(np.unique(y))) and np.isfinite(proba).all(), trial


@pytest.mark.parametrize("X, y, message", [
    (np.zeros((4, 2, 1)), np.array([0, 1, 0, 1]), "must be 2-D"),
    (np.zeros((0, 3)), np.zeros(0), "no rows"),
    (np.zeros((4, 2)), np.array([[0, 1], [0, 1]]), "y must be 1-D"),
    (np.zeros((4, 2)), np.array([0, 1, 0]), "X has 4 rows, y has 3"),
    (np.zeros((4, 2)), np.array([5, 5, 5, 5]), "single class"),
])
def test_fit_validates_its_input(X, y, message):
    with pytest.raises(ValueError, match=message):
        RandomForest(n_trees=2).fit(X, y)
