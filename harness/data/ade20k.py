"""ADE20K (ADEChallengeData2016, SceneParsing benchmark), 150 classes.

Layout (docs/protocol.md §Datasets)::

    ROOT/images/{training,validation}/<stem>.jpg
    ROOT/annotations/{training,validation}/<stem>.png   0 = other/unlabelled, 1..150 = classes

Label 0 becomes 255 (ignore) and every other value v becomes v - 1 (mmseg's ``reduce_zero_label``).
The harness's split names train / val map to the folders training / validation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness import IGNORE_INDEX
from harness.data.base import DATASETS
from harness.data.files import INVALID, Pair, PairedDataset, pairs_by_stem, require_dir

# objectInfo150 short names, in label order 1..150
CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
SPLIT_FOLDERS = {"train": "training", "val": "validation"}


def reduce_zero_table(num_classes: int) -> np.ndarray:
    """0 -> 255, v -> v - 1 for 1..K, anything larger invalid."""
    lut = np.full(256, INVALID, dtype=np.int16)
    lut[0] = IGNORE_INDEX
    lut[1 : num_classes + 1] = np.arange(num_classes)
    return lut


@DATASETS.register("ade20k")
class ADE20K(PairedDataset):
    name = "ade20k"
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    layout = "images/{training,validation}/*.jpg + annotations/{training,validation}/*.png"
    splits = ("train", "val")
    label_map = reduce_zero_table(len(CLASS_NAMES))
    label_values = "0 (ignore) or 1..150"

    @classmethod
    def list_pairs(cls, root: Path, split: str) -> list[Pair]:
        folder = SPLIT_FOLDERS[split]
        images = require_dir(root / "images" / folder, "ADE20K image folder", cls.layout)
        labels = require_dir(root / "annotations" / folder, "ADE20K annotation folder", cls.layout)
        return pairs_by_stem(sorted(images.glob("*.jpg")), labels, ".jpg", ".png")
