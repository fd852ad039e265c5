"""What every segmentation model returns and declares.

Distillation methods read only :class:`SegOutput` and :class:`ModelInfo`, never a model's
internals, so one method works for any teacher/student pair (CNN <-> Transformer).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from harness.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from harness.models.reference_formats import CIRKD_BGR, CIRKD_BGR_MEAN, IMAGENET_RGB

INPUT_SPACES = (IMAGENET_RGB, CIRKD_BGR)


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


def imagenet_rgb_to_cirkd_bgr(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB normalised with the ImageNet mean/std -> CIRKD's input: BGR in 0..255
    minus CIRKD's mean (docs/protocol.md §Imported checkpoints)."""
    def column(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)

    rgb = (images * column(IMAGENET_STD) + column(IMAGENET_MEAN)) * 255
    return rgb.flip(1) - column(CIRKD_BGR_MEAN)


class SegModel(nn.Module):
    """Base class: subclasses set ``self.info`` and implement ``forward(x) -> SegOutput``,
    passing ``x`` through :meth:`adapt_input` first."""

    info: ModelInfo
    #: The input the weights were trained on; forward() always receives imagenet_rgb images (the
    #: data pipeline's) and converts them. Imported CIRKD checkpoints set CIRKD_BGR; saved in
    #: config.json by save_model and restored by load_model.
    input_space: str = IMAGENET_RGB

    def adapt_input(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.input_space == IMAGENET_RGB else imagenet_rgb_to_cirkd_bgr(images)

    def forward(self, images: torch.Tensor) -> SegOutput:  # pragma: no cover - abstract
        raise NotImplementedError
