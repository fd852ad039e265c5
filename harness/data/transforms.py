"""Joint image/label transforms built from torchvision.transforms.v2 with tv_tensors.Image/Mask.

Training (docs/protocol.md §Reference protocol): random scale in ``scale_range`` (image
bilinear, mask nearest — v2 resizes a ``tv_tensors.Mask`` with nearest neighbour), normalise,
pad bottom/right up to the crop (image 0 *after* normalisation, i.e. the mean colour; mask
255 = ignore), random crop, horizontal flip. Evaluation: the whole image, normalise only; with
``max_size`` (smoke runs, docs/protocol.md §Smoke scale) image and mask are first shrunk to fit
that size, keeping their aspect ratio.

Normalisation: the references subtract BGR means; our encoders are timm/smp ImageNet models, so
we use their RGB mean/std (recorded in :data:`NORMALIZATION`, which runs record).

All randomness comes from torch's global RNG (v2 transforms draw from it, and so does our random
scale), so the engine's per-worker seeding makes augmentation repeatable.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from harness import IGNORE_INDEX

NORMALIZATION = "imagenet_rgb"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomScale(v2.Transform):
    """Resize image and mask by one factor drawn uniformly from ``scale_range`` (torch RNG)."""

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.scale_range = (float(low), float(high))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        low, high = self.scale_range
        factor = low + (high - low) * torch.rand(()).item()
        height, width = v2.query_size(flat_inputs)
        return {"size": [max(1, round(height * factor)), max(1, round(width * factor))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, params["size"], antialias=True)


class _ToSize(v2.Transform):
    """A transform towards a target ``size`` (H, W)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))


class FitWithin(_ToSize):
    """Shrink image and mask by one factor so they fit ``size`` (H, W); never enlarge."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        factor = min(1.0, self.size[0] / height, self.size[1] / width)
        return {"size": [max(1, round(height * factor)), max(1, round(width * factor))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if list(params["size"]) == list(v2.query_size([inpt])):
            return inpt
        return self._call_kernel(F.resize, inpt, params["size"], antialias=True)


class PadToSize(_ToSize):
    """Pad bottom/right up to ``size`` (H, W): image with 0, mask with the ignore index."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        return {"padding": [0, 0, max(0, self.size[1] - width), max(0, self.size[0] - height)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        fill = IGNORE_INDEX if isinstance(inpt, tv_tensors.Mask) else 0
        return self._call_kernel(F.pad, inpt, params["padding"], fill=fill)


class JointTransform:
    """Numpy uint8 image (H, W, 3) + uint8 label (H, W) -> float (3, h, w) + int64 (h, w)."""

    def __init__(self, pipeline: v2.Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
        # uint8 mask: nearest resize and pad work on it, and 255 fits
        mask = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(label)))
        img, mask = self.pipeline(img, mask)
        return img.as_subclass(torch.Tensor).contiguous(), mask.as_subclass(torch.Tensor).long()

    def __repr__(self) -> str:
        return f"JointTransform({self.pipeline})"


def _to_normalised_float() -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ]


def train_transform(
    crop: tuple[int, int], scale_range: tuple[float, float] = (0.5, 2.0), flip: bool = True
) -> JointTransform:
    """Random scale, normalise, pad to ``crop`` (H, W), random crop, optional horizontal flip."""
    steps: list[v2.Transform] = [RandomScale(scale_range), *_to_normalised_float(),
                                 PadToSize(crop), v2.RandomCrop(crop)]
    if flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    return JointTransform(v2.Compose(steps))


def eval_transform(max_size: tuple[int, int] | None = None) -> JointTransform:
    """Whole image, normalise only; with ``max_size`` (H, W), first shrunk to fit it."""
    fit: list[v2.Transform] = [] if max_size is None else [FitWithin(max_size)]
    return JointTransform(v2.Compose([*fit, *_to_normalised_float()]))


def denormalise(image: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation: (..., 3, H, W) float -> RGB in [0, 1] (for figures)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return image * std + mean
