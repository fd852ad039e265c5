"""Parameters and forward GFLOPs of a named model, the columns papers put beside mIoU.

FLOPs are counted by ``torch.utils.flop_counter`` (2 per multiply-accumulate, matmuls and
convolutions; element-wise ops count zero), the convention of the cost benchmark
(``harness/bench``); papers quoting mmcv's counter count 1 per multiply-accumulate, half of ours.
The forward runs on the ``meta`` device, so no memory is allocated and no arithmetic is done.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch


@dataclass(frozen=True)
class Complexity:
    params_m: float  # millions of parameters, every module (aux head included)
    gflops: float  # one forward of a (1, 3, H, W) image, 2 FLOPs per multiply-accumulate
    size: tuple[int, int]  # (H, W) the FLOPs were counted at


@cache
def model_complexity(name: str, num_classes: int, size: tuple[int, int]) -> Complexity:
    """Parameters and GFLOPs of model ``name`` with ``num_classes`` outputs on an ``size`` image."""
    from torch.utils.flop_counter import FlopCounterMode

    from harness.models import build_model, count_parameters

    model = build_model(name, num_classes).to("meta").eval()
    image = torch.empty(1, 3, *size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return Complexity(count_parameters(model) / 1e6, counter.get_total_flops() / 1e9, tuple(size))
