"""The four CNNs of the benchmark (paper section 2.2, Table 4).

Every model maps a Sentinel-2 time series block to per-pixel class logits:

    x      (N, C, T, H, W) float32   C features per date, T dates
    logits (N, K, H, W)              K classes (softmax over dim 1)

Pixel samples are simply H = W = 1. Each model has a ``halo`` attribute: the
spatial receptive radius in pixels (an output pixel depends only on input
pixels at Chebyshev distance <= halo), so whole-scene inference can read
blocks padded by ``halo`` pixels and crop the result.

``model(x, where=mask)`` returns only the logits of the pixels where the bool
mask (N, H, W) is True, as (P, K): training asks for the labelled pixels only,
so the pixel-wise TempCNN (alone or as a stream) skips unlabelled pixels.

The paper does not list layer widths; they are chosen here so that, for
13 features x 11 dates x 8 classes, the trainable parameter counts land close
to Table 4 (counts worked out in each docstring and checked in tests):

    model          ours      paper
    TempCNN        503,304   493k
    2D-CNN         478,600   463k
    3D-CNN         374,036   379k
    SpatioTempCNN  877,340   867k   (= TempCNN + 3D-CNN streams)

All hidden layers are conv -> BatchNorm -> ReLU -> Dropout blocks, dropout 0.5
as in TempCNN (Pelletier et al., 2019) in TempCNN, 0.2 channel-wise in the patch
models (2D, 3D: see ``_block``); convolutions are zero-padded "same" so
T, H and W are kept for any size (also T smaller than the kernel).

This file holds the architectures only: the same code runs in training and in
evaluation. Inference speedups that give the same outputs (BatchNorm folded into
the convolutions, channels-last layouts) live apart, in :mod:`sits_ref.fast`.
"""
import math

import torch
from torch import nn


def at_pixels(logits, where):
    """(N, K, H, W) logits, or only those of the pixels where ``where`` (N, H, W) is
    True as (P, K), in (n, row, col) order."""
    return logits if where is None else logits.permute(0, 2, 3, 1)[where]


def _block(dim, c_in, c_out, kernel_size, dropout, channel_dropout=False):
    """conv(dim-D, 'same' zero padding) -> BatchNorm -> ReLU -> Dropout.

    ``channel_dropout`` drops whole feature maps (Dropout2d/3d, "spatial dropout",
    Tompson et al. 2015) instead of single activations: neighbouring activations of
    a patch are strongly correlated, so dropping them one by one regularises little,
    and drawing one random number per voxel was a third of the 3D-CNN's CPU time.
    """
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dim]
    drop = {2: nn.Dropout2d, 3: nn.Dropout3d}[dim] if channel_dropout else nn.Dropout
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd to keep sizes, got {kernel_size}")
    return nn.Sequential(
        conv(c_in, c_out, kernel_size, padding=kernel_size // 2),
        norm(c_out), nn.ReLU(inplace=True), drop(dropout))


class TempCNN(nn.Module):
    """Pixel-wise temporal CNN (Pelletier et al., 2019), paper section 2.2.1.

    Per pixel series (C, T):
      3 x [Conv1d(k=5, 64 filters) -> BN -> ReLU -> Dropout]    (64, T)
      Flatten -> Linear(64*T, 640) -> BN -> ReLU -> Dropout     (640,)
      Linear(640, K)                                            (K,)
    The 640-wide dense layer (instead of the original 256, which gives only
    229k parameters at T=11) brings the count to Table 4's 493k while keeping
    the cost per pixel low (dense weights are used once, conv weights T times).
    For C=13, T=11, K=8:
      conv1 13*64*5+64 +128(BN) =   4,352
      conv2 64*64*5+64 +128     =  20,672   (conv3 the same)
      dense 704*640+640 +1280   = 452,480
      out   640*8+8             =   5,128   -> total 503,304
    halo = 0: no spatial context; each pixel's series is classified alone.
    """

    display_name = "TempCNN"

    def __init__(self, n_features, n_dates, n_classes, filters=64, kernel_size=5,
                 n_conv=3, hidden=640, dropout=0.5):
        super().__init__()
        self.n_features, self.n_dates, self.n_classes = n_features, n_dates, n_classes
        self.halo = 0
        self.convs = nn.Sequential(*[
            _block(1, n_features if i == 0 else filters, filters, kernel_size, dropout)
            for i in range(n_conv)])
        self.dense = nn.Sequential(
            nn.Flatten(), nn.Linear(filters * n_dates, hidden), nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, n_classes)

    def forward_pixels(self, s):
        """(P, C, T) pixel series -> (P, K) logits."""
        return self.out(self.dense(self.convs(s)))

    def forward(self, x, where=None):
        n, c, t, h, w = x.shape
        s = x.permute(0, 3, 4, 1, 2).reshape(n * h * w, c, t)   # (N*H*W, C, T)
        if where is not None:                                   # only those pixels
            return self.forward_pixels(s[where.reshape(-1)])    # (P, K)
        return self.forward_pixels(s).view(n, h, w, -1).permute(0, 3, 1, 2)


class CNN2D(nn.Module):
    """2D CNN with dates stacked in channels (paper section 2.2.2).

    (N, C, T, H, W) -> (N, C*T, H, W), channel index c*T + t, then
      3 x [Conv2d 3x3 (128) -> BN -> ReLU -> Dropout]         (128, H, W)
      Conv2d 1x1 (128) -> BN -> ReLU -> Dropout               (128, H, W)
      Conv2d 1x1 (K)                                          (K, H, W)
    The last two layers are 1x1 ("fully convolutional") as in the paper.
    For C=13, T=11, K=8 (C*T = 143 input channels):
      conv1 143*128*9+128 +256(BN) = 165,120
      conv2 128*128*9+128 +256     = 147,840   (conv3 the same)
      1x1   128*128+128 +256       =  16,768
      out   128*8+8                =   1,032   -> total 478,600
    halo = number of 3x3 layers (3).
    """

    display_name = "2D-CNN"

    def __init__(self, n_features, n_dates, n_classes, filters=128, n_conv=3,
                 hidden=128, dropout=0.2):
        super().__init__()
        self.n_features, self.n_dates, self.n_classes = n_features, n_dates, n_classes
        self.halo = n_conv
        self.convs = nn.Sequential(*[
            _block(2, n_features * n_dates if i == 0 else filters, filters, 3, dropout, True)
            for i in range(n_conv)])
        self.head = nn.Sequential(_block(2, filters, hidden, 1, dropout, True),
                                  nn.Conv2d(hidden, n_classes, 1))

    def forward(self, x, where=None):
        n, c, t, h, w = x.shape
        z = x.reshape(n, c * t, h, w)
        return at_pixels(self.head(self.convs(z)), where)


class CNN3D(nn.Module):
    """3D CNN over (time, y, x) with 3x3x3 kernels (paper section 2.2.3).

      Conv3d 3x3x3: 13 -> 16 -> 32 -> 32, each -> BN -> ReLU -> Dropout
                                                  (32, T, H, W)
      collapse time: reshape to (32*T, H, W), channel index f*T + t
      Conv2d 1x1 (900) -> BN -> ReLU -> Dropout   (900, H, W)
      Conv2d 1x1 (K)                              (K, H, W)
    For C=13, T=11, K=8:
      conv1 13*16*27+16 +32(BN)  =   5,664
      conv2 16*32*27+32 +64      =  13,920
      conv3 32*32*27+32 +64      =  27,744
      1x1   352*900+900 +1800    = 319,500
      out   900*8+8              =   7,208   -> total 374,036
    The 3x3x3 weights are applied at every date and pixel while the 1x1 weights
    are applied once per pixel, so the parameters are put in the 1x1 layer: the
    count matches Table 4 at 0.84 M multiply-adds per pixel (2.1 M with 3D
    widths 32-64-64), which is what makes CPU training practical.
    halo = number of 3x3x3 layers (3).
    """

    display_name = "3D-CNN"

    def __init__(self, n_features, n_dates, n_classes, filters=(16, 32, 32),
                 hidden=900, dropout=0.2):
        super().__init__()
        self.n_features, self.n_dates, self.n_classes = n_features, n_dates, n_classes
        self.halo = len(filters)
        widths = [n_features, *filters]
        self.convs = nn.Sequential(*[_block(3, widths[i], widths[i + 1], 3, dropout, True)
                                     for i in range(len(filters))])
        self.head = nn.Sequential(_block(2, filters[-1] * n_dates, hidden, 1, dropout, True),
                                  nn.Conv2d(hidden, n_classes, 1))

    def forward(self, x, where=None):
        z = self.convs(x)                            # (N, F, T, H, W)
        n, f, t, h, w = z.shape
        return at_pixels(self.head(z.reshape(n, f * t, h, w)), where)


class SpatioTempCNN(nn.Module):
    """Two-stream model (paper section 2.2.4): TempCNN + 3D-CNN.

        logits = alpha * logits_TempCNN + (1 - alpha) * logits_3DCNN

    Mixing logits is, after softmax, the normalised weighted geometric mean of
    the two streams' class probabilities (log-linear pooling), so it is itself
    a logit vector usable with cross-entropy; alpha = 1 gives exactly the
    TempCNN stream, alpha = 0 the 3D-CNN stream. alpha is set by hand as in
    the paper (default 0.5); with ``learn_alpha=True`` it becomes a trainable
    scalar alpha = sigmoid(a) initialised at the given alpha (+1 parameter).
    Both streams are trained jointly. Parameters: 503,304 + 374,036 = 877,340
    for C=13, T=11, K=8. halo = 3 (from the 3D stream).
    ``temporal`` / ``spatial``: extra keyword arguments for each stream.
    """

    display_name = "SpatioTempCNN"

    def __init__(self, n_features, n_dates, n_classes, alpha=0.5, learn_alpha=False,
                 temporal=None, spatial=None):
        super().__init__()
        self.n_features, self.n_dates, self.n_classes = n_features, n_dates, n_classes
        self.temporal = TempCNN(n_features, n_dates, n_classes, **(temporal or {}))
        self.spatial = CNN3D(n_features, n_dates, n_classes, **(spatial or {}))
        self.halo = max(self.temporal.halo, self.spatial.halo)
        self.learn_alpha = learn_alpha
        if learn_alpha:
            a = min(max(float(alpha), 1e-3), 1 - 1e-3)
            self.alpha_logit = nn.Parameter(torch.tensor(math.log(a / (1 - a))))
        else:
            self.fixed_alpha = float(alpha)

    @property
    def alpha(self):
        return torch.sigmoid(self.alpha_logit) if self.learn_alpha else self.fixed_alpha

    def forward(self, x, where=None):
        a = self.alpha
        return a * self.temporal(x, where) + (1 - a) * self.spatial(x, where)


# The registry: model name -> class, in the column order of the paper's Table 4.
MODELS = {"tempcnn": TempCNN, "cnn3d": CNN3D, "cnn2d": CNN2D, "spatiotempcnn": SpatioTempCNN}


def build_model(name, n_features, n_dates, n_classes, **kw):
    """Model by registry name (:data:`MODELS`; case, "-" and "_" ignored)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[key](n_features, n_dates, n_classes, **kw)


def count_parameters(model):
    """Number of trainable parameters (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
