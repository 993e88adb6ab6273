"""sits_ref.models.TempCNN against an independent TempCNN forward, with the same weights.

``tempcnn_reference`` below is written from the paper's description (Pelletier et al.,
2019; benchmark section 2.2.1) with plain ``torch.nn.functional`` and nothing from
sits_ref. Per pixel series (C, T):

    3 x [conv1d k=5, 'same' zero padding -> batch-norm (running stats) -> relu]  (F, T)
    flatten feature-major: index f * T + t (what nn.Flatten does to (P, F, T))
    linear -> batch-norm (running stats) -> relu                                 (H,)
    linear                                                                       (K,)

Dropout is the identity at inference. Only the weights come from sits_ref: they are
read from a ``TempCNN`` state_dict (as minGPT checks its GPT against Hugging Face's
with the same weights). The BatchNorm running statistics and affine parameters are
randomised first: at their defaults (mean 0, var 1, gamma 1, beta 0) a BatchNorm is
nearly the identity, so a missing or misplaced one would go unnoticed.

Tolerance: the reference runs in float64 on the float32 weights and input, so it is
exact to ~1e-15 and the whole difference is the model's float32 rounding (a different
summation order is allowed: e.g. BN folded into the conv weights, other layouts). With
the logits of order 1 (|logit| <= ~0.8 here, checked below) the float32 error along
the chain (dot products of length 64 * 5 = 320, 704 and 640; unit roundoff 6e-8) is
~1e-6 at worst (measured: 4e-7), so ``atol = 1e-5`` (with ``rtol = 1e-5`` for larger
logits) leaves >10x headroom for other BLAS / oneDNN kernels and summation orders,
while every structural mistake tried (flatten order, a dropped BN, relu before BN)
moves the logits by 0.3 or more, >10,000x the tolerance (see
``test_reference_catches_structural_mistakes``).
"""
import pytest
import torch
import torch.nn.functional as F

from sits_ref.models import TempCNN

C, T, K = 13, 11, 8            # features, dates, classes (the benchmark's sizes)
N, H, W = 2, 3, 4
ATOL = RTOL = 1e-5
BN_EPS = 1e-5                  # PyTorch's BatchNorm default, as in the TempCNN code


def tempcnn_reference(series, sd, n_conv=3, mistake=None):
    """Logits (P, K) of pixel series (P, C, T), in float64, with the weights of a
    TempCNN state_dict ``sd``. ``mistake`` builds a deliberately wrong variant (for
    the sensitivity test only)."""
    w = {k: v.detach().to(torch.float64) for k, v in sd.items()}

    def bn(z, prefix):
        return F.batch_norm(z, w[prefix + "running_mean"], w[prefix + "running_var"],
                            w[prefix + "weight"], w[prefix + "bias"], training=False,
                            eps=BN_EPS)

    z = series.to(torch.float64)
    for i in range(n_conv):
        z = F.conv1d(z, w[f"convs.{i}.0.weight"], w[f"convs.{i}.0.bias"], padding="same")
        if mistake == "relu_before_bn":
            z = bn(F.relu(z), f"convs.{i}.1.")
            continue
        if mistake != f"no_conv_bn_{i}":
            z = bn(z, f"convs.{i}.1.")
        z = F.relu(z)
    p, f, t = z.shape
    if mistake == "time_major_flatten":
        z = z.transpose(1, 2)                      # index t * F + f: wrong
    z = z.reshape(p, f * t)                        # index f * T + t
    z = F.linear(z, w["dense.1.weight"], w["dense.1.bias"])
    if mistake != "no_dense_bn":
        z = bn(z, "dense.2.")
    z = F.relu(z)
    return F.linear(z, w["out.weight"], w["out.bias"])


def pixel_series(x):
    """(P, C, T) series of every pixel of x (N, C, T, H, W), in (n, row, col) order,
    gathered pixel by pixel (independently of any reshape in the model)."""
    n, _, _, h, w = x.shape
    return torch.stack([x[i, :, :, r, c] for i in range(n) for r in range(h)
                        for c in range(w)])


def _randomise_batchnorms(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.5 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.num_features, generator=gen))
                m.weight.copy_(1.0 + 1.5 * torch.rand(m.num_features, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=gen))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = TempCNN(C, T, K)
    _randomise_batchnorms(model, gen)
    model.eval()
    x = torch.randn(N, C, T, H, W, generator=gen)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    expected = tempcnn_reference(pixel_series(x), sd)          # (N*H*W, K) float64
    return model, x, sd, expected


def _close(ours, expected):
    return torch.allclose(ours.to(torch.float64), expected, atol=ATOL, rtol=RTOL)


def test_logits_are_o1_so_the_tolerance_means_something(setup):
    _, _, _, expected = setup
    assert 0.5 < expected.abs().max() < 10
    assert expected.std() > 0.1


def test_eval_logits_match_reference(setup):
    model, x, _, expected = setup
    with torch.no_grad():
        out = model(x)
    assert out.shape == (N, K, H, W) and out.dtype == torch.float32
    ref = expected.view(N, H, W, K).permute(0, 3, 1, 2)   # pixel (n, row, col) -> [n, :, row, col]
    diff = (out.to(torch.float64) - ref).abs().max().item()
    assert _close(out, ref), f"max |diff| = {diff:.3g}"


def test_eval_logits_with_where_match_reference(setup):
    model, x, _, expected = setup
    where = torch.zeros(N, H, W, dtype=torch.bool)
    for n, r, c in [(0, 0, 1), (0, 2, 3), (1, 0, 0), (1, 1, 2), (1, 2, 1), (1, 2, 3)]:
        where[n, r, c] = True
    with torch.no_grad():
        out = model(x, where=where)
    picked = [(n * H + r) * W + c for n in range(N) for r in range(H) for c in range(W)
              if where[n, r, c]]
    assert out.shape == (len(picked), K)
    diff = (out.to(torch.float64) - expected[picked]).abs().max().item()
    assert _close(out, expected[picked]), f"max |diff| = {diff:.3g}"
    with torch.no_grad():
        assert model(x, where=torch.zeros(N, H, W, dtype=torch.bool)).shape == (0, K)


@pytest.mark.parametrize("mistake", ["time_major_flatten", "no_conv_bn_0", "no_conv_bn_1",
                                     "no_conv_bn_2", "no_dense_bn", "relu_before_bn"])
def test_reference_catches_structural_mistakes(setup, mistake):
    """Each wrong variant of the reference is far outside the tolerance, so the
    comparison above would fail had the model made that mistake."""
    _, x, sd, expected = setup
    wrong = tempcnn_reference(pixel_series(x), sd, mistake=mistake)
    assert (wrong - expected).abs().max() > 1000 * ATOL
