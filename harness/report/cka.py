"""Linear CKA between teacher and student features, stage by stage.

Kornblith et al., "Similarity of Neural Network Representations Revisited" (ICML 2019), linear
kernel: with column-centred X (n x p) and Y (n x q),
``CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``; 1 for identical representations, invariant to
orthogonal transforms and isotropic scaling of either side. Each pixel of a stage's feature map is a
sample; the two maps are average-pooled to a common grid first (CNN and Transformer stages have
different strides), capped at ``max_grid`` positions per image to bound the n x n-free cost.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of x (n, p) and y (n, q), computed in float64."""
    if x.shape[0] != y.shape[0] or x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"linear_cka needs (n, p) and (n, q) with the same n; got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm)


def paired_samples(feat_t: torch.Tensor, feat_s: torch.Tensor,
                   max_grid: tuple[int, int] = (16, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    """feat_t (B, C_t, h_t, w_t), feat_s (B, C_s, h_s, w_s) -> (B*h*w, C_t), (B*h*w, C_s) on one grid."""
    h = min(feat_t.shape[-2], feat_s.shape[-2], max_grid[0])
    w = min(feat_t.shape[-1], feat_s.shape[-1], max_grid[1])

    def rows(feat: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(feat.float(), (h, w))
        return pooled.permute(0, 2, 3, 1).reshape(-1, feat.shape[1])

    return rows(feat_t), rows(feat_s)


def stage_cka(feats_t: list[list[torch.Tensor]], feats_s: list[list[torch.Tensor]]) -> list[list[float]]:
    """CKA[i][j] between teacher stage i and student stage j over all images.

    ``feats_t[k][i]`` is image k's teacher stage-i map (1, C, h, w) (images may differ in size).
    """
    n_t, n_s = len(feats_t[0]), len(feats_s[0])
    matrix = []
    for i in range(n_t):
        row = []
        for j in range(n_s):
            xs, ys = zip(*(paired_samples(ft[i], fs[j]) for ft, fs in zip(feats_t, feats_s)))
            row.append(linear_cka(torch.cat(xs), torch.cat(ys)))
        matrix.append(row)
    return matrix


def pair_cka(teacher: str | Path, student: str | Path, dataset: str, root: str | Path, split: str,
             images: int, max_size: tuple[int, int] | None = None
             ) -> tuple[str, str, str, list[list[float]]]:
    """(teacher name, student name, kind, stage CKA matrix) of two saved models (or run folders)
    on a few val images (shrunk to fit ``max_size``, if given); kind is heterogeneous when the
    model families differ."""
    from harness.report import samples as S

    model_t, model_s = S.load(teacher, dataset), S.load(student, dataset)
    feats_t, feats_s = [], []
    for sample in S.load_samples(dataset, root, split, images, max_size):
        feats_t.append([f.cpu() for f in S.forward(model_t, sample).features])
        feats_s.append([f.cpu() for f in S.forward(model_s, sample).features])
    kind = "homogeneous" if model_t.info.family == model_s.info.family else "heterogeneous"
    return model_t.info.name, model_s.info.name, kind, stage_cka(feats_t, feats_s)
