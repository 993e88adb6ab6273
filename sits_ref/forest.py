"""A Random Forest classifier in numpy, small enough to read.

This is the baseline of the ISPRS 2021 benchmark (section 2.1): iota2's
Random Forest on per-pixel stacked features (13 features x T dates), with
the paper's hyperparameters as defaults: 100 trees, maximum depth 50, at
least 20 samples in a node to split it.

How it is fast without a compiler
---------------------------------
A recursive, exact-split tree in numpy spends its time in Python calls, one
per node.  Here every step works on *all nodes of one depth level at once*.
The four parts, in the order of this file:

1. **Binning** (:func:`fit_bins`, :func:`apply_bins`; once per ``fit``).
   Each feature is cut into at most ``MAX_BINS`` = 255 quantile bins fitted
   on the training data (fewer when the feature has fewer distinct values,
   in which case every distinct value gets its own bin and the search is
   exact).  A bin edge is stored as a real feature value: the midpoint
   between the two training values it separates, as scikit-learn does.  A
   split "bin <= b" is thus exactly "x <= threshold" on the training data,
   and ``predict`` works on raw ``X`` without binning.
2. **Split search** (:func:`best_splits`).  For the samples of the
   splittable nodes of one level, and the ``max_features`` features drawn
   for each node, the (node, feature, bin, class) histogram is built with
   ``np.bincount`` on a flattened index.  Only (node, feature, bin) cells
   that hold a sample are kept, so small deep nodes cost what their samples
   cost, not 255 bins each.  A cumulative sum along the bins gives the class
   counts on the left of every candidate threshold, and the Gini score of
   all candidates of all nodes is one vectorised expression.
3. **Level-wise growth** (:func:`grow_tree`): class counts of all nodes of
   a level, split search, then every sample moved to its child, one level
   per loop turn.
4. **Prediction** (:class:`PackedTrees`, the only tree walker, used by the
   forest and by :meth:`DecisionTree.apply`) walks all trees at once, level
   by level: the state is one node id per (row, tree) pair, moved one level
   down per step with a few ``np.take`` calls.  Rows go in chunks of
   ``CHUNK_ROWS`` = 1024 so that the chunk of ``X`` stays in cache; every
   ``COMPACT_EVERY`` = 3 levels the walker looks for pairs that reached a
   leaf and drops them if at least a fifth of the pairs have; thresholds
   are compared in ``X``'s own dtype (float32 thresholds rounded down,
   which is exact).

Both ``fit`` (groups of trees) and ``predict_proba`` (groups of row chunks)
can run on several processes (:func:`_process_map`, ``n_jobs``), with
bitwise the same result as one process: each tree has its own seed, drawn
up front, and each chunk of rows is computed alone either way.

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
  features); ties between equally good splits go to the first one found
  (in the order the node's features were drawn, then by threshold).

Defaults are the paper's, not iota2's/OTB's own
-----------------------------------------------
OTB's ``TrainImagesClassifier`` random forest (OpenCV) defaults to
``max_depth=5``, ``min_samples_split=10`` and ``max_trees=100``; the paper
sets ``min_samples_split=20``, ``max_depth=50``, ``n_trees=100`` (section 2.1).

Only numpy and the standard library are imported, so this file can be
lifted out of the package alone.
"""
import functools
import math
import multiprocessing
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["RandomForest", "DecisionTree", "fit_bins", "apply_bins"]

# Tuning constants.  Only MAX_BINS changes what a forest learns; the others
# change only its speed.  Timings quoted: predict_proba of a 30-tree forest
# (depth 29) on 31,623 rows of 143 float32 features, one process, on a shared
# 2-core machine (two runs; differences under ~10% are noise).

# Bins per feature.  Bin ids 0..254 fit uint8: the binned training matrix
# takes 1 byte per value (4-8 for raw floats), and 255 quantile cuts lose
# little against an exact search (LightGBM and sklearn's HistGradientBoosting
# use the same 255).
MAX_BINS = 255
# Rows walked through all trees at once: 1024 rows of 143 float32 features
# (the paper's 13 x 11) are 572 kB, which stay in L2 cache while every tree
# reads them.  512 to 4096 rows time the same; 128, 256 or 16384 ~20% slower.
CHUNK_ROWS = 1024
# Every COMPACT_EVERY levels the walker finds the (row, tree) pairs that
# reached a leaf (they stay there, so this only saves work) and drops them if
# fewer than COMPACT_WHEN_MOVING_BELOW of the pairs still move: finding costs
# a pass over the state, dropping a copy of it.  Against every 3 levels:
# never compacting is ~1.6x slower, every level ~1.2x, every 2 to 6 the same.
COMPACT_EVERY = 3
COMPACT_WHEN_MOVING_BELOW = 0.8
# n_jobs=None: one process per core for a fit or predict_proba of at least
# this many rows x trees, else one (starting the processes costs ~15 ms, the
# children start with cold caches, and the work is cut in even groups).
# Measured on the shared 2-core machine, 143 features, 1 vs 2 processes:
# fit 10,000 rows x trees 1.02x faster, 20,000 1.10x, 50,000 1.34x, 200,000
# 1.79x, 80,000 x 100 (paper-sized) 1.82-2.01x; predict_proba (100 trees)
# 200,000 0.92x, 500,000 0.98x, 1,000,000 1.58x, 1e6 x 100 1.51-1.93x.
# Both thresholds are ~0.25 s of work on one process.
FIT_PROCESSES_FROM = 50_000
PREDICT_PROCESSES_FROM = 1_000_000


# --------------------------------------------------------------------------
# 1. binning
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
    edges = np.full((X.shape[1], max_bins - 1), np.inf)
    for f in range(X.shape[1]):
        mid = _feature_edges(X[:, f], max_bins)
        edges[f, : mid.size] = mid
    return edges


def _feature_edges(column, max_bins):
    """Increasing bin edges of one feature (at most ``max_bins - 1``)."""
    u = np.unique(column).astype(np.float64)
    if u.size > max_bins:
        # values at the quantiles; the cut is just above each of them
        s = np.sort(column).astype(np.float64)
        lo = np.unique(s[(np.arange(1, max_bins) * s.size) // max_bins])
        hi_pos = np.searchsorted(u, lo, side="right")
        keep = hi_pos < u.size
        lo, hi = lo[keep], u[hi_pos[keep]]
    else:
        lo, hi = u[:-1], u[1:]
    mid = (lo + hi) / 2.0
    # float rounding can put the midpoint on the upper value: use the lower one
    return np.where(mid >= hi, lo, mid)


def apply_bins(X, edges):
    """Bin index per value: (n, F) uint8, the number of edges ``< x``."""
    Xb = np.empty(X.shape, dtype=np.uint8)
    for f in range(X.shape[1]):
        e = edges[f][np.isfinite(edges[f])]
        Xb[:, f] = np.searchsorted(e, X[:, f], side="left")
    return Xb


# --------------------------------------------------------------------------
# 2. split search (all splittable nodes of one level at once)
# --------------------------------------------------------------------------
def best_splits(Xb_flat, F, rows, w, yk, snode, feats, node_counts):
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

    A candidate is a cell: (node, drawn feature, bin) with the split just
    right of the bin.  Its score is sklearn's Gini "proxy improvement"
    ``sum_k L_k^2 / n_L + sum_k R_k^2 / n_R`` (maximised), with ``L``/``R``
    the weighted class counts on either side.
    """
    s, m = feats.shape
    C = node_counts.shape[1]
    # (a, m): bin of each sample on each feature drawn for its node
    b = Xb_flat.take(rows[:, None] * F + feats[snode])
    key = ((snode * (m * MAX_BINS))[:, None] + np.arange(0, m * MAX_BINS, MAX_BINS) + b).ravel()
    cells, cell_of_key = _occupied_cells(key, s * m * MAX_BINS)
    K = cells.size
    # weighted class counts per cell, laid out (C, K) so that sums run along contiguous rows
    hist = np.bincount(np.repeat(yk * K, m) + cell_of_key[key], weights=np.repeat(w, m),
                       minlength=C * K).reshape(C, K)
    cell_pair = cells // MAX_BINS  # (node, drawn feature) pair of each cell
    cell_bin = cells - cell_pair * MAX_BINS
    cell_node = cell_pair // m
    score = _split_scores(hist, cell_pair, cell_node, node_counts)
    nodes, chosen = _first_best_cell_per_node(score, cell_node)
    best_feat = np.full(s, -1, dtype=np.int64)
    best_bin = np.full(s, -1, dtype=np.int64)
    best_feat[nodes] = feats[nodes, cell_pair[chosen] % m]
    best_bin[nodes] = cell_bin[chosen]
    return best_feat, best_bin


def _occupied_cells(key, n_keys):
    """The distinct values of ``key`` (< n_keys), sorted, and a map key -> position
    among them: a counting sort that never sorts.  The map is only valid where
    ``key`` occurs."""
    present = np.zeros(n_keys, dtype=bool)
    present[key] = True
    cells = np.flatnonzero(present)
    cell_of_key = np.empty(n_keys, dtype=np.int64)
    cell_of_key[cells] = np.arange(cells.size)
    return cells, cell_of_key


def _split_scores(hist, cell_pair, cell_node, node_counts):
    """Gini proxy score of splitting right of each cell; -inf where nothing is
    on the right.  ``hist`` (C, K) is used as scratch space."""
    first = np.ones(cell_pair.size, dtype=bool)  # first cell of its (node, feature) pair
    first[1:] = cell_pair[1:] != cell_pair[:-1]
    last = np.ones(cell_pair.size, dtype=bool)
    last[:-1] = first[1:]
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
    return score


def _first_best_cell_per_node(score, cell_node):
    """The nodes that have a cell of finite score (each node is a contiguous run
    of cells), and for each the first cell of maximal score."""
    node_start = np.flatnonzero(np.r_[True, cell_node[1:] != cell_node[:-1]])
    best = np.maximum.reduceat(score, node_start)
    cand = np.flatnonzero((score == best[cell_node]) & np.isfinite(score))
    cand_node = cell_node[cand]
    first = np.ones(cand.size, dtype=bool)
    first[1:] = cand_node[1:] != cand_node[:-1]
    return cand_node[first], cand[first]


# --------------------------------------------------------------------------
# 3. level-wise growth of one tree
# --------------------------------------------------------------------------
@dataclass(eq=False)
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

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    n_node_samples: np.ndarray
    impurity: np.ndarray
    depth: np.ndarray

    @property
    def n_nodes(self):
        return self.feature.size

    @property
    def max_depth_reached(self):
        return int(self.depth.max())

    def apply(self, X):
        """Leaf id reached by each row of ``X`` (n, F) -> (n,) int64."""
        return PackedTrees([self]).leaves(X)[:, 0]


def grow_tree(Xb, edges, yk, n_classes, sample_weight, max_depth, min_samples_split, m, rng):
    """Grow one tree level by level.

    Parameters
    ----------
    Xb : (n, F) uint8 binned features; edges : (F, MAX_BINS - 1) thresholds
        of the bins (:func:`fit_bins`).
    yk : (n,) int64 class ids 0..n_classes-1.
    sample_weight : (n,) float64 (bootstrap draw counts); rows with weight 0
        are out of the bag and ignored.
    max_depth : nodes at this depth are leaves (root at 0; ``np.inf``: no limit).
    m : features drawn per node; rng : numpy Generator.

    The samples of the current level are kept as parallel arrays (row id,
    weight, class, node id within the level); each turn of the loop makes
    the level's nodes, splits the splittable ones and moves their samples
    to the children (node ``2r`` / ``2r + 1`` of the next level for the
    r-th node that split).
    """
    F = Xb.shape[1]
    Xb_flat = Xb.ravel()
    rows = np.flatnonzero(sample_weight > 0)
    w, yk = sample_weight[rows].astype(np.float64), yk[rows]
    nid = np.zeros(rows.size, dtype=np.int64)
    levels = []  # per level: the DecisionTree arrays of its nodes
    n_made, n_level, depth = 0, 1, 0  # n_made: nodes in this level and the ones above
    while n_level:
        counts = np.bincount(nid * n_classes + yk, weights=w, minlength=n_level * n_classes)
        counts = counts.reshape(n_level, n_classes)
        n_samples = np.bincount(nid, minlength=n_level)
        n_made += n_level
        feature = np.full(n_level, -1, dtype=np.int32)
        threshold = np.full(n_level, np.inf)
        left = np.full(n_level, -1, dtype=np.int32)
        right = np.full(n_level, -1, dtype=np.int32)
        splittable = (depth < max_depth) & (n_samples >= min_samples_split) & ((counts > 0).sum(axis=1) > 1)
        n_split = 0
        if splittable.any():
            snodes = np.flatnonzero(splittable)
            keep = splittable[nid]
            rows, w, yk = rows[keep], w[keep], yk[keep]
            snode = (np.cumsum(splittable) - 1)[nid[keep]]  # node id among the splittable ones
            feats = _draw_features(rng, snodes.size, F, m)
            bf, bb = best_splits(Xb_flat, F, rows, w, yk, snode, feats, counts[snodes])
            ok = bf >= 0
            split = snodes[ok]
            n_split = split.size
            feature[split] = bf[ok]
            threshold[split] = edges[bf[ok], bb[ok]]
            left[split] = n_made + 2 * np.arange(n_split)
            right[split] = left[split] + 1
            rows, w, yk, nid = _to_children(Xb_flat, F, rows, w, yk, snode, ok, bf, bb)
        value = (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)
        levels.append((feature, threshold, left, right, value, n_samples.astype(np.int32),
                       _gini(counts), np.full(n_level, depth, dtype=np.int32)))
        n_level = 2 * n_split
        depth += 1
    return DecisionTree(*(np.concatenate(a) for a in zip(*levels)))


def _gini(counts):
    """Gini impurity 1 - sum_k p_k^2 of rows of class counts (m, C) -> (m,)."""
    tot = counts.sum(axis=1)
    return 1.0 - (counts**2).sum(axis=1) / np.maximum(tot, 1e-300) ** 2


def _draw_features(rng, n_nodes, F, m):
    """(n_nodes, m) features per node: m distinct of F, uniformly
    (argpartition of uniform noise); all F, in order, when m >= F."""
    if m >= F:
        return np.broadcast_to(np.arange(F), (n_nodes, F))
    return np.argpartition(rng.random((n_nodes, F)), m - 1, axis=1)[:, :m]


def _to_children(Xb_flat, F, rows, w, yk, snode, ok, bf, bb):
    """Samples of the nodes that split (``ok``), with their node id in the next level."""
    rank = np.full(ok.size, -1, dtype=np.int64)  # r-th node that split -> children 2r, 2r+1
    rank[ok] = np.arange(np.count_nonzero(ok))
    r = rank[snode]
    keep = r >= 0
    rows, w, yk, r, sn = rows[keep], w[keep], yk[keep], r[keep], snode[keep]
    go_right = Xb_flat.take(rows * F + bf[sn]) > bb[sn]
    return rows, w, yk, 2 * r + go_right


# --------------------------------------------------------------------------
# 4. prediction: the one tree walker
# --------------------------------------------------------------------------
class PackedTrees:
    """Trees laid end to end in flat node arrays, and the walker over them.

    Node ``k`` of the packing (ids offset per tree) is held as the *doubled*
    state ``2k``, so that the child of a state ``s`` is
    ``child[s + go_right]`` with no multiplication per step; per-node arrays
    are repeated twice to match.  Leaves point to themselves (both
    children) and test feature 0 against +inf, so a pair that reached a leaf
    stays there.
    """

    def __init__(self, trees):
        n_nodes = [t.n_nodes for t in trees]
        self.root = 2 * np.cumsum([0] + n_nodes)[:-1].astype(np.intp)  # doubled, per tree
        feature = np.concatenate([t.feature for t in trees])
        leaf = feature < 0
        node = np.arange(feature.size)
        offset = np.repeat(self.root // 2, n_nodes)
        left = np.where(leaf, node, np.concatenate([t.left for t in trees]) + offset)
        right = np.where(leaf, node, np.concatenate([t.right for t in trees]) + offset)
        self.child = 2 * np.stack([left, right], axis=1).ravel().astype(np.intp)
        self.feature = np.repeat(np.where(leaf, 0, feature).astype(np.intp), 2)
        self.is_leaf = np.repeat(leaf, 2)
        thr = np.concatenate([t.threshold for t in trees])
        # float32 copy, rounded down: for float32 x, x > thr32 <=> x > thr exactly,
        # and comparing float32 with float32 avoids a conversion pass
        thr32 = thr.astype(np.float32)
        thr32 = np.where(thr32 > thr, np.nextafter(thr32, np.float32(-np.inf)), thr32)
        self.threshold = {np.float32: np.repeat(thr32, 2), np.float64: np.repeat(thr, 2)}
        self.value = np.concatenate([t.value for t in trees])
        self.depth = max(t.max_depth_reached for t in trees)

    def leaves(self, X):
        """Leaf reached by every row of ``X`` (n, F) in every tree -> (n, n_trees)
        node ids of the packing (within-tree ids when there is one tree).

        The state is one (doubled) node id per (row, tree) pair; each step
        moves every pair one level down with a handful of numpy calls, so a
        small chunk of rows (that stays in cache) costs few Python calls.
        """
        X = np.ascontiguousarray(X)
        thr = self.threshold.get(X.dtype.type, self.threshold[np.float64])  # other dtypes: float64
        n, F = X.shape
        t = self.root.size
        flat = X.ravel()
        s = np.tile(self.root, n)
        row_off = np.repeat(np.arange(n, dtype=np.intp) * F, t)
        out = np.empty(n * t, dtype=np.intp)
        idx = np.arange(n * t, dtype=np.intp)  # pair of each entry of the state
        for level in range(self.depth):
            go_right = flat.take(row_off + self.feature.take(s)) > thr.take(s)
            s = self.child.take(s + go_right)
            if level % COMPACT_EVERY == COMPACT_EVERY - 1:
                keep = np.flatnonzero(~self.is_leaf.take(s))
                if keep.size < COMPACT_WHEN_MOVING_BELOW * s.size:
                    out[idx] = s  # pairs still moving are overwritten later
                    idx, s, row_off = idx.take(keep), s.take(keep), row_off.take(keep)
                    if idx.size == 0:
                        break
        out[idx] = s
        return (out >> 1).reshape(n, t)


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
    random_state : None, an int or a sequence of ints (a SeedSequence
        entropy).  The same value gives the same forest and the same
        predictions (per-tree seeds are drawn up front, so ``n_jobs`` does
        not matter: trees and probabilities are bitwise the same).
    n_jobs : processes used by ``fit`` (trees in contiguous groups) and
        ``predict``/``predict_proba`` (rows in contiguous groups of chunks);
        see :func:`_process_map`.  None (default): one process per core for
        work of at least ``FIT_PROCESSES_FROM`` = 50,000 (fit) or
        ``PREDICT_PROCESSES_FROM`` = 1,000,000 (predict) rows x trees, one
        process below, where starting processes costs more than it saves.
        On 2 cores, the paper-sized fit (80,000 rows x 143 features, 100
        trees) took 19-22 s on 2 processes against 37-42 s on 1
        (1.82-2.01x), and predicting 1,000,000 rows 12.5-15 s against
        22-25 s (1.51-1.93x; 5 runs, 2026-11-26).

    Note: these defaults are the paper's hyperparameters (section 2.1); OTB /
    iota2's own random-forest defaults differ (e.g. OTB ``max_depth=5``,
    ``min_samples_split=10``).

    Attributes after ``fit``: ``classes_`` (C,), ``n_features_in_``,
    ``estimators_`` (list of :class:`DecisionTree`), ``bin_edges_``
    (F, MAX_BINS - 1).
    """

    def __init__(self, n_trees=100, max_depth=50, min_samples_split=20, max_features="sqrt",
                 bootstrap=True, random_state=None, n_jobs=None):
        self.n_trees = n_trees
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        """Fit on ``X`` (n, F) finite floats and labels ``y`` (n,) of any type."""
        X, self.classes_, yk = _check_fit_input(X, y)
        if self.n_trees < 1:
            raise ValueError("n_trees must be >= 1")
        if self.min_samples_split < 2:
            raise ValueError("min_samples_split must be >= 2")
        n_jobs = self._processes(X.shape[0] * self.n_trees, FIT_PROCESSES_FROM)
        self.n_features_in_ = X.shape[1]
        m = _n_features_per_node(self.max_features, X.shape[1])
        self.bin_edges_ = fit_bins(X)
        fit_one = functools.partial(
            _fit_tree, Xb=apply_bins(X, self.bin_edges_), edges=self.bin_edges_, yk=yk,
            n_classes=self.classes_.size, bootstrap=self.bootstrap,
            max_depth=np.inf if self.max_depth is None else self.max_depth,
            min_samples_split=self.min_samples_split, m=m)
        seeds = np.random.SeedSequence(self.random_state).spawn(self.n_trees)
        self.estimators_ = _process_map(fit_one, seeds, n_jobs)
        self._packed = None  # made by the first predict
        return self

    def predict_proba(self, X, chunk_rows=CHUNK_ROWS):
        """Mean over trees of the class frequencies of the leaf reached.

        X : (n, F) -> (n, C) float32, columns in the order of ``classes_``.
        Rows go by chunks of ``chunk_rows``, all trees at once per chunk;
        contiguous groups of chunks go to the processes.  Each chunk is
        computed as on one process, so the result is bitwise the same
        (groups of trees would change the order of the float sums).
        """
        X = _check_predict_input(self, X)
        if self._packed is None:
            self._packed = PackedTrees(self.estimators_)
        predict_chunk = functools.partial(_predict_chunk, X=X, packed=self._packed,
                                          chunk_rows=chunk_rows)
        chunks = _process_map(predict_chunk, range(0, X.shape[0], chunk_rows),
                              self._processes(X.shape[0] * len(self.estimators_),
                                              PREDICT_PROCESSES_FROM))
        return np.concatenate(chunks) if chunks else np.empty((0, self.classes_.size), np.float32)

    def predict(self, X):
        """Class label (from ``classes_``) with the highest mean probability."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def _processes(self, work, work_for_processes):
        """Processes for ``work`` rows x trees: ``n_jobs``, or by default one per core
        when ``work >= work_for_processes``, else one."""
        n_jobs = self.n_jobs
        if n_jobs is None:
            return _n_cores() if work >= work_for_processes else 1
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
            raise ValueError(f"n_jobs must be None or an int >= 1 (processes), got {n_jobs!r}")
        return int(n_jobs)


def _fit_tree(seed, Xb, edges, yk, n_classes, bootstrap, max_depth, min_samples_split, m):
    """One tree of the forest, from its own seed (bootstrap draw, then features per node)."""
    rng = np.random.default_rng(seed)
    n = Xb.shape[0]
    if bootstrap:
        weight = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
    else:
        weight = np.ones(n)
    return grow_tree(Xb, edges, yk, n_classes, weight, max_depth, min_samples_split, m, rng)


def _predict_chunk(a, X, packed, chunk_rows):
    """predict_proba of rows ``a : a + chunk_rows`` of ``X``: (rows, C) float32."""
    leaves = packed.leaves(X[a : a + chunk_rows])
    return packed.value[leaves].sum(axis=1) / packed.root.size


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------
def _process_map(fn, items, n_jobs):
    """``[fn(i) for i in items]``, with ``items`` cut into ``n_jobs`` contiguous
    groups, each mapped in a child process (here, when ``n_jobs`` is 1).

    ``fn`` reaches the children as the pool's initializer argument.  The
    'fork' start method is used where the platform has it (Linux, macOS): the
    children are copies of this process, so the arrays ``fn`` holds (the
    binned training data, the rows to predict) are read in place, never
    pickled.  Elsewhere (Windows) 'spawn' pickles ``fn`` once per child, and
    the calling script needs the usual ``if __name__ == "__main__":`` guard.
    Only the results are pickled back.  The children's numpy calls (no BLAS)
    use one core each, so ``n_jobs`` processes use ``n_jobs`` cores.
    """
    items = list(items)
    n_jobs = min(n_jobs, len(items))
    if n_jobs <= 1:
        return [fn(i) for i in items]
    cuts = [len(items) * k // n_jobs for k in range(n_jobs + 1)]
    groups = [items[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(n_jobs, initializer=_set_task,
                                                     initargs=(fn,)) as pool:
        return [r for group in pool.map(_map_group, groups, chunksize=1) for r in group]


_TASK = None  # in a child process of _process_map: the function it maps


def _set_task(fn):
    global _TASK
    _TASK = fn


def _map_group(group):
    return [_TASK(i) for i in group]


def _n_cores():
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
    # one cheap pass: the sum is finite iff every value is, unless it overflows,
    # in which case the values are checked one by one
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


def _check_fit_input(X, y):
    """``X`` checked, the sorted classes of ``y`` and ``y`` as class ids (int64)."""
    X = _check_X(X)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X and y lengths differ: X has {X.shape[0]} rows, y has {y.shape[0]}")
    classes, yk = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"y holds a single class ({classes[0]!r}); need at least 2 to classify")
    return X, classes, yk.astype(np.int64)


def _check_predict_input(forest, X):
    """``X`` checked against a fitted ``forest`` (one row may be given 1-D)."""
    if not hasattr(forest, "estimators_"):
        raise RuntimeError("this RandomForest is not fitted yet: call fit(X, y) before predict")
    X = np.asarray(X)
    if X.ndim == 1 and X.size == forest.n_features_in_:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != forest.n_features_in_:
        got = X.shape[1] if X.ndim == 2 else X.shape
        raise ValueError(
            f"X has {got} features, but this forest was fitted with {forest.n_features_in_} features"
        )
    return _check_X(X, allow_empty=True)
