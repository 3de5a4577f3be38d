"""Models by name: ``@register_model`` entrypoints, ``create_model`` and ``list_models``."""

import fnmatch
from collections.abc import Callable

from torch import nn

from .layers import BN_RELU_CHOICES, BN_RELU_IMPLS, resolve_bn_relu

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its own name; names are unique."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def create_model(name: str, bn_relu: str = "eager", **opts) -> nn.Module:
    """Build model ``name``.

    Args:
        name: one of ``list_models()``.
        bn_relu: which implementation runs each "BatchNorm then ReLU": one of BN_RELU_CHOICES
            ("eager", "triton", or "auto" = triton when CUDA is available, else eager).
        **opts: passed to the model's entrypoint (e.g. ``num_classes``).
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    norm = resolve_bn_relu(bn_relu)
    return _MODELS[name](norm=norm, **opts)


__all__ = ["BN_RELU_CHOICES", "BN_RELU_IMPLS", "create_model", "list_models", "register_model"]
