"""CNN segmentation heads as in the CIRKD codebase (winycg/CIRKD, ``models/deeplabv3.py``,
``models/pspnet.py``): ASPP head for DeepLabV3, pyramid-pooling head for PSPNet, FCN aux head.

Every head returns ``(logits, decoder_feature)`` where ``decoder_feature`` is the tensor the final
1x1 classifier reads (CIRKD's ``x_feat_after_aspp`` / PSP ``feature``), the feature that
distillation methods align.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU; ``padding`` keeps the spatial size."""
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3): a 1x1 branch, three dilated 3x3 branches, an
    image-pooling branch, then a 1x1 projection with dropout 0.5 (as CIRKD's ``_ASPP``).

    (B, C_in, h, w) -> (B, C_out, h, w)
    """

    def __init__(self, in_channels: int, out_channels: int, rates: tuple[int, int, int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, out_channels, 1)]
            + [conv_bn_relu(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn_relu(in_channels, out_channels, 1))
        self.project = nn.Sequential(
            conv_bn_relu(5 * out_channels, out_channels, 1),
            nn.Dropout(0.5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [branch(x) for branch in self.branches]
        # A 1x1 map broadcast to the full size: expand is exact and cheaper than interpolation.
        outs.append(self.image_pool(x).expand(-1, -1, *size))
        return self.project(torch.cat(outs, dim=1))


class DeepLabHead(nn.Module):
    """ASPP -> 3x3 conv-BN-ReLU -> dropout 0.1 -> 1x1 classifier (CIRKD ``_DeepLabHead``).

    (B, C_in, h, w) -> logits (B, K, h, w), decoder_feature (B, C_aspp, h, w)
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int,
                 rates: tuple[int, int, int] = (12, 24, 36)) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, channels, rates)
        self.block = conv_bn_relu(channels, channels, 3)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.dropout(self.block(self.aspp(x)))
        return self.classifier(feature), feature


class DeepLabPlusHead(nn.Module):
    """DeepLabV3+ decoder (Chen et al., ECCV 2018): the ASPP output of the last stage, upsampled
    to stage 1 (stride 4) and concatenated with stage 1 reduced by a 1x1 conv-BN-ReLU, then a 3x3
    conv-BN-ReLU, dropout 0.1 and a 1x1 classifier. Logits at stride 4 instead of 8.

    (B, C_in, h, w), stage 1 (B, C_low, 2h, 2w) -> logits (B, K, 2h, 2w), decoder_feature
    (B, C_aspp, 2h, 2w)
    """

    def __init__(self, in_channels: int, low_channels: int, num_classes: int, channels: int,
                 rates: tuple[int, int, int], low_width: int) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, channels, rates)
        self.reduce = conv_bn_relu(low_channels, low_width, 1)
        self.block = conv_bn_relu(channels + low_width, channels, 3)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        high = F.interpolate(self.aspp(x), size=low.shape[-2:], mode="bilinear", align_corners=False)
        feature = self.dropout(self.block(torch.cat([high, self.reduce(low)], dim=1)))
        return self.classifier(feature), feature


class PyramidPooling(nn.Module):
    """PSP module: average-pool to 1/2/3/6 bins, 1x1 conv to C_in/4 each, upsample, concat with the
    input (CIRKD ``_PyramidPooling``).  (B, C, h, w) -> (B, 2C, h, w)
    """

    def __init__(self, in_channels: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.bins = bins
        self.convs = nn.ModuleList(conv_bn_relu(in_channels, in_channels // 4, 1) for _ in bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x]
        for bins, conv in zip(self.bins, self.convs):
            pooled = conv(F.adaptive_avg_pool2d(x, bins))
            outs.append(F.interpolate(pooled, size, mode="bilinear", align_corners=True))
        return torch.cat(outs, dim=1)


class PSPHead(nn.Module):
    """Pyramid pooling -> 3x3 conv-BN-ReLU (2C_in -> channels) -> dropout 0.1 -> 1x1 classifier
    (CIRKD ``_PSPHead``).  (B, C_in, h, w) -> logits (B, K, h, w), decoder_feature (B, channels, h, w)
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int) -> None:
        super().__init__()
        self.psp = PyramidPooling(in_channels)
        self.block = conv_bn_relu(2 * in_channels, channels, 3)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.dropout(self.block(self.psp(x)))
        return self.classifier(feature), feature


class FCNHead(nn.Module):
    """Auxiliary FCN head on stage 3: 3x3 conv to C_in/4, BN, ReLU, dropout 0.1, 1x1 classifier
    (CIRKD ``_FCNHead``).  (B, C_in, h, w) -> (B, K, h, w)
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            conv_bn_relu(in_channels, in_channels // 4, 3),
            nn.Dropout(0.1),
            nn.Conv2d(in_channels // 4, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)
