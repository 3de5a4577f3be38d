"""Per-image random parameters, drawn for a whole batch at once on the batch's device.

Both backends apply the same ``AugmentParams``, so the same seed gives the same draws to each
(on one device). Semantics follow torchvision.transforms.v2 (RandomHorizontalFlip, RandomAffine,
RandomCrop, RandomResizedCrop, ColorJitter), including the rounding of shifts and crop sizes.
"""

import math
from dataclasses import dataclass

import torch

from .spec import AugmentSpec

# colour-jitter operation ids, in the columns of AugmentParams.jitter_factors
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
RESIZED_CROP_ATTEMPTS = 10  # torchvision's number of tries before falling back


@dataclass
class AugmentParams:
    """The random draws for one batch of B images; identity values where a step is off."""

    flip: torch.Tensor  # (B,) bool: mirror left-right
    angle: torch.Tensor  # (B,) float degrees, counter-clockwise
    shift: torch.Tensor  # (B, 2) float whole pixels (tx, ty) of the affine step
    crop: torch.Tensor  # (B, 2) float (top, left) - padding: the pad-crop window's offset
    box: torch.Tensor  # (B, 4) float (top, left, height, width) of the resized crop
    jitter_factors: torch.Tensor  # (B, 4) float brightness, contrast, saturation, hue shift
    jitter_order: torch.Tensor  # (B, 4) int64: a permutation of the four jitter operations

    def __len__(self) -> int:
        return len(self.flip)

    def to(self, device) -> "AugmentParams":
        """The same parameters on ``device``."""
        return AugmentParams(**{k: v.to(device) for k, v in vars(self).items()})


def identity_params(batch: int, height: int, width: int, device="cpu") -> AugmentParams:
    """Parameters that change nothing; tests edit single fields of these."""
    def zeros(*shape):
        return torch.zeros(*shape, device=device)

    # built by device-side fills, never from Python lists: torch.tensor([...], device="cuda")
    # is a blocking host-to-device copy, and this runs once per batch
    box = zeros(batch, 4)
    box[:, 2].fill_(height)
    box[:, 3].fill_(width)
    factors = torch.ones(batch, 4, device=device)
    factors[:, HUE].fill_(0.0)
    return AugmentParams(
        flip=torch.zeros(batch, dtype=torch.bool, device=device), angle=zeros(batch),
        shift=zeros(batch, 2), crop=zeros(batch, 2), box=box, jitter_factors=factors,
        jitter_order=torch.arange(4, device=device).repeat(batch, 1))


def _uniform(gen, batch, lo, hi, shape=()):
    return torch.rand(batch, *shape, generator=gen, device=gen.device) * (hi - lo) + lo


def sample_params(spec: AugmentSpec, batch: int, height: int, width: int,
                  gen: torch.Generator) -> AugmentParams:
    """Draw one batch of parameters on ``gen.device``; no host synchronisation."""
    device = gen.device
    p = identity_params(batch, height, width, device)
    if spec.flip_p:
        p.flip = torch.rand(batch, generator=gen, device=device) < spec.flip_p
    if spec.degrees:
        p.angle = _uniform(gen, batch, -spec.degrees, spec.degrees)
    if any(spec.translate):
        u = torch.rand(batch, 2, generator=gen, device=device) * 2 - 1
        # scaled column by column by Python numbers (kernel arguments, not a copied tensor)
        p.shift = torch.round(torch.stack([u[:, 0] * (spec.translate[0] * width),
                                           u[:, 1] * (spec.translate[1] * height)], dim=1))
    if spec.crop_padding:
        # top and left uniform over the 2 * padding + 1 window positions of the padded image
        pad = spec.crop_padding
        u = torch.rand(batch, 2, generator=gen, device=device)
        p.crop = torch.floor(u * (2 * pad + 1)) - pad
    if spec.resized_crop_scale is not None:
        p.box = _sample_boxes(spec, batch, height, width, gen)
    if spec.jitter:
        f = p.jitter_factors
        for col, amount in ((BRIGHTNESS, spec.brightness), (CONTRAST, spec.contrast),
                            (SATURATION, spec.saturation)):
            if amount:
                f[:, col] = _uniform(gen, batch, 1 - amount, 1 + amount)
        if spec.hue:
            f[:, HUE] = _uniform(gen, batch, -spec.hue, spec.hue)
        # a random permutation per image, as ColorJitter's torch.randperm(4)
        p.jitter_order = torch.rand(batch, 4, generator=gen, device=device).argsort(dim=1)
    return p


def _sample_boxes(spec, batch, height, width, gen) -> torch.Tensor:
    """RandomResizedCrop.make_params for a batch: 10 tries each, first valid wins, else fallback."""
    lo, hi = spec.resized_crop_scale
    log_lo, log_hi = math.log(spec.resized_crop_ratio[0]), math.log(spec.resized_crop_ratio[1])
    area = height * width * _uniform(gen, batch, lo, hi, (RESIZED_CROP_ATTEMPTS,))
    ratio = torch.exp(_uniform(gen, batch, log_lo, log_hi, (RESIZED_CROP_ATTEMPTS,)))
    w, h = torch.round(torch.sqrt(area * ratio)), torch.round(torch.sqrt(area / ratio))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first valid try
    # torchvision's fallback: the central crop with the ratio clamped into range
    in_ratio = width / height
    fb_w, fb_h = float(width), float(height)
    if in_ratio < spec.resized_crop_ratio[0]:
        fb_h = float(round(width / spec.resized_crop_ratio[0]))
    elif in_ratio > spec.resized_crop_ratio[1]:
        fb_w = float(round(height * spec.resized_crop_ratio[1]))
    found = ok.any(dim=1)
    w = torch.where(found, w.gather(1, first).squeeze(1), fb_w)
    h = torch.where(found, h.gather(1, first).squeeze(1), fb_h)
    u = torch.rand(batch, 2, generator=gen, device=gen.device)
    top = torch.where(found, torch.floor(u[:, 0] * (height - h + 1)), (height - h) // 2)
    left = torch.where(found, torch.floor(u[:, 1] * (width - w + 1)), (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


@dataclass
class JitterPlan:
    """ColorJitter's per-image random order as 3 blend rounds, one hue shift, 3 blend rounds.

    Brightness, contrast and saturation are blends ``x * f + ref * (1 - f)`` with ref = 0, the
    image's grey mean, or its grey image. Round r applies each image's r-th operation when it
    comes before (rounds 0-2) or after (rounds 3-5) that image's hue shift, and f = 1 (exactly
    the identity) otherwise, so every image gets its own order with no per-image branching.
    """

    factor: torch.Tensor  # (6, B) float blend factor per round, 1 = no-op
    op: torch.Tensor  # (6, B) int64 BRIGHTNESS, CONTRAST or SATURATION (which reference)
    hue: torch.Tensor  # (B,) float hue shift, applied between rounds 2 and 3


def jitter_plan(params: AugmentParams) -> JitterPlan:
    """Turn (factors, order) into the round schedule both backends execute."""
    order, factors = params.jitter_order, params.jitter_factors
    hue_at = (order == HUE).to(torch.uint8).argmax(dim=1)  # (B,) position of the hue shift
    rounds = [(r, r < hue_at) for r in range(3)] + [(r, r > hue_at) for r in range(1, 4)]
    factor, op = [], []
    for r, active in rounds:
        this = order[:, r]
        on = active & (this != HUE)
        factor.append(torch.where(on, factors.gather(1, this[:, None]).squeeze(1), 1.0))
        op.append(torch.where(on, this, BRIGHTNESS))
    return JitterPlan(torch.stack(factor), torch.stack(op), factors[:, HUE])
