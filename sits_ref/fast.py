"""Fast inference for the trained CNNs of :mod:`sits_ref.models`: same outputs, less time.

``fast_model(model)`` returns a module with the model's interface (``forward(x,
where=None)``, ``halo``, ``n_features``, ``n_dates``, ``n_classes``) that computes the
same logits up to float32 rounding (tests/test_fast.py: within 1e-5 of the plain
model's on random weights and inputs). It is a snapshot: it reads the weights when it
is made (in eval mode: BatchNorm running statistics, no dropout), so make it again
after more training. On 2 CPU cores (``tests/benchmarks/bench_inference.py``, 512 x
512 blocks, two benchmark runs) it is 3.6-4.4x (TempCNN), 1.8-2.6x (2D-CNN) and
2.7-3.7x (3D-CNN) faster than the plain models, at 1.04-1.38x of their FLOP bound
(matmul rate / FLOPs per pixel).

What it does, and why each step gives the same result:

* **BatchNorm folded into the conv or linear layer before it.** In eval mode a BN is
  an affine map per channel, BN(W x + b) = (W x + b - mean) * gamma / sqrt(var + eps)
  + beta, so it merges into W and b (:func:`fold_batchnorm`); with dropout the
  identity, each conv -> BN -> ReLU -> Dropout block is one conv and an in-place ReLU:
  one pass over the activations instead of three.
* **Channels-last layouts**, the layout oneDNN's CPU convolutions run fastest on, and
  oneDNN called directly (:func:`_conv`): torch's own dispatch sends a single small
  3D input to a native kernel about 10x slower.
* **TempCNN's Conv1d over many short series** runs as a 1 x k Conv2d over a (pixels x
  time) image stored (P, T, C), about 3x torch's Conv1d; its output flattens
  time-major (t * F + f), so the dense weights (feature-major, f * T + t) are
  permuted to match.
* **1 x 1 convolutions as matrix products** over pixel rows (:func:`_dense`), in
  chunks of :data:`PIXEL_CHUNK` pixels.
* **Patch models in row tiles.** A 512 x 512 block's activations (hundreds of MB for
  the 3D-CNN) are computed :data:`TILE_ROWS` output rows at a time, so they stay small
  and their memory is reused. A tile's convolutions read the rows they depend on and
  each layer's output is cut by its kernel radius where it is not the image border
  (:func:`_conv_rows`): the values are those of the whole block, with at most 2 x halo
  extra rows of early layers computed per tile. The 3D-CNN runs over (C, H, T, W),
  kernels' first two axes swapped (the same sums), so that a tile is contiguous.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .models import CNN2D, CNN3D, SpatioTempCNN, TempCNN, at_pixels

# Pixels per chunk of the dense layers (TempCNN, the 1 x 1 heads): a chunk's
# activations (4096 x 900 floats, 15 MB, at most) stay cache- and allocator-friendly;
# the result does not depend on it.
PIXEL_CHUNK = 4096
# Output rows per tile of the patch models' convolutions, measured fastest on 2 cores
# for 512-wide blocks (bench_inference.py); the result does not depend on it.
TILE_ROWS = {CNN2D: 64, CNN3D: 16}


def fold_batchnorm(weight, bias, norm):
    """Weight and bias of a conv/linear layer followed by an eval-mode BatchNorm,
    merged: BN(W x + b) = (W x + b - mean) * gamma / sqrt(var + eps) + beta."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * scale.view(shape), (bias - norm.running_mean) * scale + norm.bias


def _folded(blocks):
    """[(weight, bias, padding, relu)] of a Sequential of ``models._block`` s (BN
    folded) and plain convs (no ReLU after them)."""
    layers = []
    for layer in blocks:
        if isinstance(layer, nn.Sequential):                   # conv -> BN -> ReLU -> Dropout
            conv, norm = layer[0], layer[1]
            weight, bias = fold_batchnorm(conv.weight, conv.bias, norm)
            layers.append((weight.detach(), bias.detach(), tuple(conv.padding), True))
        else:
            weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
            layers.append((weight, bias, tuple(layer.padding), False))
    return layers


def _channels_last(weight):
    """A conv weight in the channels-last layout of its rank (2D or 3D)."""
    fmt = torch.channels_last if weight.dim() == 4 else torch.channels_last_3d
    return weight.contiguous(memory_format=fmt)


def _conv(z, weight, bias, padding):
    """Stride-1 convolution, 2D or 3D by the weight's rank, zero ``padding``.

    On CPU it calls oneDNN directly: torch's dispatcher runs a batch of one 3D input
    with N * C * T * H <= 20480 (a small or row-band block) on a native kernel about
    10x slower. Elsewhere (CUDA, or a torch without oneDNN) the plain functional."""
    if z.is_cpu and torch.backends.mkldnn.is_available():
        ones = [1] * (weight.dim() - 2)
        return torch.mkldnn_convolution(z, weight, bias, padding, ones, ones, 1)
    return (F.conv2d if weight.dim() == 4 else F.conv3d)(z, weight, bias, padding=padding)


def _conv_rows(layers, x, a, b):
    """Output rows [a, b) (dim 2) of the conv stack ``layers`` run on all of x,
    computed from the rows of x they depend on only.

    A 'same' conv of kernel radius r over rows [lo, hi) zero-pads both ends, so its
    outputs within r of an end are right only where that end is the image border;
    they are cut after each layer. The rows left are exactly the whole-image ones."""
    height = x.shape[2]
    reach = sum(padding[0] for _, _, padding, _ in layers)
    lo, hi = max(a - reach, 0), min(b + reach, height)
    z = x[:, :, lo:hi]
    for weight, bias, padding, relu in layers:
        z = _conv(z, weight, bias, padding)
        z = z.relu_() if relu else z
        top = padding[0] if lo > 0 else 0
        bottom = padding[0] if hi < height else 0
        z, lo, hi = z[:, :, top:z.shape[2] - bottom], lo + top, hi - bottom
    return z[:, :, a - lo:b - lo]


def _dense(layers, z):
    """Linear layers [(weight (out, in), bias, relu)] over pixel rows z (P, in), in
    chunks of :data:`PIXEL_CHUNK` pixels -> (P, out)."""
    if len(z) == 0:                                          # e.g. no pixel selected
        return z.new_zeros(0, len(layers[-1][0]))
    chunks = []
    for chunk in z.split(PIXEL_CHUNK):
        for weight, bias, relu in layers:
            chunk = F.linear(chunk, weight, bias)
            chunk = chunk.relu_() if relu else chunk
        chunks.append(chunk)
    return torch.cat(chunks)


def _as_dense(layers):
    """1 x 1 conv layers of :func:`_folded` as linear layers [(weight, bias, relu)]."""
    return [(weight.reshape(len(weight), -1), bias, relu) for weight, bias, _, relu in layers]


def _time_major(weight, n_dates):
    """Columns of a dense weight over (feature, date) inputs, f * T + t, reordered to
    t * F + f (what a channels-last time axis flattens to)."""
    out = len(weight)
    return weight.reshape(out, -1, n_dates).transpose(1, 2).reshape(out, -1).contiguous()


class _Snapshot(nn.Module):
    """Common part: the plain model's sizes and halo. Weights are plain tensors
    detached from the model (no parameters, no gradients).

    ``forward`` takes (N, C, T, H, W) in any memory layout; :meth:`prepare` copies an
    input into the layout it reads without a copy of its own (what
    :class:`sits_ref.predict.TorchClassifier` does once per block)."""

    layout = (0, 1, 2, 3, 4)       # the memory order of (N, C, T, H, W), outer first

    def __init__(self, model):
        super().__init__()
        self.n_features, self.n_dates = model.n_features, model.n_dates
        self.n_classes, self.halo = model.n_classes, model.halo

    def prepare(self, x):
        """x (N, C, T, H, W), same shape and values, stored in :attr:`layout` order."""
        order = self.layout
        return x.permute(order).contiguous().permute([order.index(d) for d in range(5)])


class FastTempCNN(_Snapshot):
    """:class:`sits_ref.models.TempCNN`, BN folded, convs as channels-last 1 x k Conv2d."""

    layout = (0, 3, 4, 2, 1)       # each pixel's series, time-major (N, H, W, T, C)

    def __init__(self, model: TempCNN):
        super().__init__(model)
        self.convs = [(_channels_last(w.unsqueeze(2)), b, (0, pad[0]), relu)   # (out, in, 1, k)
                      for w, b, pad, relu in _folded(model.convs)]
        _, linear, norm, *_ = model.dense
        weight, bias = fold_batchnorm(linear.weight, linear.bias, norm)  # (hidden, F*T)
        self.dense = [(_time_major(weight.detach(), self.n_dates), bias.detach(), True),
                      (model.out.weight.detach().clone(), model.out.bias.detach().clone(),
                       False)]

    def forward_pixels(self, s):
        """(P, T, C) pixel series, time-major -> (P, K) logits."""
        if len(s) == 0:                                       # e.g. no pixel selected
            return s.new_zeros(0, self.n_classes)
        return torch.cat([self._chunk(p) for p in s.split(PIXEL_CHUNK)])

    def _chunk(self, p):
        z = p.unsqueeze(0).permute(0, 3, 1, 2)            # (1, C, P, T), channels-last
        for weight, bias, padding, relu in self.convs:
            z = _conv(z, weight, bias, padding)
            z = z.relu_() if relu else z
        z = z.permute(0, 2, 3, 1).reshape(len(p), -1)     # (P, T * F), time-major
        return _dense(self.dense, z)

    def forward(self, x, where=None):
        n, c, t, h, w = x.shape
        s = x.permute(0, 3, 4, 2, 1).reshape(n * h * w, t, c)   # (N*H*W, T, C)
        if where is not None:
            return self.forward_pixels(s[where.reshape(-1)])     # (P, K)
        return self.forward_pixels(s).view(n, h, w, -1).permute(0, 3, 1, 2)


class _RowTiled(_Snapshot):
    """A patch model as ``convs`` (rows on dim 2 of their input) then a 1 x 1 ``head``,
    computed :data:`TILE_ROWS` output rows at a time (module doc)."""

    def forward(self, x, where=None):
        z = self.conv_input(x)
        n, height, width = len(x), x.shape[3], x.shape[4]
        logits = x.new_empty(n, height, width, self.n_classes)
        for a in range(0, height, self.rows):
            b = min(a + self.rows, height)
            pixels = self.pixels(_conv_rows(self.convs, z, a, b))
            logits[:, a:b] = _dense(self.head, pixels).view(n, b - a, width, -1)
        return at_pixels(logits.permute(0, 3, 1, 2), where)


class FastCNN2D(_RowTiled):
    """:class:`sits_ref.models.CNN2D`, BN folded, activations channels-last."""

    layout = (0, 3, 4, 1, 2)       # (N, H, W, C, T): channels-last over C * T

    def __init__(self, model: CNN2D):
        super().__init__(model)
        self.rows = TILE_ROWS[CNN2D]
        self.convs = [(_channels_last(w), b, pad, relu) for w, b, pad, relu
                      in _folded(model.convs)]
        self.head = _as_dense(_folded(model.head))

    def conv_input(self, x):
        """(N, C, T, H, W) -> (N, C*T, H, W) channels-last (a view if x is prepared)."""
        n, c, t, h, w = x.shape
        return x.reshape(n, c * t, h, w).contiguous(memory_format=torch.channels_last)

    def pixels(self, z):
        """(N, F, r, W) -> (N*r*W, F)."""
        return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


class FastCNN3D(_RowTiled):
    """:class:`sits_ref.models.CNN3D`, BN folded, 3D convs over (C, H, T, W)
    channels-last (module doc), the 1 x 1 head over time-major pixel rows."""

    layout = (0, 3, 2, 4, 1)       # (N, H, T, W, C): channels-last over (C, H, T, W)

    def __init__(self, model: CNN3D):
        super().__init__(model)
        self.rows = TILE_ROWS[CNN3D]
        self.convs = [(_channels_last(w.transpose(2, 3)), b, (pad[1], pad[0], pad[2]), relu)
                      for w, b, pad, relu in _folded(model.convs)]     # kernel (H, T, W)
        head = _as_dense(_folded(model.head))
        weight, bias, relu = head[0]
        self.head = [(_time_major(weight, self.n_dates), bias, relu), *head[1:]]

    def conv_input(self, x):
        """(N, C, T, H, W) -> (N, C, H, T, W) channels-last (a view if x is prepared)."""
        return x.transpose(2, 3).contiguous(memory_format=torch.channels_last_3d)

    def pixels(self, z):
        """(N, F, r, T, W) -> (N*r*W, T*F), time-major like the head's weights."""
        n, f, r, t, w = z.shape
        return z.permute(0, 2, 4, 3, 1).reshape(n * r * w, t * f)


class FastSpatioTempCNN(_Snapshot):
    """:class:`sits_ref.models.SpatioTempCNN` from its two fast streams."""

    layout = FastCNN3D.layout      # the 3D stream's; the temporal one copies its own

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
