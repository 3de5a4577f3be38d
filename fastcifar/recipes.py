"""Named training recipes: plain frozen configs, nothing else.

The Table-1 rows follow ../shared/spec/SEED.md exactly: SGD(lr 0.01, momentum 0.9, weight decay
1e-6), cross entropy, batch 100, 100 epochs; rows 2-6 add ReduceLROnPlateau(factor 0.1,
patience 10, min lr 1e-6) on the evaluation loss and each row's augmentation.
"""

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str
    description: str = ""
    epochs: int = 100
    batch_size: int = 100  # images per step
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-6  # PyTorch's coupled L2, on every parameter
    label_smoothing: float = 0.0
    scheduler: str = "none"  # "none" | "plateau"
    plateau_factor: float = 0.1
    plateau_patience: int = 10  # epochs without improvement of the monitored loss
    plateau_min_lr: float = 1e-6
    augment: str = "none"  # an augmentation preset (fastcifar.augment.PRESETS)

    def replace(self, **overrides) -> "Recipe":
        """A copy with ``overrides`` (None values ignored); unknown keys raise."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown recipe fields {sorted(unknown)}; known: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


_PLATEAU = dict(scheduler="plateau")

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("row1_cnn", "cnn", "Table 1 row 1: CNN, no augmentation, constant lr (82.11 %)"),
        Recipe("row2_cnn_aug_plateau", "cnn", "Table 1 row 2: + flip/affine, plateau lr (87.5 %)",
               augment="flip_affine", **_PLATEAU),
        Recipe("row3_resnet_hybrid", "resnet_hybrid",
               "Table 1 row 3: + ResBlocks, crop + colour jitter (88.86 %)",
               augment="flip_affine_crop_jitter", **_PLATEAU),
        Recipe("row4_resnet_avgpool", "resnet_avgpool", "Table 1 row 4: + AvgPool (89.65 %)",
               augment="flip_affine_crop_jitter", **_PLATEAU),
        Recipe("row5_resnet_maxpool", "resnet_maxpool", "Table 1 row 5: + MaxPool (91.74 %)",
               augment="flip_affine_crop_jitter", **_PLATEAU),
        Recipe("row6_resnet_final", "resnet_final",
               "Table 1 row 6: ResNet final, resized crop, no jitter (92.64 %)",
               augment="flip_affine_resized_crop", **_PLATEAU),
    ]
}

# what `--model X` runs when no --recipe is given
DEFAULT_RECIPE = {
    "cnn": "row1_cnn",
    "resnet_hybrid": "row3_resnet_hybrid",
    "resnet_avgpool": "row4_resnet_avgpool",
    "resnet_maxpool": "row5_resnet_maxpool",
    "resnet_final": "row6_resnet_final",
}

TABLE1 = [name for name in RECIPES if name.startswith("row")]


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[name]
