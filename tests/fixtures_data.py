"""Writers of tiny datasets in exactly the real on-disk layouts (docs/protocol.md §Datasets),
for the data tests.

Every writer fills its label maps from a known sequence of raw values (one value per column, in a
repeating cycle) so a test can compute the expected train ids by hand. Sizes are (H, W) = (16, 32).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 16, 32
#: raw labelIds per column cycle: road, sidewalk, unlabeled(0->255), building, car, ego vehicle(1->255),
#: bicycle, guard rail(14->255)
CITYSCAPES_IDS = (7, 8, 0, 11, 26, 1, 33, 14)
CITYSCAPES_TRAIN = (0, 1, 255, 2, 13, 255, 18, 255)
VOC_VALUES = (0, 1, 15, 20, 255)  # background, aeroplane, person, tvmonitor, boundary (ignore)
ADE_VALUES = (0, 1, 2, 150)  # other (ignore), wall, building, flag
ADE_TRAIN = (255, 0, 1, 149)
CAMVID_VALUES = (0, 3, 10, 11)  # sky, road, bicyclist, void
CAMVID_TRAIN = (0, 3, 10, 255)


def column_cycle(values: tuple[int, ...], h: int = H, w: int = W) -> np.ndarray:
    """(h, w) uint8 map whose column x holds ``values[x % len(values)]``."""
    row = np.array([values[x % len(values)] for x in range(w)], np.uint8)
    return np.tile(row, (h, 1))


def random_rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def voc_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved), 256 RGB entries flattened."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_cityscapes(root: Path, n: int = 2, cities: tuple[str, ...] = ("aachen",),
                     train_ids: bool = False) -> Path:
    """``n`` images per split and city; labelIds (and labelTrainIds when ``train_ids``)."""
    for split in ("train", "val"):
        for city in cities:
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                stem = f"{city}_{i:06d}_000019"
                images = root / "leftImg8bit" / split / city
                Image.fromarray(random_rgb(i)).save(images / f"{stem}_leftImg8bit.png")
                gt = root / "gtFine" / split / city
                Image.fromarray(column_cycle(CITYSCAPES_IDS)).save(gt / f"{stem}_gtFine_labelIds.png")
                if train_ids:
                    train_ids = Image.fromarray(column_cycle(CITYSCAPES_TRAIN))
                    train_ids.save(gt / f"{stem}_gtFine_labelTrainIds.png")
    return root


def write_voc(root: Path, n_train: int = 3, n_val: int = 2) -> Path:
    """JPEG images, train_aug labels as single-channel PNGs, val labels as palette ("P") PNGs."""
    for folder in ("JPEGImages", "SegmentationClassAug", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    train_ids = [f"2007_{i:06d}" for i in range(n_train)]
    val_ids = [f"2008_{i:06d}" for i in range(n_val)]
    for i, image_id in enumerate(train_ids + val_ids):
        Image.fromarray(random_rgb(i)).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
    for image_id in train_ids:
        label = Image.fromarray(column_cycle(VOC_VALUES), mode="L")
        label.save(root / "SegmentationClassAug" / f"{image_id}.png")
    for image_id in val_ids:
        label = Image.fromarray(column_cycle(VOC_VALUES), mode="P")
        label.putpalette(voc_palette())
        label.save(root / "SegmentationClass" / f"{image_id}.png")
    lists = root / "ImageSets" / "Segmentation"
    # train_aug written as "image label" path pairs (a common format), val as plain ids
    (lists / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in train_ids))
    (lists / "val.txt").write_text("".join(f"{i}\n" for i in val_ids))
    return root


def write_ade20k(root: Path, n: int = 2) -> Path:
    for folder in ("training", "validation"):
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"ADE_{folder[:5]}_{i:08d}"
            Image.fromarray(random_rgb(i)).save(root / "images" / folder / f"{stem}.jpg")
            Image.fromarray(column_cycle(ADE_VALUES)).save(root / "annotations" / folder / f"{stem}.png")
    return root


def write_camvid(root: Path, counts: dict[str, int] | None = None) -> Path:
    for split, n in (counts or {"train": 3, "val": 2, "test": 1}).items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(random_rgb(i)).save(root / split / f"0001TP_{i:06d}.png")
            Image.fromarray(column_cycle(CAMVID_VALUES)).save(root / f"{split}annot" / f"0001TP_{i:06d}.png")
    return root
