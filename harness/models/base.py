"""What every segmentation model returns and declares.

Distillation methods read only :class:`SegOutput` and :class:`ModelInfo`, never a model's
internals, so one method works for any teacher/student pair (CNN <-> Transformer).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class SegOutput:
    """One forward pass.

    logits:          (B, K, h, w) at the model's native output stride (8 for dilated CNNs,
                     4 for SegFormer); upsample to the label size for the task loss.
    features:        encoder stage features, shallow to deep, (B, C_i, H/s_i, W/s_i);
                     smp's zero-channel dummy stages are skipped.
    decoder_feature: (B, C_dec, h, w), the feature the classifier reads (after ASPP/PSP/MLP fuse).
    aux_logits:      (B, K, h3, w3) from an FCN head on stage 3 (ResNet CNNs), else None.
    """

    logits: torch.Tensor
    features: list[torch.Tensor]
    decoder_feature: torch.Tensor
    aux_logits: torch.Tensor | None = None


@dataclass(frozen=True)
class ModelInfo:
    """Static description a distiller is constructed from (channels, strides, classes)."""

    name: str
    family: str  # "cnn" or "transformer"
    num_classes: int
    stage_channels: tuple[int, ...]
    stage_strides: tuple[int, ...]
    decoder_channels: int
    logits_stride: int
    has_aux: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)


class SegModel(nn.Module):
    """Base class: subclasses set ``self.info`` and implement ``forward(x) -> SegOutput``."""

    info: ModelInfo

    def forward(self, images: torch.Tensor) -> SegOutput:  # pragma: no cover - abstract
        raise NotImplementedError
