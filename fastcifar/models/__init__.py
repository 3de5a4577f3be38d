"""Models by name. ``create_model("resnet_final")``, ``list_models()``."""

from . import speedrun, table1  # noqa: F401  (registers the networks)
from ._registry import (
    BN_RELU_CHOICES,
    BN_RELU_IMPLS,
    create_model,
    list_models,
    parse_model_options,
    register_model,
)
from .layers import BatchNormAddReLU2d, BatchNormReLU2d, Norm

__all__ = [
    "BN_RELU_CHOICES", "BN_RELU_IMPLS", "BatchNormAddReLU2d", "BatchNormReLU2d", "Norm",
    "create_model", "list_models", "parse_model_options", "register_model",
]  # fmt: skip
