import pytest
import torch

from sits_ref.models import (CNN2D, CNN3D, SpatioTempCNN, TempCNN, build_model,
                             count_parameters)

NAMES = ["tempcnn", "cnn2d", "cnn3d", "spatiotempcnn"]

# Table 4 of the paper, for 13 features x 11 dates x 8 classes.
PAPER = {"tempcnn": 493_000, "cnn3d": 379_000, "cnn2d": 463_000, "spatiotempcnn": 867_000}

# Exact counts worked out by hand (weights + biases + BN gamma/beta):
# TempCNN: conv1 13*64*5+64+2*64 = 4,352; conv2 = conv3 = 64*64*5+64+128 = 20,672;
#          dense 64*11*640+640+2*640 = 452,480; out 640*8+8 = 5,128
#          4,352 + 2*20,672 + 452,480 + 5,128 = 503,304
# CNN2D:   conv1 143*128*9+128+256 = 165,120; conv2 = conv3 = 128*128*9+128+256 = 147,840;
#          1x1 128*128+128+256 = 16,768; out 128*8+8 = 1,032  -> 478,600
# CNN3D:   13*16*27+16+32 = 5,664; 16*32*27+32+64 = 13,920; 32*32*27+32+64 = 27,744;
#          1x1 32*11*900+900+1800 = 319,500; out 900*8+8 = 7,208  -> 374,036
# SpatioTempCNN = TempCNN + CNN3D = 877,340 (+1 with a learned alpha)
EXACT = {"tempcnn": 503_304, "cnn2d": 478_600, "cnn3d": 374_036, "spatiotempcnn": 877_340}


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_match_table4(name):
    n = count_parameters(build_model(name, 13, 11, 8))
    assert n == EXACT[name]
    assert abs(n - PAPER[name]) <= 0.10 * PAPER[name]


def test_learned_alpha_adds_one_parameter():
    m = build_model("spatiotempcnn", 13, 11, 8, learn_alpha=True, alpha=0.5)
    assert count_parameters(m) == EXACT["spatiotempcnn"] + 1
    assert m.alpha.item() == pytest.approx(0.5)


def test_build_model_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", 13, 11, 8)
    assert isinstance(build_model("TempCNN", 3, 2, 5), TempCNN)
    assert isinstance(build_model("cnn2d", 3, 2, 5), CNN2D)
    assert isinstance(build_model("cnn3d", 3, 2, 5), CNN3D)
    assert isinstance(build_model("spatiotempcnn", 3, 2, 5), SpatioTempCNN)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("c,t,k,h,w", [(3, 2, 5, 7, 9), (13, 11, 8, 1, 1), (2, 1, 3, 4, 5)])
def test_output_shapes(name, c, t, k, h, w):
    torch.manual_seed(0)
    m = build_model(name, c, t, k)
    x = torch.randn(3, c, t, h, w)
    m.train()
    assert m(x).shape == (3, k, h, w)
    m.eval()
    with torch.no_grad():
        y = m(x)
    assert y.shape == (3, k, h, w) and torch.isfinite(y).all()


def _change_map(model, c=3, t=4, k=5, size=15, at=(7, 7)):
    """|output change| per pixel (max over classes) when one input pixel changes."""
    torch.manual_seed(1)
    x = torch.randn(1, c, t, size, size)
    x2 = x.clone()
    x2[0, :, :, at[0], at[1]] += 3.0
    model.eval()
    with torch.no_grad():
        return (model(x2) - model(x)).abs().amax(dim=1)[0]   # (H, W)


def _chebyshev(size, at):
    ii, jj = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.maximum((ii - at[0]).abs(), (jj - at[1]).abs())


def test_tempcnn_is_pixelwise():
    torch.manual_seed(0)
    m = TempCNN(3, 4, 5)
    assert m.halo == 0
    d = _change_map(m)
    assert d[7, 7] > 1e-3
    d[7, 7] = 0
    assert d.max() <= 1e-6


@pytest.mark.parametrize("name", ["cnn2d", "cnn3d", "spatiotempcnn"])
def test_spatial_models_respect_halo(name):
    torch.manual_seed(0)
    m = build_model(name, 3, 4, 5)
    assert m.halo == 3
    d = _change_map(m)
    dist = _chebyshev(15, (7, 7))
    assert d[dist > m.halo].max() <= 1e-6       # nothing beyond the halo
    assert d[dist == m.halo].max() > 1e-6       # ... and the halo is tight
    assert d[7, 7] > 1e-3


def test_halo_follows_depth():
    assert CNN2D(3, 2, 5, n_conv=2).halo == 2
    assert CNN3D(3, 2, 5, filters=(8, 8, 8, 8)).halo == 4


def test_spatiotempcnn_alpha_mixes_stream_logits():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 7, 9)
    m = SpatioTempCNN(3, 4, 5, alpha=1.0).eval()
    with torch.no_grad():
        a, b = m.temporal(x), m.spatial(x)
        assert torch.equal(m(x), a)               # alpha = 1: exactly the TempCNN stream
        m.fixed_alpha = 0.0
        assert torch.equal(m(x), b)
        m.fixed_alpha = 0.25
        assert torch.allclose(m(x), 0.25 * a + 0.75 * b, atol=1e-6)


def test_learned_alpha_gets_gradient():
    torch.manual_seed(0)
    m = SpatioTempCNN(3, 4, 5, alpha=0.3, learn_alpha=True)
    assert m.alpha.item() == pytest.approx(0.3, abs=1e-6)
    m(torch.randn(2, 3, 4, 5, 5)).sum().backward()
    assert m.alpha_logit.grad is not None and m.alpha_logit.grad.abs() > 0


@pytest.mark.parametrize("name", NAMES)
def test_where_returns_the_logits_of_the_masked_pixels_in_order(name):
    torch.manual_seed(0)
    model = build_model(name, 3, 4, 5).eval()
    x = torch.randn(2, 3, 4, 6, 7)
    where = torch.rand(2, 6, 7) > 0.7
    full = model(x)                                   # (N, K, H, W)
    n, r, c = where.nonzero(as_tuple=True)            # (n, row, col) order
    assert torch.allclose(model(x, where=where), full[n, :, r, c], atol=1e-5)
