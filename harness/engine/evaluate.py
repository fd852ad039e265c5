"""Evaluation: whole image, single scale, logits upsampled to the label size, and one
dataset-level confusion matrix -> mIoU, per-class IoU, pixel accuracy
(docs/protocol.md §Reference protocol). Images go through the model one at a time, or up to
``batch_size`` consecutive images of one size at once (the scores of batch 1 up to float
rounding; docs/protocol.md §Evaluation batch)."""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from harness import IGNORE_INDEX
from harness.engine.step import Precision

log = logging.getLogger(__name__)


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(K, K) int64 counts, rows = true class, columns = predicted class.

    pred, labels: integer tensors of the same shape (any), on the same device. Pixels labelled
    ``ignore_index`` are skipped; one vectorised ``bincount``, no Python loop over classes.
    """
    valid = labels != ignore_index
    codes = labels[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(codes, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores_from_confusion(confusion: torch.Tensor,
                          class_names: Sequence[str] | None = None) -> dict:
    """mIoU, per-class IoU and pixel accuracy (all in percent) from a (K, K) confusion matrix.

    A class with union 0 (absent from the labels and never predicted) has no IoU: it is
    reported as None, listed under ``absent_classes`` and left out of the mean, so a split that
    lacks a class does not count a meaningless 0 or NaN.
    """
    confusion = confusion.double().cpu()
    num_classes = confusion.shape[0]
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a {num_classes}-class confusion matrix")
    true_positive = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    present = union > 0
    iou = torch.where(present, true_positive / union.clamp_min(1), torch.zeros_like(union))
    total = confusion.sum()
    per_class = {name: (100.0 * float(iou[k]) if present[k] else None) for k, name in enumerate(names)}
    absent = [name for k, name in enumerate(names) if not present[k]]
    return {
        "miou": 100.0 * float(iou[present].mean()) if bool(present.any()) else math.nan,
        "per_class_iou": per_class,
        "pixel_accuracy": 100.0 * float(true_positive.sum() / total) if total > 0 else math.nan,
        "absent_classes": absent,
    }


def predict_logits(model: nn.Module, images: torch.Tensor, size: tuple[int, int],
                   align_corners: bool = False) -> torch.Tensor:
    """Student logits (B, K, H, W) upsampled (bilinear) to the label ``size``
    (``align_corners`` as the protocol says, docs/protocol.md §Resizing)."""
    logits = model(images).logits
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=align_corners)


def same_size_batches(items: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stack runs of up to ``batch_size`` consecutive (image, labels) items of one size."""
    images: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for image, label in items:
        if images and (len(images) == batch_size or image.shape != images[0].shape
                       or label.shape != labels[0].shape):
            yield torch.stack(images), torch.stack(labels)
            images, labels = [], []
        images.append(image)
        labels.append(label)
    if images:
        yield torch.stack(images), torch.stack(labels)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, num_classes: int | None = None,
             class_names: Sequence[str] | None = None, device: torch.device | str = "cpu",
             precision: Precision | None = None, max_images: int | None = None,
             rank: int = 0, world_size: int = 1, align_corners: bool = False,
             batch_size: int = 1) -> dict:
    """Evaluate ``model`` on ``dataset`` (items: image (3, H, W), labels (H, W)) under
    ``precision`` (default: float32, contiguous), up to ``batch_size`` same-size images at once.

    Under DDP each rank takes every ``world_size``-th image and the confusion matrices are
    summed across ranks, so every rank returns the same dataset-level scores.
    Returns the keys of :func:`scores_from_confusion` plus ``images``.
    """
    device = torch.device(device)
    num_classes = num_classes or dataset.num_classes
    class_names = class_names or getattr(dataset, "class_names", None)
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    shard = Subset(dataset, range(rank, count, world_size))
    # items one by one (whole images of a real dataset differ in size), stacked while their size
    # repeats. Its own generator: a DataLoader draws a base seed when iterated, which must not
    # advance the training run's global RNG (an evaluation every N iterations leaves the
    # training identical).
    loader = DataLoader(shard, batch_size=None, shuffle=False, num_workers=0, generator=torch.Generator())
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    precision = precision or Precision(amp=False, channels_last=False)
    try:
        for images, labels in same_size_batches(loader, batch_size):
            images = precision.images(images.to(device, non_blocking=True))
            labels = labels.to(device, non_blocking=True)
            with precision.autocast(device):
                logits = predict_logits(model, images, tuple(labels.shape[-2:]), align_corners)
            confusion += confusion_matrix(logits.argmax(1), labels, num_classes)
    finally:
        model.train(was_training)
    if world_size > 1:
        torch.distributed.all_reduce(confusion)
    scores = scores_from_confusion(confusion, class_names)
    if scores["absent_classes"]:
        log.info("classes absent from the labels and the predictions (left out of the mIoU): %s",
                 ", ".join(scores["absent_classes"]))
    scores["images"] = count
    return scores
