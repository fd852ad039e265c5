"""Figures of the report: ablation bars, sensitivity grid, readings' deltas, CKA by stage,
qualitative predictions.

Each function draws from a table (the CSV the workflow writes beside the figure) and writes the
PNG atomically; no numbers are computed here beyond what the table holds.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness import IGNORE_INDEX  # noqa: E402
from harness.io import atomic_write_with  # noqa: E402


def _save(fig: plt.Figure, path: str | Path) -> None:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def _std(value: float) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def ablation_figure(frame: pd.DataFrame, path: str | Path) -> None:
    """Grouped bars (mean +- std) per pair; the student alone as a dashed line over each group."""
    pairs = list(dict.fromkeys(zip(frame.teacher, frame.student)))
    variants = list(dict.fromkeys(frame.variant))
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(2.2 + 2.6 * len(pairs), 3.6))
    colours = plt.get_cmap("tab10")
    for k, variant in enumerate(variants):
        rows = [frame[(frame.teacher == t) & (frame.student == s) & (frame.variant == variant)].iloc[0]
                for t, s in pairs]
        x = np.arange(len(pairs)) + (k - (len(variants) - 1) / 2) * width
        ax.bar(x, [r.miou_mean for r in rows], width, yerr=[_std(r.miou_std) for r in rows],
               label=variant, color=colours(k), capsize=2)
    for g, (t, s) in enumerate(pairs):
        base = frame[(frame.teacher == t) & (frame.student == s)].baseline_miou.iloc[0]
        ax.hlines(base, g - 0.45, g + 0.45, colors="k", linestyles="--",
                  label="student alone" if g == 0 else None)
    ax.set_xticks(range(len(pairs)), [f"{t}\n-> {s}" for t, s in pairs], fontsize=8)
    low = min(frame.miou_mean.min(), frame.baseline_miou.min())
    high = max(frame.miou_mean.max(), frame.baseline_miou.max())
    ax.set_ylim(max(0.0, low - 0.15 * (high - low + 1)), high + 0.15 * (high - low + 1))
    ax.set_ylabel("mIoU (%)")
    ax.set_title(f"{frame.method.iloc[0]} ablation on {frame.dataset.iloc[0]}")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def _interval_errors(frame: pd.DataFrame, prefix: str) -> np.ndarray:
    """(2, n) distances from the delta to its interval bounds (0 where undefined)."""
    delta = frame[f"delta_{prefix}"].to_numpy(float)
    lo = np.nan_to_num(delta - frame[f"{prefix}_lo"].to_numpy(float))
    hi = np.nan_to_num(frame[f"{prefix}_hi"].to_numpy(float) - delta)
    return np.vstack([lo, hi])


def readings_figure(frame: pd.DataFrame, path: str | Path) -> None:
    """One panel per pair: each reading's delta against the student alone (filled) and against
    the reference method (open), with 95% intervals; 0 is the reference line."""
    pairs = list(dict.fromkeys(zip(frame.teacher, frame.student)))
    readings = list(dict.fromkeys(frame.reading))
    fig, axes = plt.subplots(1, len(pairs), squeeze=False, sharey=True, sharex=True,
                             figsize=(1.5 + 3.6 * len(pairs), 1.2 + 0.38 * len(readings)))
    reference = frame.reference.iloc[0]
    for ax, (t, s) in zip(axes[0], pairs):
        rows = frame[(frame.teacher == t) & (frame.student == s)].set_index("reading")
        rows = rows.loc[readings].reset_index()
        y = np.arange(len(readings))
        ax.errorbar(rows.delta_student, y - 0.12, xerr=_interval_errors(rows, "student"),
                    fmt="o", color="C0", capsize=2, label="vs student alone")
        ax.errorbar(rows.delta_reference, y + 0.12, xerr=_interval_errors(rows, "reference"),
                    fmt="s", mfc="none", color="C3", capsize=2, label=f"vs {reference}")
        ax.axvline(0.0, color="k", lw=0.8, ls="--")
        ax.set_title(f"{t} -> {s}", fontsize=8)
        ax.set_xlabel("delta mIoU (95% CI over seeds)", fontsize=8)
    axes[0][0].set_yticks(range(len(readings)), readings, fontsize=7)
    axes[0][0].invert_yaxis()
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{frame.method.iloc[0]} readings on {frame.dataset.iloc[0]}", fontsize=9)
    _save(fig, path)


def sensitivity_figure(frame: pd.DataFrame, path: str | Path) -> None:
    """Left: mIoU against axis1, one line per axis2 value, student alone dashed, default starred.
    Right: delta vs the student alone as a heatmap centred on 0 (the baseline)."""
    axis1, axis2 = frame.axis1.iloc[0], frame.axis2.iloc[0]
    values1, values2 = sorted(frame.value1.unique()), sorted(frame.value2.unique())
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for v2 in values2:
        rows = frame[frame.value2 == v2].sort_values("value1")
        left.errorbar(rows.value1, rows.miou_mean, yerr=[_std(s) for s in rows.miou_std], marker="o",
                      capsize=2, label=f"{axis2} = {v2:g}")
    default = frame[frame.is_default.astype(bool)]
    if len(default):
        left.scatter(default.value1, default.miou_mean, marker="*", s=220, c="gold",
                     edgecolors="k", zorder=5, label="default")
    left.axhline(frame.baseline_miou.iloc[0], color="k", linestyle="--", label="student alone")
    if min(values1) > 0 and max(values1) / min(values1) >= 10:
        left.set_xscale("log")
    left.set_xlabel(axis1)
    left.set_ylabel("mIoU (%)")
    left.legend(fontsize=7)
    grid = np.full((len(values2), len(values1)), np.nan)
    for row in frame.itertuples():
        grid[values2.index(row.value2), values1.index(row.value1)] = row.delta
    bound = max(np.nanmax(np.abs(grid)), 1e-6)
    image = right.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, origin="lower")
    for (r, c), value in np.ndenumerate(grid):
        if not np.isnan(value):
            right.text(c, r, f"{value:+.2f}", ha="center", va="center", fontsize=8)
    for row in default.itertuples():
        r, c = values2.index(row.value2), values1.index(row.value1)
        right.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, lw=2, ec="gold"))
    right.set_xticks(range(len(values1)), [f"{v:g}" for v in values1])
    right.set_yticks(range(len(values2)), [f"{v:g}" for v in values2])
    right.set_xlabel(axis1)
    right.set_ylabel(axis2)
    fig.colorbar(image, ax=right, label="mIoU - student alone")
    fig.suptitle(f"{frame.method.iloc[0]} on {frame.dataset.iloc[0]}: "
                 f"{frame.teacher.iloc[0]} -> {frame.student.iloc[0]}")
    _save(fig, path)


def cka_figure(frame: pd.DataFrame, path: str | Path) -> None:
    """Matched-stage CKA (teacher stage i vs student stage i) per pair, the mean over student
    seeds where the frame has several; kind by line style."""
    matched = frame[frame.teacher_stage == frame.student_stage]
    matched = matched.groupby(["teacher", "student", "kind", "teacher_stage"], sort=False,
                              as_index=False).cka.mean()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    styles = {"heterogeneous": "-", "homogeneous": "--"}
    for (teacher, student, kind), rows in matched.groupby(["teacher", "student", "kind"], sort=False):
        rows = rows.sort_values("teacher_stage")
        ax.plot(rows.teacher_stage + 1, rows.cka, styles.get(kind, ":"), marker="o",
                label=f"{teacher} -> {student} ({kind})")
    ax.set_xlabel("encoder stage")
    ax.set_ylabel("linear CKA")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(sorted(matched.teacher_stage.unique() + 1))
    seeds = f", mean of {frame.seed.nunique()} student seeds" if "seed" in frame else ""
    ax.set_title(f"teacher / student feature similarity on {frame.dataset.iloc[0]}{seeds}",
                 fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


def colourise(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Class map (H, W) -> RGB (H, W, 3) in [0, 1]; ignore (255) black."""
    palette = plt.get_cmap("tab20", max(num_classes, 2))(np.arange(max(num_classes, 2)))[:, :3]
    rgb = np.zeros(label.shape + (3,))
    valid = label != IGNORE_INDEX
    rgb[valid] = palette[np.clip(label[valid], 0, num_classes - 1)]
    return rgb


def qualitative_figure(images: list[np.ndarray], labels: list[np.ndarray],
                       predictions: dict[str, list[np.ndarray]], num_classes: int,
                       path: str | Path, title: str = "") -> None:
    """Rows: images; columns: input, label, then each model's prediction (in the given order)."""
    columns = ["input", "label", *predictions]
    fig, axes = plt.subplots(len(images), len(columns), squeeze=False,
                             figsize=(2.2 * len(columns), 1.4 * len(images) + 0.6))
    for r, (image, label) in enumerate(zip(images, labels)):
        panels = [image, colourise(label, num_classes)]
        panels += [colourise(preds[r], num_classes) for preds in predictions.values()]
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel, interpolation="nearest")
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(columns[c], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def display_image(image: np.ndarray) -> np.ndarray:
    """A normalised (3, H, W) image -> (H, W, 3) in [0, 1] (per-image min/max; the normalisation
    constants are the dataset's business, and this keeps the figure independent of them)."""
    hwc = np.transpose(image, (1, 2, 0))
    low, high = hwc.min(), hwc.max()
    return (hwc - low) / (high - low) if high > low else np.zeros_like(hwc)
