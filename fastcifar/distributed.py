"""One run on many processes: ``torchrun --nproc_per_node N -m fastcifar.train ...``.

torchrun starts one process (rank) per GPU, or per CPU slot, and sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; ``fastcifar.fit`` sees them and calls ``init_world``. A
plain ``python -m fastcifar.train`` never calls anything here and never starts a process group.

What changes under torchrun, and why:
- data: every rank builds the same loaders with ``shard=(rank, world)``; each global batch (the
  batch size the user asked for) is cut into ``world`` contiguous slices, one per rank, and the
  augmentation draws are made for the whole global batch and sliced the same way. The ranks'
  step-s batches together are the one-process step-s batch, so epoch k's data is a pure function
  of (seed, k) whatever the number of ranks, and a checkpoint resumes on any number of them.
- gradients: DDP averages them over the ranks; each rank's loss is a mean over its B/W images,
  so the average is the gradient of the mean loss over the global batch, as in one process.
- BatchNorm: per rank by default (statistics of B/W images; DDP broadcasts rank 0's running
  statistics before every forward), or over the global batch with ``--sync-bn``.
- metrics: the training sums and the evaluation's sums are all-reduced; evaluation is sharded
  (each rank evaluates 1/W of the images with rank 0's BatchNorm buffers), so every rank holds
  the same record and the plateau scheduler steps the same way everywhere.
- files: only rank 0 prints and writes; checkpoints hold the unwrapped module's state_dict
  (no ``module.`` prefix), so they load in one process or on any number of ranks.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import engine
from .models import layers
from .recipes import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the ranks, and the collectives the training loop needs."""

    rank: int
    size: int
    local_rank: int
    device: torch.device
    sync_bn: bool = False  # BatchNorm statistics over the global batch (--sync-bn)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints and writes files."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """make_loader's ``shard`` argument for this rank."""
        return self.rank, self.size

    def describe(self) -> dict:
        """What config.json records about the distributed setup."""
        return {"world_size": self.size, "sync_bn": self.sync_bn,
                "backend": dist.get_backend() if dist.is_initialized() else None}

    def wrap(self, model: nn.Module) -> DistributedDataParallel:
        """``model`` (already on this rank's device) in DDP, to train with (compile the DDP
        module, not the other way round). With sync_bn its BatchNorms are first replaced by
        synchronised ones that share their parameters and buffers, so an optimizer built on
        ``model.parameters()`` before or after stays valid and state_dict keys do not change."""
        if self.sync_bn:
            convert_sync_batchnorm(model)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def reduce_train_stats(self, stats: dict) -> dict:
        """engine.train_epoch's record summed over the ranks: global loss, accuracy and image
        count; seconds of the slowest rank (the others wait for it at every step)."""
        images = stats["images"]
        local = [stats["loss"] * images, stats["acc"] / 100.0 * images, images]
        total = torch.tensor(local, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        seconds = torch.tensor([stats["seconds"]], dtype=torch.float64, device=self.device)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        loss_sum, correct, images = total.tolist()
        images_or_1 = max(images, 1.0)
        return stats | {"loss": loss_sum / images_or_1, "acc": 100.0 * round(correct) / images_or_1,
                        "images": int(images), "seconds": seconds.item()}

    def evaluate(self, model: nn.Module, loader, **kwargs) -> dict:
        """engine.evaluate on this rank's shard of ``loader``, summed over the ranks; the same
        result on every rank. BatchNorm buffers are rank 0's first, so what is evaluated is what
        rank 0 checkpoints (with per-rank BatchNorm each rank's running statistics differ).
        ``model`` may be the DDP module (every rank runs the same number of batches)."""
        self.broadcast_buffers(model)
        result = engine.evaluate(model, loader, **kwargs)
        confusion = np.asarray(result["confusion"])
        n = int(confusion.sum())
        sums = torch.tensor([result["loss"] * n, *confusion.ravel().tolist()], dtype=torch.float64,
                            device=self.device)
        dist.all_reduce(sums)
        confusion = sums[1:].round().long().cpu().numpy().reshape(confusion.shape)
        n = int(confusion.sum())
        return result | {"loss": sums[0].item() / n, "acc": 100.0 * int(np.trace(confusion)) / n,
                         "confusion": confusion}

    def broadcast_buffers(self, model: nn.Module) -> None:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    def agree(self, obj):
        """Rank 0's ``obj`` on every rank (a decision all ranks must share)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def rank0_first(self, fn, *args, **kwargs) -> None:
        """Call ``fn`` on rank 0, then on the others: a download or cache file is written once,
        not raced for. If it fails on rank 0, the other ranks stop quietly (exit code 2) and
        rank 0 reports the error."""
        failed = torch.zeros(1, device=self.device)
        error = None
        if self.is_main:
            try:
                fn(*args, **kwargs)
            except Exception as err:  # re-raised below, after the other ranks are told
                error, failed[0] = err, 1
        dist.broadcast(failed, src=0)
        if error is not None:
            raise error
        if failed.item():
            raise SystemExit(2)
        if not self.is_main:
            fn(*args, **kwargs)

    def close(self, together: bool = True) -> None:
        """Leave the process group; ``together`` (a normal end) waits for every rank first:
        without that barrier a rank done first tears down its gloo pairs while another still
        uses them, which now and then (1 run in 15 here) ends the slower rank in ``terminate
        called without an active exception`` (SIGABRT). After an error, leave at once: the
        other ranks may be inside a collective that a barrier would be mismatched with."""
        if dist.is_initialized():
            if together:
                dist.barrier()
            dist.destroy_process_group()


def init_world(device_name: str, batch_size: int, sync_bn: bool = False) -> World:
    """Join the process group torchrun set up: NCCL with one GPU per rank (LOCAL_RANK picks it),
    gloo on the CPU. ``batch_size`` is the global batch; it must split evenly over the ranks,
    else ConfigError (before any process group exists)."""
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if batch_size % size:
        raise ConfigError(f"--batch-size {batch_size} is the global batch and must split evenly "
                          f"over the {size} ranks; use a multiple of {size}")
    cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda, but torch sees no CUDA device")
        if local_rank >= torch.cuda.device_count():
            raise SystemExit(f"error: local rank {local_rank} has no GPU (this node has "
                             f"{torch.cuda.device_count()}); use --nproc_per_node <= that")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return World(rank=rank, size=size, local_rank=local_rank, device=device, sync_bn=sync_bn)


# ---- synchronised BatchNorm -------------------------------------------------------------------

class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks, differentiable: the gradient of a sum is the sum of the gradients."""

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


def _all_reduce_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Training-mode BatchNorm over every rank's batch, by two differentiable all-reduces (sum,
    then the centred sum of squares). nn.SyncBatchNorm does the same with fused kernels, but
    only on GPUs."""
    xf = x.float()  # statistics in fp32 even under autocast
    channels = (1, -1, 1, 1)
    local_count = xf.new_tensor([xf.numel() / xf.shape[1]])
    sums = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), local_count]))
    count = sums[-1].detach()
    mean = sums[:-1] / count
    centred = xf - mean.view(channels)
    var = _AllReduceSum.apply((centred * centred).sum((0, 2, 3))) / count  # biased, as BN uses
    y = centred * torch.rsqrt(var + bn.eps).view(channels)
    if bn.affine:
        y = y * bn.weight.view(channels) + bn.bias.view(channels)
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = bn.momentum if bn.momentum is not None else 1.0 / bn.num_batches_tracked.item()
            bn.running_mean.lerp_(mean.detach(), factor)
            bn.running_var.lerp_(var.detach() * count / (count - 1), factor)  # unbiased
    return y.to(x.dtype)


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with training statistics over every rank, by all_reduce: --sync-bn on the CPU
    (gloo), where nn.SyncBatchNorm, and DDP holding one, refuse to run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and dist.is_initialized() and dist.get_world_size() > 1:
            return _all_reduce_batch_norm(self, x)
        return super().forward(x)


class AllReduceBatchNormReLU2d(AllReduceBatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


class AllReduceBatchNormAddReLU2d(AllReduceBatchNorm2d):
    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x) + residual)


class SyncBatchNormReLU2d(nn.SyncBatchNorm):
    """layers.BatchNormReLU2d with torch's own synchronised BatchNorm (CUDA)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


class SyncBatchNormAddReLU2d(nn.SyncBatchNorm):
    """layers.BatchNormAddReLU2d with torch's own synchronised BatchNorm (CUDA)."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x) + residual)


# (plain, BN+ReLU, BN+add+ReLU) replacements: torch's fused SyncBatchNorm where it runs (GPUs),
# the all_reduce version on the CPU
SYNCHRONISED = {"cuda": (nn.SyncBatchNorm, SyncBatchNormReLU2d, SyncBatchNormAddReLU2d),
                "cpu": (AllReduceBatchNorm2d, AllReduceBatchNormReLU2d,
                        AllReduceBatchNormAddReLU2d)}


class SyncBatchNormError(ConfigError):
    """A model holds a BatchNorm that --sync-bn has no synchronised counterpart for."""


def check_sync_bn(model: nn.Module) -> None:
    """Raise SyncBatchNormError if ``model`` (built on any device, the meta one included) could
    not be converted: the run refuses before it loads data or starts a process group."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            _synchronised(module)


def _synchronised(bn: nn.Module) -> nn.Module | None:
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or isinstance(
            bn, (nn.SyncBatchNorm, AllReduceBatchNorm2d)):
        return None  # not a BatchNorm, or converted already
    plain, relu, add_relu = SYNCHRONISED["cuda" if bn.running_mean.is_cuda else "cpu"]
    # the subclass checks come first: BatchNormAddReLU2d and BatchNormReLU2d are BatchNorm2d too
    # (a fused implementation subclasses them and is replaced by the eager synchronised one)
    if isinstance(bn, layers.BatchNormAddReLU2d):
        cls = add_relu
    elif isinstance(bn, layers.BatchNormReLU2d):
        cls = relu
    elif isinstance(bn, nn.BatchNorm2d) and type(bn).forward is nn.BatchNorm2d.forward:
        # BatchNorm2d itself, or a subclass that only sets it up (the speedrun's frozen-scale
        # BatchNorm: its frozen weight is shared below, requires_grad and all)
        cls = plain
    else:
        raise SyncBatchNormError(f"--sync-bn cannot convert {type(bn).__name__}, whose forward "
                                 "is its own; add it to fastcifar.distributed._synchronised")
    synced = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    # the same Parameter and buffer objects: state_dict keys and optimizer references unchanged
    synced.weight, synced.bias = bn.weight, bn.bias
    synced.running_mean, synced.running_var = bn.running_mean, bn.running_var
    synced.num_batches_tracked = bn.num_batches_tracked
    return synced.train(bn.training)


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Replace, in place, every BatchNorm2d of ``model`` by its synchronised counterpart."""
    for name, child in model.named_children():
        synced = _synchronised(child)
        if synced is not None:
            setattr(model, name, synced)
        else:
            convert_sync_batchnorm(child)
    return model
