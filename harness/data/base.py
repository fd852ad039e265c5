"""What every dataset provides; the engine and workflow use only this."""
from __future__ import annotations

from typing import ClassVar

from torch.utils.data import Dataset

from harness.registry import Registry

DATASETS: Registry[type[SegDataset]] = Registry("dataset")

RGB = tuple[int, int, int]


def hex_palette(text: str) -> tuple[RGB, ...]:
    """``"ff0000 00ff00"`` -> ((255, 0, 0), (0, 255, 0)): palettes written compactly."""
    return tuple((int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for h in text.split())


class SegDataset(Dataset):
    """A split of a segmentation dataset on disk.

    ``__getitem__`` returns ``(image, label)``: a float tensor (3, H, W) after the transform and
    an int64 tensor (H, W) of train ids with 255 = ignore.
    """

    name: ClassVar[str]
    num_classes: ClassVar[int]
    class_names: ClassVar[tuple[str, ...]]
    #: the dataset's official colour per class, (R, G, B) in 0..255, for figures
    palette: ClassVar[tuple[tuple[int, int, int], ...]]
    #: the colour of ignored (255) pixels in figures
    ignore_colour: ClassVar[tuple[int, int, int]] = (0, 0, 0)
    #: the published protocol starts from ImageNet-pretrained encoders
    #: (docs/protocol.md §Models); runs without ``model.pretrained`` are flagged in
    #: ``grid check`` and the tables
    pretrained_expected: ClassVar[bool] = True
    #: one line describing the expected layout under the root, quoted in errors
    layout: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
