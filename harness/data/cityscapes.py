"""Cityscapes (fine annotations): 19 train ids from the 34 labelIds, everything else ignored.

Layout (docs/protocol.md §Datasets)::

    ROOT/leftImg8bit/{train,val}/<city>/<stem>_leftImg8bit.png
    ROOT/gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png      (raw ids 0..33, 255 = ignore)
    ROOT/gtFine/{train,val}/<city>/<stem>_gtFine_labelTrainIds.png (used instead when present)

The labelId -> trainId table is the official one (cityscapesScripts ``labels.py``): ids whose
``trainId`` is 255 or -1 there (unlabeled, ego vehicle, ..., guard rail, caravan, trailer,
license plate) become 255 here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.base import DATASETS, hex_palette
from harness.data.files import IGNORE_INDEX, INVALID, Pair, PairedDataset, identity_label_map, require_dir

CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
               "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
               "bus", "train", "motorcycle", "bicycle")
#: trainId colours of cityscapesScripts labels.py (the official palette)
PALETTE = hex_palette(
    "804080 f423e8 464646 66669c be9999 999999 faaa1e dcdc00 6b8e23 98fb98"
    " 4682b4 dc143c ff0000 00008e 000046 003c64 005064 0000e6 770b20")
#: labelId -> trainId for the 19 evaluated classes (cityscapesScripts labels.py)
LABEL_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                        24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NUM_LABEL_IDS = 34
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"


def label_ids_table() -> np.ndarray:
    """256-entry table labelId -> trainId (255 ignore, -1 for values that are no labelId)."""
    lut = np.full(256, INVALID, dtype=np.int16)
    lut[:NUM_LABEL_IDS] = IGNORE_INDEX
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    lut[IGNORE_INDEX] = IGNORE_INDEX  # license plate (id -1) is stored as 255 by some converters
    return lut


class _CityscapesTrainIds(PairedDataset):
    """Pairs whose label is a ``*_labelTrainIds.png`` (values already 0..18 / 255)."""

    label_map = identity_label_map(len(CLASS_NAMES))
    label_values = "train ids 0..18 or 255"


@DATASETS.register("cityscapes")
class Cityscapes(PairedDataset):
    name = "cityscapes"
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    palette = PALETTE
    layout = ("leftImg8bit/{train,val}/<city>/*_leftImg8bit.png + "
              "gtFine/{train,val}/<city>/*_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png)")
    splits = ("train", "val")
    label_map = label_ids_table()
    label_values = "labelIds 0..33 or 255"

    @classmethod
    def list_pairs(cls, root: Path, split: str) -> list[Pair]:
        images = require_dir(root / "leftImg8bit" / split, "Cityscapes image folder", cls.layout)
        labels = require_dir(root / "gtFine" / split, "Cityscapes label folder", cls.layout)
        pairs = []
        for image_path in sorted(images.glob(f"*/*{IMAGE_SUFFIX}")):
            stem = image_path.name[: -len(IMAGE_SUFFIX)]
            city = labels / image_path.parent.name
            train_ids = city / f"{stem}{TRAIN_IDS_SUFFIX}"
            label = train_ids if train_ids.is_file() else city / f"{stem}{LABEL_IDS_SUFFIX}"
            pairs.append((image_path, label))
        return pairs

    @classmethod
    def load_pair(cls, image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
        if label_path.name.endswith(TRAIN_IDS_SUFFIX):
            return _CityscapesTrainIds.load_pair(image_path, label_path)
        return super().load_pair(image_path, label_path)
