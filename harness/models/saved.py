"""Model weights on disk: encoder-only pretrained files, and whole-model save/load.

A saved model is a folder with ``model.safetensors`` and ``config.json`` (the file names of smp's
/ Hugging Face's ``save_pretrained``); config.json is ``{"name", "num_classes", **metadata}``.
Everything that does not fit raises :class:`CheckpointError` with one sentence naming the file,
the mismatch and the fix.
"""
from __future__ import annotations

import json
import logging
import pickle
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from harness.errors import CheckpointError
from harness.io import atomic_write_json
from harness.models.base import INPUT_SPACES, SegModel
from harness.models.reference_formats import (
    ENCODER_FILES,
    IMAGENET_RGB,
    TIMM_ENCODER_FILE,
    Layout,
    rename,
)

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

# Wrappers that training scripts put around encoder keys.
_KEY_PREFIXES = ("module.", "encoder.", "backbone.")
_COUNTER = "num_batches_tracked"


def _short_list(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]


def read_state_dict(path: str | Path, what: str = "pretrained file") -> dict[str, torch.Tensor]:
    """Read a safetensors or torch (.pth/.pt) state dict; unwraps {"state_dict": ...}/{"model": ...}.

    torch files are read with ``weights_only=True``: tensors and plain containers only, never
    arbitrary pickled objects. ``what`` names the file in messages.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{what} {file} does not exist; pass the path of a local "
                              f".safetensors or .pth file")
    try:
        if file.suffix == ".safetensors":
            state = load_file(str(file))
        else:  # weights_only: a pickle that asks for anything but tensors is refused unexecuted
            with warnings.catch_warnings():  # torch warns about pickles it will refuse anyway
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{what} {file} holds objects other than tensors and plain values, so "
                              f"it was not loaded; save the weights with torch.save(model.state_dict(), "
                              f"...) or as safetensors (from a file you trust: torch.save(torch.load("
                              f"path, weights_only=False)['state_dict'], 'clean.pth'))") from None
    except Exception as err:  # noqa: BLE001 - truncated zip, EOF, bad header: same advice
        raise CheckpointError(f"{what} {file} cannot be read ({err.__class__.__name__}: "
                              f"{_first_line(err)}); the file is truncated or not a safetensors / "
                              f"torch state-dict file") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what} {file} does not hold a state dict of tensors; "
                              f"save it with torch.save(model.state_dict(), ...)")
    return state


@dataclass
class Mismatch:
    """What keeps a file's state dict from filling a module (names as in the file)."""

    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    wrong_shape: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # name, file, model

    def __bool__(self) -> bool:
        return bool(self.missing or self.unused or self.wrong_shape)

    def describe(self) -> str:
        problems = []
        if self.missing:
            problems.append(f"missing {len(self.missing)} keys: {_short_list(self.missing)}")
        if self.unused:
            problems.append(f"unexpected {len(self.unused)} keys: {_short_list(self.unused)}")
        if self.wrong_shape:
            shapes = [f"{k} {a} vs {b}" for k, a, b in self.wrong_shape]
            problems.append(f"{len(shapes)} wrong shapes: {_short_list(shapes, 3)}")
        return "; ".join(problems)


def match_state(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                layout: Layout) -> tuple[dict[str, torch.Tensor], Mismatch]:
    """Fill every key of ``expected`` (a module's state dict) from ``state`` (a file's, in the
    names of ``layout.table``); returns (state dict for ``expected``, what did not fit).

    Strict: every expected tensor must be in the file with its shape, and every file tensor must
    be used, folded (``layout.folds``) or under ``layout.ignored``. One exception: a BatchNorm's
    ``num_batches_tracked`` counter, which older savers and CIRKD's own loader do without and eval
    never reads, keeps the module's value when the file lacks it.
    """
    names = {key: rename(key, layout.table) for key in expected}
    uncovered = [key for key, name in names.items() if name is None]
    if uncovered:
        raise ValueError(f"the key table does not cover {_short_list(uncovered)}")
    state, folded = dict(state), set()
    for bias, mean in layout.folds:
        if bias in state and mean in state and state[bias].shape == state[mean].shape:
            state[mean], folded = state[mean] - state[bias], folded | {bias}
    out, mismatch = {}, Mismatch()
    for key, name in names.items():
        if name not in state:
            if key.endswith(_COUNTER):
                out[key] = expected[key]
            else:
                mismatch.missing.append(name)
        elif state[name].shape != expected[key].shape:
            mismatch.wrong_shape.append((name, tuple(state[name].shape), tuple(expected[key].shape)))
        else:
            out[key] = state[name]
    used = set(names.values()) | folded
    mismatch.unused = [k for k in state if k not in used and not k.startswith(layout.ignored)]
    return out, mismatch


def encoder_file_layout(state: dict[str, torch.Tensor]) -> tuple[str, Layout]:
    """(label, layout) of an encoder-only file: a CIRKD layout told by its marker key, else timm's."""
    for marker, label, layout in ENCODER_FILES:
        if marker in state:
            return label, layout
    return "timm", TIMM_ENCODER_FILE


def load_encoder_weights(encoder: nn.Module, path: str | Path, label: str | None = None) -> None:
    """Load a local encoder checkpoint into ``encoder``; every encoder key must be present with
    the right shape. CIRKD's ImageNet files (ResNetV1s, MobileNetV2 ``features.i.conv.j``) are
    renamed by harness/models/reference_formats.py; the ImageNet classifier of each layout is
    ignored; any other extra key, a missing key or a shape mismatch raises CheckpointError naming
    the file and the keys. ``label`` names the encoder in messages (e.g. "deeplabv3_r18")."""
    state = read_state_dict(path)
    for prefix in _KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    layout_name, layout = encoder_file_layout(state)
    weights, mismatch = match_state(encoder.state_dict(), state, layout)
    if mismatch:
        raise CheckpointError(
            f"pretrained file {path} does not fit the {label or type(encoder).__name__} encoder "
            f"({mismatch.describe()}; read with {layout_name} key names); pass weights of the same "
            f"encoder architecture")
    # nn.Module.load_state_dict directly: smp's MiT encoder overrides it without `strict`.
    nn.Module.load_state_dict(encoder, weights, strict=True)
    log.info("loaded %s encoder weights from %s (%d tensors)", layout_name, path, len(weights))


def check_replaceable(folder: Path) -> None:
    """CheckpointError unless ``folder`` is absent, empty or holds only a saved model's files."""
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a saved-model folder; choose another path")
    others = sorted(p.name for p in folder.iterdir() if p.name not in (WEIGHTS_FILE, CONFIG_FILE)) \
        if folder.is_dir() else []
    if others:
        raise CheckpointError(f"{folder} exists and is not a saved-model folder (it holds "
                              f"{_short_list(others)}); choose a new or empty folder")


def save_model(model: SegModel, folder: str | Path, metadata: dict) -> None:
    """Write ``folder/model.safetensors`` and ``folder/config.json``; the folder appears whole.

    config.json = {"name": model.info.name, "num_classes": model.info.num_classes, **metadata},
    plus ``input_space`` when the model's is not imagenet_rgb; metadata may not set these. Both
    files are written into a hidden sibling folder that then replaces ``folder``, which must be
    new, empty or a saved model itself.
    """
    clash = {"name", "num_classes", "input_space"} & set(metadata)
    if clash:
        raise ValueError(f"metadata may not set {sorted(clash)}; they come from model.info")
    folder = Path(folder).absolute()
    check_replaceable(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(state, str(tmp / WEIGHTS_FILE))
    config = {"name": model.info.name, "num_classes": model.info.num_classes, **metadata}
    if model.input_space != IMAGENET_RGB:
        config["input_space"] = model.input_space
    atomic_write_json(tmp / CONFIG_FILE, config)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def read_model_config(config_file: Path) -> dict:
    """``config.json`` of a saved model: a mapping whose ``name`` is a string and whose
    ``num_classes`` is a positive integer; anything else is one CheckpointError naming the file."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{config_file} is not a valid model config ({err.__class__.__name__}"
                              f"); re-save the model with harness.models.save_model") from None
    problem = None
    if not isinstance(config, dict):
        problem = f"it holds a {type(config).__name__}, not a mapping"
    elif not isinstance(config.get("name"), str) or not config["name"]:
        problem = f"'name' must be a model name (a string), got {config.get('name')!r}"
    elif type(config.get("num_classes")) is not int or config["num_classes"] < 1:
        problem = f"'num_classes' must be a positive integer, got {config.get('num_classes')!r}"
    elif config.get("input_space", IMAGENET_RGB) not in INPUT_SPACES:
        problem = f"'input_space' must be one of {', '.join(INPUT_SPACES)}, got {config['input_space']!r}"
    if problem:
        raise CheckpointError(f"{config_file} is not a valid model config ({problem}); re-save the "
                              f"model with harness.models.save_model")
    return config


def model_folder(path: str | Path) -> Path:
    """A saved-model folder, or a run folder holding one in ``model/``: the model folder."""
    folder = Path(path)
    return folder / "model" if (folder / "model").is_dir() else folder


def load_model(folder: str | Path, *, expect_name: str | None = None,
               expect_num_classes: int | None = None, expect_dataset: str | None = None,
               builder: Callable[[str, int], SegModel] | None = None) -> tuple[SegModel, dict]:
    """Rebuild the model saved in ``folder`` and load its weights; returns (model in eval mode,
    config dict). ``folder`` is a saved model or a run folder holding one (:func:`model_folder`).
    Refuses (CheckpointError) a missing folder/file, or a saved model whose name, class count or
    dataset differs from the expected ones."""
    folder = model_folder(folder)
    config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for file in (config_file, weights_file):
        if not file.is_file():
            raise CheckpointError(f"saved model file {file} does not exist; pass a folder "
                                  f"written by training (it holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    config = read_model_config(config_file)
    name, num_classes = config["name"], config["num_classes"]
    if expect_name is not None and name != expect_name:
        raise CheckpointError(f"saved model {folder} is a {name!r} model but {expect_name!r} was "
                              f"requested; point to a saved {expect_name} or change the model name")
    if expect_num_classes is not None and num_classes != expect_num_classes:
        raise CheckpointError(f"saved model {folder} predicts {num_classes} classes but "
                              f"{expect_num_classes} are needed; use a model trained on this dataset")
    if expect_dataset is not None and config.get("dataset") != expect_dataset:
        raise CheckpointError(f"saved model {folder} was trained on dataset {config.get('dataset')!r}, "
                              f"not {expect_dataset!r}; use a model trained on {expect_dataset}")
    if builder is None:
        from harness.models import build_model as builder
    try:
        model = builder(name, num_classes)
    except KeyError as err:
        raise CheckpointError(f"{config_file} names an unknown model ({err}); the model was "
                              f"written by another version of the harness") from None
    try:
        state = load_file(str(weights_file))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_file} cannot be read ({err}); "
                              "re-save or re-train the model") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{weights_file} does not match a {name} model with {num_classes} classes (missing "
            f"{_short_list(missing) or 'none'}; unexpected {_short_list(unexpected) or 'none'}; "
            f"wrong shapes {_short_list(wrong_shape) or 'none'}); re-save the model with this harness")
    model.load_state_dict(state, strict=True)
    model.input_space = config.get("input_space", IMAGENET_RGB)
    return model.eval(), config
