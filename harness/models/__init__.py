"""Named segmentation models (timm-style registry); each returns a :class:`SegOutput`.

Paper models: ``deeplabv3_r101`` (teacher), ``deeplabv3_r18``, ``deeplabv3_mbv2``, ``pspnet_r18``
(dilated CNNs, logits at 1/8, harness/models/cnn.py) and ``segformer_b4`` (teacher),
``segformer_b1``, ``segformer_b0`` (MiT + all-MLP decoder, logits at 1/4,
harness/models/segformer.py). Demo models for the built-in dataset on CPU: ``deeplabv3_tiny`` /
``segformer_tiny`` (students) and ``deeplabv3_small`` / ``segformer_small`` (teachers).

Demo model cost, measured (torch 2.14.1 CPU, 1 thread, fp32, batch 8 at 64x128, K=11, train mode,
median of 7 runs after 2 warm-ups; on the shared 2-core dev machine):

==================  ============  =======  ==============  ==============
model               role          params   forward (ms)    fwd+bwd (ms)
==================  ============  =======  ==============  ==============
deeplabv3_tiny      CNN student   0.205M   24.0            56.9
deeplabv3_small     CNN teacher   0.689M   45.4            111.0
segformer_tiny      TF student    0.436M   16.5            55.4
segformer_small     TF teacher    3.172M   56.9            150.7
==================  ============  =======  ==============  ==============

Budgets: student fwd+bwd <= ~80 ms, teacher forward <= ~60 ms and fwd+bwd <= ~250 ms. Measured
with load average ~1.5 on the 2 cores; under heavier contention (load ~2.6) the same script gave
about twice these times. Re-measure with a script that calls build_model(name, 11) and times
``model(x)`` / ``model(x).logits.mean().backward()`` for x of shape (8, 3, 64, 128).
"""
import torch

from harness.models.base import ModelInfo, SegModel, SegOutput
from harness.registry import Registry

MODELS: Registry = Registry("model")

# Imported after MODELS exists: these modules register their builders into it.
from harness.models import cnn, segformer  # noqa: E402,F401
from harness.models.checkpoint import (  # noqa: E402
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
