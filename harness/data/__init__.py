"""Datasets: the built-in ``toycity`` generator and loaders for Cityscapes, VOC, ADE20K, CamVid.

The engine and the workflow use only the three functions below and the :class:`SegDataset`
contract (``harness/data/base.py``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from harness.data import ade20k, camvid, cityscapes, toycity, voc  # noqa: F401  (register names)
from harness.data.base import DATASETS, SegDataset
from harness.data.files import PairedDataset
from harness.data.transforms import NORMALIZATION, eval_transform, train_transform
from harness.errors import DataError
from harness.registry import UnknownNameError

log = logging.getLogger(__name__)

__all__ = ["DATASETS", "SegDataset", "NORMALIZATION", "build_dataset", "check_dataset",
           "prepare_dataset", "dataset_class", "dataset_fingerprint"]


def dataset_class(name: str) -> type[PairedDataset]:
    """The registered class for ``name``; an unknown name is a DataError listing the valid ones."""
    try:
        return DATASETS.get(name)
    except UnknownNameError as err:
        raise DataError(str(err)) from None


def build_dataset(
    name: str,
    root: str | Path,
    split: str,
    *,
    train: bool,
    crop: tuple[int, int] = (512, 512),
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    max_images: int | None = None,
    max_size: tuple[int, int] | None = None,
) -> SegDataset:
    """One split of dataset ``name`` under ``root``.

    ``train=True``: random scale / pad / crop (H, W) / flip + normalisation, items (3, *crop).
    ``train=False``: whole image, normalisation only (shrunk to fit ``max_size`` (H, W) when
    given: smoke runs). ``toycity`` is generated on first use.
    """
    cls = dataset_class(name)
    cls.ensure(Path(root))
    transform = (train_transform(tuple(crop), tuple(scale_range), flip) if train
                 else eval_transform(None if max_size is None else tuple(max_size)))
    return cls(root, split, transform=transform, max_images=max_images)


def check_dataset(name: str, root: str | Path, splits: list[str] | tuple[str, ...] | None = None,
                  *, read_all: bool = False, progress: bool = False) -> None:
    """Check ``splits`` (default: train and val) of ``name`` under ``root``.

    Default, before training: layout, pairing and the header of every file (sizes, modes), the
    first pairs read whole. ``read_all`` (``data check``): every file read and checked whole
    (``progress``: a bar per split). Raises :class:`DataError` naming the bad file or folder and
    the expected layout. ``toycity`` is generated first if the folder does not hold it yet.
    """
    cls = dataset_class(name)
    cls.ensure(Path(root))
    for split in splits or cls.default_splits:
        count = cls.check(Path(root), split, read_all=read_all, progress=progress)
        log.info("%s %s: %d image/label pairs under %s", name, split, count, root)


def dataset_fingerprint(name: str, root: str | Path, splits: list[str] | tuple[str, ...],
                        planned: bool = False) -> dict[str, object]:
    """What identifies the data of ``splits`` of ``name`` under ``root`` (toycity: generator
    version and parameters; real data: the hash of each split's file list); a missing root or
    split is a DataError. Nothing is generated; ``planned``: a generated dataset not generated
    yet has the fingerprint the workflow's ``data prepare`` will give it."""
    cls = dataset_class(name)
    found = cls.planned_fingerprint if planned else cls.fingerprint
    return {"name": name, **found(Path(root), tuple(splits))}


def prepare_dataset(name: str, root: str | Path, *, read_all: bool = False, progress: bool = False,
                    **generator_options: int) -> Path:
    """Make ``name`` ready at ``root``: a generated dataset is generated if missing (seeded),
    then every dataset is checked (:func:`check_dataset` with ``read_all`` and ``progress``).

    ``generator_options`` (generated datasets only; toycity: ``seed``, ``num_train``,
    ``num_val``, ``height``, ``width``): an existing folder made with other values is a DataError.
    """
    root = Path(root)
    cls = dataset_class(name)
    if cls.generated:
        cls.generate(root, **generator_options)
    elif generator_options:
        raise DataError(f"dataset {name} cannot be generated; options {sorted(generator_options)} "
                        "apply to generated datasets (toycity) only")
    check_dataset(name, root, read_all=read_all, progress=progress)
    return root
