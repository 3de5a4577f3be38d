"""The building blocks of the Table-1 networks (docs/architectures.md).

Every "BatchNorm then ReLU" in the networks is built here, by one ``Norm`` pair of classes:
``BatchNormReLU2d`` and ``BatchNormAddReLU2d`` (BatchNorm, add a residual, ReLU). They subclass
``nn.BatchNorm2d``, so their parameters and state-dict keys are BatchNorm's: a fused
implementation (the Triton pair of ``fused``) is another ``Norm`` pair, chosen by name in
``norms``, and checkpoints move freely between implementations.
"""

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


EAGER = Norm(BatchNormReLU2d, BatchNormAddReLU2d)


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
