"""Baseline: the student trained on the task loss alone (no teacher, no distillation term).

docs/methods.md §Task loss: the engine computes ``loss_task`` (and ``loss_aux``);
this method adds nothing, so a baseline run and a distillation run differ only in the terms
their distiller returns.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.methods.base import METHODS, Distiller
from harness.methods.base import Options as BaseOptions
from harness.models.base import SegOutput


@dataclass(frozen=True)
class Options(BaseOptions):
    """No options: the task loss is configured in the engine (docs/methods.md §Task loss)."""


@METHODS.register("baseline")
class Baseline(Distiller):
    """No teacher, no extra parameters, no loss terms."""

    label = "student alone"

    Options = Options
    presets = {}
    needs_teacher = False

    def forward(
        self, out_s: SegOutput, out_t: SegOutput | None, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {}
