"""CamVid (the SegNet 11-class version, 360 x 480).

Layout (docs/protocol.md §Datasets)::

    ROOT/{train,val,test}/<stem>.png
    ROOT/{train,val,test}annot/<stem>.png   0..10 classes, 11 = void (ignored)

255 is accepted as ignore as well.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness import IGNORE_INDEX
from harness.data.base import DATASETS, hex_palette
from harness.data.files import Pair, PairedDataset, identity_label_map, pairs_by_stem, require_dir

CLASS_NAMES = ("sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car",
               "pedestrian", "bicyclist")
#: the 11-class colours of the SegNet CamVid release (its label images' legend)
PALETTE = hex_palette("808080 800000 c0c080 804080 3c28de 808000 c08080 404080 400080 404000 0080c0")
VOID = 11


def camvid_table() -> np.ndarray:
    lut = identity_label_map(len(CLASS_NAMES))
    lut[VOID] = IGNORE_INDEX
    return lut


@DATASETS.register("camvid")
class CamVid(PairedDataset):
    name = "camvid"
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    palette = PALETTE
    layout = "{train,val,test}/*.png + {train,val,test}annot/*.png"
    splits = ("train", "val", "test")
    label_map = camvid_table()
    label_values = "0..10, 11 (void) or 255"

    @classmethod
    def list_pairs(cls, root: Path, split: str) -> list[Pair]:
        images = require_dir(root / split, "CamVid image folder", cls.layout)
        labels = require_dir(root / f"{split}annot", "CamVid label folder", cls.layout)
        return pairs_by_stem(sorted(images.glob("*.png")), labels, ".png", ".png")
