"""A Random Forest classifier in numpy, small enough to read.

This is the baseline of the ISPRS 2021 benchmark (section 2.1): iota2's
Random Forest on per-pixel stacked features (13 features x T dates), with
the paper's hyperparameters as defaults: 100 trees, maximum depth 50, at
least 20 samples in a node to split it.

How it is fast without a compiler
---------------------------------
A recursive, exact-split tree in numpy spends its time in Python calls, one
per node.  Here every step works on *all nodes of one depth level at once*:

1. **Binning** (once per ``fit``).  Each feature is cut into at most 255
   quantile bins fitted on the training data (fewer when the feature has
   fewer distinct values, in which case every distinct value gets its own
   bin and the search is exact).  A bin edge is stored as a real feature
   value: the midpoint between the two training values it separates, as
   scikit-learn does.  A split "bin <= b" is thus exactly "x <= threshold"
   on the training data, and ``predict`` works on raw ``X`` without binning.
2. **Level-wise growth.**  For the samples of the splittable nodes of one
   level, and the ``max_features`` features drawn for each node, the
   (node, feature, bin, class) histogram is built with ``np.bincount`` on a
   flattened index.  Only (node, feature, bin) cells that hold a sample are
   kept (a counting sort), so small deep nodes cost what their samples cost,
   not 255 bins each.  A cumulative sum along the bins gives the class counts
   on the left of every candidate threshold, and the Gini gain of all
   candidates of all nodes is one vectorised expression.
3. **Prediction** walks all trees at once, level by level: the state is one
   node id per (row, tree) pair, moved one level down per step with a few
   ``np.take`` calls; rows go in chunks of 1024 so that the chunk of ``X``
   stays in cache, pairs that reached a leaf are dropped every 3 levels, and
   thresholds are compared in ``X``'s own dtype (float32 thresholds rounded
   down, which is exact).  Chunks are spread over threads, which helps only
   where numpy releases the GIL and a core is free.

scikit-learn semantics kept
---------------------------
* Gini impurity; ``max_features="sqrt"`` draws ``int(sqrt(F))`` features
  without replacement *per node*; ``bootstrap=True`` draws ``n`` rows with
  replacement per tree and uses the draw counts as sample weights;
  ``min_samples_split`` and ``max_depth`` count / compare like sklearn
  (number of distinct training rows in the node; root at depth 0); a node
  with a single class is a leaf; ``predict_proba`` averages the (weighted)
  class frequencies of the leaves reached, over trees.
* Differences: thresholds are searched among at most 255 quantile edges per
  feature, not every midpoint; when all features drawn for a node are
  constant in it the node becomes a leaf (sklearn would draw more
  features); ties between equally good splits go to the first one found.

Defaults are the paper's, not iota2's/OTB's own
-----------------------------------------------
OTB's ``TrainImagesClassifier`` random forest (OpenCV) defaults to
``max_depth=5``, ``min_samples_split=10`` and ``max_trees=100``; the paper
sets ``min_samples_split=20``, ``max_depth=50``, ``n_trees=100`` (section 2.1).

Only numpy and the standard library are imported, so this file can be
lifted out of the package alone.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["RandomForest", "DecisionTree", "fit_bins", "apply_bins"]

MAX_BINS = 255
_COMPACT_EVERY = 3  # predict: drop pairs that reached a leaf every this many levels


# --------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------
def _check_X(X, name="X", allow_empty=False):
    """Return ``X`` as a 2-D float array; raise ValueError on NaN/inf (and on no rows
    unless ``allow_empty``: predicting nothing is fine, fitting on nothing is not).

    The error names the first bad row and column so that the offending
    pixel / feature can be found.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if X.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} has no rows")
    # one cheap pass: the sum is finite iff every value is (a float64 sum of
    # float32/64 values cannot overflow for real data); locate only on failure
    if np.isfinite(X.sum(dtype=np.float64)):
        return X
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf); "
            f"first at row {r}, column {c}: {X[r, c]!r}"
        )
    return X


def _n_features_per_node(max_features, n_features):
    """sklearn's rule for how many features are drawn at each node."""
    if max_features is None:
        return n_features
    if max_features == "sqrt":
        return max(1, int(math.sqrt(n_features)))
    if max_features == "log2":
        return max(1, int(math.log2(n_features)))
    if isinstance(max_features, float):
        return max(1, int(max_features * n_features))
    if isinstance(max_features, (int, np.integer)):
        if not 1 <= max_features <= n_features:
            raise ValueError(f"max_features={max_features} not in [1, {n_features}]")
        return int(max_features)
    raise ValueError(f"max_features={max_features!r} not understood")


# --------------------------------------------------------------------------
# binning
# --------------------------------------------------------------------------
def fit_bins(X, max_bins=MAX_BINS):
    """Quantile bin edges per feature, as real feature values.

    Parameters
    ----------
    X : (n, F) float array of training features.
    max_bins : at most this many bins per feature (<= 256, bins fit uint8).

    Returns
    -------
    edges : (F, max_bins - 1) float64, each row increasing, padded with +inf.
        Bin of ``x`` for feature ``f`` = number of edges ``< x``, so
        ``bin <= b``  <=>  ``x <= edges[f, b]`` on the training values.
        Each edge is the midpoint between two consecutive distinct training
        values (like sklearn's thresholds).  Features with at most
        ``max_bins`` distinct values get one bin per value (exact search).
    """
    n, F = X.shape
    edges = np.full((F, max_bins - 1), np.inf)
    for f in range(F):
        u = np.unique(X[:, f]).astype(np.float64)
        if u.size > max_bins:
            # values at the quantiles; the cut is just above each of them
            s = np.sort(X[:, f]).astype(np.float64)
            q = s[(np.arange(1, max_bins) * n) // max_bins]
            lo = np.unique(q)
            hi_pos = np.searchsorted(u, lo, side="right")
            keep = hi_pos < u.size
            lo, hi = lo[keep], u[hi_pos[keep]]
        else:
            lo, hi = u[:-1], u[1:]
        mid = (lo + hi) / 2.0
        # float rounding can put the midpoint on the upper value: use the lower one
        mid = np.where(mid >= hi, lo, mid)
        edges[f, : mid.size] = mid
    return edges


def apply_bins(X, edges):
    """Bin index per value: (n, F) uint8, the number of edges ``< x``."""
    n, F = X.shape
    Xb = np.empty((n, F), dtype=np.uint8)
    for f in range(F):
        e = edges[f]
        e = e[np.isfinite(e)]
        Xb[:, f] = np.searchsorted(e, X[:, f], side="left")
    return Xb


# --------------------------------------------------------------------------
# one tree
# --------------------------------------------------------------------------
class DecisionTree:
    """A fitted classification tree, stored as flat node arrays (BFS order).

    Attributes (n_nodes entries each; node 0 is the root)
    ----------
    feature : int32, feature tested at the node, -1 for a leaf.
    threshold : float64, a sample goes left when ``x[feature] <= threshold``
        (+inf for a leaf).
    left, right : int32, child node ids, -1 for a leaf.
    value : (n_nodes, n_classes) float32, weighted class frequencies of the
        training (bootstrap) samples in the node; each row sums to 1.
    n_node_samples : int32, distinct training rows in the node.
    impurity : float64, Gini impurity of the node.
    depth : int32, depth of the node (root 0).
    """

    def __init__(self, feature, threshold, left, right, value, n_node_samples, impurity, depth):
        self.feature = feature
        self.threshold = threshold
        self.left = left
        self.right = right
        self.value = value
        self.n_node_samples = n_node_samples
        self.impurity = impurity
        self.depth = depth
        # for prediction: leaves point to themselves and never move samples
        ids = np.arange(feature.size, dtype=np.int64)
        leaf = feature < 0
        self._feat = np.where(leaf, 0, feature).astype(np.int64)
        self._thr = np.where(leaf, np.inf, threshold)
        self._child = np.stack([np.where(leaf, ids, left), np.where(leaf, ids, right)], axis=1).ravel()
        self.max_depth_reached = int(depth.max())

    @property
    def n_nodes(self):
        return self.feature.size

    @property
    def n_leaves(self):
        return int((self.feature < 0).sum())

    def apply(self, X):
        """Leaf id reached by each row of ``X`` (n, F) -> (n,) int64."""
        X = np.ascontiguousarray(X)
        n, F = X.shape
        flat = X.ravel()
        row_off = np.arange(n, dtype=np.int64) * F
        node = np.zeros(n, dtype=np.int64)
        out = node
        idx = None  # rows still travelling, None = all
        for level in range(self.max_depth_reached):
            f = self._feat[node]
            go_right = flat.take(row_off + f) > self._thr[node]
            node = self._child.take(2 * node + go_right)
            if level % 4 == 3:  # compact now and then: drop rows already in leaves
                moving = self.feature[node] >= 0
                if idx is None:
                    out = node.copy()
                    idx = np.arange(n, dtype=np.int64)
                else:
                    out[idx] = node
                idx, node, row_off = idx[moving], node[moving], row_off[moving]
        if idx is None:
            return node
        out[idx] = node
        return out

    def predict_proba(self, X):
        return self.value[self.apply(X)]

    def to_text(self, feature_names=None, max_depth=None):
        """Readable printout of the tree (one node per line, indented)."""
        lines = []

        def name(f):
            return feature_names[f] if feature_names is not None else f"x[{f}]"

        stack = [0]
        while stack:
            i = stack.pop()
            pad = "|   " * int(self.depth[i])
            if max_depth is not None and self.depth[i] > max_depth:
                continue
            if self.feature[i] < 0:
                lines.append(
                    f"{pad}leaf #{i}: n={self.n_node_samples[i]} gini={self.impurity[i]:.3f} "
                    f"p={np.round(self.value[i], 3).tolist()}"
                )
            else:
                lines.append(
                    f"{pad}node #{i}: {name(self.feature[i])} <= {self.threshold[i]:.6g} "
                    f"(n={self.n_node_samples[i]} gini={self.impurity[i]:.3f})"
                )
                stack.append(int(self.right[i]))
                stack.append(int(self.left[i]))
        return "\n".join(lines)

    __str__ = to_text


def _gini(counts):
    """Gini impurity 1 - sum_k p_k^2 of rows of class counts (m, C) -> (m,)."""
    tot = counts.sum(axis=1)
    return 1.0 - (counts**2).sum(axis=1) / np.maximum(tot, 1e-300) ** 2


def _best_splits(Xb_flat, F, rows, w, yk, snode, feats, node_counts, C):
    """Best (feature, bin) split of every splittable node of one level.

    Parameters
    ----------
    Xb_flat : (n*F,) uint8, binned training features, row-major.
    rows, w, yk, snode : (a,) row ids, bootstrap weights, class ids and node
        ids (0..s-1) of the samples in the s splittable nodes.
    feats : (s, m) int64, the features drawn for each node.
    node_counts : (s, C) float64, weighted class counts of each node.

    Returns
    -------
    best_feat, best_bin : (s,) int64, the chosen split of each node; a node
        without any valid split (all its drawn features constant) gets -1.

    The score of a candidate is sklearn's Gini "proxy improvement"
    ``sum_k L_k^2 / n_L + sum_k R_k^2 / n_R`` (maximised), with ``L``/``R``
    the weighted class counts on either side.
    """
    s, m = feats.shape
    B = MAX_BINS
    # (a, m): bin of each sample on each feature drawn for its node
    b = Xb_flat.take(rows[:, None] * F + feats[snode])
    key = ((snode * (m * B))[:, None] + np.arange(0, m * B, B) + b).ravel()  # (node, feature, bin)
    # counting sort: keep only the (node, feature, bin) cells holding samples
    present = np.zeros(s * m * B, dtype=bool)
    present[key] = True
    cells = np.flatnonzero(present)  # sorted by (node, feature, bin)
    K = cells.size
    cell_of_key = np.empty(s * m * B, dtype=np.int64)  # only read where present
    cell_of_key[cells] = np.arange(K)
    ci = cell_of_key[key]
    # weighted class counts per cell, laid out (C, K) so that sums run along contiguous rows
    hist = np.bincount(np.repeat(yk * K, m) + ci, weights=np.repeat(w, m), minlength=C * K).reshape(C, K)

    cell_pair = cells // B
    cell_bin = cells - cell_pair * B
    first = np.ones(K, dtype=bool)
    first[1:] = cell_pair[1:] != cell_pair[:-1]
    last = np.ones(K, dtype=bool)
    last[:-1] = first[1:]
    cell_node = cell_pair // m
    counts_t = np.ascontiguousarray(node_counts.T)  # (C, s)
    # class counts left of (and including) each cell, within its (node, feature) pair:
    # one running sum over all cells, from which each pair start subtracts the
    # total of the previous pair (= the class counts of that pair's node)
    starts = np.flatnonzero(first)[1:]
    hist[:, starts] -= counts_t[:, cell_node[starts - 1]]
    left = np.cumsum(hist, axis=1)
    right = counts_t.take(cell_node, axis=1)  # (C, K), C-contiguous (fancy indexing is not)
    right -= left
    n_l = left.sum(axis=0)
    n_r = node_counts.sum(axis=1)[cell_node] - n_l
    left *= left
    right *= right
    with np.errstate(divide="ignore", invalid="ignore"):
        score = left.sum(axis=0) / n_l + right.sum(axis=0) / n_r
    score[last] = -np.inf  # nothing on the right of the last occupied bin

    # best cell per node (nodes are contiguous runs of cells)
    node_start = np.flatnonzero(np.r_[True, cell_node[1:] != cell_node[:-1]])
    best = np.maximum.reduceat(score, node_start)
    cand = np.flatnonzero((score == best[cell_node]) & np.isfinite(score))
    best_feat = np.full(s, -1, dtype=np.int64)
    best_bin = np.full(s, -1, dtype=np.int64)
    if cand.size == 0:  # no node of this level has a valid split: all become leaves
        return best_feat, best_bin
    cn = cand_node = cell_node[cand]
    firstc = np.r_[True, cn[1:] != cn[:-1]]
    chosen = cand[firstc]
    best_feat[cand_node[firstc]] = feats[cell_node[chosen], cell_pair[chosen] % m]
    best_bin[cand_node[firstc]] = cell_bin[chosen]
    return best_feat, best_bin


def grow_tree(Xb, edges, yk, n_classes, sample_weight, max_depth, min_samples_split, m, rng):
    """Grow one tree level by level.

    Parameters
    ----------
    Xb : (n, F) uint8 binned features; edges : (F, 254) thresholds of the bins.
    yk : (n,) int64 class ids 0..C-1.
    sample_weight : (n,) float64 (bootstrap draw counts); rows with weight 0
        are out of the bag and ignored.
    m : features drawn per node; rng : numpy Generator.
    """
    n, F = Xb.shape
    C = n_classes
    Xb_flat = Xb.ravel()
    rows = np.flatnonzero(sample_weight > 0)
    w = sample_weight[rows].astype(np.float64)
    yk = yk[rows]
    nid = np.zeros(rows.size, dtype=np.int64)  # node id within the level

    feature, threshold, left, right, value, nns, imp, depth_l = [], [], [], [], [], [], [], []
    n_total = 0  # nodes created so far (global ids of this level start here)
    n_level = 1
    depth = 0
    while n_level:
        counts = np.bincount(nid * C + yk, weights=w, minlength=n_level * C).reshape(n_level, C)
        n_samples = np.bincount(nid, minlength=n_level)
        gini = _gini(counts)
        base = n_total
        n_total += n_level
        value.append((counts / counts.sum(axis=1, keepdims=True)).astype(np.float32))
        nns.append(n_samples.astype(np.int32))
        imp.append(gini)
        depth_l.append(np.full(n_level, depth, dtype=np.int32))
        lvl_feat = np.full(n_level, -1, dtype=np.int32)
        lvl_thr = np.full(n_level, np.inf)
        lvl_left = np.full(n_level, -1, dtype=np.int32)
        lvl_right = np.full(n_level, -1, dtype=np.int32)

        splittable = (n_samples >= min_samples_split) & ((counts > 0).sum(axis=1) > 1)
        if depth >= max_depth:
            splittable[:] = False
        n_split = 0
        if splittable.any():
            snodes = np.flatnonzero(splittable)
            s_of = np.cumsum(splittable) - 1
            keep = splittable[nid]
            rows, w, yk, nid = rows[keep], w[keep], yk[keep], nid[keep]
            snode = s_of[nid]
            if m >= F:
                feats = np.broadcast_to(np.arange(F), (snodes.size, F))
            else:  # m distinct features per node, uniformly (argpartition of noise)
                feats = np.argpartition(rng.random((snodes.size, F)), m - 1, axis=1)[:, :m]
            bf, bb = _best_splits(Xb_flat, F, rows, w, yk, snode, feats, counts[snodes], C)
            ok = bf >= 0
            split_nodes = snodes[ok]
            n_split = split_nodes.size
            if n_split:
                lvl_feat[split_nodes] = bf[ok]
                lvl_thr[split_nodes] = edges[bf[ok], bb[ok]]
                child0 = n_total + 2 * np.arange(n_split)
                lvl_left[split_nodes] = child0
                lvl_right[split_nodes] = child0 + 1
                # route the samples of split nodes to the children
                rank = np.full(snodes.size, -1, dtype=np.int64)
                rank[np.flatnonzero(ok)] = np.arange(n_split)
                r = rank[snode]
                keep = r >= 0
                rows, w, yk, r = rows[keep], w[keep], yk[keep], r[keep]
                sn = snode[keep]
                go_right = Xb_flat.take(rows * F + bf[sn]) > bb[sn]
                nid = 2 * r + go_right
        feature.append(lvl_feat)
        threshold.append(lvl_thr)
        left.append(lvl_left)
        right.append(lvl_right)
        n_level = 2 * n_split
        depth += 1

    cat = np.concatenate
    return DecisionTree(
        cat(feature), cat(threshold), cat(left), cat(right), cat(value), cat(nns), cat(imp), cat(depth_l)
    )


# --------------------------------------------------------------------------
# the forest
# --------------------------------------------------------------------------
class RandomForest:
    """Random Forest classifier (Gini, bootstrap, random features per node).

    Parameters
    ----------
    n_trees : number of trees (paper: 100).
    max_depth : maximum depth, root at depth 0 (paper: 50; ``None`` = no limit).
    min_samples_split : a node with fewer distinct training rows is a leaf
        (paper: 20).
    max_features : features drawn at each node: "sqrt" (default, like
        sklearn), "log2", an int, a float fraction, or None (all).
    bootstrap : draw ``n`` rows with replacement per tree.
    random_state : int or None.  The same value gives the same forest and
        the same predictions (per-tree seeds are drawn up front, so the
        number of threads does not matter).
    n_jobs : threads used by ``fit`` and ``predict`` (default: up to 2).

    Note: these defaults are the paper's hyperparameters (section 2.1); OTB /
    iota2's own random-forest defaults differ (e.g. OTB ``max_depth=5``,
    ``min_samples_split=10``).

    Attributes after ``fit``: ``classes_`` (C,), ``n_features_in_``,
    ``estimators_`` (list of :class:`DecisionTree`), ``bin_edges_`` (F, 254).
    """

    def __init__(
        self,
        n_trees=100,
        max_depth=50,
        min_samples_split=20,
        max_features="sqrt",
        bootstrap=True,
        random_state=None,
        n_jobs=None,
    ):
        self.n_trees = n_trees
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _threads(self):
        if self.n_jobs is not None:
            return max(1, int(self.n_jobs))
        return max(1, min(2, os.cpu_count() or 1))

    def fit(self, X, y):
        """Fit on ``X`` (n, F) finite floats and labels ``y`` (n,) of any type."""
        X = _check_X(X)
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X and y lengths differ: X has {X.shape[0]} rows, y has {y.shape[0]}")
        classes, yk = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValueError(f"y holds a single class ({classes[0]!r}); need at least 2 to classify")
        if self.n_trees < 1:
            raise ValueError("n_trees must be >= 1")
        if self.min_samples_split < 2:
            raise ValueError("min_samples_split must be >= 2")
        max_depth = np.inf if self.max_depth is None else self.max_depth
        n, F = X.shape
        m = _n_features_per_node(self.max_features, F)

        self.classes_ = classes
        self.n_features_in_ = F
        self.bin_edges_ = fit_bins(X)
        Xb = apply_bins(X, self.bin_edges_)
        yk = yk.astype(np.int64)
        C = classes.size

        seeds = np.random.SeedSequence(self.random_state).spawn(self.n_trees)

        def one_tree(seed):
            rng = np.random.default_rng(seed)
            if self.bootstrap:
                sw = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
            else:
                sw = np.ones(n)
            return grow_tree(Xb, self.bin_edges_, yk, C, sw, max_depth, self.min_samples_split, m, rng)

        nt = self._threads()
        if nt == 1:
            self.estimators_ = [one_tree(s) for s in seeds]
        else:
            with ThreadPoolExecutor(nt) as ex:
                self.estimators_ = list(ex.map(one_tree, seeds))
        return self

    def _check_predict_X(self, X):
        if not hasattr(self, "estimators_"):
            raise RuntimeError("this RandomForest is not fitted yet: call fit(X, y) before predict")
        X = np.asarray(X)
        if X.ndim == 1 and X.size == self.n_features_in_:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            got = X.shape[1] if X.ndim == 2 else X.shape
            raise ValueError(
                f"X has {got} features, but this forest was fitted with {self.n_features_in_} features"
            )
        return _check_X(X, allow_empty=True)

    def _packed(self):
        """All trees as one node array, for predict.

        Node ids are offset per tree and *doubled* (a node ``k`` is ``2k``), so
        that the child of a state ``s`` is ``child2[s + go_right]`` with no
        multiplication per step; per-node arrays are repeated twice to match.
        """
        if getattr(self, "_pack", None) is None or self._pack[0] is not self.estimators_:
            trees = self.estimators_
            base = np.cumsum([0] + [t.n_nodes for t in trees])[:-1]
            feat = np.concatenate([t._feat for t in trees]).astype(np.intp)
            thr = np.concatenate([t._thr for t in trees])
            # float32 copy, rounded down: for float32 x, x > thr32 <=> x > thr exactly,
            # and comparing float32 with float32 avoids a conversion pass
            thr32 = thr.astype(np.float32)
            thr32 = np.where(thr32 > thr, np.nextafter(thr32, np.float32(-np.inf)), thr32)
            child = np.concatenate([t._child + b for t, b in zip(trees, base)]).astype(np.intp)
            leaf = np.concatenate([t.feature < 0 for t in trees])
            value = np.concatenate([t.value for t in trees])
            depth = max(t.max_depth_reached for t in trees)
            rep = lambda a: np.repeat(a, 2)  # noqa: E731
            thrs = {np.float64: rep(thr), np.float32: rep(thr32)}
            self._pack = (trees, 2 * base.astype(np.intp), rep(feat), thrs, 2 * child, rep(leaf), value, depth)
        return self._pack

    def _apply_chunk(self, Xc):
        """Leaf ids (n, n_trees) of a chunk of rows, all trees at once.

        The state is one (doubled) node id per (row, tree) pair; each step
        moves every pair one level down with a handful of numpy calls, so a
        small chunk (that stays in cache) costs few Python calls.  Pairs that
        reached a leaf are dropped every few levels.
        """
        _, base2, feat2, thrs, child2, leaf2, _, depth = self._packed()
        thr2 = thrs[Xc.dtype.type]
        n, F = Xc.shape
        t = base2.size
        flat = Xc.ravel()
        s = np.tile(base2, n)
        row_off = np.repeat(np.arange(n, dtype=np.intp) * F, t)
        out = np.empty(n * t, dtype=np.intp)
        idx = np.arange(n * t, dtype=np.intp)
        for level in range(depth):
            go_right = flat.take(row_off + feat2.take(s)) > thr2.take(s)
            s = child2.take(s + go_right)
            if level % _COMPACT_EVERY == _COMPACT_EVERY - 1:
                keep = np.flatnonzero(~leaf2.take(s))
                if keep.size < 0.8 * s.size:  # worth compacting
                    out[idx] = s  # pairs still moving are overwritten later
                    idx, s, row_off = idx.take(keep), s.take(keep), row_off.take(keep)
                    if idx.size == 0:
                        break
        out[idx] = s
        return (out >> 1).reshape(n, t)

    def predict_proba(self, X, chunk_rows=1024):
        """Mean over trees of the class frequencies of the leaf reached.

        X : (n, F) -> (n, C) float32, columns in the order of ``classes_``.
        Rows go by chunks of ``chunk_rows`` (1024 rows of 143 float32 fit in
        L2 cache), all trees at once per chunk; chunks are spread over threads.
        """
        X = self._check_predict_X(X)
        n = X.shape[0]
        value = self._packed()[6]
        out = np.empty((n, self.classes_.size), dtype=np.float32)
        n_trees = len(self.estimators_)

        def part(a):
            leaves = self._apply_chunk(np.ascontiguousarray(X[a : a + chunk_rows]))
            out[a : a + chunk_rows] = value[leaves].sum(axis=1) / n_trees

        starts = range(0, n, chunk_rows)
        nt = self._threads()
        if nt == 1:
            for a in starts:
                part(a)
        else:
            with ThreadPoolExecutor(nt) as ex:
                list(ex.map(part, starts))
        return out

    def predict(self, X):
        """Class label (from ``classes_``) with the highest mean probability."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y):
        """Overall accuracy."""
        return float(np.mean(self.predict(X) == np.asarray(y)))
