"""The run config: nested frozen dataclasses are the schema.

A YAML file plus ``--set key.sub=value`` overrides become a :class:`RunConfig`. Unknown keys and
wrong types are :class:`ConfigError` s naming the key and the expected type; a choice is a
``Literal[...]`` type, so its valid values are listed by the same check. Method options are
validated the same way against the method's own ``Options`` dataclass (``harness.methods``).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from harness.errors import ConfigError

log = logging.getLogger(__name__)

#: old run-config key -> its new name (same parent), and old values of a key -> the new value;
#: accepted for one release, each with a one-line warning
RENAMED_KEYS = {"model.teacher_checkpoint": "model.teacher_model"}
RENAMED_VALUES = {"protocol": {"cirkd": "reference"}}


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans and floats. PyYAML's 1.1 rules read on/off/yes/no as booleans (turning
    ``train.channels_last: on`` into True) and ``1e-4`` (no dot) as a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


_TAG = re.compile(r"tag '([^']+)'")


def _yaml(text: str, what: str, fix: str) -> Any:
    """Parse ``text`` (``what``: e.g. "config file X"); a syntax error or a YAML tag is one
    ConfigError. Tags (``!!python/...``) are refused by the safe loader and never constructed."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.constructor.ConstructorError as err:
        found = _TAG.search(str(err.problem or ""))
        tag = found.group(1).replace("tag:yaml.org,2002:", "!!") if found else "a tag"
        where = f" (line {err.problem_mark.line + 1})" if err.problem_mark else ""
        raise ConfigError(f"{what} uses the YAML tag {tag}{where}; tags are not allowed in a "
                          f"config: write plain values (numbers, strings, lists, mappings)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or err.__class__.__name__
        raise ConfigError(f"{what} is not valid YAML ({problem}{where}); {fix}") from None


def parse_yaml_scalar(text: str) -> Any:
    """A command-line value as YAML 1.2 reads it (``1e-4`` a float, ``on`` a string); text that
    is not valid YAML is returned as is."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


@dataclass(frozen=True)
class DataConfig:
    name: str = "toycity"
    root: str = "data/toycity"
    crop: tuple[int, int] = (64, 128)  # (H, W) training crop
    batch_size: int = 8  # total over all processes
    workers: int = 2
    # random scale (docs/protocol.md §Reference protocol)
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    train_split: str = "train"
    val_split: str = "val"
    max_val_images: int | None = None  # evaluate on the first N val images (smoke runs)
    # val images (and labels) shrunk to fit (H, W) before evaluation (smoke runs; docs/protocol.md)
    val_max_size: tuple[int, int] | None = None
    # images per evaluation forward: consecutive val images of one size are stacked up to this
    # many (batch 1's scores up to float rounding; docs/protocol.md §Evaluation batch)
    val_batch_size: int = 1


@dataclass(frozen=True)
class ModelConfig:
    student: str = "deeplabv3_r18"
    teacher: str | None = None
    teacher_model: str | None = None  # the teacher's saved model folder, or a run folder holding model/
    pretrained: str | None = None  # local ImageNet weights for the student's encoder


@dataclass(frozen=True)
class MethodConfig:
    name: str = "baseline"
    preset: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


#: evaluations per run when ``train.eval_every`` is left unset: cheap next to the training on every
#: dataset of the grid, and enough for a curve and a best-on-val checkpoint (docs/protocol.md)
EVALS_PER_RUN = 4


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 300
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.02  # at batch 16 for SGD (the reference protocol); scaled linearly with batch
    lr_reference_batch: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_iterations: int = 0  # linear learning-rate warm-up (0: none, as the reference protocol)
    aux_weight: float = 0.4
    grad_clip: float | None = None  # clip the student's grad-norm (off in the references)
    amp: Literal["auto", "bf16", "off"] = "auto"  # auto: bf16 on CUDA (engine/step.py Precision)
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto: on CUDA
    threads: int | None = None  # torch intra-op threads on CPU
    checkpoint_every: int = 100
    eval_every: int | None = None  # None: EVALS_PER_RUN evaluations per run; 0: only at the end
    log_every: int = 10
    skip_nonfinite: bool = False  # skip a batch whose loss is NaN/Inf instead of stopping
    sync_bn: bool = True  # SyncBN under DDP on CUDA (student and the method's modules)
    # logits -> label size for the task loss and evaluation; None: the protocol's
    align_corners: bool | None = None

    @property
    def eval_interval(self) -> int:
        """Iterations between evaluations during the run (0: only the final one)."""
        if self.eval_every is not None:
            return self.eval_every
        return max(1, -(-self.iterations // EVALS_PER_RUN))


#: What each protocol fixes beyond the config's own values (docs/protocol.md §Resizing).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "reference": {"align_corners": True},  # CIRKD / Af-DCD: SegCrossEntropyLoss and validation
}


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    # the protocol the settings follow (docs/protocol.md), recorded in every run; tables never
    # mix two
    protocol: str = "reference"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in canonical form."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"config key {key!r} must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if not any(value == c and type(value) is type(c) for c in choices):
            raise ConfigError(f"config key {key!r} must be one of {', '.join(map(repr, choices))}, "
                              f"got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]: any length, one type
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config key {key!r} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # programming error


def check_value(value: Any, tp: Any, key: str) -> Any:
    """Check one value against a type annotation (as for config keys); ConfigError names ``key``."""
    return _coerce(value, tp, key)


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {[prefix + u for u in unknown]}; valid keys here: "
            f"{[prefix + n for n in names]}"
        )
    kwargs = {name: _coerce(data[name], hints[name], prefix + name) for name in names if name in data}
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-friendly dict (tuples become lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    if not raw.strip():
        return key.strip().split("."), None
    return key.strip().split("."), _yaml(raw, f"the value of --set {text!r}",
                                          "quote it, and close every bracket and quote")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a mapping")
        node[path[-1]] = value
    return data


def current_value(key: str, value: Any) -> Any:
    """``value`` of config key ``key`` under its current name (see :data:`RENAMED_VALUES`)."""
    return RENAMED_VALUES.get(key, {}).get(value, value)


def upgrade(data: dict[str, Any], *, warn: bool = True) -> dict[str, Any]:
    """A copy of the nested run-config dict ``data`` with old key names and values replaced by
    the current ones (one warning line each when ``warn``)."""
    data = copy.deepcopy(data)
    for old, new in RENAMED_KEYS.items():
        *parents, last = old.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            continue
        new_last = new.rsplit(".", 1)[-1]
        if new_last in node:
            raise ConfigError(f"config keys {old!r} and {new!r} are one setting; keep only {new!r}")
        node[new_last] = node.pop(last)
        if warn:
            log.warning("config key %r is deprecated and goes in the next release; use %r", old, new)
    for key, values in RENAMED_VALUES.items():
        if key in data and isinstance(data[key], str) and data[key] in values:
            if warn:
                log.warning("%s: %r is deprecated and goes in the next release; use %r", key,
                            data[key], values[data[key]])
            data[key] = values[data[key]]
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or the defaults), apply ``--set`` overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist; pass an existing --config FILE")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {file} is not UTF-8 text (byte {err.start}); save it "
                              f"as UTF-8") from None
        data = _yaml(text, f"config file {file}", "fix its syntax") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
    data = upgrade(apply_overrides(data, overrides or []))
    config = from_dict(RunConfig, data)
    validate_values(config)
    return config


def align_corners(config: RunConfig) -> bool:
    """``align_corners`` of the logits resize for the task loss and evaluation:
    ``train.align_corners`` when set, else the protocol's."""
    if config.train.align_corners is not None:
        return config.train.align_corners
    return PROTOCOLS[config.protocol]["align_corners"]


def validate_values(config: RunConfig) -> None:
    """Range checks that types alone do not express."""
    t = config.train
    checks = [
        (t.iterations > 0, "train.iterations must be > 0"),
        (t.lr > 0, "train.lr must be > 0"),
        (t.warmup_iterations >= 0, "train.warmup_iterations must be >= 0"),
        (t.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (t.aux_weight >= 0, "train.aux_weight must be >= 0"),
        (t.checkpoint_every >= 0, "train.checkpoint_every must be >= 0"),
        (t.eval_every is None or t.eval_every >= 0, "train.eval_every must be >= 0 (0: only at the end)"),
        (config.protocol in PROTOCOLS, f"protocol {config.protocol!r} is unknown; valid: "
                                       f"{', '.join(sorted(PROTOCOLS))}"),
        (config.data.batch_size > 0, "data.batch_size must be > 0"),
        (min(config.data.crop) > 0, "data.crop must be positive"),
        (config.data.val_max_size is None or min(config.data.val_max_size) > 0,
         "data.val_max_size must be positive"),
        (config.data.val_batch_size > 0, "data.val_batch_size must be > 0"),
        (0 < config.data.scale_range[0] <= config.data.scale_range[1],
         "data.scale_range must be 0 < low <= high"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message + "; fix it in the config or with --set")
