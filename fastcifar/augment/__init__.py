"""GPU-side data augmentation: one spec (``AugmentSpec``), two backends ("torch", "dali").

    from fastcifar.augment import get_preset, make_loader
    loader = make_loader(images, labels, get_preset("flip_affine"), 512, train=True,
                         backend="torch", device="cuda", seed=0)
"""

from .batches import epoch_order
from .loader import BACKENDS, make_loader
from .params import AugmentParams, identity_params, sample_params
from .spec import PRESETS, AugmentSpec, get_preset

__all__ = [
    "BACKENDS", "PRESETS", "AugmentParams", "AugmentSpec", "epoch_order", "get_preset",
    "identity_params", "make_loader", "sample_params",
]  # fmt: skip
