"""The five networks of the report's Table 1 (rows 1 and 2 share ``cnn``), exactly as specified
in docs/architectures.md; each entrypoint only chooses blocks and widths."""

from torch import nn

from ._registry import register_model
from .layers import EAGER, Classifier, ConvBlock, Head, Norm, ResBlock


def _conv_blocks(widths: list[int], norm: Norm) -> list[nn.Module]:
    return [ConvBlock(i, o, norm) for i, o in zip(widths[:-1], widths[1:], strict=True)]


@register_model
def cnn(norm: Norm = EAGER, num_classes: int = 10) -> nn.Module:
    """Rows 1-2: ConvBlock x 5 (32x32 -> 1x1), Head(512). 1,838,346 parameters."""
    body = _conv_blocks([3, 32, 64, 128, 256, 512], norm)
    return Classifier(nn.Sequential(*body), Head(512, num_classes))


@register_model
def resnet_hybrid(norm: Norm = EAGER, num_classes: int = 10) -> nn.Module:
    """Row 3: ConvBlock x 3 (to 4x4), ResBlock 128->256->512 at 4x4, Head(8192). 8,886,538."""
    body = _conv_blocks([3, 32, 64, 128], norm)
    body += [ResBlock(128, 256, norm), ResBlock(256, 512, norm)]
    return Classifier(nn.Sequential(*body), Head(512 * 4 * 4, num_classes))


@register_model
def resnet_avgpool(norm: Norm = EAGER, num_classes: int = 10) -> nn.Module:
    """Row 4: as row 3, then AvgPool2d(4), Head(512). 4,954,378 parameters."""
    body = _conv_blocks([3, 32, 64, 128], norm)
    body += [ResBlock(128, 256, norm), ResBlock(256, 512, norm), nn.AvgPool2d(4)]
    return Classifier(nn.Sequential(*body), Head(512, num_classes))


@register_model
def resnet_maxpool(norm: Norm = EAGER, num_classes: int = 10) -> nn.Module:
    """Row 5: ResBlock x 3 at 32x32, MaxPool2d(4), ResBlock x 2 at 8x8, AvgPool2d(8). 5,159,146."""
    body = [
        ResBlock(3, 32, norm), ResBlock(32, 64, norm), ResBlock(64, 128, norm), nn.MaxPool2d(4),
        ResBlock(128, 256, norm), ResBlock(256, 512, norm), nn.AvgPool2d(8),
    ]  # fmt: skip
    return Classifier(nn.Sequential(*body), Head(512, num_classes))


@register_model
def resnet_final(norm: Norm = EAGER, num_classes: int = 10) -> nn.Module:
    """Row 6: ResBlock x 3 at 32x32, MaxPool2d(2), ResBlock at 16x16, MaxPool2d(2), ResBlock at
    8x8, AvgPool2d(8). 5,159,146 parameters; two 2x2 pools instead of one 4x4."""
    body = [
        ResBlock(3, 32, norm), ResBlock(32, 64, norm), ResBlock(64, 128, norm), nn.MaxPool2d(2),
        ResBlock(128, 256, norm), nn.MaxPool2d(2), ResBlock(256, 512, norm), nn.AvgPool2d(8),
    ]  # fmt: skip
    return Classifier(nn.Sequential(*body), Head(512, num_classes))
