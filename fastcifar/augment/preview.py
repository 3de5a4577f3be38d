"""Augmented copies of a few images, un-normalised, for Figure 3 (either backend)."""

import numpy as np
import torch

from .params import sample_params
from .spec import AugmentSpec
from .torch_ops import apply_params, to_float_nchw


def augment_examples(images: np.ndarray, spec: AugmentSpec, copies: int, backend: str = "torch",
                     seed: int = 0) -> np.ndarray:
    """float (N, copies, H, W, 3) in [0, 1]: ``copies`` random augmentations of each image."""
    batch = np.repeat(np.ascontiguousarray(images), copies, axis=0)  # (N * copies, H, W, 3)
    height, width = batch.shape[1:3]
    params = sample_params(spec, len(batch), height, width, torch.Generator().manual_seed(seed))
    if backend == "torch":
        out = apply_params(to_float_nchw(torch.from_numpy(batch)), params, spec)
        out = out.permute(0, 2, 3, 1)
    elif backend == "dali":
        from .dali import DaliAugmenter

        out = DaliAugmenter(spec, len(batch), normalise=False)(batch, params) / 255.0
    else:
        raise ValueError(f"unknown augmentation backend {backend!r}; valid: torch, dali")
    return out.clamp(0, 1).reshape(len(images), copies, height, width, 3).numpy()
