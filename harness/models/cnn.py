"""Dilated CNNs at output stride 8: DeepLabV3 (ASPP) and PSPNet on timm encoders.

Encoders come from ``timm.create_model(..., features_only=True, output_stride=8)``. We use timm
rather than smp's own ResNet encoders because smp's ``make_dilated`` sets the dilation of every
conv in a stage, while the reference (CIRKD's dilated ResNetV1s, torchvision's
``replace_stride_with_dilation``) keeps the first block of a dilated stage at the previous rate:
layer3 = 1,2,2,...  and layer4 = 2,4,4. timm's ResNet does exactly that (``first_dilation``).

ResNets use the CIRKD "v1s" deep stem (three 3x3 convs, 64-64-128), so a CIRKD ImageNet file maps
1:1 after renaming. Head widths follow the CIRKD code of its papers (2022-2023): ASPP 256 for
ResNet-101, 128 for ResNet-18 and MobileNetV2; PSP projection 128 for ResNet-18. CIRKD's 2025 code
widened the DeepLabV3 ASPP/head to 512 for both ResNets: ``deeplabv3_r101_w512`` and
``deeplabv3_r18_w512`` hold checkpoints trained with it (harness/models/reference_formats.py maps
the reference key names). ResNet models carry the FCN aux head on stage 3
(CIRKD ``aux=True``); MobileNetV2 has none (CIRKD's ``deeplabv3_mobile`` has no aux head).

Parameter counts (K=19, asserted in tests/test_models.py) against the references (CIRKD paper /
README):
``deeplabv3_r101`` 61.12M (ref 61.1M), ``deeplabv3_r18`` 13.61M (13.6M), ``deeplabv3_mbv2``
3.23M (3.2M), ``pspnet_r18`` 12.92M (12.9M).

Demo models (fast on CPU for the built-in dataset, batch 8 at 64x128, fp32, 1 thread; their
times are in the README): ``deeplabv3_tiny`` (student) and ``deeplabv3_small``
(teacher) are BasicBlock ResNets with reduced width/depth, OS8, small ASPP, aux head; the
teacher's head is DeepLabV3+'s (logits at stride 4, see ``deeplabv3_small``). Their ASPP rates
(2, 4, 6) are the paper's (12, 24, 36) rescaled to the 8x16 stride-8 map of a 64x128 image (the
paper's rates on a 64x128 map at 512x1024 are ~1/5 to 1/2 of the map height).
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from harness.models import MODELS
from harness.models.base import ModelInfo, SegModel, SegOutput
from harness.models.heads import DeepLabHead, DeepLabPlusHead, FCNHead, PSPHead

# Stage features handed to distillers: the 4 main stages (stride 4, 8, 8, 8 at OS8).
_RESNET_STAGES = (1, 2, 3, 4)  # timm feature indices: layer1..layer4 (0 is the stride-2 stem)
_MBV2_STAGES = (1, 2, 3, 4)  # blocks at stride 4, 8, 16->8, 32->8 (0 is stride 2)
_OS8_STRIDES = (4, 8, 8, 8)


class DilatedCNN(SegModel):
    """Encoder (timm, OS8) -> head on the last stage (+ FCN aux head on stage 3).

    forward: images (B, 3, H, W) -> SegOutput with logits (B, K, H/8, W/8), or (B, K, H/4, W/4)
    with a DeepLabV3+ head, which also reads stage 1.
    """

    def __init__(self, name: str, encoder: nn.Module, head: nn.Module, aux_head: nn.Module | None,
                 num_classes: int, decoder_channels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self._fuses_stage1 = isinstance(head, DeepLabPlusHead)
        self.aux_head = aux_head
        self.info = ModelInfo(
            name=name,
            family="cnn",
            num_classes=num_classes,
            stage_channels=tuple(encoder.feature_info.channels()),
            stage_strides=_OS8_STRIDES,
            decoder_channels=decoder_channels,
            logits_stride=4 if self._fuses_stage1 else 8,
            has_aux=aux_head is not None,
        )

    def forward(self, images: torch.Tensor) -> SegOutput:
        features = self.encoder(self.adapt_input(images))
        if self._fuses_stage1:
            logits, decoder_feature = self.head(features[-1], features[0])
        else:
            logits, decoder_feature = self.head(features[-1])
        aux_logits = self.aux_head(features[2]) if self.aux_head is not None else None
        return SegOutput(logits=logits, features=list(features),
                         decoder_feature=decoder_feature, aux_logits=aux_logits)


def resnet_encoder(layers: tuple[int, ...], bottleneck: bool,
                   channels: tuple[int, ...] = (64, 128, 256, 512), stem_width: int = 64) -> nn.Module:
    """timm ResNet with CIRKD's deep stem, dilated to OS8, returning layer1..layer4.

    The variant name only picks timm's builder; ``block``/``layers`` override its defaults, which
    is how the reduced demo ResNets are made with timm's own dilation logic.
    """
    return timm.create_model(
        "resnet101" if bottleneck else "resnet18", pretrained=False, features_only=True,
        out_indices=_RESNET_STAGES, output_stride=8, layers=layers, channels=channels,
        stem_type="deep", stem_width=stem_width,
    )


def _deeplab(name: str, num_classes: int, encoder: nn.Module, channels: int,
             rates: tuple[int, int, int] = (12, 24, 36), aux: bool = True) -> DilatedCNN:
    stage_channels = encoder.feature_info.channels()
    head = DeepLabHead(stage_channels[-1], num_classes, channels, rates)
    aux_head = FCNHead(stage_channels[2], num_classes) if aux else None
    return DilatedCNN(name, encoder, head, aux_head, num_classes, channels)


@MODELS.register("deeplabv3_r101")
def deeplabv3_r101(num_classes: int) -> DilatedCNN:
    """DeepLabV3-ResNet101 (teacher), ASPP 256, aux head; ~61.1M params at K=19."""
    return _deeplab("deeplabv3_r101", num_classes, resnet_encoder((3, 4, 23, 3), bottleneck=True), 256)


@MODELS.register("deeplabv3_r18")
def deeplabv3_r18(num_classes: int) -> DilatedCNN:
    """DeepLabV3-ResNet18 (student), ASPP 128 as CIRKD, aux head."""
    return _deeplab("deeplabv3_r18", num_classes, resnet_encoder((2, 2, 2, 2), bottleneck=False), 128)


@MODELS.register("deeplabv3_r101_w512")
def deeplabv3_r101_w512(num_classes: int) -> DilatedCNN:
    """DeepLabV3-ResNet101 with the 512-channel ASPP/head of CIRKD's 2025 code (``models/deeplabv3.py``)."""
    return _deeplab("deeplabv3_r101_w512", num_classes, resnet_encoder((3, 4, 23, 3), bottleneck=True), 512)


@MODELS.register("deeplabv3_r18_w512")
def deeplabv3_r18_w512(num_classes: int) -> DilatedCNN:
    """DeepLabV3-ResNet18 with the 512-channel ASPP/head of CIRKD's 2025 code."""
    return _deeplab("deeplabv3_r18_w512", num_classes, resnet_encoder((2, 2, 2, 2), bottleneck=False), 512)


@MODELS.register("deeplabv3_mbv2")
def deeplabv3_mbv2(num_classes: int) -> DilatedCNN:
    """DeepLabV3-MobileNetV2 (student), ASPP 128 on the 320-channel last block, no aux head."""
    encoder = timm.create_model("mobilenetv2_100", pretrained=False, features_only=True,
                                out_indices=_MBV2_STAGES, output_stride=8)
    return _deeplab("deeplabv3_mbv2", num_classes, encoder, 128, aux=False)


@MODELS.register("pspnet_r18")
def pspnet_r18(num_classes: int) -> DilatedCNN:
    """PSPNet-ResNet18 (student), pyramid pooling 1/2/3/6, projection 128, aux head."""
    encoder = resnet_encoder((2, 2, 2, 2), bottleneck=False)
    stage_channels = encoder.feature_info.channels()
    head = PSPHead(stage_channels[-1], num_classes, 128)
    return DilatedCNN("pspnet_r18", encoder, head, FCNHead(stage_channels[2], num_classes),
                      num_classes, 128)


@MODELS.register("deeplabv3_tiny")
def deeplabv3_tiny(num_classes: int) -> DilatedCNN:
    """Demo CNN student: BasicBlock ResNet, blocks 1-1-1-1, widths 16-32-48-64, stem 8-8-16, ASPP 32."""
    encoder = resnet_encoder((1, 1, 1, 1), bottleneck=False, channels=(16, 32, 48, 64), stem_width=8)
    return _deeplab("deeplabv3_tiny", num_classes, encoder, 32, rates=(2, 4, 6))


@MODELS.register("deeplabv3_small")
def deeplabv3_small(num_classes: int) -> DilatedCNN:
    """Demo CNN teacher: BasicBlock ResNet, blocks 1-1-2-1, widths 16-32-64-128, stem 8-8-16, ASPP
    64, and a DeepLabV3+ decoder that fuses stage 1 (16 channels), so its logits are at stride 4.

    At output stride 8 a 64x128 image gives an 8x16 logit map, which caps mIoU on toycity's 3-4 px
    poles and persons near what the teacher already reached (README, "What the demo shows"); the
    stride-4 decoder lifts that cap for ~12 % more compute. Widths are bounded by the CPU budget
    (forward + backward ~95 ms for batch 8 at 64x128, 1 thread).
    """
    encoder = resnet_encoder((1, 1, 2, 1), bottleneck=False, channels=(16, 32, 64, 128), stem_width=8)
    stage_channels = encoder.feature_info.channels()
    head = DeepLabPlusHead(stage_channels[-1], stage_channels[0], num_classes, 64, (2, 4, 6), low_width=16)
    return DilatedCNN("deeplabv3_small", encoder, head, FCNHead(stage_channels[2], num_classes),
                      num_classes, 64)
