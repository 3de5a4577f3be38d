"""``speedrun``: a small, fast network for reaching 94 % cheaply (issue 7), after the ideas of the
fastest public CIFAR-10 trainers (Page's ResNet-9 bag of tricks, tysam's hlb, Jordan's
airbench; ../shared/notes/ANCHORS.md), written here from their descriptions:

    whitening   a frozen 2x2 conv whose filters are the PCA of the training set's 2x2 patches,
                scaled to unit variance (and their negatives): decorrelated inputs, so the
                first trainable layers learn faster (``fit_to_data``)
    3 groups    conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU, widths 64/256/256
    identity    the second conv of each group starts as an identity on its first channels
                (Dirac), so the deep path starts near a shallow one
    BN          scales frozen at 1 (only the shifts learn), high momentum for short runs
    head        global max-pool, one linear layer, logits scaled down (a cooler softmax)

About 1.97 M parameters; widths and scaling are this project's choices, not measured optima.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model
from .layers import EAGER, Norm

WIDTHS = (64, 256, 256)
WHITEN_KERNEL = 2


class FrozenScaleBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1: only the shift is learned (fewer, better-behaved params)."""

    def __init__(self, channels: int, momentum: float = 0.6, eps: float = 1e-12):
        super().__init__(channels, momentum=momentum, eps=eps)
        self.weight.requires_grad_(False)


class ConvGroup(nn.Module):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU; halves the resolution."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding="same", bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = FrozenScaleBatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding="same", bias=False)
        self.bn2 = FrozenScaleBatchNorm2d(out_ch)
        with torch.no_grad():  # identity init: each conv starts passing its inputs through
            nn.init.dirac_(self.conv1.weight[:in_ch])
            nn.init.dirac_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(self.pool(self.conv1(x))))
        return F.gelu(self.bn2(self.conv2(x)))


class SpeedrunNet(nn.Module):
    """Whitening conv (frozen) -> GELU -> 3 ConvGroups -> global max-pool -> linear."""

    def __init__(self, num_classes: int = 10, widths=WIDTHS, logit_scale: float = 1 / 9):
        super().__init__()
        channels = 2 * 3 * WHITEN_KERNEL**2  # each PCA filter and its negative
        # set by fit_to_data, then frozen; no bias (it would join the BN shifts' 64x lr)
        self.whiten = nn.Conv2d(3, channels, WHITEN_KERNEL, padding=0, bias=False)
        self.whiten.weight.requires_grad_(False)
        self.groups = nn.Sequential(
            ConvGroup(channels, widths[0]), ConvGroup(widths[0], widths[1]),
            ConvGroup(widths[1], widths[2]))
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.logit_scale = logit_scale

    @torch.no_grad()
    def fit_to_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalised training images (B, 3, H, W)."""
        k = WHITEN_KERNEL
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # B, 3, H-1, W-1, k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k).double()
        patches = patches - patches.mean(0)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues[:, None] + eps)).reshape(-1, 3, k, k)
        weight = torch.cat([filters, -filters]).to(self.whiten.weight.dtype)
        self.whiten.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        return self.head(torch.amax(x, dim=(2, 3))) * self.logit_scale


@register_model
def speedrun(norm: Norm = EAGER, num_classes: int = 10) -> nn.Module:
    """The issue-7 network (about 1.97 M parameters); ``norm`` is unused: it has no BN+ReLU."""
    return SpeedrunNet(num_classes)
