"""What both loader backends share: seeded epoch orders, batch boundaries, this rank's shard
of each global batch, the alternating-flip coins, and the input checks. ``loader.py`` (torch) and
``dali.py`` (DALI) each subclass ``Batches``; neither imports the other's module.
"""

import numpy as np
import torch

from .params import AugmentParams
from .spec import AugmentSpec


def stream_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, stream): resumable epochs."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled sample order of one epoch, drawn on the CPU so every device agrees."""
    gen = torch.Generator().manual_seed(stream_seed(seed, epoch, 0))
    return torch.randperm(n, generator=gen)


def check_arrays(images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, H, W, 3) images and (N,) integer labels as CPU or device tensors; else raise."""
    images = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) \
        else images
    labels = torch.from_numpy(np.asarray(labels)) if not torch.is_tensor(labels) else labels
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3) (NHWC), got {images.dtype} "
                         f"{tuple(images.shape)}")
    if labels.shape != images.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be integers of shape ({len(images)},), got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    return images, labels.long()


class Batches:
    """Shared bookkeeping: epoch counter, sample order per epoch, batch boundaries, and this
    rank's shard of each batch (``shard=(rank, world)``; batch_size is the global batch)."""

    def __init__(self, n, batch_size, train, seed, drop_last, shard=(0, 1)):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.train, self.seed = n, batch_size, train, seed
        self.drop_last = train if drop_last is None else drop_last
        self.epoch = 0
        self._first_flip = None  # alternating flip's coin per image (_draw_first_flips)
        self.rank, self.world = shard
        if not 0 <= self.rank < self.world:
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
        if train and batch_size % self.world:
            raise ValueError(f"the global batch_size {batch_size} does not split evenly over "
                             f"{self.world} ranks")
        if self.world > 1 and self.world > min(n, batch_size):  # each rank sees an image
            raise ValueError(f"{self.world} ranks need at least {self.world} images and a batch "
                             f"of at least {self.world}, got {n} and {batch_size}")

    def __len__(self) -> int:
        """Number of batches per epoch."""
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its order and draws depend only on it)."""
        self.epoch = epoch

    def batch_sizes(self) -> list[int]:
        """The distinct sizes of this rank's batches in an epoch, largest first: the shapes a
        compiled model meets (a partial last batch is one more)."""
        full, rest = divmod(self.n, self.batch_size)
        sizes = ([self.batch_size] if full else []) + ([rest] if rest and not self.drop_last
                                                        else [])
        return sorted({size * (self.rank + 1) // self.world - size * self.rank // self.world
                       for size in sizes}, reverse=True)

    def example_batch(self, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random images of ``size`` laid out exactly as this loader's batches (device, dtype,
        memory format): a compile warm-up on them leaves nothing to recompile in training."""
        height, width = self.images.shape[1:3]
        x = torch.randn(size, 3, height, width, device=self.device, generator=generator)
        return x.to(self.dtype, memory_format=self.memory_format)

    def _next_epoch(self, device=None) -> tuple[int, list[torch.Tensor]]:
        """(epoch, its batches' sample indices on ``device``, default the CPU)."""
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = epoch_order(self.n, self.seed, epoch) if self.train else torch.arange(self.n)
        if device is not None and device.type == "cuda":
            # one copy per epoch, from pinned memory so that it does not block the host
            order = order.pin_memory().to(device, non_blocking=True)
        return epoch, list(order[: len(self) * self.batch_size].split(self.batch_size))

    def _draw_first_flips(self, spec: AugmentSpec, device="cpu") -> None:
        """Alternating flip's coin per image, drawn once (a pure function of the seed) and kept
        on ``device``, where the batch indices live, so that no batch copies it."""
        if self.train and spec.alternate_flip:
            gen = torch.Generator().manual_seed(stream_seed(self.seed, 0, 2))
            self._first_flip = (torch.rand(self.n, generator=gen) < 0.5).to(device)

    def _alternate_flips(self, spec: AugmentSpec, epoch: int, idx: torch.Tensor,
                         params: AugmentParams) -> AugmentParams:
        """With ``spec.alternate_flip``: image i is flipped in epoch e iff first_flip[i] xor e
        is odd, first_flip being one fixed coin per image (a pure function of the seed)."""
        if not (self.train and spec.alternate_flip):
            return params
        flips = self._first_flip[idx] ^ bool(epoch % 2)
        params.flip = flips.to(params.flip.device)
        return params

    def _shard(self, idx: torch.Tensor, params: AugmentParams):
        """This rank's contiguous slice of a global batch and of its draws (all of it with one
        rank): the ranks' slices of step s together are the one-process batch of step s."""
        if self.world == 1:
            return idx, params
        start = len(idx) * self.rank // self.world
        stop = len(idx) * (self.rank + 1) // self.world
        return idx[start:stop], AugmentParams(**{k: v[start:stop] for k, v in vars(params).items()})
