"""Pascal VOC 2012 with the SBD augmented training set ("train_aug"), 21 classes.

Layout (docs/protocol.md §Datasets)::

    ROOT/JPEGImages/<id>.jpg
    ROOT/SegmentationClassAug/<id>.png            labels of train_aug (single-channel indices)
    ROOT/SegmentationClass/<id>.png               labels of val / train (palette PNG)
    ROOT/ImageSets/Segmentation/{train_aug,val,train}.txt   one <id> per line

Palette PNGs are read as their palette *indices* (0..20 classes, 255 = the white boundary band,
ignored), never as RGB. A split-list line of the form ``/JPEGImages/<id>.jpg /Segm.../<id>.png``
(as some train_aug lists are written) is accepted too; only the id is used.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.base import DATASETS
from harness.data.files import Pair, PairedDataset, identity_label_map, require_dir
from harness.errors import DataError

CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")


def voc_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """The VOCdevkit colour map (``labelcolormap.m``): the bits of the class index, three at a
    time, fill R, G and B from the most significant bit down."""
    colours = []
    for index in range(count):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((r, g, b))
    return tuple(colours)


LABEL_FOLDERS = {"train_aug": "SegmentationClassAug", "val": "SegmentationClass",
                 "train": "SegmentationClass"}


@DATASETS.register("voc")
class PascalVOC(PairedDataset):
    name = "voc"
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    palette = voc_palette(len(CLASS_NAMES))
    ignore_colour = (224, 224, 192)  # the boundary band's colour in VOC's label PNGs
    layout = ("JPEGImages/*.jpg + SegmentationClassAug/*.png (train_aug) + SegmentationClass/*.png "
              "(val) + ImageSets/Segmentation/{train_aug,val}.txt")
    splits = ("train_aug", "val", "train")
    default_splits = ("train_aug", "val")
    label_map = identity_label_map(len(CLASS_NAMES))
    label_values = "class indices 0..20 or 255"

    @classmethod
    def list_pairs(cls, root: Path, split: str) -> list[Pair]:
        images = require_dir(root / "JPEGImages", "VOC image folder", cls.layout)
        labels = require_dir(root / LABEL_FOLDERS[split], "VOC label folder", cls.layout)
        split_list = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_list.is_file():
            raise DataError(f"VOC split list {split_list} is missing; expected layout: {cls.layout}")
        pairs = []
        for line in split_list.read_text().splitlines():
            if not line.strip():
                continue
            image_id = Path(line.split()[0]).stem
            image_path = images / f"{image_id}.jpg"
            if not image_path.is_file():
                raise DataError(f"image {image_path} listed in {split_list} does not exist; "
                                f"expected layout: {cls.layout}")
            pairs.append((image_path, labels / f"{image_id}.png"))
        return pairs
