"""Dev-only benchmark: our RandomForest against scikit-learn's, side by side.

Needs scikit-learn (dev only; the package itself does not).  Run from the
repository root:

    python tests/benchmarks/bench_forest.py [--trees 100] [--predict-rows 1000000]
    python tests/benchmarks/bench_forest.py --jobs 1 2 [--repeat 3]

Data: paper-shaped synthetic pixels (not a timed test): 13 features x 11
dates = 143 features per pixel, 8 classes with the pixel counts of Table 2
(52,707 training pixels), drawn polygon by polygon (pixels of one polygon
share its phenology and brightness), so that the held-out set, drawn from
other polygons, measures generalisation like the paper's polygon split.
Reflectances mix a class's vegetation and background spectra with a
per-date vegetation fraction (its phenology), plus noise and a few cloudy
dates; the 3 indices are NDVI, NDWI (McFeeters) and brightness.

Prints fit time (both on one core, n_jobs=1), predict time on
``--predict-rows`` pixels (both), ratios ours / sklearn, OA and macro-F1 on
the held-out set (both), peak memory of our fit, and the time of ``slic`` on
a 1000 x 1000 scene of 143 features.

With ``--jobs``: no scikit-learn; our forest alone, as ``benchmark.py`` fits
it (``RandomForest(n_trees=100, random_state=seed)``, the paper's settings)
on a paper-sized training set of ``--train-rows`` = 80,000 pixels (Table 2's
class shares) x 143 features, once per ``n_jobs`` given, side by side:
fit seconds, predict seconds on ``--predict-rows`` pixels, the ratios to the
first ``n_jobs``, the CPU seconds used (this process and its children), and
the load average before each round (timings on a shared machine are only as
good as the load).  Predictions must be
bitwise equal across ``n_jobs``; the script checks it.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from sits_ref.forest import RandomForest  # noqa: E402
from sits_ref.segmentation import slic  # noqa: E402

COUNTS = np.array([9528, 4532, 11512, 672, 4132, 11875, 1012, 9444])  # Table 2
CODES = np.array([1, 2, 3, 5, 6, 7, 10, 11])
DOY = np.array([46, 74, 105, 135, 166, 189, 227, 258, 288, 319, 349])  # Table 1 dates
T = DOY.size
# band order: B2 B3 B4 B5 B6 B7 B8 B8A B11 B12
VEG = np.array([0.03, 0.07, 0.03, 0.10, 0.30, 0.38, 0.42, 0.43, 0.20, 0.09])
SOIL = np.array([0.08, 0.11, 0.14, 0.17, 0.20, 0.22, 0.24, 0.25, 0.32, 0.27])
URBAN = np.array([0.10, 0.12, 0.13, 0.15, 0.17, 0.18, 0.19, 0.20, 0.22, 0.20])
ROCK = np.array([0.14, 0.17, 0.20, 0.22, 0.24, 0.25, 0.26, 0.27, 0.33, 0.30])
WATER = np.array([0.06, 0.06, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02, 0.01, 0.01])
CONIFER = np.array([0.02, 0.04, 0.02, 0.07, 0.20, 0.25, 0.28, 0.29, 0.13, 0.06])
BACKGROUND = [URBAN, SOIL, SOIL, SOIL, SOIL, SOIL, ROCK, WATER]


def phenology(cls, t, shift, amp):
    """Vegetation fraction (n, T) in [0, 1] of class ``cls`` at days ``t``.

    shift (n, 1) days and amp (n, 1) are per-polygon variations.
    """
    x = (t[None, :] - shift) / 365.0
    bell = lambda c, w: np.exp(-0.5 * ((x * 365 - c) / w) ** 2)  # noqa: E731
    if cls == 0:  # built up: a little vegetation (gardens)
        v = 0.15 + 0.08 * bell(160, 60)
    elif cls == 1:  # needle-leaved: evergreen
        v = 0.75 + 0.05 * bell(170, 70)
    elif cls == 2:  # broad-leaved: deciduous
        v = 0.30 + 0.55 * bell(180, 55)
    elif cls == 3:  # shrubland: between forest and grass
        v = 0.40 + 0.30 * bell(160, 60)
    elif cls == 4:  # permanent grass: green spring, dry summer, regrowth
        v = 0.55 + 0.30 * bell(120, 35) - 0.15 * bell(220, 30) + 0.15 * bell(300, 30)
    elif cls == 5:  # crops: sowing, peak, harvest (phase varies per polygon)
        v = 0.10 + 0.80 * bell(160, 30)
    elif cls == 6:  # non-vegetated
        v = 0.05 + 0.05 * bell(150, 50)
    else:  # water
        v = 0.02 + 0.0 * x
    return np.clip(0.5 + amp * (v - 0.5), 0, 1)


def make_pixels(counts, rng, mean_polygon=120):
    """Pixels (sum(counts), 143) float32 and class ids, drawn polygon by polygon."""
    X, y = [], []
    for k, n in enumerate(counts):
        done = 0
        while done < n:
            size = int(min(n - done, max(5, rng.lognormal(np.log(mean_polygon), 0.8))))
            shift = rng.normal(0, 40 if k == 5 else 15)
            amp = rng.normal(1.0, 0.15)
            bright = rng.lognormal(0, 0.15)
            v = phenology(k, DOY, np.full((size, 1), shift) + rng.normal(0, 5, (size, 1)), amp)
            v = np.clip(v + rng.normal(0, 0.15, (size, T)), 0, 1)
            veg = CONIFER if k == 1 else VEG
            bg = BACKGROUND[k] * bright * rng.lognormal(0, 0.1, (size, 1, 1))
            refl = v[:, :, None] * veg + (1 - v[:, :, None]) * bg  # (size, T, 10)
            refl *= rng.lognormal(0, 0.15, refl.shape)
            cloudy = rng.random((size, T)) < 0.10
            refl[cloudy] = 0.3 + 0.3 * rng.random((cloudy.sum(), 1))
            b3, b4, b8 = refl[..., 1], refl[..., 2], refl[..., 6]
            ndvi = (b8 - b4) / (b8 + b4 + 1e-6)
            ndwi = (b3 - b8) / (b3 + b8 + 1e-6)
            brightness = np.sqrt((refl**2).sum(-1))
            feats = np.concatenate([refl, ndvi[..., None], ndwi[..., None], brightness[..., None]], -1)
            X.append(feats.reshape(size, T * 13))
            y.append(np.full(size, k))
            done += size
    return np.concatenate(X).astype(np.float32), CODES[np.concatenate(y)]


def scores(y_true, y_pred):
    """Overall accuracy and macro-F1 (percent)."""
    labels = np.unique(y_true)
    f1 = []
    for c in labels:
        tp = np.sum((y_pred == c) & (y_true == c))
        p = tp / max(np.sum(y_pred == c), 1)
        r = tp / max(np.sum(y_true == c), 1)
        f1.append(0 if tp == 0 else 2 * p * r / (p + r))
    return 100 * np.mean(y_true == y_pred), 100 * np.mean(f1)


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--predict-rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-slic", action="store_true")
    ap.add_argument("--jobs", type=int, nargs="+", help="compare these n_jobs (no sklearn)")
    ap.add_argument("--train-rows", type=int, default=80_000, help="training pixels for --jobs")
    ap.add_argument("--repeat", type=int, default=3, help="rounds for --jobs")
    args = ap.parse_args()
    if args.jobs:
        return compare_jobs(args)
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(args.seed)
    Xtr, ytr = make_pixels(COUNTS, rng)
    Xte, yte = make_pixels(np.round(COUNTS * 0.3).astype(int), rng)
    Xbig, _ = make_pixels(np.round(COUNTS / COUNTS.sum() * args.predict_rows).astype(int), rng, 2000)
    Xbig = Xbig[: args.predict_rows]
    print(f"train {Xtr.shape}, held-out {Xte.shape}, predict {Xbig.shape}, cpus {os.cpu_count()}")
    hp = dict(max_depth=50, min_samples_split=20, max_features="sqrt", bootstrap=True)

    rss0 = rss_mib()
    t = time.perf_counter()
    ours = RandomForest(n_trees=args.trees, random_state=0, n_jobs=1, **hp).fit(Xtr, ytr)
    fit_ours = time.perf_counter() - t
    rss1 = rss_mib()
    t = time.perf_counter()
    sk = RandomForestClassifier(n_estimators=args.trees, n_jobs=1, random_state=0, **hp).fit(Xtr, ytr)
    fit_sk = time.perf_counter() - t

    t = time.perf_counter()
    pb_ours = ours.predict(Xbig)
    pred_ours = time.perf_counter() - t
    t = time.perf_counter()
    pb_sk = sk.predict(Xbig)
    pred_sk = time.perf_counter() - t

    oa_o, f1_o = scores(yte, ours.predict(Xte))
    oa_s, f1_s = scores(yte, sk.predict(Xte))
    nodes_o = np.mean([e.n_nodes for e in ours.estimators_])
    nodes_s = np.mean([e.tree_.node_count for e in sk.estimators_])
    print(f"fit      ours(n_jobs=1) {fit_ours:7.2f} s   sklearn(n_jobs=1) {fit_sk:7.2f} s   ratio {fit_ours / fit_sk:.2f}")
    print(f"predict  ours(n_jobs=1) {pred_ours:7.2f} s   sklearn(n_jobs=1) {pred_sk:7.2f} s   ratio {pred_ours / pred_sk:.2f}"
          f"   ({Xbig.shape[0]} px; agreement {100 * np.mean(pb_ours == pb_sk):.1f}%)")
    print(f"held-out ours OA {oa_o:.2f} macro-F1 {f1_o:.2f} | sklearn OA {oa_s:.2f} macro-F1 {f1_s:.2f}"
          f" | diff OA {oa_o - oa_s:+.2f} F1 {f1_o - f1_s:+.2f} points")
    print(f"nodes/tree ours {nodes_o:.0f} sklearn {nodes_s:.0f}; "
          f"max depth ours {max(e.max_depth_reached for e in ours.estimators_)} "
          f"sklearn {max(e.tree_.max_depth for e in sk.estimators_)}")
    # peak memory of our fit: RSS high-water increase, and numpy's traced peak on a 10-tree fit
    tracemalloc.start()
    RandomForest(n_trees=10, random_state=0, n_jobs=1, **hp).fit(Xtr, ytr)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(f"our fit memory: RSS high-water +{rss1 - rss0:.0f} MiB over the data; traced peak (10 trees) {peak:.0f} MiB")

    if not args.skip_slic:
        del Xbig, pb_ours, pb_sk
        scene = make_scene(rng)
        t = time.perf_counter()
        labels = slic(scene, n_segments=4000, compactness=1.0, n_iter=5, seed=0)
        t_slic = time.perf_counter() - t
        print(f"slic 1000x1000x143: {t_slic:.1f} s ({np.unique(labels).size} objects)")


def compare_jobs(args):
    """Fit and predict time of the paper's forest for each n_jobs in ``args.jobs``.

    Besides wall seconds, the CPU seconds of this process and its children: when
    they stay put while n_jobs grows, the work is only split, and a wall time
    that does not drop means the cores were busy with something else.
    """
    rng = np.random.default_rng(args.seed)
    Xtr, ytr = make_pixels(np.round(COUNTS / COUNTS.sum() * args.train_rows).astype(int), rng)
    Xbig, _ = make_pixels(np.round(COUNTS / COUNTS.sum() * args.predict_rows).astype(int), rng, 2000)
    Xbig = Xbig[: args.predict_rows]
    print(f"train {Xtr.shape}, {np.unique(ytr).size} classes, {args.trees} trees; "
          f"predict {Xbig.shape}; cpus {os.cpu_count()}")
    cpu = lambda: sum(os.times()[:4])  # noqa: E731  (user + system, self + children)
    speedups = []
    for r in range(args.repeat):
        print(f"round {r}: load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        fit, pred, first = [], [], None
        for j in args.jobs:
            t, c = time.perf_counter(), cpu()
            rf = RandomForest(n_trees=args.trees, random_state=args.seed, n_jobs=j).fit(Xtr, ytr)
            fit.append(time.perf_counter() - t)
            fit_cpu = cpu() - c
            t, c = time.perf_counter(), cpu()
            proba = rf.predict_proba(Xbig)
            pred.append(time.perf_counter() - t)
            print(f"  n_jobs={j:<2d}  fit {fit[-1]:7.2f} s (cpu {fit_cpu:7.2f} s)   "
                  f"predict {pred[-1]:6.2f} s (cpu {cpu() - c:6.2f} s)", flush=True)
            if first is None:
                first = proba
            elif not np.array_equal(proba, first):
                raise SystemExit(f"n_jobs={j} predicts other probabilities than n_jobs={args.jobs[0]}")
        speedups.append([(fit[0] / f, pred[0] / p) for f, p in zip(fit[1:], pred[1:])])
        print(f"  speed-up over n_jobs={args.jobs[0]}: " + ", ".join(
            f"n_jobs={j} fit {sf:.2f}x predict {sp:.2f}x"
            for j, (sf, sp) in zip(args.jobs[1:], speedups[-1])))
    for i, j in enumerate(args.jobs[1:]):
        sf, sp = np.array([s[i] for s in speedups]).T
        print(f"range over {args.repeat} rounds, n_jobs={j} vs {args.jobs[0]}: "
              f"fit {sf.min():.2f}-{sf.max():.2f}x, predict {sp.min():.2f}-{sp.max():.2f}x")


def make_scene(rng, H=1000, W=1000):
    """(H, W, 143) float32 scene of blocky fields of the 8 classes."""
    cell = 25
    fields = rng.integers(0, 8, (H // cell + 1, W // cell + 1))
    cls = np.kron(fields, np.ones((cell, cell), dtype=int))[:H, :W]
    scene = np.empty((H, W, T * 13), dtype=np.float32)
    for k in range(8):
        m = cls == k
        scene[m] = make_pixels(np.array([m.sum() if j == k else 0 for j in range(8)]), rng, 600)[0]
    return scene


if __name__ == "__main__":
    main()
