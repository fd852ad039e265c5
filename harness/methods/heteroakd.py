"""HeteroAKD: heterogeneous architecture knowledge distillation for semantic segmentation
(the seed paper, AAAI 2025: "... from a heterogeneous perspective").

docs/methods.md §HeteroAKD. The paper's text and code are not available; this is the
form reconstructed in docs/methods.md, with every open choice a named option:

1. Projection. For each selected stage pair ``i`` one projector per side maps the stage
   feature into the K-class logits space: ``Z^i = P^i(F^i)``, ``P`` = ``mlp``
   (conv1x1 C->D, BN, ReLU, conv1x1 D->K; default) or ``conv_bn_relu`` (conv1x1 C->K, BN,
   ReLU). Teacher features are detached; both projectors train, by CE against the labels
   (``proj_ce_weight``, key ``loss_proj``) and the student's also by ``L_hakd``. The teacher's
   projected map is bilinearly resized to the student's stage grid; labels are nearest-resized
   to it.
2. KMM. ``H = BCE(sigmoid(Z), Y)`` per pixel and class (``reliability="bce"``) or the per-pixel
   softmax CE broadcast over classes (``"ce"``). ``S_t = H_s / (H_t + H_s + eps)``,
   ``Z_h = S_t Z_t + (1 - S_t) Z_s``, detached. ``kmm=False``: ``Z_h = Z_t``.
3. KEM. ``delta = max(0, H_s - H(Z_h))``, ``W = softmax(H_s + delta)`` over classes per pixel
   (``kem_axis="class"``) or over the image's non-ignored positions per class (``"space"``).
   ``kem=False``: uniform weights. ``W`` is a weighting, so it is computed from detached
   quantities (no gradient flows through the weights).
4. ``L_hakd``, mean over non-ignored pixels, with ``w = K*W`` on the class axis and
   ``w = N_b*W`` on the space axis (``N_b`` = non-ignored positions of image ``b``): the
   factor that makes uniform weights 1 (docs/methods.md states ``K`` for the class axis; the
   space-axis factor is our reading). How ``w`` enters is ``kem_form``
   (docs/methods.md §HeteroAKD step 4), with ``p_h = softmax(Z_h/T)``:

   - ``target``: ``sum_c w_c * p_h,c * (-log_softmax(Z_s/T)_c)``; the weights reshape the
     soft target.
   - ``pixel``: ``(sum_c w_c * p_h,c) * sum_c p_h,c * (-log_softmax(Z_s/T)_c)``; one detached
     weight per pixel, the target stays ``p_h``.
   - ``binary``: ``sum_c w_c * BCE(sigmoid(Z_s,c/T), sigmoid(Z_h,c/T))``; per-class sigmoid
     distillation, the form of the per-class BCE reliability.

   KEM off (``w = 1``) makes ``target`` and ``pixel`` plain soft cross-entropy and ``binary``
   the unweighted sum of per-class BCEs, on either axis. No ``T^2`` factor (docs/methods.md's
   formula has none).

Total: ``lambda1 * L_kd`` (pixel KD on the final logits, docs/methods.md §KD, key ``loss_kd``)
``+ lambda2 * L_hakd`` (key ``loss_hakd``) ``+ proj_ce_weight * L_proj`` (key ``loss_proj``).

Several stages: ``stages`` (student) and ``teacher_stages`` (default: the same indices) are
indices into ``SegOutput.features`` (negative counts from the deepest); they are paired in
order, and ``L_hakd`` and ``L_proj`` are the averages over the pairs.

With ``lambda2 = 0`` (the "L_kd only" ablation row) no projector is built and neither
``loss_hakd`` nor ``loss_proj`` is returned: the projector CE would otherwise deep-supervise
the student's stage and the row would not be "L_kd only".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
from harness.methods.base import METHODS, Distiller
from harness.methods.base import Options as BaseOptions
from harness.methods.common import (
    Projector,
    ProjectorKind,
    fp32,
    loss_precision,
    masked_mean,
    one_hot,
    resize_labels,
    resize_to,
    valid_mask,
)
from harness.methods.kd import kd_on_outputs
from harness.models.base import ModelInfo, SegOutput

Reliability = Literal["bce", "ce"]
KemAxis = Literal["class", "space"]
KemForm = Literal["target", "pixel", "binary"]


@dataclass(frozen=True)
class Options(BaseOptions):
    stages: tuple[int, ...] = (-1,)  # docs/methods.md §HeteroAKD: last encoder stage of each side
    teacher_stages: tuple[int, ...] | None = None  # None: the same indices as `stages`
    projector: ProjectorKind = "mlp"  # docs/methods.md §HeteroAKD: mlp (default) | conv_bn_relu
    hidden: int = 256  # D of the mlp projector: not stated anywhere; a usual seg-head width
    proj_ce_weight: float = 1.0  # docs/methods.md §HeteroAKD step 1
    reliability: Reliability = "bce"  # docs/methods.md §HeteroAKD step 2: bce (default) | ce
    kmm: bool = True  # docs/methods.md §HeteroAKD step 2 (ablation switch)
    kem: bool = True  # docs/methods.md §HeteroAKD step 3 (ablation switch)
    kem_axis: KemAxis = "class"  # docs/methods.md §HeteroAKD step 3: class (default) | space
    kem_form: KemForm = "target"  # docs/methods.md §HeteroAKD step 4: target (default) | pixel | binary
    temperature: float = 1.0  # docs/methods.md §HeteroAKD step 4: T = 1
    lambda1: float = 0.1  # docs/methods.md §HeteroAKD: one secondary source
    lambda2: float = 1.0  # docs/methods.md §HeteroAKD: not found; the sensitivity grid locates it
    kd_temperature: float = 1.0  # L_kd is the pixel KD of docs/methods.md §KD (T = 1)
    kd_ignore_aware: bool = False  # ... with the references' all-pixel reduction
    eps: float = 1e-6  # keeps S_t defined when H_t = H_s = 0


def reliability(logits: torch.Tensor, target: torch.Tensor, kind: Reliability = "bce") -> torch.Tensor:
    """Per-pixel, per-class unreliability ``H`` (lower = more reliable), float32.

    logits: (B, K, H, W); target: (B, K, H, W) one-hot labels (zeros at ignored pixels).
    ``bce``: element-wise ``BCE(sigmoid(logits), target)``.
    ``ce``: per-pixel ``-log softmax(logits)[y]``, broadcast over the K classes.
    """
    logits, target = fp32(logits, target)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if kind == "ce":
        ce = -(F.log_softmax(logits, dim=1) * target).sum(1, keepdim=True)
        return ce.expand_as(logits)
    raise ValueError(f"unknown reliability {kind!r}")  # the option's type refuses it


def mix_knowledge(logits_t: torch.Tensor, logits_s: torch.Tensor, h_t: torch.Tensor,
                  h_s: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """KMM: ``Z_h = S_t Z_t + (1 - S_t) Z_s`` with ``S_t = H_s / (H_t + H_s + eps)``, detached.

    All inputs (B, K, H, W); the teacher's share grows where the student is less reliable.
    """
    share_t = h_s / (h_t + h_s + eps)
    return (share_t * logits_t + (1.0 - share_t) * logits_s).detach()


def kem_weights(h_s: torch.Tensor, h_h: torch.Tensor, valid: torch.Tensor,
                axis: KemAxis = "class") -> torch.Tensor:
    """KEM: ``W = softmax(H_s + max(0, H_s - H_h))``, detached, (B, K, H, W).

    axis="class": softmax over the K classes at each pixel (sums to 1 per pixel).
    axis="space": softmax over the image's valid positions for each class (sums to 1 per image
    and class; ignored positions get 0; an image without valid pixels gets all 0).
    valid: bool (B, H, W).
    """
    score = (h_s + (h_s - h_h).clamp_min(0.0)).detach()
    if axis == "class":
        return torch.softmax(score, dim=1)
    if axis == "space":
        b, k = score.shape[:2]
        mask = valid[:, None].expand_as(score).reshape(b, k, -1)
        flat = score.reshape(b, k, -1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(flat, dim=-1).nan_to_num(0.0)  # all -inf row -> 0
        return weights.reshape_as(score)
    raise ValueError(f"unknown kem_axis {axis!r}")  # the option's type refuses it


def weighted_distillation(logits_s: torch.Tensor, logits_h: torch.Tensor, weights: torch.Tensor,
                          form: KemForm = "target", temperature: float = 1.0) -> torch.Tensor:
    """Per-pixel ``L_hakd`` (B, H, W) of student logits against the mixed knowledge ``Z_h``
    (detached), with per-class weights ``w`` (B, K, H, W, detached) entering as ``form``
    (module docstring, step 4)."""
    weights = weights.detach()
    if form == "binary":
        soft_h = torch.sigmoid(logits_h / temperature)
        bce = F.binary_cross_entropy_with_logits(logits_s / temperature, soft_h, reduction="none")
        return (weights * bce).sum(1)
    soft_h = torch.softmax(logits_h / temperature, dim=1)
    cross = -soft_h * F.log_softmax(logits_s / temperature, dim=1)  # (B, K, H, W)
    if form == "target":
        return (weights * cross).sum(1)
    if form == "pixel":
        return (weights * soft_h).sum(1) * cross.sum(1)
    raise ValueError(f"unknown kem_form {form!r}")  # the option's type refuses it


def heteroakd_loss(logits_s: torch.Tensor, logits_t: torch.Tensor, labels: torch.Tensor, *,
                   kmm: bool = True, kem: bool = True, kem_axis: KemAxis = "class",
                   kem_form: KemForm = "target",
                   reliability_kind: Reliability = "bce",
                   temperature: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """``L_hakd`` (unweighted) for projected logits on one grid, float32.

    logits_s, logits_t: (B, K, H, W) projected student / teacher logits (same grid).
    labels: (B, H, W) on that grid, 255 = ignore. Ignored pixels contribute nothing.
    """
    logits_s, logits_t = fp32(logits_s, logits_t)
    num_classes = logits_s.shape[1]
    valid = valid_mask(labels)
    target = one_hot(labels, num_classes)
    logits_t = logits_t.detach()
    if kmm or kem:
        h_s = reliability(logits_s.detach(), target, reliability_kind)
    if kmm:
        h_t = reliability(logits_t, target, reliability_kind)
        logits_h = mix_knowledge(logits_t, logits_s.detach(), h_t, h_s, eps)
    else:
        logits_h = logits_t
    if kem:
        h_h = reliability(logits_h, target, reliability_kind)
        weights = kem_weights(h_s, h_h, valid, kem_axis)
        if kem_axis == "class":
            weights = weights * num_classes
        else:  # N_b * W: uniform spatial weights become 1 (see module docstring)
            weights = weights * valid.flatten(1).sum(1).float()[:, None, None, None]
    else:
        weights = torch.ones_like(logits_s)  # K * (1/K)
    per_pixel = weighted_distillation(logits_s, logits_h, weights, kem_form, temperature)
    return masked_mean(per_pixel, valid)


def projector_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Pixel CE of projected logits (B, K, H, W) against labels (B, H, W) on the same grid,
    mean over non-ignored pixels (0 when there are none), float32."""
    logits = logits.float()
    safe = labels.masked_fill(~valid_mask(labels), 0)
    ce = F.cross_entropy(logits, safe, reduction="none")
    return masked_mean(ce, valid_mask(labels))


def _resolve(stages: tuple[int, ...], info: ModelInfo, side: str) -> list[int]:
    count = len(info.stage_channels)
    resolved = []
    for index in stages:
        if not -count <= index < count:
            raise ConfigError(
                f"heteroakd {side} stage index {index} is out of range for {info.name} "
                f"({count} stages); use an index in [{-count}, {count - 1}]")
        resolved.append(index % count)
    return resolved


@METHODS.register("heteroakd")
class HeteroAKD(Distiller):
    """Projectors per stage pair, KMM, KEM, weighted soft CE, plus ``lambda1 * L_kd``."""

    label = "HeteroAKD"
    preset_labels = {"full": "full", "no_kmm": "w/o KMM", "no_kem": "w/o KEM",
                     "no_both": "w/o KMM, KEM", "kd_only": "L_kd only"}

    Options = Options
    presets = {
        "full": {},
        "no_kmm": {"kmm": False},
        "no_kem": {"kem": False},
        "no_both": {"kmm": False, "kem": False},
        "kd_only": {"lambda2": 0.0},
    }

    def __init__(self, student: ModelInfo, teacher: ModelInfo | None, options: Options) -> None:
        super().__init__(student, teacher, options)
        if student.num_classes != teacher.num_classes:
            raise ConfigError(f"heteroakd needs the same classes on both sides; student has "
                              f"{student.num_classes}, teacher {teacher.num_classes}")
        teacher_stages = options.teacher_stages if options.teacher_stages is not None \
            else options.stages
        if len(options.stages) == 0 or len(options.stages) != len(teacher_stages):
            raise ConfigError(f"heteroakd stages {options.stages} and teacher_stages "
                              f"{teacher_stages} must be non-empty and pair one to one")
        self.stages_s = _resolve(tuple(options.stages), student, "student")
        self.stages_t = _resolve(tuple(teacher_stages), teacher, "teacher")
        k = student.num_classes
        self.proj_s = nn.ModuleList()
        self.proj_t = nn.ModuleList()
        if options.lambda2 > 0:
            for i_s, i_t in zip(self.stages_s, self.stages_t):
                self.proj_s.append(Projector(student.stage_channels[i_s], k, options.hidden,
                                             options.projector))
                self.proj_t.append(Projector(teacher.stage_channels[i_t], k, options.hidden,
                                             options.projector))

    def forward(
        self, out_s: SegOutput, out_t: SegOutput | None, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        opts = self.options
        terms: dict[str, torch.Tensor] = {}
        if opts.lambda1 > 0:
            terms["loss_kd"] = opts.lambda1 * kd_on_outputs(
                out_s.logits, out_t.logits, labels, opts.kd_temperature, opts.kd_ignore_aware)
        if len(self.proj_s) == 0:
            return terms
        hakd, proj = [], []
        for i_s, i_t, proj_s, proj_t in zip(self.stages_s, self.stages_t, self.proj_s,
                                            self.proj_t):
            z_s = proj_s(out_s.features[i_s])
            z_t = proj_t(out_t.features[i_t].detach())  # teacher features: no gradient
            size = tuple(z_s.shape[-2:])
            with loss_precision(z_s.device.type):
                z_s, z_t = fp32(z_s, z_t)
                z_t = resize_to(z_t, size)
                grid_labels = resize_labels(labels, size)
                hakd.append(heteroakd_loss(
                    z_s, z_t, grid_labels, kmm=opts.kmm, kem=opts.kem, kem_axis=opts.kem_axis,
                    kem_form=opts.kem_form, reliability_kind=opts.reliability,
                    temperature=opts.temperature, eps=opts.eps))
                proj.append(projector_ce(z_s, grid_labels) + projector_ce(z_t, grid_labels))
        terms["loss_hakd"] = opts.lambda2 * torch.stack(hakd).mean()
        if opts.proj_ce_weight > 0:
            terms["loss_proj"] = opts.proj_ce_weight * torch.stack(proj).mean()
        return terms
