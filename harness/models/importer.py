"""Import a reference codebase's checkpoint as a saved-model folder (``python -m harness models import``;
docs/protocol.md §Imported checkpoints). Formats, with their key names in
harness/models/reference_formats.py:

- ``cirkd``: winycg/CIRKD DeepLabV3 / PSPNet / DeepLabV3-MobileNetV2 files, e.g. its released
  teacher ``deeplabv3_resnet101_citys_best_model.pth``. A file from CIRKD's 2025 code (512-channel
  DeepLabV3 head) goes into ``deeplabv3_r101_w512`` / ``deeplabv3_r18_w512``.
- ``cirkd-segformer``: CIRKD's own SegFormer (``segformer_MiT_B4_citys_best_model.pth``); its fuse
  conv bias is folded into the BatchNorm running mean (exact in eval).
- ``mmseg``: NVlabs/SegFormer's mmseg checkpoints (``segformer.b4.1024x1024.city.160k.pth``:
  ``state_dict`` with ``backbone.*`` and ``decode_head.*``; the unused ``conv_seg`` is dropped).

The result is the folder training writes (model.safetensors + config.json), so every route that
takes a trained model takes it. config.json also records the reference's ``align_corners``, the
``input_space`` its weights expect (CIRKD's: BGR 0..255 minus its mean; the model converts its
input) and ``source``: the file, its sha256 and the format. Matching is strict (see
:func:`harness.models.saved.match_state`); a file that does not fit is refused before
anything is written, with the first keys and the likely cause.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from harness.errors import CheckpointError, ConfigError
from harness.io import check_writable_dir, sha256_of
from harness.models.reference_formats import FILE_KINDS, FORMATS, Layout, rename
from harness.models.saved import (
    CONFIG_FILE,
    Mismatch,
    check_replaceable,
    match_state,
    read_model_config,
    read_state_dict,
    save_model,
)

log = logging.getLogger(__name__)


def layout_of(fmt: str, model_name: str) -> Layout:
    """The key layout of ``model_name`` in format ``fmt``; ConfigError naming the valid pairs."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown checkpoint format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if model_name not in FORMATS[fmt]:
        others = [f for f, models in FORMATS.items() if model_name in models]
        hint = f"; {model_name} is imported with --format {' or '.join(others)}" if others else ""
        raise ConfigError(f"--format {fmt} holds the models {', '.join(FORMATS[fmt])}, not "
                          f"{model_name!r}{hint}")
    return FORMATS[fmt][model_name]


def read_checkpoint(file: str | Path) -> dict[str, torch.Tensor]:
    """A reference checkpoint's state dict (``weights_only`` load; a DDP ``module.`` prefix removed)."""
    state = read_state_dict(file, what="checkpoint")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def reference_state_dict(model: torch.nn.Module, fmt: str) -> dict[str, torch.Tensor]:
    """``model``'s weights under the reference key names of ``fmt`` (the inverse of the import;
    a folded bias is written as zero)."""
    layout = layout_of(fmt, model.info.name)
    state = {rename(k, layout.table): v.detach().clone() for k, v in model.state_dict().items()}
    for bias, mean in layout.folds:
        state[bias] = torch.zeros_like(state[mean])
    return state


def _build(name: str, num_classes: int):
    from harness.models import build_model

    return build_model(name, num_classes)


def _class_count(mismatch: Mismatch, num_classes: int) -> int | None:
    """The file's class count when the only misfit is the classifiers' first dimension."""
    counts = {file[0] for _, file, model in mismatch.wrong_shape
              if model[0] == num_classes and file[1:] == model[1:]}
    only_classes = len(counts) == 1 and not mismatch.missing and not mismatch.unused and all(
        model[0] == num_classes and file[1:] == model[1:] for _, file, model in mismatch.wrong_shape)
    return counts.pop() if only_classes else None


def _skeleton(name: str, num_classes: int):
    """``name`` built for its shapes only: on the meta device when its builder allows it."""
    try:
        with torch.device("meta"):
            return _build(name, num_classes)
    except RuntimeError:  # builders that read tensor values (smp's MiT drop-path schedule)
        return _build(name, num_classes)


def _fitting_model(state: dict, fmt: str, skip: str, num_classes: int):
    """Another model of ``fmt`` that the file fits exactly, or None."""
    for name, layout in FORMATS[fmt].items():
        if name != skip:
            model = _skeleton(name, num_classes)
            if not match_state(model.state_dict(), state, layout)[1]:
                return model
    return None


def likely_cause(state: dict, fmt: str, model, dataset: str, mismatch: Mismatch) -> str:
    """One clause telling the user why ``state`` does not fit ``model`` and what to pass instead."""
    name, num_classes = model.info.name, model.info.num_classes
    classes = _class_count(mismatch, num_classes)
    if classes is not None:
        return (f"the file predicts {classes} classes and {dataset} has {num_classes}; pass the "
                f"--dataset it was trained on")
    # Shapes alone differ: another width of the same architecture (CIRKD 2023 vs 2025 heads).
    shapes_only = not mismatch.missing and not mismatch.unused
    other = _fitting_model(state, fmt, name, num_classes) if shapes_only else None
    if other is not None:
        return (f"it fits {other.info.name} (a {other.info.decoder_channels}-channel head): pass "
                f"--model {other.info.name}")
    table = FORMATS[fmt][name].table
    produced = {rename(k, table) for k in model.state_dict()}
    for marker, kind in FILE_KINDS:
        if marker in state and marker not in produced:
            return f"the file looks like {kind}"
    return (f"the file is not a complete {fmt} {name} checkpoint (another architecture, or keys "
            f"lost when it was saved)")


def import_checkpoint(file: str | Path, fmt: str, model_name: str, dataset: str,
                      out: str | Path) -> dict:
    """Convert ``file`` (format ``fmt``) into the saved-model folder ``out`` for ``model_name``
    trained on ``dataset``; returns the written config.json. Nothing is written on failure."""
    from harness.data import DATASETS
    from harness.registry import UnknownNameError

    layout = layout_of(fmt, model_name)
    out = Path(out).absolute()
    check_writable_dir(out.parent)
    check_replaceable(out)
    try:
        num_classes = int(DATASETS.get(dataset).num_classes)
    except UnknownNameError as err:
        raise ConfigError(f"{err}; fix --dataset") from None
    state = read_checkpoint(file)
    model = _build(model_name, num_classes)
    weights, mismatch = match_state(model.state_dict(), state, layout)
    if mismatch:
        cause = likely_cause(state, fmt, model, dataset, mismatch)
        raise CheckpointError(f"checkpoint {file} does not fit {model_name} in --format {fmt} "
                              f"({mismatch.describe()}); {cause}")
    model.load_state_dict(weights, strict=True)
    model.input_space = layout.input_space
    metadata = {"dataset": dataset, "align_corners": layout.align_corners,
                "source": {"file": str(file), "sha256": sha256_of(file), "format": fmt}}
    save_model(model.eval(), out, metadata)
    log.info("imported %s (%s, %d tensors) as %s for %s -> %s", file, fmt, len(state), model_name,
             dataset, out)
    return read_model_config(out / CONFIG_FILE)
