"""KD: pixel-wise logit distillation (Hinton et al., "Distilling the Knowledge in a Neural
Network", 2015), in the form used by the CIRKD and Af-DCD codebases.

docs/methods.md §KD: ``L_kd = T^2 / N * sum_pixels KL(p_t || p_s)`` on the student's
native-resolution logits, the teacher's logits bilinearly resized to the student's grid.
The references take ``N`` = every pixel of that map, ignored ones included; that stays the
default, and ``ignore_aware=True`` averages over non-ignored pixels only (labels
nearest-resized to the logits grid).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.methods.base import METHODS, Distiller
from harness.methods.base import Options as BaseOptions
from harness.methods.common import (
    fp32,
    loss_precision,
    masked_mean,
    pixel_kl,
    resize_labels,
    resize_to,
    valid_mask,
)
from harness.models.base import SegOutput


@dataclass(frozen=True)
class Options(BaseOptions):
    temperature: float = 1.0  # docs/methods.md §KD: T = 1 (CIRKD and Af-DCD defaults)
    weight: float = 1.0  # docs/methods.md §KD: 1.0 (Af-DCD uses 0.5 on ADE20K / COCO-Stuff)
    ignore_aware: bool = False  # docs/methods.md §KD: references average over all pixels


def kd_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, temperature: float = 1.0,
            valid: torch.Tensor | None = None) -> torch.Tensor:
    """``T^2 * mean KL(softmax(Z_t/T) || softmax(Z_s/T))`` over pixels, float32.

    logits_s, logits_t: (B, K, H, W) on the same grid.
    valid: optional bool (B, H, W); if given, the mean runs over valid pixels only, else over
    all B*H*W pixels (the references' reduction).
    """
    kl = pixel_kl(logits_t, logits_s, temperature)  # (B, H, W), float32
    scale = temperature ** 2
    if valid is None:
        return scale * kl.mean()
    return scale * masked_mean(kl, valid)


def kd_on_outputs(logits_s: torch.Tensor, logits_t: torch.Tensor, labels: torch.Tensor,
                  temperature: float, ignore_aware: bool) -> torch.Tensor:
    """:func:`kd_loss` for raw model outputs: teacher resized to the student's grid, teacher
    detached, labels (B, H_img, W_img) resized when ``ignore_aware``. Shared with HeteroAKD."""
    size = tuple(logits_s.shape[-2:])
    with loss_precision(logits_s.device.type):
        logits_s, logits_t = fp32(logits_s, logits_t.detach())
        logits_t = resize_to(logits_t, size)
        valid = valid_mask(resize_labels(labels, size)) if ignore_aware else None
        return kd_loss(logits_s, logits_t, temperature, valid)


@METHODS.register("kd")
class KD(Distiller):
    """Pixel KD on the final logits; no trainable parameters."""

    label = "KD"

    Options = Options
    presets = {
        "reference": {},  # CIRKD / Af-DCD (Cityscapes, VOC, CamVid)
        "afdcd_ade20k": {"weight": 0.5},  # Af-DCD on ADE20K / COCO-Stuff
        "ignore_aware": {"ignore_aware": True},
    }

    def forward(
        self, out_s: SegOutput, out_t: SegOutput | None, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        opts = self.options
        loss = kd_on_outputs(out_s.logits, out_t.logits, labels, opts.temperature,
                             opts.ignore_aware)
        return {"loss_kd": opts.weight * loss}
