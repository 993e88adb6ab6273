"""DEV-ONLY: imports scikit-learn.  Records scikit-learn's forests on a fixed dataset.

Run once from the repository root (the output is committed):

    pip install scikit-learn      # dev only; last run with scikit-learn 1.9.1, numpy 2.4.6
    python tests/data/make_forest_fixture.py

It builds a deterministic, moderately hard synthetic dataset with numpy only
(seed 2021: 4 classes with overlapping Gaussian clusters in 6 informative
features, plus 4 noise features and 5% label noise; 1600 train / 800 test
rows) and fits sklearn's RandomForestClassifier (n_jobs=1) in four settings:

    paper         100 trees, max_depth 50, min_samples_split 20,
                  max_features "sqrt", bootstrap (the paper's, section 2.1)
    all_features  the same with max_features=None
    no_bootstrap  the same with bootstrap=False
    10_trees      the same with n_estimators=10

For each setting it keeps ``proba_<setting>``: the (800, 4) test-row
``predict_proba`` of the forest with random_state 0, the *reference*.  To
say how far a correct forest may be from it, it also fits that setting with
random_states 1..5 and records their distance to the reference,
``self_l1_<setting>`` = [mean, min, max] of :func:`mean_l1` (tests/test_forest.py
sets its tolerance from these).  Everything goes to
tests/data/forest_sklearn.npz (about 150 kB) with ``sklearn_version``.
"""
import os

import numpy as np

PAPER = dict(n_estimators=100, max_depth=50, min_samples_split=20, max_features="sqrt", bootstrap=True)
SETTINGS = {
    "paper": {},
    "all_features": dict(max_features=None),
    "no_bootstrap": dict(bootstrap=False),
    "10_trees": dict(n_estimators=10),
}
N_SEEDS = 6  # seed 0 is the reference, seeds 1..5 measure the seed-to-seed distance


def make_dataset(seed=2021, n_train=1600, n_test=800):
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    C, informative, noise = 4, 6, 4
    centres = rng.normal(0, 1.0, (C, 2, informative))  # two clusters per class
    y = rng.integers(0, C, n)
    which = rng.integers(0, 2, n)
    Xi = centres[y, which] + rng.normal(0, 1.0, (n, informative))
    Xn = rng.normal(0, 1.0, (n, noise))
    X = np.concatenate([Xi, Xn], 1).astype(np.float32)
    flip = rng.random(n) < 0.05
    y = np.where(flip, rng.integers(0, C, n), y)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def mean_l1(p, q):
    """Mean over rows of the L1 distance between two (n, C) probability arrays."""
    return float(np.abs(np.asarray(p, np.float64) - q).sum(axis=1).mean())


def main():
    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    Xtr, ytr, Xte, yte = make_dataset()
    out = dict(X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte, sklearn_version=sklearn.__version__)
    for name, change in SETTINGS.items():
        probas = [
            RandomForestClassifier(**{**PAPER, **change}, n_jobs=1, random_state=seed)
            .fit(Xtr, ytr).predict_proba(Xte)
            for seed in range(N_SEEDS)
        ]
        self_l1 = [mean_l1(p, probas[0]) for p in probas[1:]]
        out[f"proba_{name}"] = probas[0].astype(np.float32)
        out[f"self_l1_{name}"] = np.array([np.mean(self_l1), np.min(self_l1), np.max(self_l1)])
        print(f"{name:13s} sklearn seeds 1..{N_SEEDS - 1} to seed 0: mean L1 "
              f"{np.mean(self_l1):.4f} [{np.min(self_l1):.4f}, {np.max(self_l1):.4f}]")
    path = os.path.join(os.path.dirname(__file__), "forest_sklearn.npz")
    np.savez_compressed(path, **out)
    print(f"scikit-learn {sklearn.__version__} -> {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
