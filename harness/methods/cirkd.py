"""CIRKD: cross-image relational knowledge distillation.

Yang et al., "Cross-Image Relational Knowledge Distillation for Semantic Segmentation",
CVPR 2022 (reference code winycg/CIRKD v1). The math is ``docs/methods.md §CIRKD``.

Terms (already weighted), all on the head feature after ASPP/PSP (``SegOutput.decoder_feature``),
L2-normalised over channels, teacher resized to the student's grid:

- ``loss_kd``: pixel KD on the logits (T=1, all pixels, ``T^2`` factor), as in the reference.
- ``loss_p2p_batch``: mini-batch pixel-to-pixel relation KL, images paired within groups of 2.
- ``loss_pixel_memory`` / ``loss_region_memory``: KL between the student's and the teacher's
  similarity distributions over a random subset of per-class queues of teacher pixel / region
  embeddings (the student goes through a projection head first).

Choices where we deviate or interpret (each is an option or stated here):

- Pixel entries come from the class's own pixels (``pixel_sampling="class"``). The reference
  indexes the image with ``randperm(n_c)[:16]`` (``n_c`` = the class's pixel count), i.e. it
  draws among the first ``n_c`` positions in raster order, whatever their class;
  ``pixel_sampling="reference"`` reproduces that for runs that must match published numbers.
- Under DDP the teacher embeddings and labels of every process are all-gathered before the
  enqueue, as in the reference, so every process writes the same entries and holds the same
  queues.
- The queues are true ring buffers: entries are written at ``(ptr + i) % size``. The reference
  writes the last ``K`` slots and resets the pointer to 0 when a pixel batch would cross the end;
  the two agree except at the wrap. If one step brings a class more entries than its queue holds
  (tiny demo queues), only the last ``size`` of them are kept, so no slot is written twice.
- The enqueue is vectorised: region entries come from :func:`class_means`; up to 16 random
  pixels per (image, class) are chosen by a random sort (no loop over pixels or classes).
  Entries are written in the reference's order (image by image).
- Negatives: one random index set of ``4096 // K + 1`` (pixels) / ``1024 // K + 1`` (regions)
  is drawn per step and applied to every class, as the reference's ``_sample_negative`` does.
- The projection head is :class:`Projector` (``kind="mlp"``); its last 1x1 conv has a bias where
  the reference's has none (a constant offset before L2-normalisation; harmless, kept shared).
- Mini-batch relations: the reference forms all ``B x B`` pairs of the 2 images on one GPU;
  on one device we form groups of ``p2p_group`` consecutive images and average over all
  ``(i, j)`` pairs (self-pairs included) of every group. Average pooling before them:
  ``p2p_pool`` (the 2023 code's 2x2 ``pooling`` flag, on in its SegFormer script) or
  ``p2p_auto_pool`` (the 2025 code: 4x4 whenever the map is at least 256x256).
- The pixel queue size and the 2x2 pooling follow the student's family unless set, as the
  reference picks them by script: 20000 and none for CNN students (``train_cirkd.py``), 2000
  and 2x2 for SegFormer students (``train_cirkd_segformer.py``); presets ``cnn`` /
  ``segformer`` force one. docs/deviations.md lists every difference from the reference.
- All randomness (pixel choice, negatives) comes from torch's global RNG, so a seed repeats it.

Memory (one step at a 512x1024 crop, OS8 -> 64x128 = 8192 positions, B=2, D=256, K=19):
the queues are ``19 x (20000 + 2000) x 256 x 4 B = 428 MB`` of buffers (checkpointed too).
A full pixel relation matrix would be ``8192^2 x 4 B = 268 MB`` per pair. The relation KL has
its gradient written out (``common.soft_kl_sum``: the backward keeps one matrix,
``softmax(s) - softmax(t)``, instead of autograd's several), and the step may keep at most
``saved_budget`` float32 elements (256 MB) for all its relations; past that, every relation/memory
KL is computed in row chunks of ``row_chunk`` anchors under activation checkpointing, so only one
chunk's ``row_chunk x 8192`` matrices live at once (2048 rows: 67 MB each) and the backward
recomputes them. Memory KL logits are ``N_anchors x 4115`` (pixels) and ``x 1026`` (regions),
handled the same way. On the demo (segformer_tiny student at 64x128, batch 8: 4096 anchors x 4100
pixel negatives) everything fits the budget. A SegFormer student's head feature is at 1/4
(128x256 at a 512x1024 crop): unpooled, the relations would cost 16x the 64x128 time at the same
chunked memory; the 2x2 pooling SegFormer students get by default (``p2p_pool``, the
reference's ``pooling`` flag) brings them back to the 64x128 cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from harness import IGNORE_INDEX
from harness.errors import ConfigError
from harness.methods.base import METHODS, Distiller, Options
from harness.methods.common import (
    Projector,
    class_means,
    loss_precision,
    pixel_kl,
    resize_labels,
    resize_to,
    soft_kl_sum,
)
from harness.models.base import ModelInfo, SegOutput


@dataclass(frozen=True)
class CIRKDOptions(Options):
    lambda_kd: float = 1.0  # CIRKD train script --lambda-kd 1.0 (docs/methods.md §CIRKD)
    kd_temperature: float = 1.0  # CIRKD --kd-temperature 1.0
    lambda_p2p_batch: float = 1.0  # CIRKD --lambda-minibatch-pixel 1.0
    lambda_pixel_memory: float = 0.1  # CIRKD --lambda-memory-pixel 0.1 (VOC 0.01)
    lambda_region_memory: float = 0.1  # CIRKD --lambda-memory-region 0.1 (VOC 0.01)
    p2p_tau: float = 0.1  # CIRKD --contrast-temperature / mini-batch temperature 0.1
    p2p_group: int = 2  # reference: 2 images per GPU are paired with each other
    # reference `pooling` flag (2x2 avg-pool before relations); None: by the student's family
    p2p_pool: int | None = None
    p2p_auto_pool: bool = False  # CIRKD 2025: 4x4 avg-pool when the map is >= 256x256
    memory_tau: float = 0.1  # CIRKD contrast_temperature 0.1
    memory_temperature: float = 1.0  # CIRKD contrast_kd_temperature T' = 1
    pixel_queue_size: int | None = None  # CIRKD pixel_memory_size; None: by the student's family
    region_queue_size: int = 2000  # CIRKD region_memory_size
    pixels_per_class: int = 16  # CIRKD pixel_update_freq
    # ours: the class's own pixels; "reference": CIRKD's draw among the first n_c positions
    pixel_sampling: Literal["class", "reference"] = "class"
    pixel_negatives: int = 4096  # CIRKD pixel_contrast_size = 4096 // K + 1 per class
    region_negatives: int = 1024  # CIRKD region_contrast_size = 1024 // K + 1 per class
    row_chunk: int = 2048  # ours: anchors per relation chunk (bounds memory, same result)
    # ours: float32 elements the backward may keep for all relations of one step (256 MB); past
    # it, chunks are recomputed in the backward instead of kept (same result, less memory)
    saved_budget: int = 2**26


# --------------------------------------------------------------------------- pure losses


def _relation_kl_sum(anchor_s: torch.Tensor, keys_s: torch.Tensor, anchor_t: torch.Tensor,
                     keys_t: torch.Tensor, scale: float) -> torch.Tensor:
    """sum over rows of KL(softmax(a_t k_t^T * scale) || softmax(a_s k_s^T * scale)), float32.

    The scale multiplies the (rows, C) anchors rather than the (rows, M) similarities: one pass
    over the small side.
    """
    with torch.no_grad():
        logits_t = (anchor_t * scale) @ keys_t.T
    return soft_kl_sum((anchor_s * scale) @ keys_s.T, logits_t)


def relation_kl(anchor_s: torch.Tensor, keys_s: torch.Tensor, anchor_t: torch.Tensor,
                keys_t: torch.Tensor, tau: float, row_chunk: int = 2048,
                saved_budget: int = 2**26) -> torch.Tensor:
    """Summed row-wise relation KL, computed in chunks of ``row_chunk`` anchors.

    anchor_s (N, C_s), keys_s (M, C_s), anchor_t (N, C_t), keys_t (M, C_t); C_s may differ from
    C_t. Row n compares softmax_m(anchor_t[n] . keys_t[m] / tau) (target) with the student's.
    Returns a float32 scalar: the sum over the N rows (callers divide). The backward keeps one
    (N, M) float32 matrix; when that exceeds ``saved_budget`` elements (256 MB) each chunk runs
    under activation checkpointing instead, so at most one chunk's (row_chunk, M) matrices are
    alive at once and the backward recomputes them.
    """
    anchor_s, keys_s, anchor_t, keys_t = (x.float() for x in (anchor_s, keys_s, anchor_t, keys_t))
    anchor_t, keys_t = anchor_t.detach(), keys_t.detach()
    scale = 1.0 / tau
    needs_grad = torch.is_grad_enabled() and (anchor_s.requires_grad or keys_s.requires_grad)
    recompute = needs_grad and anchor_s.shape[0] * keys_s.shape[0] > saved_budget
    total = anchor_s.new_zeros(())
    for start in range(0, anchor_s.shape[0], row_chunk):
        rows = slice(start, start + row_chunk)
        if recompute:
            part = checkpoint(_relation_kl_sum, anchor_s[rows], keys_s, anchor_t[rows], keys_t,
                              scale, use_reentrant=False)
        else:
            part = _relation_kl_sum(anchor_s[rows], keys_s, anchor_t[rows], keys_t, scale)
        total = total + part
    return total


def p2p_batch_loss(feat_s: torch.Tensor, feat_t: torch.Tensor, tau: float = 0.1, group: int = 2,
                   row_chunk: int = 2048, saved_budget: int = 2**26) -> torch.Tensor:
    """Mini-batch pixel-to-pixel relation KL.

    feat_s (B, C_s, H, W), feat_t (B, C_t, H, W) on the same grid (not yet normalised).
    Images are grouped as [0, group), [group, 2*group), ...; for every ordered pair (i, j) of a
    group (i == j included), S_ij = f_i^T f_j / tau (HW x HW) and the term is the mean over
    rows of KL(softmax(S^t_ij) || softmax(S^s_ij)); the loss is the mean over all pairs.
    ``saved_budget`` is shared by all pairs (their graphs live until the backward).
    """
    emb_s = F.normalize(feat_s.float(), dim=1).flatten(2).transpose(1, 2)  # B, HW, C_s
    emb_t = F.normalize(feat_t.float(), dim=1).flatten(2).transpose(1, 2)  # B, HW, C_t
    batch, positions = emb_s.shape[:2]
    sizes = [min(first + group, batch) - first for first in range(0, batch, group)]
    budget = saved_budget // max(1, sum(size * size for size in sizes))
    total = emb_s.new_zeros(())
    pairs = 0
    for first in range(0, batch, group):
        members = range(first, min(first + group, batch))
        for i in members:
            for j in members:
                total = total + relation_kl(emb_s[i], emb_s[j], emb_t[i], emb_t[j], tau,
                                            row_chunk, budget) / positions
                pairs += 1
    return total / pairs


def memory_kl_loss(anchor_s: torch.Tensor, anchor_t: torch.Tensor, keys: torch.Tensor,
                   tau: float = 0.1, temperature: float = 1.0,
                   row_chunk: int = 2048, saved_budget: int = 2**26) -> torch.Tensor:
    """Anchor-to-memory KL, batch-mean over anchors:
    ``T'^2 / N * sum_n KL(softmax(t_n Q^T / (tau T')) || softmax(s_n Q^T / (tau T')))``.

    anchor_s (N, D) projected, normalised student embeddings; anchor_t (N, D) teacher
    embeddings; keys (M, D) the sampled queue entries. Returns a float32 scalar (0 with a
    graph when N == 0).
    """
    if anchor_s.shape[0] == 0:
        return anchor_s.float().sum() * 0.0
    keys = keys.detach()
    total = relation_kl(anchor_s, keys, anchor_t, keys, tau * temperature, row_chunk,
                        saved_budget)
    return total * temperature**2 / anchor_s.shape[0]


def p2p_pool_size(size: tuple[int, int], pool: int, auto: bool) -> int:
    """The average-pooling window before the mini-batch relations: 4 when ``auto`` and the map
    is at least 256x256 (CIRKD 2025), else ``pool`` (the 2023 ``pooling`` flag: 2)."""
    if auto and min(size) >= 256:
        return 4
    return pool


def sample_negatives(queue: torch.Tensor, per_class: int) -> torch.Tensor:
    """(K, S, D) queue -> (K * min(per_class, S), D): the same random slot subset of every class."""
    index = torch.randperm(queue.shape[1])[:per_class].to(queue.device)
    return queue[:, index].reshape(-1, queue.shape[-1])


@torch.no_grad()
def ring_write(queue: torch.Tensor, ptr: torch.Tensor, classes: torch.Tensor,
               values: torch.Tensor) -> None:
    """Append ``values`` (n, D) to the per-class ring buffers ``queue`` (K, S, D), in place.

    ``classes`` (n,) gives each entry's class; entries of one class are written in the given
    order at ``ptr[c], ptr[c] + 1, ...`` (mod S) and ``ptr`` (K,) advances by their count.
    If a class gets more than S entries, only its last S are written (each slot once).
    """
    num_classes, size, _ = queue.shape
    if classes.numel() == 0:
        return
    counts = torch.bincount(classes, minlength=num_classes)
    order = torch.argsort(classes, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(classes)
    rank[order] = torch.arange(classes.numel(), device=classes.device) - starts[classes[order]]
    keep = rank >= counts[classes] - size
    slots = (ptr[classes] + rank) % size
    queue[classes[keep], slots[keep]] = values[keep].to(queue.dtype)
    ptr.copy_((ptr + counts) % size)


@torch.no_grad()
def select_pixels(
    labels: torch.Tensor, num_classes: int, per_class: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Up to ``per_class`` random pixels of every (image, class) present in ``labels`` (B, H, W).

    Returns (image, flat position, class) index tensors, ordered by image, then class, then
    the random draw. One random key per pixel and two stable sorts do it without loops.
    """
    batch = labels.shape[0]
    flat = labels.flatten(1)  # B, N
    positions = flat.shape[1]
    shuffled = torch.argsort(torch.rand(flat.shape, device=flat.device), dim=1)
    by_class = torch.argsort(flat.gather(1, shuffled), dim=1, stable=True)
    index = shuffled.gather(1, by_class)  # B, N: positions grouped by class, random within
    sorted_labels = flat.gather(1, index)
    valid = (sorted_labels != ignore_index) & (sorted_labels < num_classes)
    safe = torch.where(valid, sorted_labels, torch.zeros_like(sorted_labels))
    counts = torch.zeros(batch, num_classes, dtype=torch.long, device=flat.device)
    counts.scatter_add_(1, safe, valid.long())
    starts = torch.cumsum(counts, 1) - counts  # B, K: first sorted position of each class
    rank = torch.arange(positions, device=flat.device) - starts.gather(1, safe)
    chosen = valid & (rank < per_class)
    image, slot = chosen.nonzero(as_tuple=True)
    return image, index[image, slot], sorted_labels[image, slot]


@torch.no_grad()
def select_pixels_raster(
    labels: torch.Tensor, num_classes: int, per_class: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference's draw: for every (image, class) present in ``labels`` (B, H, W), up to
    ``per_class`` random positions among the first ``n_c`` positions of the image in raster
    order (``n_c`` = the class's pixel count in that image), whatever their label.

    Returns (image, flat position, class) as :func:`select_pixels`, ordered by image, class,
    then the random draw. One random key per (pair, position); keys past ``n_c`` never win.
    """
    batch, positions = labels.shape[0], labels[0].numel()
    flat = labels.flatten(1)
    valid = (flat != ignore_index) & (flat < num_classes)
    counts = torch.zeros(batch, num_classes, dtype=torch.long, device=flat.device)
    counts.scatter_add_(1, torch.where(valid, flat, torch.zeros_like(flat)), valid.long())
    image, cls = counts.nonzero(as_tuple=True)  # image-major, classes ascending
    size = counts[image, cls]
    keys = torch.rand(image.numel(), positions, device=flat.device)
    keys[torch.arange(positions, device=flat.device) >= size[:, None]] = 2.0  # above any draw
    take = min(per_class, positions)
    drawn = keys.topk(take, dim=1, largest=False).indices  # pairs x take, random order
    pair, slot = (torch.arange(take, device=flat.device) < size[:, None]).nonzero(as_tuple=True)
    return image[pair], drawn[pair, slot], cls[pair]


PIXEL_SAMPLING = {"class": select_pixels, "reference": select_pixels_raster}


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, ...) of every process concatenated on dim 0 in rank order (no gradient), as
    the reference's ``concat_all_gather``; ``x`` itself without a process group."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    world = torch.distributed.get_world_size()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def enqueue(pixel_queue: torch.Tensor, pixel_ptr: torch.Tensor, region_queue: torch.Tensor,
            region_ptr: torch.Tensor, emb_t: torch.Tensor, labels: torch.Tensor,
            pixels_per_class: int = 16, ignore_index: int = IGNORE_INDEX,
            sampling: str = "class") -> None:
    """Push teacher embeddings into the queues, in place.

    emb_t (B, D, H, W) L2-normalised teacher embeddings; labels (B, H, W) on the same grid.
    Per image and present class: 1 region entry (masked mean, re-normalised) and up to
    ``pixels_per_class`` random pixel entries, drawn by ``PIXEL_SAMPLING[sampling]``.
    """
    num_classes = pixel_queue.shape[0]
    emb_t = emb_t.detach().float()
    means, present = class_means(emb_t, labels, num_classes, ignore_index)  # B,K,D ; B,K
    image, cls = present.nonzero(as_tuple=True)  # image-major, as the reference loops
    ring_write(region_queue, region_ptr, cls, F.normalize(means[image, cls], dim=-1))
    select = PIXEL_SAMPLING[sampling]
    image, position, cls = select(labels, num_classes, pixels_per_class, ignore_index)
    values = emb_t.flatten(2)[image, :, position]  # n, D
    ring_write(pixel_queue, pixel_ptr, cls, F.normalize(values, dim=-1))


# --------------------------------------------------------------------------- the method


@METHODS.register("cirkd")
class CIRKD(Distiller):
    """Cross-image relational KD (see the module docstring)."""

    label = "CIRKD"

    Options = CIRKDOptions
    presets: dict[str, dict[str, Any]] = {
        "cityscapes": {},  # the reference defaults
        "ade20k": {},  # CIRKD reports ADE20K with the Cityscapes weights
        "camvid": {},  # CIRKD reports CamVid with the Cityscapes weights
        "voc": {"lambda_pixel_memory": 0.01, "lambda_region_memory": 0.01},  # CIRKD VOC script
        # one family's settings for any student (see family_defaults)
        "cnn": {"pixel_queue_size": 20000, "p2p_pool": 1},
        "segformer": {"pixel_queue_size": 2000, "p2p_pool": 2},
        # ours (docs/deviations.md): a tenth of the reference queues and a quarter of its
        # negatives per anchor, so CPU demo runs and checkpoints stay small
        "toycity": {"pixel_queue_size": 2000, "region_queue_size": 200,
                    "pixel_negatives": 1024, "region_negatives": 256},
    }

    family_defaults = {
        # train_cirkd.py: --pixel-memory-size 20000, no pooling
        "cnn": {"pixel_queue_size": 20000, "p2p_pool": 1},
        # train_cirkd_segformer.py (pooling=True) and its script (--pixel-memory-size 2000)
        "transformer": {"pixel_queue_size": 2000, "p2p_pool": 2},
    }

    def __init__(self, student: ModelInfo, teacher: ModelInfo | None,
                 options: CIRKDOptions) -> None:
        super().__init__(student, teacher, options)
        options = self.options  # family defaults resolved
        assert teacher is not None
        if options.pixel_sampling not in PIXEL_SAMPLING:
            raise ConfigError(f"unknown cirkd pixel_sampling {options.pixel_sampling!r}; "
                              f"valid: {', '.join(PIXEL_SAMPLING)}")
        num_classes = student.num_classes
        dim = teacher.decoder_channels
        self.num_classes = num_classes
        self.project = Projector(student.decoder_channels, dim, kind="mlp")
        # Queues of teacher embeddings: random unit vectors until real entries replace them.
        pixel_queue = torch.randn(num_classes, options.pixel_queue_size, dim)
        region_queue = torch.randn(num_classes, options.region_queue_size, dim)
        self.register_buffer("pixel_queue", F.normalize(pixel_queue, dim=2))
        self.register_buffer("pixel_ptr", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("region_queue", F.normalize(region_queue, dim=2))
        self.register_buffer("region_ptr", torch.zeros(num_classes, dtype=torch.long))

    def forward(self, out_s: SegOutput, out_t: SegOutput | None,
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        assert out_t is not None
        opt = self.options
        feat_s = out_s.decoder_feature
        size = tuple(feat_s.shape[-2:])
        losses: dict[str, torch.Tensor] = {}
        with loss_precision(feat_s.device.type):
            feat_s = feat_s.float()
            feat_t = resize_to(out_t.decoder_feature.detach().float(), size)
            if opt.lambda_kd > 0:
                logits_t = resize_to(out_t.logits.detach().float(), tuple(out_s.logits.shape[-2:]))
                kd = pixel_kl(logits_t, out_s.logits, opt.kd_temperature).mean()
                losses["loss_kd"] = opt.lambda_kd * opt.kd_temperature**2 * kd
            if opt.lambda_p2p_batch > 0:
                pool = p2p_pool_size(size, opt.p2p_pool, opt.p2p_auto_pool)
                pooled_s, pooled_t = feat_s, feat_t
                if pool > 1:
                    pooled_s = F.avg_pool2d(feat_s, pool, ceil_mode=True)
                    pooled_t = F.avg_pool2d(feat_t, pool, ceil_mode=True)
                losses["loss_p2p_batch"] = opt.lambda_p2p_batch * p2p_batch_loss(
                    pooled_s, pooled_t, opt.p2p_tau, opt.p2p_group, opt.row_chunk,
                    opt.saved_budget // 2)  # half for the relations, half for the memory terms
            if opt.lambda_pixel_memory > 0 or opt.lambda_region_memory > 0:
                losses.update(self._memory_terms(feat_s, feat_t, resize_labels(labels, size)))
        return losses

    def _memory_terms(self, feat_s: torch.Tensor, feat_t: torch.Tensor,
                      labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Enqueue the teacher embeddings, then the two anchor-to-memory KL terms."""
        opt = self.options
        emb_t = F.normalize(feat_t, dim=1)
        # The reference updates the queues before computing the loss of the same step, with
        # the keys of every process (so all processes keep the same queues).
        enqueue(self.pixel_queue, self.pixel_ptr, self.region_queue, self.region_ptr,
                gather_batch(emb_t), gather_batch(labels), opt.pixels_per_class,
                sampling=opt.pixel_sampling)
        emb_s = F.normalize(self.project(feat_s).float(), dim=1)
        valid = (labels != IGNORE_INDEX).flatten()
        anchor_s = emb_s.permute(0, 2, 3, 1).reshape(-1, emb_s.shape[1])[valid]
        anchor_t = emb_t.permute(0, 2, 3, 1).reshape(-1, emb_t.shape[1])[valid]
        terms: dict[str, torch.Tensor] = {}
        # The memory terms share half of the step's budget in proportion to their negatives.
        share = (opt.saved_budget // 2) / (opt.pixel_negatives + opt.region_negatives)
        if opt.lambda_pixel_memory > 0:
            keys = sample_negatives(self.pixel_queue, opt.pixel_negatives // self.num_classes + 1)
            terms["loss_pixel_memory"] = opt.lambda_pixel_memory * memory_kl_loss(
                anchor_s, anchor_t, keys, opt.memory_tau, opt.memory_temperature, opt.row_chunk,
                int(share * opt.pixel_negatives))
        if opt.lambda_region_memory > 0:
            keys = sample_negatives(self.region_queue, opt.region_negatives // self.num_classes + 1)
            terms["loss_region_memory"] = opt.lambda_region_memory * memory_kl_loss(
                anchor_s, anchor_t, keys, opt.memory_tau, opt.memory_temperature, opt.row_chunk,
                int(share * opt.region_negatives))
        return terms
