"""The one interface every distillation method implements.

A method is an ``nn.Module`` built from the two models' :class:`ModelInfo`. Its own trainable
parts (projectors, align convs, generators) and state (memory queues as buffers) live in it, so
the engine puts them into the optimiser and the checkpoint without knowing the method. Its one
call takes the student and teacher outputs and the labels and returns a dict of
already-weighted loss terms named ``loss_<term>``; the engine adds the task loss and sums.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import torch
from torch import nn

from harness.errors import ConfigError
from harness.models.base import ModelInfo, SegOutput
from harness.registry import Registry

METHODS: Registry[type[Distiller]] = Registry("method")


@dataclass(frozen=True)
class Options:
    """Base for a method's options; each subclass is a frozen dataclass of its defaults."""


class Distiller(nn.Module):
    """Base class for a distillation method.

    Subclasses set ``Options`` (a frozen dataclass), ``presets`` (name -> overrides),
    ``family_defaults`` and ``needs_teacher``; they implement :meth:`forward`. ``label`` and
    ``preset_labels`` are the names tables and figures print (the registered name and the preset
    name by default).
    """

    Options: ClassVar[type] = Options
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: student family -> values for the options left ``None`` (defaults a reference picks by
    #: the student's architecture, e.g. CIRKD's SegFormer-student script); after construction
    #: ``self.options`` holds the resolved values.
    family_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    label: ClassVar[str | None] = None
    preset_labels: ClassVar[dict[str, str]] = {}
    needs_teacher: ClassVar[bool] = True
    #: If set, the engine clips the grad-norm of this module's own parameters to this value
    #: (Af-DCD clips its loss-module parameters at 15) before the optimiser step.
    max_grad_norm: float | None = None

    def __init__(self, student: ModelInfo, teacher: ModelInfo | None, options: Any) -> None:
        super().__init__()
        if self.needs_teacher and teacher is None:
            raise ValueError(f"method {type(self).__name__} needs a teacher; set model.teacher")
        self.student_info = student
        self.teacher_info = teacher
        self.options = self.resolve_family_defaults(options, student)

    @classmethod
    def resolve_family_defaults(cls, options: Any, student: ModelInfo) -> Any:
        """``options`` with every ``None`` that ``family_defaults`` covers for the student's
        family replaced by its value; one still ``None`` is a ConfigError naming it."""
        defaults = cls.family_defaults.get(student.family, {})
        unset = {name: value for name, value in defaults.items()
                 if getattr(options, name) is None}
        options = replace(options, **unset) if unset else options
        names = {name for values in cls.family_defaults.values() for name in values}
        missing = sorted(name for name in names if getattr(options, name) is None)
        if missing:
            raise ConfigError(f"method {cls.__name__} has no default for {missing} with a "
                              f"{student.family!r} student; set them in method.options")
        return options

    @classmethod
    def make_options(cls, preset: str | None = None, **overrides: Any) -> Any:
        """Options from the defaults, then a named preset, then explicit overrides."""
        values: dict[str, Any] = {}
        if preset:
            if preset not in cls.presets:
                raise ValueError(
                    f"unknown preset {preset!r} for {cls.__name__}; valid: {sorted(cls.presets)}"
                )
            values.update(cls.presets[preset])
        values.update(overrides)
        valid = {f.name for f in fields(cls.Options)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for method {cls.__name__}; valid: {sorted(valid)}"
            )
        return cls.Options(**values)

    def forward(
        self, out_s: SegOutput, out_t: SegOutput | None, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_parameters(self) -> int:
        """Trainable parameters the method adds to the student's."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
