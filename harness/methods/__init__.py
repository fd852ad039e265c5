"""Distillation methods, one file per method, found automatically.

Every module in this package except the contracts (``base``, ``common``) and private modules
(``_*``) is imported on first import of ``harness.methods``; each registers its
:class:`~harness.methods.base.Distiller` subclass with ``@METHODS.register("name")``. Adding a
method is therefore one new file: no list to edit, no branch in the engine.

:func:`build_distiller` is the one entry point the engine, the CLI and the tests use.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

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


def build_distiller(
    name: str,
    student: ModelInfo,
    teacher: ModelInfo | None,
    preset: str | None = None,
    options: dict[str, Any] | None = None,
) -> Distiller:
    """The distiller ``name`` for this student/teacher pair.

    Options are the method's defaults, then ``preset``'s overrides, then ``options``. An unknown
    method, preset or option, or a missing teacher, raises :class:`ConfigError` naming the valid
    choices, before anything is built.
    """
    try:
        cls = METHODS.get(name)
    except UnknownNameError as err:
        raise ConfigError(f"{err}; set method.name to one of them") from None
    overrides = {key: _freeze(value) for key, value in (options or {}).items()}
    try:
        opts = cls.make_options(preset, **overrides)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{err}; fix method.preset / method.options") from None
    if cls.needs_teacher and teacher is None:
        raise ConfigError(f"method {name!r} needs a teacher; set model.teacher")
    return cls(student, teacher, opts)


_discover()

__all__ = ["METHODS", "Distiller", "Options", "build_distiller"]
