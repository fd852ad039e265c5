"""The steps the cost benchmark times, on one batch and one student/teacher/distiller.

- ``teacher_forward``: the frozen teacher in eval mode under ``no_grad``.
- ``student_step``: the training step of the student alone (method ``baseline``, no teacher).
- ``full_step``: the training step of the distilled student.

Both steps are the engine's :func:`~harness.engine.step.train_step`, the one the training loop
calls. ``limit = teacher_forward + student_step`` is what any distillation step must cost at
least; ``full_step - limit`` is the method's own share.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.config import RunConfig, TrainConfig, align_corners
from harness.engine.optim import build_optimizer as engine_build_optimizer
from harness.engine.optim import trainable_parameters
from harness.engine.step import Precision, StepParts, StudentWithDistiller, train_step
from harness.methods.base import Distiller
from harness.models.base import SegModel, SegOutput


def build_optimizer(student: nn.Module, distiller: nn.Module, kind: str,
                    lr: float) -> torch.optim.Optimizer:
    """The engine's optimiser (SGD or AdamW, weight decay on all trainable parameters) over the
    student's and the distiller's parameters. Parameters without a gradient are skipped by the
    optimiser, so the student-only step pays nothing for the distiller's."""
    train = TrainConfig(optimizer=kind)
    return engine_build_optimizer(train, trainable_parameters(student, distiller), lr)


class DistillStep:
    """One batch, one student/teacher/distiller, and the timed steps over them.

    images: (B, 3, H, W) float; labels: (B, H, W) int64 with 255 = ignore. ``config`` (default:
    the default run config) supplies the task loss's ``aux_weight`` and ``align_corners`` and the
    student's ``grad_clip``, as in a training run.
    """

    def __init__(self, student: SegModel, teacher: SegModel, distiller: Distiller,
                 images: torch.Tensor, labels: torch.Tensor, precision: Precision,
                 optimizer: torch.optim.Optimizer, config: RunConfig | None = None) -> None:
        from harness.methods import build_distiller

        config = config or RunConfig()
        self.device = images.device
        self.student = precision.prepare(student).train()
        self.teacher = precision.prepare(teacher).eval()
        self.teacher.requires_grad_(False)
        self.distiller = distiller.train()
        self.images = precision.images(images)
        self.labels = labels
        self.precision = precision
        settings = {"aux_weight": config.train.aux_weight, "grad_clip": config.train.grad_clip,
                    "align_corners": align_corners(config)}
        self.full = StepParts(StudentWithDistiller(self.student, distiller), self.teacher,
                              optimizer, precision, **settings)
        alone = build_distiller("baseline", student.info, None)
        self.alone = StepParts(StudentWithDistiller(self.student, alone), None, optimizer,
                               precision, **settings)
        self.last_terms: dict[str, float] = {}

    def _teacher_out(self) -> SegOutput:
        with torch.no_grad(), self.precision.autocast(self.device):
            return self.teacher(self.images)

    def teacher_forward(self) -> None:
        self._teacher_out()

    def student_step(self) -> None:
        train_step(self.alone, self.images, self.labels)

    def full_step(self) -> None:
        self.last_terms = train_step(self.full, self.images, self.labels)

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
