"""Distillation methods, one file per method, found automatically.

Every module in this package except the contracts (``base``, ``common``) and private modules
(``_*``) is imported on first import of ``harness.methods``; each registers its
:class:`~harness.methods.base.Distiller` subclass with ``@METHODS.register("name")``. Adding a
method is therefore one new file: no list to edit, no branch in the engine.

:func:`build_distiller` is the one entry point the engine, the CLI and the tests use;
:func:`method_options` is its check of a method's options, also run before a run builds anything.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import typing
from typing import Any

from harness.config import check_value
from harness.errors import ConfigError
from harness.methods.base import METHODS, Distiller, Options
from harness.models.base import ModelInfo
from harness.registry import UnknownNameError

_NOT_METHODS = {"base", "common"}


def _discover() -> None:
    """Import every method module of this package (registration is the import's side effect)."""
    for module in pkgutil.iter_modules(__path__):
        if module.name in _NOT_METHODS or module.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{module.name}")


def _freeze(value: Any) -> Any:
    """YAML gives lists; frozen Options hold tuples (hashable, immutable)."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def method_options(name: str, preset: str | None = None, options: dict[str, Any] | None = None, *,
                   key: str = "method", fix: str = "fix it in the config or with --set",
                   ) -> tuple[type[Distiller], Any]:
    """The class of method ``name`` and its options: the defaults, then ``preset``, then
    ``options``, checked against the method's ``Options`` dataclass.

    Each given option must have its declared type (a choice is a ``Literal[...]``; the error
    names ``<key>.options.<name>`` and the valid values); every float option of the result
    (weights, lambdas, temperatures, eps) must be a finite number >= 0: no method has a
    meaningful negative one, and a negative weight would silently turn distillation into
    anti-distillation. An unknown method, preset or option is a ConfigError listing the valid
    ones. ``key`` and ``fix`` say where the values came from (the run config, or a variant of the
    workflow config).
    """
    try:
        cls = METHODS.get(name)
    except UnknownNameError as err:
        raise ConfigError(f"{err}; set {key}.name to one of them") from None
    given = {option: _freeze(value) for option, value in (options or {}).items()}
    hints = typing.get_type_hints(cls.Options)
    for option, value in given.items():
        if option in hints:
            try:
                check_value(value, hints[option], f"{key}.options.{option}")
            except ConfigError as err:
                raise ConfigError(f"{err}; {fix}") from None
    try:
        resolved = cls.make_options(preset, **given)
    except (TypeError, ValueError) as err:  # unknown option or preset: the message lists valid ones
        raise ConfigError(f"{err}; fix {key}.preset / {key}.options") from None
    for field in dataclasses.fields(resolved):
        value = getattr(resolved, field.name)
        if hints.get(field.name) is float and (not math.isfinite(value) or value < 0):
            source = (f"{key}.options" if field.name in given
                      else f"preset {preset!r}" if preset else "the method's default")
            raise ConfigError(f"config key '{key}.options.{field.name}' must be a number >= 0, got "
                              f"{value!r} (from {source}); {fix}")
    return cls, resolved


def build_distiller(
    name: str,
    student: ModelInfo,
    teacher: ModelInfo | None,
    preset: str | None = None,
    options: dict[str, Any] | None = None,
) -> Distiller:
    """The distiller ``name`` for this student/teacher pair, with :func:`method_options`.

    A bad method, preset or option, or a missing teacher, raises :class:`ConfigError` naming the
    key and the valid choices, before anything is built.
    """
    cls, resolved = method_options(name, preset, options)
    if cls.needs_teacher and teacher is None:
        raise ConfigError(f"method {name!r} needs a teacher; set model.teacher")
    return cls(student, teacher, resolved)


_discover()

__all__ = ["METHODS", "Distiller", "Options", "build_distiller", "method_options"]
