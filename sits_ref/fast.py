"""Fast inference for the trained CNNs of :mod:`sits_ref.models`: same outputs, less time.

``fast_model(model)`` returns a module with the model's interface (``forward(x,
where=None)``, ``halo``, ``n_features``, ``n_dates``, ``n_classes``) that computes the
same logits up to float32 rounding (tests/test_fast.py: within 1e-5 of the plain
model's on random weights and inputs), on CPU about 1.4x faster for the 2D-CNN, 3x
for TempCNN and several times for the 3D-CNN on wide row bands. It is a snapshot: it
reads the weights when it is made (in eval mode: BatchNorm running statistics, no
dropout), so make it again after more training.

What it does, and why each step gives the same result:

* **BatchNorm folded into the conv or linear layer before it.** In eval mode a BN is
  an affine map per channel, BN(W x + b) = (W x + b - mean) * gamma / sqrt(var + eps)
  + beta, so it merges into W and b (:func:`fold_batchnorm`); with dropout the
  identity, each conv -> BN -> ReLU -> Dropout block is one conv and an in-place ReLU:
  one pass over the activations instead of three.
* **Channels-last layouts**, the layout oneDNN's CPU convolutions run fastest on.
  TempCNN's Conv1d over many short series runs as a 1 x k Conv2d over a (pixels x
  time) image stored (P, T, C), about 3x torch's Conv1d; its output flattens
  time-major (t * F + f), so the dense weights (feature-major, f * T + t) are
  permuted to match.
* **3D convolutions kept on oneDNN.** torch runs Conv3d with oneDNN only if
  N * C * T * H > 20480 (W not counted), otherwise with a ~5x slower native kernel,
  so a block wider than high (a row band) is convolved as (N, C, T, W, H) with the
  kernels' last two axes swapped (the same sums). oneDNN's Conv3d is also ~15x slower
  with an odd number of input channels (13 features): a zero input channel with zero
  weights is added (the same sums).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .models import CNN2D, CNN3D, SpatioTempCNN, TempCNN, at_pixels

# TempCNN pixels per chunk: the chunk's activations (4096 x T x 64 floats, ~11 MB for
# T = 11) stay cache- and memory-friendly; the result does not depend on it.
PIXEL_CHUNK = 4096


def fold_batchnorm(weight, bias, norm):
    """Weight and bias of a conv/linear layer followed by an eval-mode BatchNorm,
    merged: BN(W x + b) = (W x + b - mean) * gamma / sqrt(var + eps) + beta."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * scale.view(shape), (bias - norm.running_mean) * scale + norm.bias


class _Snapshot(nn.Module):
    """Common part: the plain model's sizes and halo. Weights are plain tensors
    detached from the model (no parameters, no gradients)."""

    def __init__(self, model):
        super().__init__()
        self.n_features, self.n_dates = model.n_features, model.n_dates
        self.n_classes, self.halo = model.n_classes, model.halo


def _folded_convs(blocks):
    """[(weight, bias, padding, relu)] of a Sequential of ``models._block`` s (BN
    folded) and plain convs (no ReLU after them)."""
    layers = []
    for layer in blocks:
        if isinstance(layer, nn.Sequential):                   # conv -> BN -> ReLU -> Dropout
            conv, norm = layer[0], layer[1]
            weight, bias = fold_batchnorm(conv.weight, conv.bias, norm)
            layers.append((weight, bias, conv.padding, True))
        else:
            weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
            layers.append((weight, bias, layer.padding, False))
    return layers


def _run_convs(layers, z, conv):
    """Apply :func:`_folded_convs` layers with ``conv`` (F.conv2d or F.conv3d)."""
    for weight, bias, padding, relu in layers:
        z = conv(z, weight, bias, padding=padding)
        z = z.relu_() if relu else z
    return z


class FastTempCNN(_Snapshot):
    """:class:`sits_ref.models.TempCNN`, BN folded, convs as channels-last 1 x k Conv2d."""

    def __init__(self, model: TempCNN, chunk: int = PIXEL_CHUNK):
        super().__init__(model)
        self.chunk = chunk
        self.convs = [(w.unsqueeze(2).contiguous(memory_format=torch.channels_last), b,
                       (0, pad[0]), relu)                     # (out, in, 1, k)
                      for w, b, pad, relu in _folded_convs(model.convs)]
        _, linear, norm, *_ = model.dense
        wd, self.bd = fold_batchnorm(linear.weight, linear.bias, norm)    # (hidden, F*T)
        self.wd = wd.view(len(wd), -1, self.n_dates).transpose(1, 2).reshape(len(wd), -1)
        self.wo, self.bo = model.out.weight.detach().clone(), model.out.bias.detach().clone()

    def forward_pixels(self, s):
        """(P, T, C) pixel series, time-major -> (P, K) logits."""
        if len(s) == 0:                                       # e.g. no pixel selected
            return self.wo.new_zeros(0, self.n_classes)
        return torch.cat([self._chunk(p) for p in s.split(self.chunk)])

    def _chunk(self, p):
        z = p.unsqueeze(0).permute(0, 3, 1, 2)            # (1, C, P, T), channels-last
        z = _run_convs(self.convs, z, F.conv2d)
        z = z.permute(0, 2, 3, 1).reshape(len(p), -1)     # (P, T * F), time-major
        return F.linear(F.linear(z, self.wd, self.bd).relu_(), self.wo, self.bo)

    def forward(self, x, where=None):
        n, c, t, h, w = x.shape
        s = x.permute(0, 3, 4, 2, 1).reshape(n * h * w, t, c)   # (N*H*W, T, C)
        if where is not None:
            return self.forward_pixels(s[where.reshape(-1)])     # (P, K)
        return self.forward_pixels(s).view(n, h, w, -1).permute(0, 3, 1, 2)


class FastCNN2D(_Snapshot):
    """:class:`sits_ref.models.CNN2D`, BN folded, activations channels-last."""

    def __init__(self, model: CNN2D):
        super().__init__(model)
        self.layers = _folded_convs([*model.convs, *model.head])

    def forward(self, x, where=None):
        n, c, t, h, w = x.shape
        z = x.reshape(n, c * t, h, w).contiguous(memory_format=torch.channels_last)
        return at_pixels(_run_convs(self.layers, z, F.conv2d), where)


class FastCNN3D(_Snapshot):
    """:class:`sits_ref.models.CNN3D`, BN folded, 3D convs kept on oneDNN (module doc),
    the 1 x 1 head channels-last."""

    def __init__(self, model: CNN3D):
        super().__init__(model)
        self.convs = _folded_convs(model.convs)
        w, b, pad, relu = self.convs[0]
        if w.shape[1] % 2:                                 # odd input channels: add a zero one
            self.convs[0] = (F.pad(w, (0, 0) * 3 + (0, 1)), b, pad, relu)
        self.convs_hw = [(w.transpose(-1, -2), b, pad, relu) for w, b, pad, relu in self.convs]
        self.head = _folded_convs(model.head)

    def forward(self, x, where=None):
        if x.shape[1] % 2:
            x = F.pad(x, (0, 0) * 3 + (0, 1))
        n, c, t, h, w = x.shape
        if h < w:                          # wide and short: convolve as (N, C, T, W, H)
            z = _run_convs(self.convs_hw, x.transpose(3, 4), F.conv3d).transpose(3, 4)
        else:
            z = _run_convs(self.convs, x, F.conv3d)
        n, f, t, h, w = z.shape
        z = z.reshape(n, f * t, h, w).contiguous(memory_format=torch.channels_last)
        return at_pixels(_run_convs(self.head, z, F.conv2d), where)


class FastSpatioTempCNN(_Snapshot):
    """:class:`sits_ref.models.SpatioTempCNN` from its two fast streams."""

    def __init__(self, model: SpatioTempCNN):
        super().__init__(model)
        self.alpha = float(model.alpha)
        self.temporal, self.spatial = FastTempCNN(model.temporal), FastCNN3D(model.spatial)

    def forward(self, x, where=None):
        a = self.alpha
        return a * self.temporal(x, where) + (1 - a) * self.spatial(x, where)


_FAST = {TempCNN: FastTempCNN, CNN2D: FastCNN2D, CNN3D: FastCNN3D,
         SpatioTempCNN: FastSpatioTempCNN}


@torch.no_grad()
def fast_model(model: nn.Module) -> nn.Module:
    """The fast inference twin of a :mod:`sits_ref.models` network (module doc),
    made from its current weights, on the same device."""
    if type(model) not in _FAST:
        raise TypeError(f"no fast path for {type(model).__name__}; "
                        f"known: {', '.join(t.__name__ for t in _FAST)}")
    return _FAST[type(model)](model).eval()
