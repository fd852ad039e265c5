"""Named segmentation models (timm-style registry); each returns a :class:`SegOutput`.

Paper models: ``deeplabv3_r101`` (teacher), ``deeplabv3_r18``, ``deeplabv3_mbv2``, ``pspnet_r18``
(dilated CNNs, logits at 1/8, harness/models/cnn.py) and ``segformer_b4`` (teacher),
``segformer_b1``, ``segformer_b0`` (MiT + all-MLP decoder, logits at 1/4,
harness/models/segformer.py). Demo models for the built-in dataset on CPU: ``deeplabv3_tiny`` /
``segformer_tiny`` (students) and ``deeplabv3_small`` / ``segformer_small`` (teachers).

Their cost (parameters, forward and forward + backward times) is in the README.
"""
import torch

from harness.models.base import ModelInfo, SegModel, SegOutput
from harness.registry import Registry

MODELS: Registry = Registry("model")

# Imported after MODELS exists: these modules register their builders into it.
from harness.models import cnn, segformer  # noqa: E402,F401
from harness.models.saved import (  # noqa: E402
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_encoder_weights,
    load_model,
    save_model,
)


def build_model(name: str, num_classes: int, pretrained: str | None = None) -> SegModel:
    """Build a registered model with random weights (never downloads); ``pretrained`` is an
    optional local safetensors/.pth file of encoder weights (CheckpointError if it does not fit).
    An unknown ``name`` raises the registry's error listing the valid names."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    model = MODELS.get(name)(num_classes)
    if pretrained is not None:
        load_encoder_weights(model.encoder, pretrained, label=name)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not; BN running stats are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "ModelInfo", "SegModel", "SegOutput", "build_model", "save_model",
           "load_model", "load_encoder_weights", "count_parameters", "CONFIG_FILE", "WEIGHTS_FILE"]
