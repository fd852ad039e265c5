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
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from harness.errors import CheckpointError
from harness.io import atomic_write_json
from harness.models.base import SegModel

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

# Keys of an ImageNet classifier that an encoder-only model legitimately lacks (timm ResNet fc,
# MobileNetV2 conv_head/bn2/classifier, MiT head).
_CLASSIFIER_PREFIXES = ("fc.", "head.", "classifier.", "conv_head.", "bn2.")
# Wrappers that training scripts put around encoder keys.
_KEY_PREFIXES = ("module.", "encoder.", "backbone.")


def _short_list(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors or torch (.pth/.pt) state dict; unwraps {"state_dict": ...}/{"model": ...}."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"pretrained file {file} does not exist; pass the path of a local "
                              f".safetensors or .pth file")
    try:
        if file.suffix == ".safetensors":
            state = load_file(str(file))
        else:  # weights_only: a pickle that asks for anything but tensors is refused unexecuted
            with warnings.catch_warnings():  # torch warns about pickles it will refuse anyway
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"pretrained file {file} holds objects other than tensors and plain "
                              f"values, so it was not loaded; save the weights with "
                              f"torch.save(model.state_dict(), ...) or as safetensors") from None
    except Exception as err:  # noqa: BLE001 - truncated zip, EOF, bad header: same advice
        raise CheckpointError(f"pretrained file {file} cannot be read ({err.__class__.__name__}: "
                              f"{_first_line(err)}); pass a safetensors or torch state-dict file") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"pretrained file {file} does not hold a state dict of tensors; "
                              f"save it with torch.save(model.state_dict(), ...)")
    return state


# CIRKD's ResNetV1s ImageNet files (resnet18/101-imagenet.pth) name the deep stem conv1/bn1,
# conv2/bn2, conv3/bn3; timm's deep stem is one Sequential conv1.{0,1,3,4,6} followed by bn1.
_CIRKD_STEM = {"conv1.": "conv1.0.", "bn1.": "conv1.1.", "conv2.": "conv1.3.", "bn2.": "conv1.4.",
               "conv3.": "conv1.6.", "bn3.": "bn1."}


def _rename_cirkd_stem(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map CIRKD's ResNetV1s stem keys onto timm's deep-stem keys; other keys pass unchanged."""
    if "conv3.weight" not in state or "conv1.0.weight" in state:
        return state
    renamed = {}
    for key, value in state.items():
        prefix = next((p for p in _CIRKD_STEM if key.startswith(p)), None)
        renamed[_CIRKD_STEM[prefix] + key[len(prefix):] if prefix else key] = value
    return renamed


def load_encoder_weights(encoder: nn.Module, path: str | Path, label: str | None = None) -> None:
    """Load a local encoder checkpoint into ``encoder``; every encoder key must be present with
    the right shape. Keys of an ImageNet classifier head are ignored; any other extra key, a
    missing key or a shape mismatch raises CheckpointError naming the file and the keys.
    ``label`` names the encoder in messages (e.g. "deeplabv3_r18")."""
    state = read_state_dict(path)
    for prefix in _KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    state = _rename_cirkd_stem(state)
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not k.startswith(_CLASSIFIER_PREFIXES)]
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
                   for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_short_list(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shapes: {_short_list(wrong_shape)}")
    if problems:
        raise CheckpointError(
            f"pretrained file {path} does not fit the {label or type(encoder).__name__} encoder "
            f"({'; '.join(problems)}); pass weights of the same encoder architecture")
    # nn.Module.load_state_dict directly: smp's MiT encoder overrides it without `strict`.
    nn.Module.load_state_dict(encoder, {k: state[k] for k in expected}, strict=True)
    log.info("loaded encoder weights from %s (%d tensors)", path, len(expected))


def _check_replaceable(folder: Path) -> None:
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

    config.json = {"name": model.info.name, "num_classes": model.info.num_classes, **metadata};
    metadata may not override name/num_classes. Both files are written into a hidden sibling
    folder that then replaces ``folder``, which must be new, empty or a saved model itself.
    """
    clash = {"name", "num_classes"} & set(metadata)
    if clash:
        raise ValueError(f"metadata may not set {sorted(clash)}; they come from model.info")
    folder = Path(folder).absolute()
    _check_replaceable(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(state, str(tmp / WEIGHTS_FILE))
    atomic_write_json(tmp / CONFIG_FILE,
                      {"name": model.info.name, "num_classes": model.info.num_classes, **metadata})
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
    if problem:
        raise CheckpointError(f"{config_file} is not a valid model config ({problem}); re-save the "
                              f"model with harness.models.save_model")
    return config


def load_model(folder: str | Path, *, expect_name: str | None = None,
               expect_num_classes: int | None = None, expect_dataset: str | None = None,
               builder: Callable[[str, int], SegModel] | None = None) -> tuple[SegModel, dict]:
    """Rebuild the model saved in ``folder`` and load its weights; returns (model in eval mode,
    config dict). Refuses (CheckpointError) a missing folder/file, or a saved model whose name,
    class count or dataset differs from the expected ones."""
    folder = Path(folder)
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
    return model.eval(), config
