"""Image/label file pairs on disk: reading, checking and the dataset base every loader shares.

Each loader only says *where* its pairs are (:meth:`PairedDataset.list_pairs`) and *how* raw label
values map to train ids (:attr:`PairedDataset.label_map`, a 256-entry lookup table). Everything
else — the up-front layout/pairing check, reading, the per-item checks (corrupt file, size
mismatch, label value outside the class range) and the transform — lives here once.

Every problem is a :class:`~harness.errors.DataError`: one line naming the file or folder and the
expected layout.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from harness import IGNORE_INDEX
from harness.data.base import SegDataset
from harness.errors import DataError

log = logging.getLogger(__name__)

#: entry of a label lookup table for a raw value that is neither a class nor ignore
INVALID = -1
#: how many pairs :func:`PairedDataset.check` reads whole before training (label values); the
#: others have their headers checked
CHECK_OPEN_FIRST = 2
#: threads that read a split for ``data check``
READ_THREADS = 8
#: a split whose decoded pairs would fit in this many bytes is kept in memory once read (the
#: built-in dataset: 13 MB for 400 training pairs); larger splits are read from disk every time
CACHE_BYTES = 256 * 2**20
#: PIL modes of a label file: single channel or palette indices
LABEL_MODES = ("P", "L", "I", "I;16")

Pair = tuple[Path, Path]
Transform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


def identity_label_map(num_classes: int) -> np.ndarray:
    """Lookup table for labels already stored as train ids: 0..K-1 kept, 255 ignore, else invalid."""
    lut = np.full(256, INVALID, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def require_dir(folder: Path, what: str, layout: str) -> Path:
    """Raise a DataError naming ``folder`` and the layout unless it is a directory."""
    if not folder.is_dir():
        raise DataError(f"{what} {folder} is not a folder; expected layout: {layout}")
    return folder


def read_image(path: Path) -> np.ndarray:
    """Read an RGB image as uint8 (H, W, 3); an unreadable file is a DataError naming it."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))  # writable: torch.from_numpy needs it
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises all three for broken files
        raise DataError(f"cannot read image {path} ({err}); replace or remove the file") from None


def read_label(path: Path) -> np.ndarray:
    """Read a single-channel or palette label PNG as its raw values (H, W).

    A palette ("P") PNG yields its palette *indices* (VOC), never the RGB colours.
    """
    try:
        with Image.open(path) as img:
            if img.mode not in LABEL_MODES:
                raise DataError(
                    f"label {path} has mode {img.mode}; expected a single-channel or palette PNG "
                    "of class indices"
                )
            return np.asarray(img)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read label {path} ({err}); replace or remove the file") from None


def _open_header(path: Path, what: str) -> tuple[tuple[int, int], str]:
    """(W, H) and mode from the header of ``path`` (no pixel decoded)."""
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{what} {path} is empty (0 bytes); replace or remove the file")
        with Image.open(path) as img:
            return img.size, img.mode
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read {what} {path} ({err}); replace or remove the file") from None


def check_headers(image_path: Path, label_path: Path) -> None:
    """What can be checked without decoding: both files non-empty, readable image headers, a
    single-channel or palette label, the same size."""
    image_size, _ = _open_header(image_path, "image")
    label_size, mode = _open_header(label_path, "label")
    if mode not in LABEL_MODES:
        raise DataError(f"label {label_path} has mode {mode}; expected a single-channel or palette "
                        f"PNG of class indices")
    if image_size != label_size:
        raise DataError(
            f"image {image_path} is {image_size[0]}x{image_size[1]} (WxH) but its label "
            f"{label_path} is {label_size[0]}x{label_size[1]}; they must have the same size")


def read_every_pair(load_pair: Callable[[Path, Path], object], pairs: Sequence[Pair], desc: str,
                    progress: bool) -> None:
    """Read and check every pair, in order, on a few threads (image decoding releases the GIL);
    the first bad file in list order raises. Logs the time per pair."""
    started = time.perf_counter()
    threads = min(READ_THREADS, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(threads)
    try:  # the arrays are dropped at once: only the checks matter here
        results = pool.map(lambda pair: load_pair(*pair) and None, pairs)
        for _ in tqdm(results, total=len(pairs), desc=desc, unit="pair", disable=not progress,
                      dynamic_ncols=True):
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a bad file stops the reading at once
    seconds = time.perf_counter() - started
    log.info("%s: read %d pairs in %.1f s (%.1f ms per pair, %d threads)", desc, len(pairs),
             seconds, 1000 * seconds / max(len(pairs), 1), threads)


def map_label(raw: np.ndarray, lut: np.ndarray, path: Path, valid: str) -> np.ndarray:
    """Map raw label values through ``lut`` to train ids (uint8, 255 ignore).

    ``valid`` describes the accepted raw values for the error message (e.g. "0..33 or 255").
    """
    bad_high = raw.max(initial=0) > 255 or raw.min(initial=0) < 0
    mapped = lut[np.clip(raw, 0, 255)] if raw.dtype != np.uint8 else lut[raw]
    if bad_high or (mapped == INVALID).any():
        values = np.unique(raw[(mapped == INVALID) | (raw > 255) | (raw < 0)])
        raise DataError(
            f"label {path} has value(s) {values[:5].tolist()} outside the class range "
            f"(accepted: {valid}); fix the label file or point --root at the right dataset"
        )
    return mapped.astype(np.uint8)


class PairedDataset(SegDataset):
    """A split given as a list of (image, label) files; subclasses say where the pairs are.

    Subclasses set ``name``, ``num_classes``, ``class_names``, ``layout``, ``splits``,
    ``label_map`` (256-entry int16 table: raw value -> train id, 255 ignore, -1 invalid) and
    ``label_values`` (human description of the accepted raw values), and implement
    :meth:`list_pairs`.
    """

    label_map: ClassVar[np.ndarray]
    label_values: ClassVar[str]
    #: splits :func:`harness.data.check_dataset` checks when none are given
    default_splits: ClassVar[tuple[str, ...]] = ("train", "val")
    #: True for a dataset this package generates (``data prepare`` makes it); False for one read
    #: from its official download
    generated: ClassVar[bool] = False

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        transform: Transform | None = None,
        max_images: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        pairs = self.find_pairs(self.root, split)
        self.pairs: list[Pair] = pairs[:max_images] if max_images is not None else pairs
        # decoded pairs of a small split (None: not decided yet, decided at the first read)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = None
        self._caching: bool | None = None

    # ---- listing (fast; no file opened) -------------------------------------------------------
    @classmethod
    def ensure(cls, root: Path) -> None:
        """Make the data available at ``root`` if this dataset can (the built-in generator does)."""

    @classmethod
    def generate(cls, root: Path, **options: int) -> dict:
        """Generate the dataset at ``root`` (``generated`` datasets only); returns the generator's
        parameters. ``options`` override them; a folder made with other values is a DataError."""
        raise DataError(f"dataset {cls.name} is read from its official download, not generated")

    @classmethod
    def list_pairs(cls, root: Path, split: str) -> list[Pair]:
        """All (image, label) paths of ``split``, sorted; raise DataError for a wrong layout."""
        raise NotImplementedError

    @classmethod
    def find_pairs(cls, root: Path, split: str) -> list[Pair]:
        """Check root + split name, list the pairs, and check every image has its label."""
        if split not in cls.splits:
            raise DataError(
                f"unknown split {split!r} for dataset {cls.name}; valid splits: {', '.join(cls.splits)}"
            )
        if not root.is_dir():
            raise DataError(f"dataset root {root} does not exist; expected layout: {cls.layout}")
        pairs = cls.list_pairs(root, split)
        if not pairs:
            raise DataError(f"no images found for split {split!r} under {root}; "
                            f"expected layout: {cls.layout}")
        for image_path, label_path in pairs:
            if not label_path.is_file():
                raise DataError(
                    f"image {image_path} has no label (expected {label_path}); expected layout: {cls.layout}"
                )
        return sorted(pairs)

    @classmethod
    def fingerprint(cls, root: Path, splits: Sequence[str]) -> dict[str, str]:
        """What identifies the data of ``splits``: per split, the sha256 of its sorted image and
        label paths relative to ``root`` (one ``image<TAB>label`` line each); see
        docs/protocol.md §Recorded runs."""
        out = {}
        for split in splits:
            lines = "".join(f"{image.relative_to(root)}\t{label.relative_to(root)}\n"
                            for image, label in cls.find_pairs(root, split))
            out[split] = hashlib.sha256(lines.encode("utf-8")).hexdigest()
        return out

    @classmethod
    def planned_fingerprint(cls, root: Path, splits: Sequence[str]) -> dict[str, object]:
        """The fingerprint the data will have when training starts (a generated dataset may not
        be generated yet); for downloaded data, :meth:`fingerprint`."""
        return cls.fingerprint(root, splits)

    @classmethod
    def check(cls, root: str | Path, split: str, *, read_all: bool = False,
              progress: bool = False) -> int:
        """Check a split; returns its pair count.

        Default (before training, seconds for Cityscapes): layout and pairing of every file,
        the header of every file (not empty, a readable image, a label's mode, image and label
        sizes equal), and the first :data:`CHECK_OPEN_FIRST` pairs read whole (label values).
        ``read_all`` (``data check``): every pair read and checked whole, ``progress`` with a bar.
        """
        pairs = cls.find_pairs(Path(root), split)
        if read_all:
            read_every_pair(cls.load_pair, pairs, f"{cls.name} {split}", progress)
            return len(pairs)
        for image_path, label_path in pairs:
            check_headers(image_path, label_path)
        for image_path, label_path in pairs[:CHECK_OPEN_FIRST]:
            cls.load_pair(image_path, label_path)
        return len(pairs)

    # ---- reading one pair ---------------------------------------------------------------------
    @classmethod
    def load_pair(cls, image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Read and check one pair: uint8 image (H, W, 3) and uint8 train ids (H, W)."""
        image = read_image(image_path)
        raw = read_label(label_path)
        if raw.shape != image.shape[:2]:
            raise DataError(
                f"image {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but its label "
                f"{label_path} is {raw.shape[1]}x{raw.shape[0]}; they must have the same size"
            )
        return image, map_label(raw, cls.label_map, label_path, cls.label_values)

    def __len__(self) -> int:
        return len(self.pairs)

    def decoded(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The checked uint8 pair ``index``; kept in memory when the whole split fits
        :data:`CACHE_BYTES` (judged from the first pair read). The transforms never write into it."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image, label = self.load_pair(*self.pairs[index])
        if self._caching is None:
            self._caching = (image.nbytes + label.nbytes) * len(self) <= CACHE_BYTES
            self._cache = {} if self._caching else None
        if self._cache is not None:
            self._cache[index] = (image, label)
        return image, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image float (3, H, W) after the transform and int64 labels (H, W), 255 = ignore."""
        image, label = self.decoded(index)
        if self.transform is None:
            return torch.from_numpy(image).permute(2, 0, 1).float(), torch.from_numpy(label).long()
        return self.transform(image, label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)})"


def pairs_by_stem(
    images: Sequence[Path], label_dir: Path, image_suffix: str, label_suffix: str
) -> list[Pair]:
    """Pair ``<stem><image_suffix>`` images with ``label_dir/<stem><label_suffix>``."""
    pairs = []
    for image_path in images:
        stem = image_path.name[: -len(image_suffix)] if image_suffix else image_path.stem
        pairs.append((image_path, label_dir / f"{stem}{label_suffix}"))
    return pairs
