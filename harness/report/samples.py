"""A few validation images through saved models: the inputs of the CKA and qualitative figures."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from harness.models.base import SegModel, SegOutput


@dataclass
class Sample:
    """One validation image: ``image`` (3, H, W) normalised, ``label`` (H, W) int64, 255 = ignore."""

    image: torch.Tensor
    label: torch.Tensor


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_samples(dataset: str, root: str | Path, split: str, count: int,
                 max_size: tuple[int, int] | None = None) -> list[Sample]:
    """The first ``count`` images of the split, whole (or shrunk to fit ``max_size``) and
    normalised as for evaluation."""
    from harness.data import build_dataset

    data = build_dataset(dataset, root, split, train=False, max_images=count, max_size=max_size)
    return [Sample(*data[i]) for i in range(min(count, len(data)))]


def load(folder: str | Path, dataset: str) -> SegModel:
    """A saved model in eval mode on :func:`device`; refuses one trained on another dataset."""
    from harness.models import load_model

    model, _ = load_model(folder, expect_dataset=dataset)
    return model.to(device()).eval()


@torch.no_grad()
def forward(model: SegModel, sample: Sample) -> SegOutput:
    return model(sample.image.unsqueeze(0).to(device()))


@torch.no_grad()
def predict(model: SegModel, sample: Sample) -> torch.Tensor:
    """Class map (H, W) at the label's size (logits upsampled bilinearly, as in evaluation)."""
    logits = forward(model, sample).logits.float()
    logits = torch.nn.functional.interpolate(logits, size=sample.label.shape[-2:], mode="bilinear",
                                             align_corners=False)
    return logits.argmax(1)[0].cpu()
