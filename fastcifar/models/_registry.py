"""Models by name: ``@register_model`` entrypoints, ``create_model`` and ``list_models``."""

import fnmatch
import inspect
from collections.abc import Callable

from torch import nn

from ..fields import on_off
from .norms import BN_RELU_CHOICES, BN_RELU_IMPLS, resolve_bn_relu

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


def _option_value(text: str):
    """on/off/true/false, an int, a float, else the string itself."""
    for kind in (lambda t: on_off(t, digits=False), int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_model_options(text: str) -> dict:
    """``"whiten=off,width=2"`` -> ``{"whiten": False, "width": 2}``; ValueError names a
    malformed item."""
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise ValueError(f"model option {item!r} is not key=value (e.g. whiten=off)")
        options[key] = _option_value(value)
    return options


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
    entry = _MODELS[name]
    takes = set(inspect.signature(entry).parameters)
    unknown = set(opts) - (takes - {"norm"})
    if unknown:
        raise ValueError(f"model {name!r} takes no option {sorted(unknown)}; "
                         f"its options: {', '.join(sorted(takes - {'norm'})) or 'none'}")
    if "norm" in takes:
        return entry(norm=resolve_bn_relu(bn_relu), **opts)
    # a model without a BatchNorm-then-ReLU seam: "auto" and "eager" mean its own layers, an
    # explicit "triton" would be silently ignored, so it is refused
    if bn_relu not in BN_RELU_CHOICES:
        resolve_bn_relu(bn_relu)  # raises, naming the valid choices
    if bn_relu == "triton":
        raise ValueError(f"model {name!r} has no BatchNorm+ReLU for the Triton kernel to fuse; "
                         "use bn_relu 'eager' or 'auto' (--bn-relu eager|auto)")
    return entry(**opts)


__all__ = ["BN_RELU_CHOICES", "BN_RELU_IMPLS", "create_model", "list_models",
           "parse_model_options", "register_model"]
