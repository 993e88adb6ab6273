"""DEV-ONLY: imports scikit-learn.  Records scikit-learn's accuracy on a fixed dataset.

Run once from the repository root (the output is committed):

    python tests/data/make_forest_fixture.py

It builds a deterministic, moderately hard synthetic dataset with numpy only
(seed 2021: 4 classes with overlapping Gaussian clusters in 6 informative
features, plus 4 noise features and 5% label noise; 1600 train / 800 test
rows), fits sklearn's RandomForestClassifier with the paper's hyperparameters
(100 trees, max_depth 50, min_samples_split 20, max_features "sqrt",
bootstrap) and writes the data and sklearn's test OA and macro-F1 to
tests/data/forest_sklearn.npz (about 100 kB).  tests/test_forest.py loads
that file, fits our forest and checks it is within a tolerance of sklearn.
"""
import os

import numpy as np


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


def main():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score

    Xtr, ytr, Xte, yte = make_dataset()
    oa, f1 = [], []
    for seed in range(5):  # average a few seeds: one forest's score is itself noisy
        sk = RandomForestClassifier(
            n_estimators=100, max_depth=50, min_samples_split=20, max_features="sqrt",
            bootstrap=True, n_jobs=1, random_state=seed,
        ).fit(Xtr, ytr)
        p = sk.predict(Xte)
        oa.append(accuracy_score(yte, p))
        f1.append(f1_score(yte, p, average="macro"))
    out = os.path.join(os.path.dirname(__file__), "forest_sklearn.npz")
    np.savez_compressed(
        out, X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte,
        sklearn_oa=np.mean(oa), sklearn_macro_f1=np.mean(f1),
    )
    print(f"sklearn OA {np.mean(oa):.4f} macro-F1 {np.mean(f1):.4f} -> {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
