"""Af-DCD: augmentation-free dense contrastive knowledge distillation.

Fan et al., "Augmentation-free Dense Contrastive Knowledge Distillation for Efficient Semantic
Segmentation", NeurIPS 2023 (reference code OSVAI/Af-DCD, ``losses/ocmgd.py``). The math is
``docs/methods.md §Af-DCD``.

Terms (already weighted) on the last backbone stage (``SegOutput.features[-1]``, "c4") of both
models, the teacher's map resized (bilinear) to the student's grid:

- ``loss_kd``: pixel KD on the logits (T=1, all pixels, ``T^2``), weight ``lambda_kd``.
- ``loss_fd``: masked feature generation. ``G = generator(mask * align(F_s))`` with a random
  fraction ``mask_ratio`` (0.75) of spatial positions zeroed; ``||G - F_t||_F^2 / B``.
- ``loss_ctr``: omni-contrast. Max-pool ``G`` and ``F_t`` by 4, cut into 4x4 patches and 16
  contiguous channel groups; an anchor is a (position, group) vector of ``G``, its positive the
  teacher vector at the same position and group, its negatives the teacher vectors of every
  other group at any position of the patch (16 * 15 = 240); similarity is the negative L1
  distance; cross-entropy with ``tau = 0.07``, summed, divided by the pooled ``H' W'`` and ``B``.

Choices where we interpret (options or stated here):

- Pooled maps whose sides are not multiples of the patch are **cropped** (top-left kept) to the
  largest multiple, as the reference does for CamVid (44x44); the divisor is the cropped
  ``H' W'``. A pooled side shorter than the patch uses the whole side as the patch length
  (then there are fewer than 240 negatives), so tiny demo maps still give a loss.
- Teacher channels not divisible by 16 groups: the contrast uses the first
  ``16 * (C_t // 16)`` channels (the last ``C_t mod 16`` are left out of the contrast only;
  ``loss_fd`` uses all). Fewer than 16 teacher channels is an error at construction.
- A map side shorter than the pooling window (4) is pooled over its whole length, so a
  SegFormer student's 2x2 c4 on a 64x64 demo crop still gives a (1x1-patch) contrast.
- CamVid: the reference skips the max-pool and crops to 44x44; the ``camvid`` preset sets
  ``ctr_pool = 1`` and our crop-to-multiple rule does the rest.
- ``align`` always exists (the reference creates it only when channel counts differ, which they
  always do in its pairs).
- The engine clips the grad-norm of this module's own parameters (align + generator) at 15
  (``max_grad_norm``), as the reference clips its loss-module parameters.
- The mask draws from torch's global RNG, so a seed repeats it.

Cost: the generator is two 3x3 convs at teacher width: ``2 * (9 C_t^2 + C_t)`` parameters,
75,501,568 at ``C_t = 2048`` (ResNet-101 c4), plus ``align`` ``C_s C_t + C_t`` (1,050,624 for
ResNet-18's 512). One step at a 512x1024 crop (c4 at OS8 = 64x128, B=2, C_t=2048): each
2048-channel map is 2 x 2048 x 8192 x 4 B = 134 MB; the generator keeps about 4 of them for
the backward. The omni-contrast works on the pooled 16x32 map: 64 patches x (256 x 256)
similarities, chunked over patches (``ctr_patch_chunk``) so its L1 differences stay small.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from harness.errors import ConfigError
from harness.methods.base import METHODS, Distiller, Options
from harness.methods.common import loss_precision, pixel_kl, resize_to
from harness.models.base import ModelInfo, SegOutput


@dataclass(frozen=True)
class AfDCDOptions(Options):
    lambda_kd: float = 1.0  # Af-DCD Cityscapes script (kd weight 1.0)
    kd_temperature: float = 1.0  # Af-DCD kd temperature 1
    lambda_fd: float = 2e-6  # Af-DCD Cityscapes script (lambda_fd 2e-6)
    lambda_ctr: float = 5e-3  # Af-DCD Cityscapes script (lambda_ctr 5e-3)
    mask_ratio: float = 0.75  # Af-DCD mask_ratio zeta = 0.75
    ctr_tau: float = 0.07  # Af-DCD tau_ocd
    ctr_groups: int = 16  # Af-DCD M_ocd
    ctr_pool: int = 4  # Af-DCD pool_size (0 or 1 = no pooling, as its CamVid branch)
    ctr_patch: int = 4  # Af-DCD patch_size (4, 4)
    ctr_patch_chunk: int = 16  # ours: patches whose similarities are computed at once (memory)


# --------------------------------------------------------------------------- pure losses


def keep_mask(batch: int, height: int, width: int, ratio: float,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, 1, H, W) float mask: 0 at a random fraction ``ratio`` of positions, else 1."""
    draw = torch.rand((batch, 1, height, width), device=device)
    return (draw <= 1.0 - ratio).float()


def feature_generation_loss(generated: torch.Tensor, feat_t: torch.Tensor) -> torch.Tensor:
    """``||G - F_t||_F^2 / B`` for (B, C, H, W) maps, float32."""
    diff = generated.float() - feat_t.detach().float()
    return diff.pow(2).sum() / generated.shape[0]


def _to_tokens(x: torch.Tensor, groups: int, patch_h: int, patch_w: int) -> torch.Tensor:
    """(B, C, H, W) with H, W multiples of the patch and C = groups * Cg ->
    (B * patches, patch_h * patch_w * groups, Cg); token index = position * groups + group."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, groups, channels // groups, height // patch_h, patch_h,
                  width // patch_w, patch_w)
    x = x.permute(0, 3, 5, 4, 6, 1, 2)  # B, hp, wp, ph, pw, M, Cg
    return x.reshape(-1, patch_h * patch_w * groups, channels // groups)


def _patch_ce_sum(tokens_g: torch.Tensor, tokens_t: torch.Tensor, exclude: torch.Tensor,
                  tau: float) -> torch.Tensor:
    """Sum of CE([pos, negs] / tau) over all anchors of a chunk of patches."""
    sim = -torch.cdist(tokens_g, tokens_t, p=1) / tau  # P, N, N
    sim = sim.masked_fill(exclude, float("-inf"))
    return (torch.logsumexp(sim, dim=-1) - sim.diagonal(dim1=-2, dim2=-1)).sum()


def omni_contrast_loss(generated: torch.Tensor, feat_t: torch.Tensor, tau: float = 0.07,
                       groups: int = 16, pool: int = 4, patch: int = 4,
                       patch_chunk: int = 16) -> torch.Tensor:
    """Omni-contrastive loss between G and F_t, both (B, C, H, W) on one grid; float32 scalar.

    See the module docstring for the cropping and channel rules. Patches are processed
    ``patch_chunk`` at a time (checkpointed when a gradient is needed) to bound memory.
    """
    generated, feat_t = generated.float(), feat_t.detach().float()
    if pool > 1:
        # A map side shorter than the pooling window pools over the whole side (tiny demo maps).
        window = (min(pool, generated.shape[-2]), min(pool, generated.shape[-1]))
        generated = F.max_pool2d(generated, window)
        feat_t = F.max_pool2d(feat_t, window)
    batch, channels, height, width = generated.shape
    if channels < groups:
        raise ConfigError(f"omni-contrast needs at least ctr_groups={groups} channels, got "
                          f"{channels}; lower afdcd option ctr_groups")
    patch_h, patch_w = min(patch, height), min(patch, width)
    height, width = height // patch_h * patch_h, width // patch_w * patch_w
    used = channels // groups * groups
    tokens_g = _to_tokens(generated[:, :used, :height, :width], groups, patch_h, patch_w)
    tokens_t = _to_tokens(feat_t[:, :used, :height, :width], groups, patch_h, patch_w)
    size = tokens_g.shape[1]
    group_id = torch.arange(size, device=generated.device) % groups
    # Same group but another position: neither positive nor negative, left out of the softmax.
    exclude = (group_id[:, None] == group_id[None, :]) & ~torch.eye(
        size, dtype=torch.bool, device=generated.device)
    needs_grad = torch.is_grad_enabled() and tokens_g.requires_grad
    total = tokens_g.new_zeros(())
    for start in range(0, tokens_g.shape[0], patch_chunk):
        rows = slice(start, start + patch_chunk)
        if needs_grad and tokens_g.shape[0] > patch_chunk:
            total = total + checkpoint(_patch_ce_sum, tokens_g[rows], tokens_t[rows], exclude,
                                       tau, use_reentrant=False)
        else:
            total = total + _patch_ce_sum(tokens_g[rows], tokens_t[rows], exclude, tau)
    return total / (height * width) / batch


# --------------------------------------------------------------------------- the method


def generator_parameters(teacher_channels: int) -> int:
    """Parameters of the conv3x3 -> ReLU -> conv3x3 generator at ``teacher_channels``."""
    return 2 * (9 * teacher_channels**2 + teacher_channels)


@METHODS.register("afdcd")
class AfDCD(Distiller):
    """Masked feature generation + omni-contrast on c4 (see the module docstring)."""

    label = "Af-DCD"

    Options = AfDCDOptions
    max_grad_norm = 15.0  # Af-DCD clips the loss-module grad-norm at 15
    presets: dict[str, dict[str, Any]] = {
        # (lambda_fd, lambda_ctr, lambda_kd) from the Af-DCD scripts (docs/methods.md §Af-DCD)
        "cityscapes": {"lambda_fd": 2e-6, "lambda_ctr": 5e-3, "lambda_kd": 1.0},
        "ade20k": {"lambda_fd": 1e-6, "lambda_ctr": 0.04, "lambda_kd": 0.5},
        "voc": {"lambda_fd": 1e-6, "lambda_ctr": 5e-3, "lambda_kd": 1.0},
        "camvid": {"lambda_fd": 8e-6, "lambda_ctr": 0.01, "lambda_kd": 1.0, "ctr_pool": 1},
        "cocostuff": {"lambda_fd": 5e-6, "lambda_ctr": 5e-3, "lambda_kd": 0.5},
        "toycity": {},  # ours: the built-in Cityscapes-like set uses the Cityscapes weights
    }

    def __init__(self, student: ModelInfo, teacher: ModelInfo | None,
                 options: AfDCDOptions) -> None:
        super().__init__(student, teacher, options)
        assert teacher is not None
        channels_s, channels_t = student.stage_channels[-1], teacher.stage_channels[-1]
        if channels_t < options.ctr_groups:
            raise ConfigError(
                f"afdcd needs at least ctr_groups={options.ctr_groups} teacher channels on the "
                f"last stage, {teacher.name} has {channels_t}; lower option ctr_groups")
        if not 0.0 <= options.mask_ratio < 1.0:
            raise ConfigError(f"afdcd mask_ratio must be in [0, 1), got {options.mask_ratio}")
        self.align = nn.Conv2d(channels_s, channels_t, kernel_size=1, bias=True)
        self.generator = nn.Sequential(
            nn.Conv2d(channels_t, channels_t, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels_t, channels_t, kernel_size=3, padding=1),
        )

    def forward(self, out_s: SegOutput, out_t: SegOutput | None,
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        assert out_t is not None
        opt = self.options
        feat_s = out_s.features[-1]
        batch, _, height, width = feat_s.shape
        feat_t = resize_to(out_t.features[-1].detach(), (height, width))
        mask = keep_mask(batch, height, width, opt.mask_ratio, feat_s.device)
        generated = self.generator(self.align(feat_s) * mask.to(feat_s.dtype))
        losses: dict[str, torch.Tensor] = {}
        with loss_precision(feat_s.device.type):
            if opt.lambda_kd > 0:
                logits_t = resize_to(out_t.logits.detach().float(), tuple(out_s.logits.shape[-2:]))
                kd = pixel_kl(logits_t, out_s.logits, opt.kd_temperature).mean()
                losses["loss_kd"] = opt.lambda_kd * opt.kd_temperature**2 * kd
            losses["loss_fd"] = opt.lambda_fd * feature_generation_loss(generated, feat_t)
            losses["loss_ctr"] = opt.lambda_ctr * omni_contrast_loss(
                generated, feat_t, opt.ctr_tau, opt.ctr_groups, opt.ctr_pool, opt.ctr_patch,
                opt.ctr_patch_chunk)
        return losses
