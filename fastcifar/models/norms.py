"""Which implementation runs every "BatchNorm then ReLU": eager PyTorch, or the fused Triton pair.

``resolve_bn_relu(name)`` turns a ``bn_relu`` choice into a ``layers.Norm`` pair. The Triton pair
(``fused``) is imported on first use, so that importing the models never needs triton; the
dependencies run norms -> fused -> layers and kernels, never back.
"""

import functools
import importlib.util
import warnings

import torch

from ..options import BN_RELU_CHOICES
from .layers import EAGER, Norm

BN_RELU_IMPLS: dict[str, Norm] = {"eager": EAGER}
# "triton": fastcifar.kernels (imported on first use, so that importing the models never needs
# triton); "auto": triton on the GPUs it is tested on (auto_bn_relu), else eager.
# the kernels are tested on sm_90 (Hopper) and written for Ampere and later; older GPUs (T4 7.5,
# V100 7.0) get eager BatchNorm+ReLU from "auto" (an explicit "triton" is still honoured)
TRITON_MIN_CAPABILITY = (8, 0)


def triton_usable() -> bool:
    # the custom ops need triton and torch.library.triton_op (torch >= 2.6)
    return importlib.util.find_spec("triton") is not None and hasattr(torch.library, "triton_op")


def _triton_impl() -> Norm:
    if not triton_usable():
        raise ImportError(f"bn_relu='triton' needs the triton package (it comes with the CUDA "
                          f"builds of torch) and torch >= 2.6 (this is {torch.__version__}); "
                          "or use bn_relu='eager'")
    from fastcifar.models.fused import TRITON

    return TRITON


def auto_bn_relu() -> tuple[str, str]:
    """(what bn_relu="auto" picks on this machine, why)."""
    if not torch.cuda.is_available():
        return "eager", "no CUDA device"
    if not triton_usable():
        return "eager", f"no triton or torch.library.triton_op in torch {torch.__version__}"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < TRITON_MIN_CAPABILITY:
        return "eager", (f"this GPU is compute capability {major}.{minor}; the Triton kernels "
                         f"are tested on {'.'.join(map(str, TRITON_MIN_CAPABILITY))} and later")
    return "triton", f"compute capability {major}.{minor} with triton"


@functools.cache  # once per process and reason: models are built more than once per run
def _note_once(message: str) -> None:
    warnings.warn(message, stacklevel=4)


def resolve_bn_relu(name: str) -> Norm:
    if name not in BN_RELU_CHOICES:
        raise ValueError(f"unknown bn_relu {name!r}; choose one of: {', '.join(BN_RELU_CHOICES)}")
    if name == "auto":
        name, reason = auto_bn_relu()
        if name == "eager" and torch.cuda.is_available():  # a GPU without the kernel: say why
            _note_once(f"bn_relu='auto' runs eager BatchNorm+ReLU: {reason}")
    if name not in BN_RELU_IMPLS:
        BN_RELU_IMPLS[name] = _triton_impl()
    return BN_RELU_IMPLS[name]

