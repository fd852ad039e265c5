"""CWD: channel-wise knowledge distillation (Shu et al., "Channel-wise Knowledge Distillation
for Dense Prediction", ICCV 2021).

docs/methods.md §CWD: for each channel ``c`` of a map ``X`` a softmax over the ``H*W``
positions of ``X_c / tau``;
``L = tau^2 / (B*C) * sum_{b,c} sum_hw p_t (log p_t - log p_s)``.
Applied to the final logits and, optionally, to the decoder feature (the head feature after
ASPP / PSP / MLP fuse). Teacher maps are bilinearly resized to the student's grid; where the
decoder channel counts differ, a 1x1 conv without bias maps student to teacher channels.

Presets: ``cirkd`` (the default values; CIRKD codebase: tau 4, weight 3 on logits, 50 on the
feature) and ``mmrazor`` (logits only, tau 1, weight 5). Unlike the CIRKD codebase's "CWD" row,
this method adds no KD and no adversarial term (the results tables say so).
Like the references, all positions count, ignored ones included (a spatial softmax has no
per-pixel label to drop).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.methods.base import METHODS, Distiller
from harness.methods.base import Options as BaseOptions
from harness.methods.common import conv1x1, fp32, loss_precision, resize_to
from harness.models.base import ModelInfo, SegOutput


@dataclass(frozen=True)
class Options(BaseOptions):
    tau: float = 4.0  # CIRKD codebase (docs/methods.md §CWD)
    logits_weight: float = 3.0  # CIRKD codebase
    feature_weight: float = 50.0  # CIRKD codebase, head feature; 0 disables the feature term


def cwd_loss(map_s: torch.Tensor, map_t: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Channel-wise spatial-softmax KL, float32.

    map_s, map_t: (B, C, H, W) on the same grid and with the same C.
    Returns ``tau^2 / (B*C) * sum_{b,c} KL(softmax_hw(map_t/tau) || softmax_hw(map_s/tau))``.
    """
    map_s, map_t = fp32(map_s, map_t)
    b, c = map_s.shape[:2]
    log_p_s = F.log_softmax(map_s.reshape(b * c, -1) / tau, dim=1)
    log_p_t = F.log_softmax(map_t.reshape(b * c, -1) / tau, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
    return tau ** 2 * kl / (b * c)


@METHODS.register("cwd")
class CWD(Distiller):
    """CWD on logits (+ decoder feature when ``feature_weight > 0``)."""

    Options = Options
    presets = {
        "cirkd": {"tau": 4.0, "logits_weight": 3.0, "feature_weight": 50.0},
        "mmrazor": {"tau": 1.0, "logits_weight": 5.0, "feature_weight": 0.0},
    }

    def __init__(self, student: ModelInfo, teacher: ModelInfo | None, options: Options) -> None:
        super().__init__(student, teacher, options)
        self.align: nn.Module = nn.Identity()
        if options.feature_weight > 0 and student.decoder_channels != teacher.decoder_channels:
            # Shu et al. / CIRKD: 1x1 conv, no bias, student -> teacher channels.
            self.align = conv1x1(student.decoder_channels, teacher.decoder_channels, bias=False)

    def forward(
        self, out_s: SegOutput, out_t: SegOutput | None, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        opts = self.options
        terms: dict[str, torch.Tensor] = {}
        feat_s = self.align(out_s.decoder_feature) if opts.feature_weight > 0 else None
        with loss_precision(out_s.logits.device.type):
            if opts.logits_weight > 0:
                logits_t = resize_to(out_t.logits.detach().float(), tuple(out_s.logits.shape[-2:]))
                terms["loss_cwd_logits"] = opts.logits_weight * cwd_loss(
                    out_s.logits, logits_t, opts.tau)
            if feat_s is not None:
                feat_t = resize_to(out_t.decoder_feature.detach().float(),
                                   tuple(feat_s.shape[-2:]))
                terms["loss_cwd_feat"] = opts.feature_weight * cwd_loss(feat_s, feat_t, opts.tau)
        return terms
