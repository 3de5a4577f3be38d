"""What to augment, as data: ``AugmentSpec`` and one preset per Table-1 row.

The order is fixed and is the report's torchvision order:
flip -> affine (rotate, shift) -> pad-crop or resized crop -> colour jitter -> normalise.
Both backends read the same spec; the geometric steps are composed into one resampling.
"""

from dataclasses import dataclass, replace

from ..data.constants import MEAN, STD

INTERPOLATIONS = ("nearest", "bilinear")
CROP_FILLS = ("zeros", "reflect")


@dataclass(frozen=True)
class AugmentSpec:
    """One augmentation recipe. Zero (or None) switches a step off; units are torchvision's.

    ``interpolation`` applies to the single composed geometric resampling: torchvision's
    RandomAffine defaults to nearest (the report's rows 2-5); the resized crop (row 6) needs
    bilinear, so its preset uses bilinear for the composed affine + resize.
    """

    flip_p: float = 0.0  # probability of a horizontal flip
    # airbench's alternating flip (train loaders): epoch 0 flips each image at random, every
    # later epoch flips exactly the images the previous one did not, so consecutive epochs see
    # both mirror images instead of a random half twice; needs flip_p = 0.5
    alternate_flip: bool = False
    degrees: float = 0.0  # rotation uniform in [-degrees, degrees], counter-clockwise positive
    translate: tuple[float, float] = (0.0, 0.0)  # max shift as a fraction of (width, height)
    crop_padding: int = 0  # RandomCrop(size, padding=crop_padding); 0 = off
    # what the pad-crop shows beyond the edge: "zeros" (torchvision's RandomCrop) or "reflect"
    # (airbench's: the image mirrored about its edge pixels, as F.pad's reflect mode)
    crop_fill: str = "zeros"
    brightness: float = 0.0  # factor uniform in [1 - b, 1 + b]
    contrast: float = 0.0  # factor uniform in [1 - c, 1 + c]
    saturation: float = 0.0  # factor uniform in [1 - s, 1 + s]
    hue: float = 0.0  # shift uniform in [-h, h] of a full turn (h <= 0.5)
    resized_crop_scale: tuple[float, float] | None = None  # area fraction range; None = off
    resized_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range (w / h)
    interpolation: str = "nearest"
    mean: tuple[float, float, float] = MEAN  # normalisation, per channel, pixels in [0, 1]
    std: tuple[float, float, float] = STD

    def __post_init__(self):
        problems = []
        if not 0.0 <= self.flip_p <= 1.0:
            problems.append(f"flip_p={self.flip_p} is not in [0, 1]")
        if self.alternate_flip and self.flip_p != 0.5:
            problems.append(f"alternate_flip needs flip_p=0.5, not {self.flip_p}")
        if not 0.0 <= self.degrees <= 180.0:
            problems.append(f"degrees={self.degrees} is not in [0, 180]")
        if len(self.translate) != 2 or not all(0.0 <= t <= 1.0 for t in self.translate):
            problems.append(f"translate={self.translate} needs two fractions in [0, 1]")
        if self.crop_padding < 0:
            problems.append(f"crop_padding={self.crop_padding} is negative")
        if self.crop_fill not in CROP_FILLS:
            problems.append(f"crop_fill={self.crop_fill!r} is not one of {CROP_FILLS}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name}={getattr(self, name)} is not in [0, 1)")
        if not 0.0 <= self.hue <= 0.5:
            problems.append(f"hue={self.hue} is not in [0, 0.5]")
        if self.resized_crop_scale is not None:
            lo, hi = self.resized_crop_scale
            if not 0.0 < lo <= hi <= 1.0:
                problems.append(f"resized_crop_scale={self.resized_crop_scale} is not 0<lo<=hi<=1")
            if self.crop_padding:
                problems.append("crop_padding and resized_crop_scale cannot both be on")
        lo, hi = self.resized_crop_ratio
        if not 0.0 < lo <= hi:
            problems.append(f"resized_crop_ratio={self.resized_crop_ratio} is not 0<lo<=hi")
        if self.interpolation not in INTERPOLATIONS:
            problems.append(f"interpolation={self.interpolation!r} is not one of {INTERPOLATIONS}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append("mean and std need three values each, std > 0")
        if problems:
            raise ValueError("invalid AugmentSpec: " + "; ".join(problems))

    @property
    def geometric(self) -> bool:
        """Whether any step moves pixels (so a resampling pass is needed)."""
        return bool(self.flip_p or self.degrees or any(self.translate) or self.crop_padding
                    or self.resized_crop_scale is not None)

    @property
    def jitter(self) -> bool:
        """Whether colour jitter is on."""
        return bool(self.brightness or self.contrast or self.saturation or self.hue)

    def eval_spec(self) -> "AugmentSpec":
        """The same normalisation with every random step off (for evaluation)."""
        return AugmentSpec(mean=self.mean, std=self.std)


_FLIP_AFFINE = AugmentSpec(flip_p=0.5, degrees=5.0, translate=(0.2, 0.2))

# One preset per Table-1 row (docs/report.md); rows 3-5 share one.
PRESETS: dict[str, AugmentSpec] = {
    "none": AugmentSpec(),  # row 1
    "flip_affine": _FLIP_AFFINE,  # row 2
    "flip_affine_crop_jitter": replace(  # rows 3-5
        _FLIP_AFFINE, crop_padding=4, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
    "flip_affine_resized_crop": replace(  # row 6
        _FLIP_AFFINE, resized_crop_scale=(0.8, 1.0), interpolation="bilinear"),
    # the fast recipes': what the fastest public trainers use (flip + translate by pad-crop)
    "flip_crop": AugmentSpec(flip_p=0.5, crop_padding=4),
    # the speedrun's: translate by at most 2 pixels, as airbench does
    "flip_crop2": AugmentSpec(flip_p=0.5, crop_padding=2),
    "altflip_crop2": AugmentSpec(flip_p=0.5, alternate_flip=True, crop_padding=2),
    # airbench94's exactly: the pad-crop's border is the mirrored image, not black
    "altflip_crop2_reflect": AugmentSpec(flip_p=0.5, alternate_flip=True, crop_padding=2,
                                         crop_fill="reflect"),
}


def get_preset(name: str) -> AugmentSpec:
    """The preset called ``name``; ValueError names the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation preset {name!r}; "
                         f"valid: {', '.join(PRESETS)}") from None
