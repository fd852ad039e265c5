"""One training step: the precision settings and ``train_step(parts, images, labels) -> terms``.

The training loop (``engine/loop.py``) and the cost benchmark (``bench/step.py``) both call
:func:`train_step`, so the benchmark times the step that trains. A step is: the frozen teacher
under ``no_grad``, the student and the distiller under the precision's autocast, the task loss
(float32, ``task_losses``) plus the distiller's weighted terms, one backward, one host sync for
the loss values (averaged over processes under DDP), then, if every value is finite, the
student's grad-norm clip (``train.grad_clip``), the distiller's own clip
(``Distiller.max_grad_norm``) and one optimiser step.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.engine.task_loss import task_losses

TOTAL = "loss_total"


@dataclass(frozen=True)
class Precision:
    """bf16 autocast and channels_last, each ``auto`` (on with CUDA only), forced on or off."""

    amp: bool
    channels_last: bool

    @classmethod
    def resolve(cls, amp: str, channels_last: str, device: torch.device) -> Precision:
        """``amp``: auto | bf16 | off; ``channels_last``: auto | on | off (``train.*`` values)."""
        on_cuda = device.type == "cuda"
        return cls(amp=amp == "bf16" or (amp == "auto" and on_cuda),
                   channels_last=channels_last == "on" or (channels_last == "auto" and on_cuda))

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast on ``device`` when on, else a null context."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the memory format the models run in."""
        return images.contiguous(memory_format=self.memory_format)

    def prepare(self, module: nn.Module) -> nn.Module:
        """The module in the models' memory format (only models and images change format)."""
        return module.to(memory_format=self.memory_format)


class StudentWithDistiller(nn.Module):
    """Student and distiller as one module, so that DDP all-reduces the gradients of both."""

    def __init__(self, student: nn.Module, distiller: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.distiller = distiller

    def forward(self, images: torch.Tensor, labels: torch.Tensor, out_t: Any) -> tuple[Any, dict]:
        out_s = self.student(images)
        return out_s, self.distiller(out_s, out_t, labels)


class StepParts:
    """What a step works on: student + distiller (``pair``), the teacher, the optimiser, and the
    task loss's settings (``aux_weight``; ``align_corners`` of the logits resize).

    ``module`` is the pair as the forward pass calls it (the pair itself, or its DDP wrapper);
    ``average_over_ranks`` all-reduces the logged loss values under DDP.
    """

    def __init__(self, pair: StudentWithDistiller, teacher: nn.Module | None,
                 optimizer: torch.optim.Optimizer, precision: Precision, *,
                 aux_weight: float = 0.4, grad_clip: float | None = None, align_corners: bool = False,
                 module: nn.Module | None = None, average_over_ranks: bool = False) -> None:
        self.pair = pair
        self.module = module if module is not None else pair
        self.teacher = teacher
        self.optimizer = optimizer
        self.precision = precision
        self.aux_weight = aux_weight
        self.grad_clip = grad_clip
        self.align_corners = align_corners
        self.average_over_ranks = average_over_ranks
        self.student_params = [p for p in pair.student.parameters() if p.requires_grad]
        self.distiller_params = [p for p in pair.distiller.parameters() if p.requires_grad]
        self.max_grad_norm = getattr(pair.distiller, "max_grad_norm", None)


def loss_terms(parts: StepParts, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The forward pass: task terms, then the distiller's terms (weighted, ``loss_<term>``)."""
    with parts.precision.autocast(images.device):
        out_t = None
        if parts.teacher is not None:
            with torch.no_grad():
                out_t = parts.teacher(images)
        out_s, method_terms = parts.module(images, labels, out_t)
    terms = task_losses(out_s, labels, parts.aux_weight, parts.align_corners)
    terms.update(method_terms)
    return terms


def train_step(parts: StepParts, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """One optimisation step on (images (B, 3, H, W), labels (B, H, W)) already on the device.

    Returns every loss term and ``loss_total`` as floats. If one of them is not finite the
    parameters are left as they were (no clip, no optimiser step); the caller decides whether to
    stop or to go on (:func:`first_nonfinite`).
    """
    images = parts.precision.images(images)
    terms = loss_terms(parts, images, labels)
    total = sum(terms.values())
    parts.optimizer.zero_grad(set_to_none=True)
    total.backward()
    # One host sync per step: the loss values for the log and the finiteness check.
    values = torch.stack([t.detach().float() for t in terms.values()] + [total.detach().float()])
    if parts.average_over_ranks:
        torch.distributed.all_reduce(values)
        values /= torch.distributed.get_world_size()
    numbers = dict(zip([*terms, TOTAL], values.tolist()))
    if first_nonfinite(numbers) is None:
        if parts.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(parts.student_params, parts.grad_clip)
        if parts.max_grad_norm is not None and parts.distiller_params:
            torch.nn.utils.clip_grad_norm_(parts.distiller_params, parts.max_grad_norm)
        parts.optimizer.step()
    return numbers


def first_nonfinite(terms: dict[str, float]) -> str | None:
    """The name of the first NaN or Inf loss term, or None."""
    return next((name for name, value in terms.items() if not math.isfinite(value)), None)
