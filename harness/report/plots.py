"""Figures of the report: ablation deltas, sensitivity grid, readings' deltas, CKA matrices,
training curves,
qualitative predictions.

Each function draws from a table (the CSV the workflow writes beside the figure) and writes the
PNG atomically; no numbers are computed here beyond what the table holds (means over seeds for
the curves' lines and bands).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from harness import IGNORE_INDEX  # noqa: E402
from harness.io import atomic_write_with  # noqa: E402

MISSING = "#d9d9d9"  # a grid cell without runs: grey and hatched, never the colour of a value


def _save(fig: plt.Figure, path: str | Path) -> None:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def _finite(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def text_colour(rgba: Sequence[float]) -> str:
    """Black on light cells, white on dark ones (relative luminance of the cell colour)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


def _n_phrase(frame: pd.DataFrame) -> str:
    low, high = int(frame.n_seeds.min()), int(frame.n_seeds.max())
    n = f"{low}" if low == high else f"{low}-{high}"
    return f"n = {n} seed{'s' if high > 1 else ''}"


def ablation_figure(frame: pd.DataFrame, path: str | Path, method_label: str | None = None) -> None:
    """Bars from zero: each variant's mIoU minus the student alone, per pair; error bars are the
    95% t-interval of the seed-paired deltas (none at n = 1, which the title says)."""
    pairs = list(dict.fromkeys(zip(frame.teacher, frame.student)))
    variants = list(dict.fromkeys(frame.variant))
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(2.4 + 2.8 * len(pairs), 3.8))
    colours = plt.get_cmap("tab10")
    for k, variant in enumerate(variants):
        rows = [frame[(frame.teacher == t) & (frame.student == s) & (frame.variant == variant)].iloc[0]
                for t, s in pairs]
        x = np.arange(len(pairs)) + (k - (len(variants) - 1) / 2) * width
        errors = np.array([[r.delta - r.delta_lo, r.delta_hi - r.delta] if _finite(r.delta_lo) else [0.0, 0.0]
                           for r in rows]).T
        label = rows[0].label if "label" in frame and isinstance(rows[0].label, str) else variant
        bars = ax.bar(x, [r.delta for r in rows], width, color=colours(k % 10), label=label,
                      yerr=errors if errors.any() else None, capsize=3, error_kw={"lw": 0.8})
        ax.bar_label(bars, labels=[f"{r.delta:+.1f}" for r in rows], fontsize=7, padding=2)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks(range(len(pairs)), [
        f"{t}\n-> {s}\n(alone {frame[(frame.teacher == t) & (frame.student == s)].baseline_miou.iloc[0]:.1f})"
        for t, s in pairs], fontsize=8)
    ax.margins(y=0.15)
    ax.set_ylabel("mIoU - student alone (points)")
    interval = "95% t-interval of the paired deltas" if frame.n_seeds.max() > 1 else "no interval"
    ax.set_title(f"{method_label or frame.method.iloc[0]} ablation on {frame.dataset.iloc[0]} "
                 f"({_n_phrase(frame)}, {interval})",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(variants), 5), loc="upper center", bbox_to_anchor=(0.5, -0.28))
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


def _sensitivity_lines(ax: plt.Axes, frame: pd.DataFrame) -> None:
    axis1, axis2 = frame.axis1.iloc[0], frame.axis2.iloc[0]
    values1 = sorted(frame.value1.unique())
    for v2 in sorted(frame.value2.unique()):
        rows = frame[frame.value2 == v2].sort_values("value1")
        errors = [s if _finite(s) else 0.0 for s in rows.miou_std]
        ax.errorbar(rows.value1, rows.miou_mean, yerr=errors if any(errors) else None, marker="o",
                    capsize=2, label=f"{axis2} = {v2:g}")
    default = frame[frame.is_default.astype(bool)]
    if len(default):
        ax.scatter(default.value1, default.miou_mean, marker="*", s=320, c="gold", edgecolors="k",
                   linewidths=1.2, zorder=10, label="default")
    ax.axhline(frame.baseline_miou.iloc[0], color="k", linestyle="--", label="student alone")
    if min(values1) > 0 and max(values1) / min(values1) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(axis1)
    ax.set_ylabel("mIoU (%)")
    ax.legend(fontsize=7)


def _annotated_heatmap(ax: plt.Axes, grid: np.ndarray, cmap: str, vmin: float, vmax: float,
                       fmt: str) -> matplotlib.image.AxesImage:
    """``grid`` as an image; NaN cells grey and hatched ("no run"), each value printed in the
    colour that contrasts with its cell."""
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, origin="lower")
    colour_map = plt.get_cmap(cmap)
    for (r, c), value in np.ndenumerate(grid):
        if np.isnan(value):
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=MISSING, hatch="///",
                                   edgecolor="#8c8c8c", lw=0))
            ax.text(c, r, "no run", ha="center", va="center", fontsize=7, color="#404040")
        else:
            shade = colour_map((value - vmin) / (vmax - vmin) if vmax > vmin else 0.5)
            ax.text(c, r, fmt.format(value), ha="center", va="center", fontsize=8, color=text_colour(shade))
    return image


def sensitivity_figure(frame: pd.DataFrame, path: str | Path, method_label: str | None = None) -> None:
    """Left: mIoU against axis1, one line per axis2 value, student alone dashed, default starred.
    Right: delta vs the student alone as a heatmap centred on 0 (the baseline); settings without
    runs are hatched grey, the default setting framed."""
    axis1, axis2 = frame.axis1.iloc[0], frame.axis2.iloc[0]
    values1, values2 = sorted(frame.value1.unique()), sorted(frame.value2.unique())
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    _sensitivity_lines(left, frame)
    grid = np.full((len(values2), len(values1)), np.nan)
    for row in frame.itertuples():
        grid[values2.index(row.value2), values1.index(row.value1)] = row.delta
    bound = max(float(np.nanmax(np.abs(grid))), 1e-6)
    image = _annotated_heatmap(right, grid, "RdBu", -bound, bound, "{:+.2f}")
    for row in frame[frame.is_default.astype(bool)].itertuples():
        r, c = values2.index(row.value2), values1.index(row.value1)
        right.add_patch(Rectangle((c - 0.47, r - 0.47), 0.94, 0.94, fill=False, lw=2.5, ec="k"))
        right.text(c, r - 0.32, "default", ha="center", va="center", fontsize=7, fontweight="bold",
                   color=text_colour(plt.get_cmap("RdBu")((row.delta + bound) / (2 * bound))))
    right.set_xticks(range(len(values1)), [f"{v:g}" for v in values1])
    right.set_yticks(range(len(values2)), [f"{v:g}" for v in values2])
    right.set_xlabel(axis1)
    right.set_ylabel(axis2)
    fig.colorbar(image, ax=right, label="mIoU - student alone (points)")
    first = frame.iloc[0]
    fig.suptitle(f"{method_label or first.method} on {first.dataset}: {first.teacher} -> {first.student} "
                 f"({_n_phrase(frame)})", fontsize=10)
    _save(fig, path)


def cka_figure(frame: pd.DataFrame, path: str | Path) -> None:
    """One teacher-stage x student-stage matrix of linear CKA per pair, on one 0..1 scale (the
    mean over student seeds where the frame has several)."""
    pairs = list(dict.fromkeys(zip(frame.teacher, frame.student, frame.kind)))
    fig, axes = plt.subplots(1, len(pairs), squeeze=False, figsize=(1.0 + 4.0 * len(pairs), 3.9),
                             layout="constrained")
    image = None
    for ax, (teacher, student, kind) in zip(axes[0], pairs):
        rows = frame[(frame.teacher == teacher) & (frame.student == student) & (frame.kind == kind)]
        n_t, n_s = int(rows.teacher_stage.max()) + 1, int(rows.student_stage.max()) + 1
        grid = np.full((n_t, n_s), np.nan)
        for (i, j), value in rows.groupby(["teacher_stage", "student_stage"]).cka.mean().items():
            grid[int(i), int(j)] = value
        image = _annotated_heatmap(ax, grid, "viridis", 0.0, 1.0, "{:.2f}")
        ax.set_xticks(range(n_s), [str(j + 1) for j in range(n_s)])
        ax.set_yticks(range(n_t), [str(i + 1) for i in range(n_t)])
        ax.set_xlabel(f"student stage ({student})", fontsize=8)
        ax.set_ylabel(f"teacher stage ({teacher})", fontsize=8)
        ax.set_title(f"{teacher} -> {student}\n({kind})", fontsize=8)
    fig.colorbar(image, ax=list(axes[0]), label="linear CKA", shrink=0.9)
    images = frame["images"].iloc[0] if "images" in frame else "?"
    several = "seed" in frame and frame.seed.nunique() > 1
    seeds = f", mean of {frame.seed.nunique()} student seeds" if several else ""
    fig.suptitle(f"teacher / student feature similarity on {frame.dataset.iloc[0]} "
                 f"({images} val images{seeds})",
                 fontsize=10)
    _save(fig, path)


def _band(ax: plt.Axes, rows: pd.DataFrame, colour: tuple, label: str) -> None:
    """Mean over seeds as a line; min..max over seeds as a band (when there are several)."""
    stats = rows.groupby("iteration").value.agg(["mean", "min", "max", "count"]).reset_index()
    ax.plot(stats.iteration, stats["mean"], color=colour, lw=1.2, label=label,
            marker="o" if len(stats) <= 12 else None, ms=3)
    if stats["count"].max() > 1:
        ax.fill_between(stats.iteration, stats["min"], stats["max"], color=colour, alpha=0.2, lw=0)


CURVE_TITLES = {"loss_task": "task loss (CE)", "loss_distill": "distillation loss (method terms)",
                "val_miou": "val mIoU (%)"}


def curves_figure(frame: pd.DataFrame, path: str | Path, labels: dict[str, str] | None = None) -> None:
    """Rows: pairs; columns: task loss, the method's own weighted terms, val mIoU, against the
    iteration. Every method of a pair in one panel: mean over seeds, band min..max."""
    labels = labels or {}
    pairs = list(dict.fromkeys(zip(frame.teacher, frame.student)))
    terms = [t for t in CURVE_TITLES if t in set(frame.term)]
    methods = list(dict.fromkeys(frame.method))
    colours = {m: plt.get_cmap("tab10")(k % 10) for k, m in enumerate(methods)}
    fig, axes = plt.subplots(len(pairs), len(terms), squeeze=False, sharex=True,
                             figsize=(3.6 * len(terms), 2.6 * len(pairs) + 0.8))
    for r, (teacher, student) in enumerate(pairs):
        of_pair = frame[(frame.teacher == teacher) & (frame.student == student)]
        for c, term in enumerate(terms):
            ax = axes[r, c]
            for method in methods:
                rows = of_pair[(of_pair.method == method) & (of_pair.term == term)]
                if len(rows):
                    _band(ax, rows, colours[method], labels.get(method, method))
            values = of_pair[of_pair.term == term].value
            spread = values.max() / values.min() if len(values) and values.min() > 0 else 1.0
            if term.startswith("loss_") and spread > 20:
                ax.set_yscale("log")  # methods' terms differ by orders of magnitude
            ax.set_title(f"{teacher} -> {student}: {CURVE_TITLES[term]}" if c == 0 else CURVE_TITLES[term],
                         fontsize=8)
            ax.tick_params(labelsize=7)
            if r == len(pairs) - 1:
                ax.set_xlabel("iteration", fontsize=8)
    handles = [plt.Line2D([], [], color=colours[m], lw=2) for m in methods]
    fig.legend(handles, [labels.get(m, m) for m in methods], loc="lower center", ncol=len(methods),
               fontsize=8, bbox_to_anchor=(0.5, -0.02))
    seeds = int(frame.groupby(["teacher", "student", "method"]).seed.nunique().max())
    fig.suptitle(f"training on {frame.dataset.iloc[0]}: mean over {seeds} seed{'s' if seeds > 1 else ''}"
                 + (", band min..max" if seeds > 1 else "") + "; losses averaged per iteration bin",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    _save(fig, path)


def colourise(label: np.ndarray, palette: Sequence[Sequence[int]],
              ignore_colour: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Class map (H, W) -> RGB (H, W, 3) in [0, 1] with ``palette`` (R, G, B in 0..255 per class);
    ignore (255) in ``ignore_colour``."""
    colours = np.asarray(palette, dtype=np.float64) / 255.0
    rgb = np.empty(label.shape + (3,))
    rgb[:] = np.asarray(ignore_colour, dtype=np.float64) / 255.0
    valid = label != IGNORE_INDEX
    rgb[valid] = colours[np.clip(label[valid], 0, len(colours) - 1)]
    return rgb


def qualitative_figure(images: list[np.ndarray], labels: list[np.ndarray],
                       predictions: dict[str, list[np.ndarray]], class_names: Sequence[str],
                       palette: Sequence[Sequence[int]], path: str | Path, title: str = "",
                       ignore_colour: Sequence[int] = (0, 0, 0)) -> None:
    """Rows: images; columns: input, label, then each model's prediction (in the given order);
    under them a legend of the classes that appear, in the dataset's palette."""
    columns = ["input", "label", *predictions]
    fig, axes = plt.subplots(len(images), len(columns), squeeze=False,
                             figsize=(2.2 * len(columns), 1.3 * len(images) + 0.9))
    for r, (image, label) in enumerate(zip(images, labels)):
        panels = [image, colourise(label, palette, ignore_colour)]
        panels += [colourise(preds[r], palette, ignore_colour) for preds in predictions.values()]
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel, interpolation="nearest")
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(columns[c], fontsize=9)
    maps = [*labels, *(p for ps in predictions.values() for p in ps)]
    shown = np.unique(np.concatenate([m.ravel() for m in maps]))
    handles = [Patch(facecolor=np.asarray(palette[k]) / 255.0, edgecolor="k", lw=0.3, label=class_names[k])
               for k in shown if k != IGNORE_INDEX and k < len(class_names)]
    if any(k == IGNORE_INDEX for k in shown):
        handles.append(Patch(facecolor=np.asarray(ignore_colour) / 255.0, edgecolor="k", lw=0.3,
                             label="ignored"))
    if title:
        fig.suptitle(title, fontsize=10)
    bottom = 0.035 * math.ceil(len(handles) / 8) + 0.01
    fig.tight_layout(rect=(0, bottom, 1, 1), h_pad=0.3)
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 8), fontsize=7,
               bbox_to_anchor=(0.5, bottom + 0.005), frameon=False)
    _save(fig, path)


def display_image(image: np.ndarray) -> np.ndarray:
    """A normalised (3, H, W) image -> (H, W, 3) in [0, 1] (per-image min/max; the normalisation
    constants are the dataset's business, and this keeps the figure independent of them)."""
    hwc = np.transpose(image, (1, 2, 0))
    low, high = hwc.min(), hwc.max()
    return (hwc - low) / (high - low) if high > low else np.zeros_like(hwc)
