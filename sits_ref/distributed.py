"""Several processes with PyTorch's own runtime (torchrun, torch.distributed).

``torchrun --nproc-per-node N run_benchmark.py ...`` (or ``... -m sits_ref.predict``)
starts N processes; each reads RANK / WORLD_SIZE / LOCAL_RANK from its environment and
joins one process group (gloo on CPU, NCCL on GPU). Without torchrun,
:func:`from_environment` returns a group of one and every method below is a no-op, so
the training loop and the scene prediction read the same. Prediction shares tiles, or
row bands of one tile (:func:`sits_ref.predict.predict_scene`); training shares every
minibatch.

How a training step is shared (:class:`Group`):

* every rank draws the same seeded permutation, so each global minibatch is the same
  everywhere; rank r trains on its share ``batch[r::N]``;
* the loss is the sum over the rank's labelled pixels divided by the *global* count of
  labelled pixels, times N: DistributedDataParallel averages gradients over ranks, so
  the step is exactly the one-process step on the whole minibatch;
* BatchNorm uses statistics over the whole minibatch, not the rank's share:
  ``nn.SyncBatchNorm`` on GPU, and on CPU (where SyncBatchNorm refuses to run)
  :class:`GlobalBatchNorm`, the same computation with a differentiable all-reduce.

With the same global batch, N processes thus give the one-process weights up to float
rounding, dropout aside (each rank draws its own dropout masks).
"""
from __future__ import annotations

import atexit
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

# A rank may wait for rank 0 to map a whole tile (up to an hour on 2 CPU cores)
# before the next collective call: the default 30-minute timeout would end the run.
TIMEOUT = timedelta(hours=12)


class Group:
    """The processes of one run: ``rank`` of ``size``; rank 0 is the ``main`` one."""

    def __init__(self, rank: int = 0, size: int = 1):
        self.rank, self.size = rank, size

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global minibatch of sample indices."""
        return batch[self.rank::self.size]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over ranks (a new tensor; gradients do not flow)."""
        tensor = tensor.clone()
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj):
        """Rank 0's ``obj`` (picklable) on every rank, e.g. the early-stopping decision."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.size > 1:
            dist.barrier()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: ``model`` itself for one process; else its BatchNorm
        layers made global (in place: SyncBatchNorm on GPU, :class:`GlobalBatchNorm` on
        CPU) and the model wrapped in DistributedDataParallel."""
        if self.size == 1:
            return model
        if device.type == "cuda":
            _swap_batchnorm(model, nn.SyncBatchNorm)
            return nn.parallel.DistributedDataParallel(
                model, device_ids=[torch.cuda.current_device()])
        _swap_batchnorm(model, GlobalBatchNorm)
        return nn.parallel.DistributedDataParallel(model)

    def unwrap(self, model: nn.Module) -> None:
        """Undo :meth:`wrap` on ``model``: plain BatchNorm layers again (same weights
        and running statistics), for checkpoints and the fast inference twin."""
        if self.size > 1:
            _swap_batchnorm(model, None)


def from_environment(device: str = "cpu") -> Group:
    """The group torchrun set up (joined here), or a group of one without torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return Group()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=TIMEOUT)
        atexit.register(dist.destroy_process_group)
    return Group(dist.get_rank(), dist.get_world_size())


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the samples of every rank.

    Per channel, each rank sums x and x**2 over its samples (and counts them); one
    all-reduce, differentiable, gives the global mean and (biased) variance that
    normalise, exactly as ``nn.BatchNorm*d`` on the union of the ranks' samples;
    the running statistics are updated with the unbiased variance, as there. In eval
    mode it is plain BatchNorm with the running statistics.
    """

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x):
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                self.bias, False, 0.0, self.eps)
        channels, dims = x.shape[1], [0] + list(range(2, x.dim()))
        wide = x.double()        # E[x^2] - E[x]^2 in float64: no cancellation
        count = torch.full((1,), x.numel() / channels, dtype=wide.dtype)
        totals = _all_reduce(torch.cat([wide.sum(dims), (wide * wide).sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = (totals[channels:2 * channels] / n - mean * mean).to(x.dtype)
        mean = mean.to(x.dtype)
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1).clamp(min=1), self.momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        scale = self.weight / torch.sqrt(var + self.eps)
        return (x - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable: the gradient of each rank's input is the sum of
    the ranks' output gradients."""
    return _AllReduce.apply(tensor)


class _AllReduce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


_PLAIN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _swap_batchnorm(model: nn.Module, kind) -> None:
    """Replace every BatchNorm layer of ``model`` by one of class ``kind`` (None: back
    to the plain BatchNorm of its dimension, recorded as ``plain_dim`` when swapped),
    keeping weights, running statistics, eps and momentum."""
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            dim = getattr(child, "plain_dim", None) or next(
                d for d, cls in _PLAIN.items() if isinstance(child, cls))
            new = (kind or _PLAIN[dim])(child.num_features, child.eps, child.momentum)
            new.load_state_dict(child.state_dict())
            if kind is not None:
                new.plain_dim = dim
            setattr(model, name, new.to(child.weight.device))
        else:
            _swap_batchnorm(child, kind)
