"""The three steps the cost benchmark times, built from the same pieces as a training step.

- ``teacher_forward``: the frozen teacher in eval mode under ``no_grad``.
- ``student_step``: student forward, task loss (CE + 0.4 aux CE), backward, optimiser step.
- ``full_step``: teacher forward + student forward + task loss + the distiller's terms,
  backward, the distiller's own grad-norm clip (``Distiller.max_grad_norm``), optimiser step.

``limit = teacher_forward + student_step`` is what any distillation step must cost at least;
``full_step - limit`` is the method's own share.

The engine owns the training loop; the steps here use its pieces (``task_losses``, the optimiser
builder) and mirror its order: teacher under ``no_grad``, student and distiller under bf16
autocast on CUDA (channels_last there too), loss terms summed in float32, the distiller's own
grad clip, one optimiser step.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from harness.config import TrainConfig
from harness.engine.optim import build_optimizer as engine_build_optimizer
from harness.engine.optim import trainable_parameters
from harness.engine.task_loss import task_losses
from harness.methods.base import Distiller
from harness.models.base import SegModel, SegOutput


@dataclass(frozen=True)
class Precision:
    """How a step runs: bf16 autocast and/or channels_last (both default on CUDA only)."""

    amp: bool
    channels_last: bool

    @classmethod
    def resolve(cls, amp: str, channels_last: str, device: torch.device) -> "Precision":
        """``amp``: auto | bf16 | off; ``channels_last``: auto | on | off (RunConfig's values)."""
        if amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'off', got {amp!r}")
        if channels_last not in ("auto", "on", "off"):
            raise ValueError(f"channels_last must be 'auto', 'on' or 'off', got {channels_last!r}")
        on_cuda = device.type == "cuda"
        return cls(amp=amp == "bf16" or (amp == "auto" and on_cuda),
                   channels_last=channels_last == "on" or (channels_last == "auto" and on_cuda))

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast on ``device`` when on, else a null context."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the memory format the models run in."""
        if self.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def prepare(self, module: nn.Module) -> nn.Module:
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module


def build_optimizer(student: nn.Module, distiller: nn.Module, kind: str,
                    lr: float) -> torch.optim.Optimizer:
    """The engine's optimiser (SGD or AdamW, weight decay on all trainable parameters) over the
    student's and the distiller's parameters. Parameters without a gradient are skipped by the
    optimiser, so the student-only step pays nothing for the distiller's."""
    train = TrainConfig(optimizer=kind)
    return engine_build_optimizer(train, trainable_parameters(student, distiller), lr)


class DistillStep:
    """One batch, one student/teacher/distiller, and the three timed steps over them.

    images: (B, 3, H, W) float; labels: (B, H, W) int64 with 255 = ignore.
    """

    def __init__(self, student: SegModel, teacher: SegModel, distiller: Distiller,
                 images: torch.Tensor, labels: torch.Tensor, precision: Precision,
                 optimizer: torch.optim.Optimizer, aux_weight: float = 0.4) -> None:
        self.device = images.device
        self.student = precision.prepare(student).train()
        self.teacher = precision.prepare(teacher).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        # As the engine: channels_last for the two models and the images only.
        self.distiller = distiller.train()
        self.images = precision.images(images)
        self.labels = labels
        self.precision = precision
        self.optimizer = optimizer
        self.aux_weight = aux_weight
        self.last_terms: dict[str, float] = {}

    def _teacher_out(self) -> SegOutput:
        with torch.no_grad(), self.precision.autocast(self.device):
            return self.teacher(self.images)

    def teacher_forward(self) -> None:
        self._teacher_out()

    def student_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast(self.device):
            out_s = self.student(self.images)
        loss = sum(task_losses(out_s, self.labels, self.aux_weight).values())
        loss.backward()
        self.optimizer.step()

    def full_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        out_t = self._teacher_out()
        with self.precision.autocast(self.device):
            out_s = self.student(self.images)
            terms = self.distiller(out_s, out_t, self.labels)
        loss = sum(task_losses(out_s, self.labels, self.aux_weight).values())
        for value in terms.values():
            loss = loss + value.float()
        loss.backward()
        if self.distiller.max_grad_norm is not None:
            own = [p for p in self.distiller.parameters() if p.grad is not None]
            if own:
                torch.nn.utils.clip_grad_norm_(own, self.distiller.max_grad_norm)
        self.optimizer.step()
        self.last_terms = dict(zip(terms, torch.stack(
            [value.detach().float() for value in terms.values()]).tolist())) if terms else {}

    def prepare_method_alone(self) -> None:
        """Cache one teacher output and a student output whose tensors are fresh leaves, for
        :meth:`method_alone`."""
        out_t = self._teacher_out()
        with torch.no_grad(), self.precision.autocast(self.device):
            out_s = self.student(self.images)

        def leaf(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.detach().clone().requires_grad_(True)

        self._alone_inputs = (
            SegOutput(logits=leaf(out_s.logits), features=[leaf(f) for f in out_s.features],
                      decoder_feature=leaf(out_s.decoder_feature),
                      aux_logits=leaf(out_s.aux_logits)),
            out_t)

    def method_alone(self) -> None:
        """The distiller's forward + backward alone, on cached outputs (no model, no
        optimiser): the method's own cost without the subtraction noise of ``full - limit``.
        Gradients stop at the student outputs, so the extra accumulation the method's gradient
        causes inside the student's backward is not in it."""
        out_s, out_t = self._alone_inputs
        with self.precision.autocast(self.device):
            terms = self.distiller(out_s, out_t, self.labels)
        if terms:
            total = sum(value.float() for value in terms.values())
            if total.requires_grad:
                total.backward()

    def method_forward_gflops(self) -> float:
        """GFLOPs of one distiller forward on real outputs (FlopCounterMode: matmuls and
        convolutions; element-wise ops such as softmax and KL count zero)."""
        from torch.utils.flop_counter import FlopCounterMode

        out_t = self._teacher_out()
        with torch.no_grad(), self.precision.autocast(self.device):
            out_s = self.student(self.images)
            with FlopCounterMode(display=False) as counter:
                self.distiller(out_s, out_t, self.labels)
        return counter.get_total_flops() / 1e9
