"""``speedrun``: a small, fast network for reaching 94 % cheaply, after the ideas of the
fastest public CIFAR-10 trainers (Page's ResNet-9 bag of tricks, tysam's hlb, Jordan's
airbench; docs/speedrun.md), written here from their descriptions:

    whitening   a frozen 2x2 conv whose filters are the PCA of the training set's 2x2 patches,
                scaled to unit variance (and their negatives): decorrelated inputs, so the
                first trainable layers learn faster (``fit_to_data``)
    3 groups    conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU, widths 64/256/256
    identity    each 3x3 conv starts as an identity on its first channels (Dirac), so the
                deep path starts near a shallow one
    BN          scales frozen at 1 (only the shifts learn), high momentum for short runs
    head        global max-pool, one linear layer, logits scaled down (a cooler softmax)

1,972,768 parameters (1,971,328 trained); widths and logit scale are airbench94's. docs/speedrun.md
has the recipe and what each piece was measured to buy.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model

WIDTHS = (64, 256, 256)
WHITEN_KERNEL = 2


class FrozenScaleBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1: only the shift is learned (fewer, better-behaved params).
    ``frozen=False`` (an ablation) learns the scale too."""

    def __init__(self, channels: int, momentum: float = 0.6, eps: float = 1e-12,
                 frozen: bool = True):
        super().__init__(channels, momentum=momentum, eps=eps)
        self.weight.requires_grad_(not frozen)


class ConvGroup(nn.Module):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU; halves the resolution."""

    def __init__(self, in_ch: int, out_ch: int, dirac: bool = True, frozen_bn_scale: bool = True,
                 bn_momentum: float = 0.6):
        super().__init__()
        bn = dict(frozen=frozen_bn_scale, momentum=bn_momentum)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding="same", bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = FrozenScaleBatchNorm2d(out_ch, **bn)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding="same", bias=False)
        self.bn2 = FrozenScaleBatchNorm2d(out_ch, **bn)
        if dirac:
            with torch.no_grad():  # identity init: each conv starts passing its inputs through
                nn.init.dirac_(self.conv1.weight[:in_ch])
                nn.init.dirac_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(self.pool(self.conv1(x))))
        return F.gelu(self.bn2(self.conv2(x)))


class SpeedrunNet(nn.Module):
    """Whitening conv (frozen) -> GELU -> 3 ConvGroups -> global max-pool -> linear.

    The ablation switches: ``whiten=False`` makes the first conv an ordinary learned one (same
    shape, default init, not fitted); ``dirac=False`` keeps the default init of the 3x3 convs;
    ``frozen_bn_scale=False`` learns the BatchNorm scales. ``bn_momentum`` is PyTorch's (the
    weight of the new batch in the running statistics; airbench94's 0.6 means 0.4 here).
    ``whiten_bias_epochs=N`` gives the whitening conv a bias, trained for the first N epochs and
    then frozen (airbench94: 3), at the weights' lr and decay, not the BN shifts'.
    """

    # parameters of < 2 dims that the optimizer treats as weights, not as BN shifts or biases
    trained_like_weights = ("whiten.bias",)

    def __init__(self, num_classes: int = 10, widths=WIDTHS, logit_scale: float = 1 / 9,
                 whiten: bool = True, dirac: bool = True, frozen_bn_scale: bool = True,
                 bn_momentum: float = 0.6, whiten_bias_epochs: int = 0):
        super().__init__()
        if not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], not {bn_momentum}")
        if whiten_bias_epochs < 0:
            raise ValueError(f"whiten_bias_epochs must be >= 0, not {whiten_bias_epochs}")
        channels = 2 * 3 * WHITEN_KERNEL**2  # each PCA filter and its negative
        # its filters are set by fit_to_data, then frozen
        self.whiten = nn.Conv2d(3, channels, WHITEN_KERNEL, padding=0,
                                bias=whiten_bias_epochs > 0)
        if self.whiten.bias is not None:
            nn.init.zeros_(self.whiten.bias)
        self.whiten.weight.requires_grad_(not whiten)
        self.fits_whitening, self.whiten_bias_epochs = whiten, whiten_bias_epochs
        self.groups = nn.Sequential(*(
            ConvGroup(a, b, dirac, frozen_bn_scale, bn_momentum)
            for a, b in zip((channels, *widths[:-1]), widths)))
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.logit_scale = logit_scale

    @torch.no_grad()
    def fit_to_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalised training images (B, 3, H, W)."""
        if not self.fits_whitening:  # the ablation: a learned first layer
            return
        k = WHITEN_KERNEL
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # B, 3, H-1, W-1, k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k).double()
        patches = patches - patches.mean(0)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues[:, None] + eps)).reshape(-1, 3, k, k)
        weight = torch.cat([filters, -filters]).to(self.whiten.weight.dtype)
        self.whiten.weight.copy_(weight)

    def start_epoch(self, epoch: int) -> None:
        """Called before each training epoch (0-based): freezes the whitening bias after its
        epochs (a frozen parameter gets no gradient, so SGD leaves it as it is)."""
        if self.whiten.bias is not None:
            self.whiten.bias.requires_grad_(epoch < self.whiten_bias_epochs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        return self.head(torch.amax(x, dim=(2, 3))) * self.logit_scale


@register_model
def speedrun(num_classes: int = 10, whiten: bool = True, dirac: bool = True,
             frozen_bn_scale: bool = True, bn_momentum: float = 0.6,
             whiten_bias_epochs: int = 0) -> nn.Module:
    """The speedrun network (1,972,768 parameters). It takes no ``norm``: its BatchNorms feed GELU,
    so there is no BN+ReLU to fuse and create_model refuses bn_relu="triton". The switches are
    ablations (SpeedrunNet)."""
    return SpeedrunNet(num_classes, whiten=whiten, dirac=dirac, frozen_bn_scale=frozen_bn_scale,
                       bn_momentum=bn_momentum, whiten_bias_epochs=whiten_bias_epochs)
