import copy
import math

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from sits_ref.metrics import confusion_matrix, macro_f1
from sits_ref.models import TempCNN, build_model
from sits_ref.train import (EarlyStopping, TrainConfig, WeightAverage, evaluate,
                            masked_cross_entropy, train_model)

SMALL = dict(filters=8, hidden=16, dropout=0.2)   # a small TempCNN keeps the tests fast


# ----------------------------------------------------------------------------- loss

def _np_cross_entropy(logits, labels):
    """Cross-entropy by formula: -log softmax(z)[y], mean over labelled pixels."""
    losses = []
    for n, i, j in zip(*np.nonzero(labels >= 0)):
        z = logits[n, :, i, j].astype(np.float64)
        log_softmax = z - z.max() - np.log(np.exp(z - z.max()).sum())
        losses.append(-log_softmax[labels[n, i, j]])
    return float(np.mean(losses))


def test_masked_loss_tiny_hand_value():
    # pixel (0,0): z=[0,0], y=0 -> ln 2 ; pixel (0,1): z=[ln 3, 0], y=1 -> p=1/4 -> ln 4
    # pixel (1,*): unlabelled. Mean = (ln 2 + ln 4)/2 = 1.5 ln 2
    logits = torch.tensor([[[[0.0, math.log(3)], [9.0, -9.0]],
                            [[0.0, 0.0], [-9.0, 9.0]]]])          # (1, 2, 2, 2)
    labels = torch.tensor([[[0, 1], [-1, -1]]])
    assert masked_cross_entropy(logits, labels).item() == pytest.approx(1.5 * math.log(2))


def test_masked_loss_matches_numpy_and_ignores_unlabelled():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 3, 5)).astype(np.float32) * 3
    labels = rng.integers(0, 4, size=(2, 3, 5))
    labels[rng.random(labels.shape) < 0.5] = -1
    expected = _np_cross_entropy(logits, labels)
    t_logits = torch.tensor(logits, requires_grad=True)
    loss = masked_cross_entropy(t_logits, torch.tensor(labels))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # changing logits of unlabelled pixels changes nothing, and they get no gradient
    changed = logits.copy()
    for n in range(2):
        changed[n][:, labels[n] < 0] = 100.0
    assert masked_cross_entropy(torch.tensor(changed), torch.tensor(labels)).item() == \
        pytest.approx(expected, rel=1e-5)
    loss.backward()
    grad = t_logits.grad.numpy()
    for n in range(2):
        assert np.all(grad[n][:, labels[n] < 0] == 0)
        assert np.any(grad[n][:, labels[n] >= 0] != 0)


def test_masked_loss_without_labels_is_zero_with_grad():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.full((2, 4, 4), -1))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(logits.grad == 0)


# ----------------------------------------------------------------------------- early stopping

def test_early_stopping_on_scripted_sequence():
    # epochs count from 1: best 0.3 at epoch 2; epochs 3 (0.3 again, not strictly
    # greater), 4, 5, 6, 7 do not improve -> 5 bad epochs after epoch 7 -> stop there;
    # the 0.5 at epoch 8 is never seen. The best epoch is the latest with 0.3: epoch 3.
    stopper = EarlyStopping(patience=5)
    seq = [0.1, 0.3, 0.3, 0.2, 0.25, 0.29, 0.28, 0.5]
    stops = []
    for m in seq:
        stops.append(stopper.step(m))
        if stops[-1]:
            break
    assert stops == [False] * 6 + [True]
    assert stopper.best_epoch == 3 and stopper.best == 0.3 and stopper.epoch == 7


def test_early_stopping_resets_on_improvement():
    # without the reset at epoch 2 the bad-epoch count would reach 2 at epoch 3
    stopper = EarlyStopping(patience=2)
    assert [stopper.step(m) for m in [0.5, 0.4, 0.6, 0.6, 0.55]] == [False] * 4 + [True]
    assert stopper.best_epoch == 4                      # the tie at epoch 4 is kept


def test_a_tie_moves_the_best_epoch_but_does_not_reset_patience():
    stopper = EarlyStopping(patience=3)
    steps = [stopper.step(m) for m in [0.5, 0.7, 0.6, 0.7, 0.65]]
    # strict best at epoch 2; epochs 3, 4 (tie), 5 are 3 bad epochs -> stop at 5
    assert steps == [False] * 4 + [True]
    assert stopper.best_epoch == 4 and stopper.best == 0.7


def test_early_stopping_waits_for_min_epochs():
    # patience 2 is exhausted at epoch 3, but stopping may only happen from epoch 6 on
    stopper = EarlyStopping(patience=2, min_epochs=6)
    assert [stopper.step(m) for m in [0.5, 0.4, 0.4, 0.3, 0.3, 0.3]] == [False] * 5 + [True]
    assert stopper.best_epoch == 1


# ----------------------------------------------------------------------------- training

def _pixels(n, c=4, t=5, k=3, seed=0, noise=0.7):
    """Separable pixel samples: class k = a fixed random (C, T) profile + noise."""
    g = torch.Generator().manual_seed(123)
    profiles = torch.randn(k, c, t, generator=g) * 1.5
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    x = profiles[y] + noise * torch.randn(n, c, t, generator=g)
    return x[..., None, None], y[:, None, None]


def _quiet(_):
    pass


def test_training_beats_chance_on_separable_pixels():
    train, val = _pixels(300, seed=1), _pixels(150, seed=2)
    torch.manual_seed(0)
    model = TempCNN(4, 5, 3, **SMALL)
    lines = []
    hist = train_model(model, train, val, TrainConfig(epochs=6, batch_size=32), log=lines.append)
    assert len(lines) == len(hist["epochs"])                  # one progress line per epoch
    _, y_true, y_pred = evaluate(model, *val)
    assert len(y_true) == 150
    f1 = macro_f1(confusion_matrix(y_true, y_pred, 3))
    assert f1 > 0.9                                          # chance is ~0.33
    assert f1 == pytest.approx(hist["best_f1"])


def test_training_on_sparse_patches_with_cnn2d():
    x, y = _pixels(60, seed=3)                                # one class per patch
    xp = x.expand(-1, -1, -1, 6, 6) + 0.3 * torch.randn(60, 4, 5, 6, 6)
    yp = torch.full((60, 6, 6), -1)
    yp[:, 2:4, 2:4] = y[:, :1, :1]                            # 4 labelled pixels per patch
    torch.manual_seed(0)
    model = build_model("cnn2d", 4, 5, 3, filters=16, hidden=16, dropout=0.2)
    hist = train_model(model, (xp[:40], yp[:40]), (xp[40:], yp[40:]),
                       TrainConfig(epochs=5, batch_size=8), log=_quiet)
    assert hist["best_f1"] > 0.8
    _, y_true, _ = evaluate(model, xp[40:], yp[40:])
    assert len(y_true) == 20 * 4


def test_same_seed_gives_identical_history():
    train, val = _pixels(120, seed=1), _pixels(60, seed=2)
    torch.manual_seed(0)
    init = TempCNN(4, 5, 3, **SMALL)
    runs = []
    for _ in range(2):
        h = train_model(copy.deepcopy(init), train, val, TrainConfig(epochs=3, seed=7), log=_quiet)
        runs.append([(e["train_loss"], e["val_loss"], e["val_f1"]) for e in h["epochs"]])
    assert runs[0] == runs[1]
    h = train_model(copy.deepcopy(init), train, val, TrainConfig(epochs=3, seed=8), log=_quiet)
    assert [(e["train_loss"], e["val_loss"], e["val_f1"]) for e in h["epochs"]] != runs[0]


def test_training_restores_best_weights():
    # random validation labels -> the validation F1 peaks early, then early stopping
    train = _pixels(90, seed=1)
    xv, _ = _pixels(60, seed=2)
    yv = torch.randint(0, 3, (60, 1, 1), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = TempCNN(4, 5, 3, **SMALL)
    states = []                     # weights after each epoch (log is called once per epoch)
    hist = train_model(model, train, (xv, yv),                  # raw weights scored
                       TrainConfig(epochs=15, patience=3, min_epochs=0, min_steps=1,
                                   average_steps=1),
                       log=lambda _: states.append(copy.deepcopy(model.state_dict())))
    last = hist["epochs"][-1]["epoch"]
    assert last - 3 <= hist["best_epoch"] and len(states) == last < 15   # stopped early
    best, final = states[hist["best_epoch"] - 1], states[-1]
    assert not all(torch.equal(v, final[k]) for k, v in best.items())
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    _, y_true, y_pred = evaluate(model, xv, yv)
    assert macro_f1(confusion_matrix(y_true, y_pred, 3)) == pytest.approx(hist["best_f1"])


# ----------------------------------------------------------------------------- averaging

def _set_weights(model, weight, running_mean, batches):
    with torch.no_grad():
        model[0].weight.fill_(weight)
        model[1].running_mean.fill_(running_mean)
        model[1].num_batches_tracked.fill_(batches)


def test_weight_average_by_hand():
    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    _set_weights(model, 100.0, 100.0, 0)            # initial weights: no lasting share
    avg2, avg3 = WeightAverage(model, 2), WeightAverage(model, 3)
    # weights 4, 8, 2, 6 after four steps. steps=2: mean of the first 2, then rate 1/2:
    # 4, (4+8)/2 = 6, 6 + (2-6)/2 = 4, 4 + (6-4)/2 = 5. steps=3: plain means of the
    # first 3 (4, 6, 14/3), then 14/3 + (6 - 14/3)/3 = 46/9.
    expect2, expect3 = [4, 6, 4, 5], [4, 6, 14 / 3, 46 / 9]
    for step, w in enumerate([4.0, 8.0, 2.0, 6.0]):
        _set_weights(model, w, 10 * w, step + 1)        # BatchNorm statistics move too
        for avg, expect in ((avg2, expect2), (avg3, expect3)):
            avg.update(model)
            assert avg.model[0].weight.item() == pytest.approx(expect[step])
            assert avg.model[1].running_mean.item() == pytest.approx(10 * expect[step])
            assert avg.model[1].num_batches_tracked.item() == step + 1   # copied
    assert model[0].weight.item() == 6.0                # the trained model is untouched
    exact = WeightAverage(model, 1)
    _set_weights(model, -3.0, 1.0, 9)
    exact.update(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in exact.model.state_dict().items())
    with pytest.raises(ValueError, match="average_steps"):
        WeightAverage(model, 0)


def test_training_returns_the_averaged_weights():
    """The kept model is the running average of the weights after each optimizer
    step (an empty validation set ties every epoch, so the last epoch is kept)."""
    seen = []
    handle = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: seen.append(copy.deepcopy(model.state_dict())))
    try:
        torch.manual_seed(0)
        model = TempCNN(4, 5, 3, **SMALL)
        empty = (torch.zeros(0, 4, 5, 1, 1), torch.zeros(0, 1, 1, dtype=torch.long))
        train_model(model, _pixels(40, seed=1), empty,
                    TrainConfig(epochs=2, min_epochs=0, min_steps=4, batch_size=10,
                                average_steps=3), log=_quiet)
    finally:
        handle.remove()
    assert len(seen) == 8                               # 2 epochs of 4 steps
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            assert torch.equal(value, seen[-1][key])
            continue
        avg = seen[0][key].double()
        for n, state in enumerate(seen[1:], 2):
            avg = avg + (state[key].double() - avg) * max(1 / 3, 1 / n)
        assert torch.allclose(value.double(), avg, atol=1e-6), key
        assert not torch.allclose(value, seen[-1][key], atol=1e-6), key   # not the raw ones


# ----------------------------------------------------------------------------- checkpoints

class _Recorder(torch.nn.Module):
    """A 1x1 'model' that records the ids (the input value) of the pixels it is
    asked to score in training mode."""

    n_classes, halo = 3, 0

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 3)
        self.seen = []

    def forward(self, x, where=None):
        z = x[:, :, 0].permute(0, 2, 3, 1)              # (N, H, W, 1)
        if where is not None:
            z = z[where]
        if self.training:
            self.seen.extend(z[:, 0].round().long().tolist())
        out = self.linear(z)
        return out if where is not None else out.permute(0, 3, 1, 2)


def test_each_labelled_pixel_counts_once_per_pass_and_copies_as_oversampled():
    from sits_ref.samples import oversample
    ids = torch.arange(24, dtype=torch.float32).view(6, 1, 1, 2, 2)   # pixel id = value
    y = torch.full((6, 2, 2), -1)
    y[0] = 0
    y[1, 0] = 0
    y[2, 0, 0], y[2, 1, 1] = 1, 2
    y[3] = 2
    y[4, 1] = 1
    rows, labels = oversample(y.numpy(), seed=0)
    model = _Recorder()
    cfg = TrainConfig(epochs=1, min_epochs=0, min_steps=1, batch_size=2)
    train_model(model, (ids, torch.from_numpy(labels), torch.from_numpy(rows)),
                (ids, y), cfg, log=_quiet)
    counts = np.bincount(model.seen, minlength=24)
    expected = np.zeros(24, int)
    for r, lab in zip(rows, labels):
        expected[4 * r + np.flatnonzero(lab.ravel() >= 0)] += 1
    assert np.array_equal(counts, expected)
    # per class, before oversampling each labelled pixel is seen once; with it, class
    # pixel counts are raised to the median class count (6, 3, 5 -> 5), overshooting by
    # less than one copy (class 1 copies hold 1 or 2 pixels)
    per_class = np.bincount(labels[labels >= 0], minlength=3)
    assert per_class[0] == 6 and per_class[2] == 5 and per_class[1] in (5, 6)
    seen_class = np.bincount(y.view(-1).numpy()[model.seen], minlength=3)
    assert np.array_equal(seen_class, per_class)
    # pixel 4*4+2 (class 1 in sample 4) was seen in its original and in copies only
    assert counts[:16][y.view(-1)[:16].numpy() < 0].sum() == 0


def test_an_epoch_repeats_passes_until_min_steps():
    ids = torch.arange(40.).view(40, 1, 1, 1, 1)
    y = (torch.arange(40) % 3).view(40, 1, 1)
    model = _Recorder()
    hist = train_model(model, (ids, y), (ids, y),
                       TrainConfig(epochs=2, min_epochs=0, min_steps=7, batch_size=16),
                       log=_quiet)
    # 40 samples by 16 = 3 steps a pass (16, 16, 8 samples); an epoch is 7 steps, so
    # 2 epochs = 14 steps = 4 whole passes + 2 batches of 16 from the fifth
    assert [e["passes"] for e in hist["epochs"]] == [pytest.approx(7 / 3)] * 2
    counts = np.bincount(model.seen, minlength=40)
    assert set(counts.tolist()) == {4, 5} and counts.sum() == 4 * 40 + 32


def test_empty_validation_set_does_not_crash():
    train = _pixels(30, seed=1)
    empty = (torch.zeros(0, 4, 5, 1, 1), torch.zeros(0, 1, 1, dtype=torch.long))
    torch.manual_seed(0)
    hist = train_model(TempCNN(4, 5, 3, **SMALL), train, empty,
                       TrainConfig(epochs=3, min_epochs=0, min_steps=1), log=_quiet)
    assert hist["best_f1"] == 0.0 and hist["best_epoch"] == 3      # latest of the ties
    loss, y_true, y_pred = evaluate(TempCNN(4, 5, 3, **SMALL).eval(), *empty)
    assert loss == 0.0 and len(y_true) == len(y_pred) == 0
