"""The "torch" backend's batched operations: any device, one resampling pass per batch.

Images are float (B, 3, H, W) in [0, 1] (any memory format). Geometry works in pixel-centred
coordinates with the origin at the image centre, x right and y down, as torchvision's affine.
"""

import torch
import torch.nn.functional as F

from .params import CONTRAST, SATURATION, AugmentParams, jitter_plan
from .spec import AugmentSpec

GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _affine_rows(a, b, c, d, e, f) -> torch.Tensor:
    """(B, 3, 3) homogeneous matrices from six (B,) rows [[a, b, c], [d, e, f], [0, 0, 1]]."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, zero, zero, one], dim=1).view(-1, 3, 3)


def geometry_matrices(params: AugmentParams, spec: AugmentSpec, height: int, width: int):
    """Output->source maps (pre, post), each (B, 3, 3), in centred pixel coordinates.

    ``pre`` maps an output pixel into the image before the crop step (pad-crop shift or resized
    crop scale+offset); ``post`` undoes the affine then the flip and scales to grid_sample's
    [-1, 1]. Pre then post is the affine map of the whole chain; ``warp`` adds what is not
    affine (the frame between the affine and crop steps) before sampling once.
    """
    one = torch.ones_like(params.angle)
    zero = torch.zeros_like(one)
    top, left, h, w = params.box.unbind(1)
    if spec.resized_crop_scale is not None:  # output pixel u -> left + (u + 0.5) w / W - 0.5
        pre = _affine_rows(w / width, zero, left + w / 2 - width / 2,
                           zero, h / height, top + h / 2 - height / 2)
    else:  # pad-crop: a whole-pixel shift by (left - pad, top - pad); zero when off
        pre = _affine_rows(one, zero, params.crop[:, 1], zero, one, params.crop[:, 0])
    # torchvision's inverse affine about the centre: R(angle)^-1 (p - t), then the flip
    rad = torch.deg2rad(params.angle)
    cos, sin = torch.cos(rad), torch.sin(rad)
    tx, ty = params.shift.unbind(1)
    sign = torch.where(params.flip, -1.0, 1.0)
    sx, sy = sign * 2 / width, 2 / height  # flip and normalise x, normalise y
    post = _affine_rows(sx * cos, sx * sin, -sx * (cos * tx + sin * ty),
                        -sy * sin, sy * cos, sy * (sin * tx - cos * ty))
    return pre, post


def _base_grid(height: int, width: int, device) -> torch.Tensor:
    """(H * W, 3) homogeneous centred pixel coordinates (x, y, 1), rows first."""
    ys = torch.linspace((1 - height) / 2, (height - 1) / 2, height, device=device)
    xs = torch.linspace((1 - width) / 2, (width - 1) / 2, width, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).view(-1, 3)


def warp(x: torch.Tensor, params: AugmentParams, spec: AugmentSpec) -> torch.Tensor:
    """Flip, affine and crop/resized-crop in one grid_sample with zero fill."""
    batch, _, height, width = x.shape
    pre, post = geometry_matrices(params, spec, height, width)
    base = _base_grid(height, width, x.device).expand(batch, -1, -1)  # (B, HW, 3)
    if not spec.crop_padding and spec.resized_crop_scale is None:
        grid = base @ post[:, :2].transpose(1, 2)  # flip + affine: one matrix per image
    else:
        # The crop step reads the affine step's H x W output, not the whole plane: a composed
        # map must respect that frame. ``mid`` is where each output pixel sits in that frame.
        mid = base @ pre[:, :2].transpose(1, 2)  # (B, HW, 2)
        half_w, half_h = (width - 1) / 2, (height - 1) / 2  # the frame's last pixel centre
        if spec.resized_crop_scale is None and spec.crop_fill == "reflect":
            # mirrored about the edge pixels' centres (F.pad's reflect); a shift is at most the
            # padding, less than the image, so one reflection reaches inside
            u, v = mid.unbind(-1)  # Python-number bounds: no tensor built from host data
            u = torch.where(u > half_w, 2 * half_w - u, u)
            u = torch.where(u < -half_w, -2 * half_w - u, u)
            v = torch.where(v > half_h, 2 * half_h - v, v)
            v = torch.where(v < -half_h, -2 * half_h - v, v)
            mid, outside = torch.stack([u, v], dim=-1), None
        elif spec.resized_crop_scale is None:  # pad-crop: outside the frame is the zero padding
            outside = ((mid[..., 0:1].abs() > half_w + 0.25)
                       | (mid[..., 1:2].abs() > half_h + 0.25))
        else:
            # torchvision crops, then resizes with edge clamping: clamp to the box's pixel
            # centres, so the resize never reads outside its box
            top, left, h, w = params.box[:, None, :].unbind(2)
            lo = torch.stack([left - half_w, top - half_h], dim=-1)
            hi = torch.stack([left + w - 1 - half_w, top + h - 1 - half_h], dim=-1)
            mid = torch.maximum(torch.minimum(mid, hi), lo)
        grid = torch.cat([mid, torch.ones_like(mid[..., :1])], -1) @ post[:, :2].transpose(1, 2)
        if spec.resized_crop_scale is None and outside is not None:
            grid = torch.where(outside, -2.0, grid)  # far outside [-1, 1]: grid_sample reads 0
    grid = grid.view(batch, height, width, 2)
    return F.grid_sample(x, grid, mode=spec.interpolation, padding_mode="zeros",
                         align_corners=False)


def grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma with torchvision's weights."""
    return (x[:, 0:1] * GREY[0]).add_(x[:, 1:2], alpha=GREY[1]).add_(x[:, 2:3], alpha=GREY[2])


def _blend_round(x: torch.Tensor, factor: torch.Tensor, op: torch.Tensor) -> torch.Tensor:
    """One jitter round: x * f + ref * (1 - f), clamped, ref chosen per image by ``op``."""
    g = grey(x)
    mean = g.mean(dim=(1, 2, 3), keepdim=True)
    op = op.view(-1, 1, 1, 1)
    # brightness blends with black (0), contrast with the grey mean, saturation with grey
    ref = torch.where(op == CONTRAST, mean, torch.where(op == SATURATION, g, 0.0))
    f = factor.view(-1, 1, 1, 1)
    return (x * f).add_(ref * (1.0 - f)).clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of each image by ``shift`` (B,) turns; exact HSV, as torchvision."""
    maxc, _ = x.max(dim=1, keepdim=True)
    minc, _ = x.min(dim=1, keepdim=True)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, 1.0)
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    # hue in sixths of a turn, chosen by which channel is the maximum (r first, then g)
    h = torch.where(maxc == r, ((g - b) / safe).remainder(6.0),
                    torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = (h + 6.0 * shift.view(-1, 1, 1, 1)).remainder(6.0)
    # HSV -> RGB: channel n in (5, 3, 1) is max - delta * clamp(min(k, 4 - k), 0, 1)
    n = torch.arange(5.0, 0.0, -2.0, device=x.device).view(1, 3, 1, 1)  # (5, 3, 1), on device
    k = (n + h).remainder(6.0)
    return maxc - delta * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def color_jitter(x: torch.Tensor, params: AugmentParams, spec: AugmentSpec) -> torch.Tensor:
    """ColorJitter with each image's own factors and random order (see JitterPlan)."""
    plan = jitter_plan(params)
    for r in range(3):
        x = _blend_round(x, plan.factor[r], plan.op[r])
    if spec.hue:
        x = adjust_hue(x, plan.hue).clamp_(0.0, 1.0)
    for r in range(3, 6):
        x = _blend_round(x, plan.factor[r], plan.op[r])
    return x


def normalization(spec: AugmentSpec, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``spec``'s (mean, std), each float (1, 3, 1, 1) on ``device``, for ``normalize``. Build
    them once (a loader does, at construction): a tensor made from Python numbers on a GPU is a
    blocking host-to-device copy."""
    def channels(values):
        return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1).to(device)

    return channels(spec.mean), channels(spec.std)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel, with (mean, std) from ``normalization``."""
    return (x - mean) / std


def apply_params(x: torch.Tensor, params: AugmentParams, spec: AugmentSpec) -> torch.Tensor:
    """Geometry then jitter on float images in [0, 1]; normalisation is separate."""
    if spec.geometric:
        x = warp(x, params, spec)
    if spec.jitter:
        x = color_jitter(x, params, spec)
    return x


def to_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1], channels_last strides (no copy)."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)
