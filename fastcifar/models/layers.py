"""The building blocks of the Table-1 networks (../shared/spec/ARCHITECTURES.md).

Every "BatchNorm then ReLU" in the networks is built here, by one ``Norm`` pair of classes:
``BatchNormReLU2d`` and ``BatchNormAddReLU2d`` (BatchNorm, add a residual, ReLU). They subclass
``nn.BatchNorm2d``, so their parameters and state-dict keys are BatchNorm's: a fused
implementation (e.g. a Triton kernel) plugs in by registering another pair in BN_RELU_IMPLS (as
"triton" does, on first use), and checkpoints move freely between implementations.
"""

import functools
import importlib.util
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class BatchNormReLU2d(nn.BatchNorm2d):
    """BatchNorm2d followed by ReLU (eager PyTorch: two passes over the activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x))


class BatchNormAddReLU2d(nn.BatchNorm2d):
    """BatchNorm2d of ``x``, plus ``residual``, then ReLU: the end of a ResBlock."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x) + residual)


@dataclass(frozen=True)
class Norm:
    """One implementation of the normalise-and-activate seam."""

    bn_relu: type[nn.BatchNorm2d]
    bn_add_relu: type[nn.BatchNorm2d]


BN_RELU_IMPLS: dict[str, Norm] = {"eager": Norm(BatchNormReLU2d, BatchNormAddReLU2d)}
# "triton": fastcifar.kernels (imported on first use, so that importing the models never needs
# triton); "auto": triton on the GPUs it is tested on (auto_bn_relu), else eager.
BN_RELU_CHOICES = ("eager", "triton", "auto")
# the kernels are tested on sm_90 (Hopper) and written for Ampere and later; older GPUs (T4 7.5,
# V100 7.0) get eager BatchNorm+ReLU from "auto" (an explicit "triton" is still honoured)
TRITON_MIN_CAPABILITY = (8, 0)


def _triton_usable() -> bool:
    # the custom ops need triton and torch.library.triton_op (torch >= 2.6)
    return importlib.util.find_spec("triton") is not None and hasattr(torch.library, "triton_op")


def _triton_impl() -> Norm:
    if not _triton_usable():
        raise ImportError(f"bn_relu='triton' needs the triton package (it comes with the CUDA "
                          f"builds of torch) and torch >= 2.6 (this is {torch.__version__}); "
                          "or use bn_relu='eager'")
    from fastcifar.models.fused import TRITON

    return TRITON


def auto_bn_relu() -> tuple[str, str]:
    """(what bn_relu="auto" picks on this machine, why)."""
    if not torch.cuda.is_available():
        return "eager", "no CUDA device"
    if not _triton_usable():
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


EAGER = BN_RELU_IMPLS["eager"]


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=True)


class ConvBlock(nn.Module):
    """Conv3x3 -> BatchNorm -> ReLU -> MaxPool2d(2): halves the resolution."""

    def __init__(self, in_ch: int, out_ch: int, norm: Norm = EAGER):
        super().__init__()
        self.conv = conv3x3(in_ch, out_ch)
        self.bn = norm.bn_relu(out_ch)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.bn(self.conv(x)))


class ResBlock(nn.Module):
    """Conv3x3 -> BN -> ReLU -> Conv3x3 -> BN, plus a shortcut, then ReLU; keeps the resolution.

    The shortcut is the identity when the width is unchanged, else a 1x1 conv with bias and no
    BatchNorm (a shortcut BatchNorm would break the report's parameter counts).
    """

    def __init__(self, in_ch: int, out_ch: int, norm: Norm = EAGER):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch)
        self.bn1 = norm.bn_relu(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = norm.bn_add_relu(out_ch)
        self.shortcut = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.bn1(self.conv1(x))), self.shortcut(x))


class Head(nn.Sequential):
    """Flatten -> Linear(features, 512) -> ReLU -> Linear(512, classes)."""

    def __init__(self, features: int, num_classes: int = 10, hidden: int = 512):
        super().__init__(
            nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )


class Classifier(nn.Module):
    """``features`` (the convolutional body) then ``head``."""

    def __init__(self, features: nn.Sequential, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
