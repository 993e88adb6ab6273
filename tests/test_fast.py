"""sits_ref.fast gives the plain models' logits (within ATOL), for every model, shape and mask."""
import pytest
import torch
from torch import nn

import sits_ref.fast as fast_module
from sits_ref.fast import TILE_ROWS, fast_model, fold_batchnorm
from sits_ref.models import CNN2D, CNN3D, build_model

NAMES = ["tempcnn", "cnn2d", "cnn3d", "spatiotempcnn"]

# Float32 tolerance: folding BN changes the order of float32 operations (W * scale,
# then the sum), channels-last convolutions sum in another order too. With these
# weights logits are O(0.1-1) and the differences measured are <= 3e-7; the bound
# leaves room for other CPUs' kernels. A fold that drops the mean, the scale or a
# bias moves logits by more than 1e-2.
ATOL = 1e-5

# (N, C, T, H, W): wide row band (3D convs run transposed), tall block, single pixels
# with an even channel count and T below the kernel size.
SHAPES = [(2, 13, 11, 5, 9), (1, 13, 11, 9, 5), (7, 4, 2, 1, 1)]


def _trained_like(name, c, t, k=5, seed=0):
    """A model in eval mode whose BatchNorms have non-trivial statistics and affine
    parameters, as after training (fresh ones are the identity and would hide a bad fold)."""
    torch.manual_seed(seed)
    model = build_model(name, c, t, k)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fast_equals_plain(name, shape):
    model = _trained_like(name, shape[1], shape[2])
    x = torch.randn(shape)
    with torch.no_grad():
        plain, fast = model(x), fast_model(model)(x)
    assert fast.shape == plain.shape == (shape[0], 5, shape[3], shape[4])
    assert (fast - plain).abs().max() < ATOL


def test_fast_3d_on_a_large_block():
    # 150 rows: ten 16-row tiles; oneDNN called directly whatever the shape
    model = _trained_like("cnn3d", 13, 11)
    x = torch.randn(1, 13, 11, 150, 144)
    with torch.no_grad():
        assert (fast_model(model)(x) - model(x)).abs().max() < ATOL


@pytest.mark.parametrize("name", ["cnn2d", "cnn3d", "spatiotempcnn"])
@pytest.mark.parametrize("rows", [1, 2, 4])
def test_row_tiles_give_the_whole_block(name, rows, monkeypatch):
    # tiles of 1, 2 or 4 rows on 11 rows (the last tile short): every seam between
    # tiles, and tiles touching the top and bottom borders, give the plain values
    monkeypatch.setitem(TILE_ROWS, CNN2D, rows)
    monkeypatch.setitem(TILE_ROWS, CNN3D, rows)
    model = _trained_like(name, 6, 5)
    x = torch.randn(2, 6, 5, 11, 8)
    with torch.no_grad():
        assert (fast_model(model)(x) - model(x)).abs().max() < ATOL


@pytest.mark.parametrize("name", NAMES)
def test_fast_without_onednn(name, monkeypatch):
    # the functional convolutions (CUDA, or a torch built without oneDNN) agree too
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    model = _trained_like(name, 13, 11)
    x = torch.randn(1, 13, 11, 9, 20)
    with torch.no_grad():
        assert (fast_model(model)(x) - model(x)).abs().max() < ATOL


@pytest.mark.parametrize("name", NAMES)
def test_prepared_input_is_read_without_a_copy(name):
    model = _trained_like(name, 13, 11)
    fast = fast_model(model)
    x = torch.randn(1, 13, 11, 6, 9)
    prepared = fast.prepare(x)
    assert torch.equal(prepared, x)
    with torch.no_grad():
        assert (fast(prepared) - model(x)).abs().max() < ATOL
    n, c, t, h, w = x.shape
    reads = {"tempcnn": lambda p: p.permute(0, 3, 4, 2, 1).is_contiguous(),
             "cnn2d": lambda p: p.reshape(n, c * t, h, w).is_contiguous(
                 memory_format=torch.channels_last),
             "cnn3d": lambda p: p.transpose(2, 3).is_contiguous(
                 memory_format=torch.channels_last_3d)}
    reads["spatiotempcnn"] = reads["cnn3d"]
    assert reads[name](prepared)


@pytest.mark.parametrize("name", NAMES)
def test_fast_where_selects_the_same_pixels(name):
    model = _trained_like(name, 13, 11)
    x = torch.randn(2, 13, 11, 6, 7)
    where = torch.rand(2, 6, 7) > 0.6
    fast = fast_model(model)
    with torch.no_grad():
        assert (fast(x, where=where) - model(x, where=where)).abs().max() < ATOL
        assert fast(x, where=torch.zeros(2, 6, 7, dtype=torch.bool)).shape == (0, 5)


@pytest.mark.parametrize("name", ["tempcnn", "cnn2d", "cnn3d"])
def test_pixel_chunking_does_not_change_the_result(name, monkeypatch):
    model = _trained_like(name, 3, 4)
    x = torch.randn(2, 3, 4, 6, 7)
    fast = fast_model(model)
    with torch.no_grad():
        whole = fast(x)
        monkeypatch.setattr(fast_module, "PIXEL_CHUNK", 5)   # 84 pixels in chunks of 5
        assert torch.allclose(fast(x), whole, atol=1e-6)


def test_fold_batchnorm_by_hand():
    # one channel: y = 2x + 1, BN(mean 3, var 4 - eps, gamma 5, beta 6):
    # BN(y) = (2x + 1 - 3) * 5 / 2 + 6 = 5x + 1
    norm = nn.BatchNorm1d(1).eval()
    norm.running_mean.fill_(3.0)
    norm.running_var.fill_(4.0 - norm.eps)
    norm.weight.data.fill_(5.0)
    norm.bias.data.fill_(6.0)
    w, b = fold_batchnorm(torch.tensor([[2.0]]), torch.tensor([1.0]), norm)
    assert w.item() == pytest.approx(5.0) and b.item() == pytest.approx(1.0)


def test_fast_model_is_a_snapshot_without_parameters():
    model = _trained_like("cnn2d", 3, 2)
    x = torch.randn(1, 3, 2, 4, 4)
    fast = fast_model(model)
    with torch.no_grad():
        before = fast(x)
        model.head[1].bias.data += 1.0                   # later training moves the model ...
        assert torch.equal(fast(x), before)              # ... not the snapshot
    assert list(fast.parameters()) == [] and not before.requires_grad
    assert (fast.halo, fast.n_classes, fast.n_features, fast.n_dates) == (3, 5, 3, 2)


def test_fast_model_rejects_other_modules():
    with pytest.raises(TypeError, match="no fast path for Linear"):
        fast_model(nn.Linear(2, 2))
