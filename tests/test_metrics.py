import json

import numpy as np
import pytest

from sits_ref.metrics import (cohen_kappa, confusion_matrix, macro_f1, overall_accuracy,
                              precision_recall_f1, scores)

# Hand-worked 3-class example (rows = truth, cols = prediction):
#        pred0 pred1 pred2 | row
# true0    5     1     0   |  6
# true1    2     3     1   |  6
# true2    0     1     7   |  8
# col      7     5     8   | 20
# OA = (5+3+7)/20 = 0.75
# precision = 5/7, 3/5, 7/8 ; recall = 5/6, 3/6, 7/8
# F1 = 2*tp/(row+col) = 10/13, 6/11, 14/16
# macro-F1 = (10/13 + 6/11 + 7/8)/3 = 0.729895104895...
# p_e = (6*7 + 6*5 + 8*8)/400 = 136/400 = 0.34 ; kappa = (0.75-0.34)/(1-0.34) = 0.41/0.66
CM = np.array([[5, 1, 0], [2, 3, 1], [0, 1, 7]])


def _labels_from(cm, seed=0):
    t, p = [], []
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            t += [i] * cm[i, j]
            p += [j] * cm[i, j]
    order = np.random.default_rng(seed).permutation(len(t))
    return np.array(t)[order], np.array(p)[order]


def test_confusion_matrix_rows_are_truth():
    t, p = _labels_from(CM)
    np.testing.assert_array_equal(confusion_matrix(t, p, 3), CM)
    # a single sample: true 0 predicted 2 lands in row 0, column 2
    np.testing.assert_array_equal(confusion_matrix([0], [2], 3),
                                  [[0, 0, 1], [0, 0, 0], [0, 0, 0]])


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError):
        confusion_matrix([0, -1], [0, 1], 3)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 3)


def test_hand_worked_metrics():
    assert overall_accuracy(CM) == pytest.approx(0.75)
    p, r, f = precision_recall_f1(CM)
    np.testing.assert_allclose(p, [5 / 7, 3 / 5, 7 / 8])
    np.testing.assert_allclose(r, [5 / 6, 3 / 6, 7 / 8])
    np.testing.assert_allclose(f, [10 / 13, 6 / 11, 14 / 16])
    assert macro_f1(CM) == pytest.approx(0.7298951048951049)
    assert cohen_kappa(CM) == pytest.approx(0.41 / 0.66)


def test_undefined_values_are_zero():
    # class 1 occurs once but is never predicted; class 2 never occurs at all.
    cm = np.array([[2, 0, 0], [1, 0, 0], [0, 0, 0]])
    p, r, f = precision_recall_f1(cm)
    np.testing.assert_allclose(p, [2 / 3, 0, 0])
    np.testing.assert_allclose(r, [1, 0, 0])
    np.testing.assert_allclose(f, [0.8, 0, 0])          # 2*2/(2+3) = 0.8
    assert macro_f1(cm) == pytest.approx(0.4)           # mean over classes 0, 1 only
    # a class present only in the predictions (never in the reference) is left out too:
    # F1 of class 0 = 2*1/(2+1) = 2/3, class 2 (only predicted) not averaged in
    assert macro_f1(np.array([[1, 0, 1], [0, 0, 0], [0, 0, 0]])) == pytest.approx(2 / 3)
    assert overall_accuracy(cm) == pytest.approx(2 / 3)
    # rows (2,1,0), cols (3,0,0): p_e = 2*3/9 = 2/3 = p_o -> kappa 0
    assert cohen_kappa(cm) == pytest.approx(0.0)
    # empty matrix and single-class agreement (p_e = 1): documented 0.0
    assert overall_accuracy(np.zeros((2, 2))) == 0.0
    assert macro_f1(np.zeros((2, 2))) == 0.0
    assert cohen_kappa(np.zeros((2, 2))) == 0.0
    assert cohen_kappa(np.array([[4, 0], [0, 0]])) == 0.0


def test_perfect_and_worst():
    assert cohen_kappa(np.diag([3, 4, 5])) == pytest.approx(1.0)
    assert macro_f1(np.diag([3, 4, 5])) == pytest.approx(1.0)
    # always wrong, 2 classes balanced: p_o = 0, p_e = (2*2+2*2)/16 = 0.5 -> kappa -1
    assert cohen_kappa(np.array([[0, 2], [2, 0]])) == pytest.approx(-1.0)
    assert macro_f1(np.array([[0, 2], [2, 0]])) == 0.0


def test_scores_dict():
    s = scores(CM)
    assert s["n_pixels"] == 20
    assert s["overall_accuracy"] == pytest.approx(0.75)
    assert s["macro_f1"] == pytest.approx(0.7298951048951049)
    assert s["kappa"] == pytest.approx(0.41 / 0.66)
    assert s["precision"][1] == pytest.approx(0.6) and s["recall"][1] == pytest.approx(0.5)
    assert s["f1"][1] == pytest.approx(6 / 11)
    assert s["confusion_matrix"] == CM.tolist()
    json.dumps(s)                              # plain python: goes straight into results.json
