"""Everything a training run needs, built and checked before the first iteration and before any
file is written: names, method options, dataset root, teacher model, output folder, resume
state. A problem here is a :class:`~harness.errors.UserError` and leaves the disk untouched."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from harness.config import RunConfig
from harness.engine.provenance import sha256_of
from harness.engine.seeding import side_stream
from harness.errors import ConfigError, UserError
from harness.io import check_writable_dir
from harness.registry import UnknownNameError


@dataclass
class RunInputs:
    student: nn.Module
    teacher: nn.Module | None
    distiller: nn.Module
    train_set: Dataset
    val_set: Dataset
    num_classes: int
    class_names: tuple[str, ...]
    teacher_model: dict[str, Any] | None  # the saved teacher: {path, sha256, dataset, miou}
    resume_state: dict[str, Any] | None


#: folders of a run that training writes into (besides the run folder itself)
RUN_SUBFOLDERS = ("checkpoints", "model")


def check_run_folder(out_dir: Path) -> None:
    """:func:`~harness.io.check_writable_dir`, and every folder of an existing run that training writes into
    (``checkpoints/``, ``model/``) is a writable folder: found now, not at the first checkpoint."""
    check_writable_dir(out_dir)
    for folder in (out_dir, *(out_dir / name for name in RUN_SUBFOLDERS)):
        if folder.exists() and (not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK)):
            raise UserError(f"{folder} cannot be written (it is not a writable folder); make it "
                            f"writable (chmod u+w) or choose another --out")


def single_value_batchnorms(model: nn.Module, crop: tuple[int, int]) -> list[str]:
    """Names of the BatchNorm layers that see one value per channel for a one-image batch at
    ``crop`` (after a global pooling: DeepLabV3's ASPP image pool, PSPNet's 1x1 bin).

    Found by one forward pass in eval mode (no statistic or RNG changes) with hooks on every
    BatchNorm; in training such a layer cannot normalise (torch raises).
    """
    found: list[str] = []
    hooks = [module.register_forward_pre_hook(
                lambda _m, args, name=name: found.append(name) if args[0][0, 0].numel() == 1 else None)
             for name, module in model.named_modules()
             if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *crop))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return found


def check_batch_of_one(config: RunConfig, student: nn.Module, per_rank: int) -> None:
    """A per-process batch of one trains only a model with no BatchNorm after a global pooling."""
    if per_rank != 1:
        return
    layers = single_value_batchnorms(student, tuple(config.data.crop))
    if layers:
        raise ConfigError(
            f"model {config.model.student} cannot train on one image per process: its BatchNorm "
            f"layer {layers[0]} sees a 1x1 pooled map, so one value per channel; set "
            f"data.batch_size to at least 2 per process")


def _named(kind: str, key: str, build: Any) -> Any:
    try:
        return build()
    except UnknownNameError as err:
        raise ConfigError(f"{err}; fix {key} ({kind})") from None


def resolve_teacher_folder(path: str) -> Path:
    """A teacher model is a saved-model folder or a run folder holding ``model/``."""
    from harness.models.saved import model_folder

    return model_folder(path)


def prepare_run(config: RunConfig, out_dir: Path, world_size: int = 1,
                resume_state: dict[str, Any] | None = None) -> RunInputs:
    """Build the models, distiller and datasets of ``config`` and check every input;
    ``resume_state`` (the run folder's checkpoint, see :mod:`harness.engine.run_folder`) is
    passed through."""
    from harness.data import DATASETS, build_dataset, check_dataset
    from harness.methods import build_distiller, method_options
    from harness.models import MODELS, build_model, load_model

    check_run_folder(out_dir)
    data, model = config.data, config.model
    dataset_cls = _named("dataset", "data.name", lambda: DATASETS.get(data.name))
    _named("model", "model.student", lambda: MODELS.get(model.student))
    if model.teacher is not None:
        _named("model", "model.teacher", lambda: MODELS.get(model.teacher))
    method_cls, _ = method_options(config.method.name, config.method.preset, config.method.options)
    if data.batch_size % world_size:
        raise ConfigError(f"data.batch_size {data.batch_size} is not divisible by the "
                          f"{world_size} processes; set a multiple of {world_size}")
    check_dataset(data.name, data.root, splits=[data.train_split, data.val_split])
    num_classes = int(dataset_cls.num_classes)

    # The student is built first, on the run's main RNG stream; the teacher and the method's
    # modules come from a side stream, so every method starts the same student (see side_stream).
    if method_cls.needs_teacher and (model.teacher is None or model.teacher_model is None):
        raise ConfigError(f"method {config.method.name!r} needs a teacher; set model.teacher "
                          f"and model.teacher_model (a trained teacher's run folder)")
    student = build_model(model.student, num_classes, pretrained=model.pretrained)
    check_batch_of_one(config, student, data.batch_size // world_size)
    teacher, teacher_record = None, None
    if method_cls.needs_teacher:
        folder = resolve_teacher_folder(model.teacher_model)
        with side_stream(config.seed):
            teacher, meta = load_model(folder, expect_name=model.teacher,
                                       expect_num_classes=num_classes, expect_dataset=data.name)
        teacher_record = {"path": str(folder), "sha256": sha256_of(folder / "model.safetensors"),
                          "dataset": meta.get("dataset"), "miou": meta.get("miou")}

    with side_stream(config.seed):
        distiller = build_distiller(config.method.name, student.info,
                                    teacher.info if teacher is not None else None,
                                    preset=config.method.preset, options=config.method.options)

    train_set = build_dataset(data.name, data.root, data.train_split, train=True, crop=tuple(data.crop),
                              scale_range=tuple(data.scale_range), flip=data.flip)
    val_set = build_dataset(data.name, data.root, data.val_split, train=False,
                            max_images=data.max_val_images, max_size=data.val_max_size)
    per_rank = data.batch_size // world_size
    if len(train_set) // world_size < per_rank:
        raise ConfigError(f"data.batch_size {data.batch_size} is larger than the {len(train_set)} "
                          f"training images of {data.name}; lower data.batch_size")

    return RunInputs(student=student, teacher=teacher, distiller=distiller, train_set=train_set,
                     val_set=val_set, num_classes=num_classes,
                     class_names=tuple(getattr(dataset_cls, "class_names", ())) or
                     tuple(str(k) for k in range(num_classes)),
                     teacher_model=teacher_record, resume_state=resume_state)
