"""The task loss every method shares (docs/methods.md §Task loss): computed by the engine."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import IGNORE_INDEX
from harness.models.base import SegOutput


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                   align_corners: bool) -> torch.Tensor:
    """CE of logits (B, K, h, w) upsampled (bilinear, ``align_corners`` as the protocol says)
    to labels (B, H, W), ignore 255, float32.

    Mean over labelled pixels; a batch with none gives 0 rather than torch's NaN (0/0), so an
    all-padding crop is not mistaken for a numerical fault.
    """
    logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear",
                           align_corners=align_corners)
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (labels != IGNORE_INDEX).sum().clamp_min(1)


def task_losses(out_s: SegOutput, labels: torch.Tensor, aux_weight: float,
                align_corners: bool = False) -> dict[str, torch.Tensor]:
    """``loss_task`` and, when the student has aux logits, ``loss_aux = aux_weight * CE(aux)``.

    ``align_corners``: of the logits upsampling (docs/protocol.md §Resizing); the engine passes
    the run's protocol value.

    Always float32: autocast is switched off here so that softmax/CE never run in bf16.
    """
    with torch.autocast(device_type=labels.device.type, enabled=False):
        terms = {"loss_task": _cross_entropy(out_s.logits, labels, align_corners)}
        if out_s.aux_logits is not None and aux_weight > 0:
            terms["loss_aux"] = aux_weight * _cross_entropy(out_s.aux_logits, labels,
                                                            align_corners)
    return terms
