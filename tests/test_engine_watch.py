"""Watching a run: evaluation leaves the training alone, log.csv grows as the run goes, TensorBoard
event files, progress lines with ETA, images/s and the last val mIoU."""
from __future__ import annotations

import torch

from harness.engine.evaluate import evaluate
from harness.models import build_model


class _Images(torch.utils.data.Dataset):
    num_classes = 3

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        return torch.full((3, 16, 16), float(index)), torch.zeros(16, 16, dtype=torch.long)


def test_evaluation_does_not_advance_the_global_rng() -> None:
    model = build_model("deeplabv3_tiny", 3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    evaluate(model, _Images(), num_classes=3)
    assert torch.equal(torch.get_rng_state(), before)
