"""Named segmentation models (timm-style registry); each returns a :class:`SegOutput`."""
from harness.models.base import ModelInfo, SegModel, SegOutput
from harness.registry import Registry

MODELS: Registry = Registry("model")

__all__ = ["MODELS", "ModelInfo", "SegModel", "SegOutput"]
