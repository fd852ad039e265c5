"""OFA-KD, dense port (Hao et al., "One-for-All: Bridge the Gap Between Heterogeneous
Architectures in Knowledge Distillation", NeurIPS 2023). Optional heterogeneous reference.

docs/methods.md §OFA-KD. Per selected student stage a head projects the stage feature to
class logits; every head, and the student's final logits, imitate the teacher's final logits
with the OFA loss ``L = -sum_c ((p_t + y)^eps - y) * log p_s`` (``y`` one-hot label, no
``T^2``). The classification method pools; this dense port keeps the spatial map and skips
ignored pixels (mean over non-ignored pixels).

Interpretation choices (options):
- heads are the shared 1x1 ``Projector`` (``mlp``: conv C->D, BN, ReLU, conv D->K) instead of
  OFA's stacks of student-type blocks, which have no dense counterpart for every pair;
- each head's map is bilinearly upsampled to the student's final-logits grid, and the teacher's
  logits resized to that grid, so every branch is compared at the same resolution;
- ``stages`` default: the last four stages (OFA attaches a branch to each of the 4 stages);
- ``include_final``: the final logits get the same loss (OFA does this), key ``loss_ofa_final``;
  branch ``i`` gives ``loss_ofa_s<i>``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
from harness.methods.base import METHODS, Distiller
from harness.methods.base import Options as BaseOptions
from harness.methods.common import (
    Projector,
    fp32,
    loss_precision,
    masked_mean,
    one_hot,
    resize_labels,
    resize_to,
    valid_mask,
)
from harness.models.base import ModelInfo, SegOutput


@dataclass(frozen=True)
class Options(BaseOptions):
    stages: tuple[int, ...] = (-4, -3, -2, -1)  # OFA: a branch on each of the 4 stages
    hidden: int = 256  # head width D: our choice (OFA's heads are model-type blocks)
    eps: float = 1.0  # OFA default exponent
    temperature: float = 1.0  # OFA default
    weight: float = 1.0  # OFA default loss weight
    include_final: bool = True  # OFA also applies the loss to the student's final output


def ofa_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, labels: torch.Tensor,
             eps: float = 1.0, temperature: float = 1.0) -> torch.Tensor:
    """Dense OFA loss, float32.

    logits_s, logits_t: (B, K, H, W) on one grid; labels (B, H, W) on that grid (255 ignore).
    Per pixel ``-sum_c ((p_t + y)^eps - y)_c * log p_s_c``; mean over non-ignored pixels.
    """
    logits_s, logits_t = fp32(logits_s, logits_t.detach())
    target = one_hot(labels, logits_s.shape[1])
    p_t = torch.softmax(logits_t / temperature, dim=1)
    log_p_s = F.log_softmax(logits_s / temperature, dim=1)
    per_pixel = -(((p_t + target) ** eps - target) * log_p_s).sum(1)
    return masked_mean(per_pixel, valid_mask(labels))


@METHODS.register("ofa")
class OFA(Distiller):
    """Per-stage logits heads + final logits, all imitating the teacher's final logits."""

    label = "OFA"

    Options = Options
    presets = {"reference": {}}

    def __init__(self, student: ModelInfo, teacher: ModelInfo | None, options: Options) -> None:
        super().__init__(student, teacher, options)
        count = len(student.stage_channels)
        stages = []
        for index in options.stages:
            if not -count <= index < count:
                raise ConfigError(
                    f"ofa stage index {index} is out of range for {student.name} ({count} "
                    f"stages); use indices in [{-count}, {count - 1}]")
            stages.append(index % count)
        self.stages = stages
        self.heads = nn.ModuleList(
            Projector(student.stage_channels[i], student.num_classes, options.hidden, "mlp")
            for i in stages)

    def forward(
        self, out_s: SegOutput, out_t: SegOutput | None, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        opts = self.options
        size = tuple(out_s.logits.shape[-2:])
        branches = {f"loss_ofa_s{i}": head(out_s.features[i])
                    for i, head in zip(self.stages, self.heads)}
        if opts.include_final:
            branches["loss_ofa_final"] = out_s.logits
        terms: dict[str, torch.Tensor] = {}
        with loss_precision(out_s.logits.device.type):
            logits_t = resize_to(out_t.logits.detach().float(), size)
            grid_labels = resize_labels(labels, size)
            for key, logits in branches.items():
                logits = resize_to(logits.float(), size)
                terms[key] = opts.weight * ofa_loss(logits, logits_t, grid_labels, opts.eps,
                                                    opts.temperature)
        return terms
