"""Model descriptions and random model outputs for the method tests."""
from __future__ import annotations

import torch

from harness.models.base import ModelInfo, SegOutput


def model_info(name: str, *, stage_channels: tuple[int, ...] = (8, 16), decoder_channels: int = 8,
               classes: int = 3) -> ModelInfo:
    """A two-stage CNN description (strides 4 and 8, logits at 1/8)."""
    return ModelInfo(name=name, family="cnn", num_classes=classes, stage_channels=stage_channels,
                     stage_strides=(4, 8), decoder_channels=decoder_channels, logits_stride=8)


def random_output(gen: torch.Generator, *, logits: tuple[int, ...],
                  features: tuple[tuple[int, ...], ...] = (),
                  decoder: tuple[int, ...] | None = None, grad: bool = True) -> SegOutput:
    """N(0, 1) tensors of the given shapes, drawn from ``gen`` in the order logits, features,
    decoder feature."""
    def draw(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, requires_grad=grad)

    return SegOutput(logits=draw(logits), features=[draw(s) for s in features],
                     decoder_feature=draw(decoder) if decoder is not None else None)
