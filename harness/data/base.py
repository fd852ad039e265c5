"""What every dataset provides; the engine and workflow use only this."""
from __future__ import annotations

from typing import ClassVar

from torch.utils.data import Dataset

from harness.registry import Registry

DATASETS: Registry[type[SegDataset]] = Registry("dataset")


class SegDataset(Dataset):
    """A split of a segmentation dataset on disk.

    ``__getitem__`` returns ``(image, label)``: a float tensor (3, H, W) after the transform and
    an int64 tensor (H, W) of train ids with 255 = ignore.
    """

    name: ClassVar[str]
    num_classes: ClassVar[int]
    class_names: ClassVar[tuple[str, ...]]
    #: one line describing the expected layout under the root, quoted in errors
    layout: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
