"""Pieces several methods share; each lives here once.

Every softmax / KL / similarity of a loss is computed in float32, also under autocast
(docs/methods.md §Conventions): :func:`fp32` casts, :func:`loss_precision` disables autocast
for a block.
"""
from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from harness import IGNORE_INDEX


def fp32(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors as float32 (a no-op for float32 input)."""
    return tuple(t.float() for t in tensors)


def loss_precision(device_type: str) -> contextlib.AbstractContextManager:
    """A block where autocast is off, so loss math stays in float32."""
    return torch.autocast(device_type=device_type, enabled=False)


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a logits/feature map (B, C, H, W) to ``size``; no-op if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of a label map (B, H, W) to ``size`` (ignore stays ignore)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def valid_mask(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Boolean (B, H, W): pixels that carry a class."""
    return labels != ignore_index


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, H, W) over ``mask``; 0 (with a graph) when nothing is valid."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def one_hot(labels: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(B, H, W) labels -> (B, K, H, W) float one-hot; ignored pixels are all zero."""
    safe = labels.clone()
    safe[labels == ignore_index] = 0
    hot = F.one_hot(safe.long(), num_classes).permute(0, 3, 1, 2).float()
    return hot * valid_mask(labels, ignore_index)[:, None].float()


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked per-image class means of ``features`` (B, C, H, W) with labels (B, H, W) on the
    same grid. Returns (means (B, K, C), present (B, K) bool)."""
    hot = one_hot(labels, num_classes, ignore_index).to(features.dtype)  # B,K,H,W
    counts = hot.flatten(2).sum(-1)  # B,K
    sums = torch.einsum("bkn,bcn->bkc", hot.flatten(2), features.flatten(2))
    return sums / counts.clamp_min(1.0)[..., None], counts > 0


def pixel_kl(logits_t: torch.Tensor, logits_s: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-pixel KL(p_t || p_s) over the class axis, (B, K, H, W) -> (B, H, W), float32."""
    logits_t, logits_s = fp32(logits_t, logits_s)
    log_p_t = F.log_softmax(logits_t / temperature, dim=1)
    log_p_s = F.log_softmax(logits_s / temperature, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)


class _SoftTargetKLSum(torch.autograd.Function):
    """``sum_rows KL(softmax(logits_t) || softmax(logits_s))`` with the gradient written out.

    Autograd through log_softmax / sub / mul / exp keeps several (N, M) matrices and runs about
    ten elementwise passes over them in the backward; the analytic gradient
    ``d/d logits_s = softmax(logits_s) - softmax(logits_t)`` is one matrix, computed in the
    forward and kept. On CIRKD's anchor-to-memory relations (4096 x 4100) this halves the step.
    """

    @staticmethod
    def forward(ctx, logits_s: torch.Tensor, logits_t: torch.Tensor) -> torch.Tensor:
        log_p_s = F.log_softmax(logits_s, dim=1)
        log_p_t = F.log_softmax(logits_t, dim=1)
        p_t = log_p_t.exp()
        # One BLAS dot over the flattened matrices: no (N, M) temporary for the product.
        total = torch.dot(p_t.reshape(-1), log_p_t.sub_(log_p_s).reshape(-1))
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(log_p_s.exp_().sub_(p_t))  # softmax(s) - softmax(t), in place
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (diff,) = ctx.saved_tensors
        return diff * grad, None


def soft_kl_sum(logits_s: torch.Tensor, logits_t: torch.Tensor) -> torch.Tensor:
    """Summed row-wise ``KL(softmax(logits_t) || softmax(logits_s))`` of (N, M) logits, float32.

    The teacher side gets no gradient; the student side's gradient is analytic (see
    :class:`_SoftTargetKLSum`), equal to autograd's to float rounding (tests check both).
    """
    return _SoftTargetKLSum.apply(logits_s.float(), logits_t.detach().float())


def conv1x1(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias)


#: the projector kinds a method option may name (checked by the option's type)
ProjectorKind = Literal["mlp", "conv_bn_relu"]


class Projector(nn.Sequential):
    """1x1-conv projector ``C_in -> (hidden) -> C_out``.

    kind="mlp":          conv1x1(C_in->hidden) -> BN -> ReLU -> conv1x1(hidden->C_out)
                         (CIRKD's projection head, HeteroAKD's default projector)
    kind="conv_bn_relu": conv1x1(C_in->C_out) -> BN -> ReLU
                         (the literal "1x1 conv + BN + ReLU" reading of HeteroAKD)
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int | None = None,
                 kind: ProjectorKind = "mlp", first_bias: bool = False) -> None:
        if kind == "mlp":
            hidden = hidden or out_channels
            layers = [conv1x1(in_channels, hidden, bias=first_bias), nn.BatchNorm2d(hidden),
                      nn.ReLU(inplace=True), conv1x1(hidden, out_channels)]
        elif kind == "conv_bn_relu":
            layers = [conv1x1(in_channels, out_channels, bias=first_bias),
                      nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
        else:
            raise ValueError(f"unknown projector kind {kind!r}")  # the option's type refuses it
        super().__init__(*layers)
