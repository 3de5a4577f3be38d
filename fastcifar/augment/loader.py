"""``make_loader``: the one entry point the engine uses, whichever backend augments.

    loader = make_loader(data.train_images, data.train_labels, get_preset("flip_affine"), 512,
                         train=True, device="cuda", seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)          # optional: iterating advances the epoch by itself
        for x, y in loader: ...          # x float (B, 3, 32, 32) normalised, y int64, on device
"""

import torch

from .batches import Batches, check_arrays, stream_seed
from .params import sample_params
from .spec import AugmentSpec
from .torch_ops import apply_params, normalization, normalize, to_float_nchw

BACKENDS = ("torch", "dali")


class TorchLoader(Batches):
    """The data set lives on ``device`` as uint8; each batch is gathered and augmented there."""

    def __init__(self, images, labels, spec: AugmentSpec, batch_size: int, *, train: bool,
                 device="cpu", seed=0, drop_last=None, dtype=torch.float32, channels_last=True,
                 shard=(0, 1)):
        images, labels = check_arrays(images, labels)
        super().__init__(len(images), batch_size, train, seed, drop_last, shard)
        self.device = torch.device(device)
        self.images = images.to(self.device)  # moved once
        self.labels = labels.to(self.device)
        self.spec = spec if train else spec.eval_spec()
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # every tensor a batch needs that is not drawn per batch, built here once: the loop
        # below never copies from the host (a CUDA epoch's only copy is its sample order)
        self.mean, self.std = normalization(self.spec, self.device)
        self._draw_first_flips(self.spec, self.device)

    def __iter__(self):
        epoch, batches = self._next_epoch(self.device)
        gen = torch.Generator(device=self.device).manual_seed(stream_seed(self.seed, epoch, 1))
        height, width = self.images.shape[1:3]
        for idx in batches:
            params = sample_params(self.spec, len(idx), height, width, gen)  # the global batch's
            params = self._alternate_flips(self.spec, epoch, idx, params)
            idx, params = self._shard(idx, params)
            x = to_float_nchw(self.images[idx])
            x = normalize(apply_params(x, params, self.spec), self.mean, self.std)
            yield x.to(self.dtype, memory_format=self.memory_format), self.labels[idx]


def make_loader(images, labels, spec: AugmentSpec, batch_size: int, *, train: bool,
                backend: str = "torch", device="cpu", seed: int = 0, drop_last: bool | None = None,
                dtype: torch.dtype = torch.float32, channels_last: bool = True,
                shard: tuple[int, int] = (0, 1)):
    """A loader yielding ``(x, y)`` on ``device``; see the module docstring.

    train=True shuffles (epoch k's order and draws are a pure function of (seed, k)), augments
    by ``spec`` and drops the last partial batch unless ``drop_last=False``; train=False keeps
    the order, only normalises, and keeps the last partial batch.

    ``shard=(rank, world)`` (torchrun): ``batch_size`` is the global batch; this loader yields
    rank's contiguous 1/world of each one (same number of steps, same order and draws).
    """
    if not isinstance(spec, AugmentSpec):
        raise TypeError(f"spec must be an AugmentSpec, got {type(spec).__name__}")
    kwargs = dict(train=train, device=device, seed=seed, drop_last=drop_last, dtype=dtype,
                  channels_last=channels_last, shard=shard)
    if backend == "torch":
        return TorchLoader(images, labels, spec, batch_size, **kwargs)
    if backend == "dali":
        from .dali import DaliLoader  # DALI is optional: imported only when asked for

        return DaliLoader(images, labels, spec, batch_size, **kwargs)
    raise ValueError(f"unknown augmentation backend {backend!r}; valid: {', '.join(BACKENDS)}")
