"""CWD: channel-wise knowledge distillation (Shu et al., "Channel-wise Knowledge Distillation
for Dense Prediction", ICCV 2021).

docs/methods.md §CWD: for each channel ``c`` of a map ``X`` a softmax over the ``H*W``
positions of ``X_c / tau``;
``L = tau^2 / (B*C) * sum_{b,c} sum_hw p_t (log p_t - log p_s)``.
Applied to the final logits and, optionally, to the decoder feature (the head feature after
ASPP / PSP / MLP fuse). Teacher maps are bilinearly resized to the student's grid; where the
decoder channel counts differ, a 1x1 conv without bias maps student to teacher channels.
``C`` of the feature term is the student's channel count by default, as CIRKD's
``losses/cwd.py`` reads it before that conv (``normalize_by="teacher"``: the compared channels).

Weights: unless set, by the student's family as the CIRKD scripts (CNN: 3 on logits, 50 on
the feature; SegFormer: 0.3 and 5), tau 4. Presets: ``cirkd`` (those defaults), ``cnn`` and
``segformer`` (one family's weights for any student), ``mmrazor`` (logits only, tau 1,
weight 5). Unlike the CIRKD codebase's "CWD" row, this method
adds no KD and no adversarial term (the results tables say so; docs/deviations.md).
Like the references, all positions count, ignored ones included (a spatial softmax has no
per-pixel label to drop).
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
from harness.methods.common import conv1x1, fp32, loss_precision, resize_to
from harness.models.base import ModelInfo, SegOutput


@dataclass(frozen=True)
class Options(BaseOptions):
    tau: float = 4.0  # CIRKD codebase (docs/methods.md §CWD)
    # None: by the student's family (family_defaults), as the CIRKD scripts; 0 disables a term
    logits_weight: float | None = None
    feature_weight: float | None = None  # the head feature
    # CIRKD losses/cwd.py divides the feature term by B x C_student (shape read before align)
    normalize_by: Literal["student", "teacher"] = "student"


NORMALIZE_BY = ("student", "teacher")


def cwd_loss(map_s: torch.Tensor, map_t: torch.Tensor, tau: float = 1.0,
             channels: int | None = None) -> torch.Tensor:
    """Channel-wise spatial-softmax KL, float32.

    map_s, map_t: (B, C, H, W) on the same grid and with the same C.
    Returns ``tau^2 / (B*n) * sum_{b,c} KL(softmax_hw(map_t/tau) || softmax_hw(map_s/tau))``
    with ``n = channels`` (default: C, the mean over the compared channels).
    """
    map_s, map_t = fp32(map_s, map_t)
    b, c = map_s.shape[:2]
    log_p_s = F.log_softmax(map_s.reshape(b * c, -1) / tau, dim=1)
    log_p_t = F.log_softmax(map_t.reshape(b * c, -1) / tau, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
    return tau ** 2 * kl / (b * (channels or c))


@METHODS.register("cwd")
class CWD(Distiller):
    """CWD on logits (+ decoder feature when ``feature_weight > 0``)."""

    label = "CWD"

    Options = Options
    presets = {
        "cirkd": {"tau": 4.0},  # the CIRKD codebase: weights by the student's family
        "cnn": {"tau": 4.0, "logits_weight": 3.0, "feature_weight": 50.0},
        "segformer": {"tau": 4.0, "logits_weight": 0.3, "feature_weight": 5.0},
        "mmrazor": {"tau": 1.0, "logits_weight": 5.0, "feature_weight": 0.0},
    }
    family_defaults = {
        # CIRKD train_cwd.sh: --lambda-cwd-logit 3. --lambda-cwd-fea 50. (train_kd.py)
        "cnn": {"logits_weight": 3.0, "feature_weight": 50.0},
        # ... and for SegFormer B4 -> B0: 0.3 and 5. (train_kd_segformer.py)
        "transformer": {"logits_weight": 0.3, "feature_weight": 5.0},
    }

    def __init__(self, student: ModelInfo, teacher: ModelInfo | None, options: Options) -> None:
        super().__init__(student, teacher, options)
        options = self.options  # family defaults resolved
        if options.normalize_by not in NORMALIZE_BY:
            raise ConfigError(f"unknown cwd normalize_by {options.normalize_by!r}; "
                              f"valid: {', '.join(NORMALIZE_BY)}")
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
        channels = (out_s.decoder_feature.shape[1] if opts.normalize_by == "student" else None)
        with loss_precision(out_s.logits.device.type):
            if opts.logits_weight > 0:
                logits_t = resize_to(out_t.logits.detach().float(), tuple(out_s.logits.shape[-2:]))
                terms["loss_cwd_logits"] = opts.logits_weight * cwd_loss(
                    out_s.logits, logits_t, opts.tau)
            if feat_s is not None:
                feat_t = resize_to(out_t.decoder_feature.detach().float(),
                                   tuple(feat_s.shape[-2:]))
                terms["loss_cwd_feat"] = opts.feature_weight * cwd_loss(feat_s, feat_t, opts.tau,
                                                                         channels)
        return terms
