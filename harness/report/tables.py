"""Result tables from finished runs: the main table, the ablation and the sensitivity grid.

Every number is a statistic of ``metrics.json`` files: mean and sample std (ddof=1; empty with one
seed) of the final-checkpoint mIoU over seeds, and the delta against the student trained alone
(difference of means; its std and 95% t-interval are over the seeds both have, paired by seed:
``harness/report/stats.py``). Each row also keeps its per-seed mIoU (``seeds`` and, aligned with
it, ``mious``), so later reports (claims) pair rows by seed from the CSV alone.
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import DataError
from harness.io import atomic_write_with
from harness.report import published as pub
from harness.report.runs import RunResult
from harness.report.stats import paired_interval

TABLE_COLUMNS = [
    "dataset", "teacher", "student", "kind", "method", "protocol", "miou_mean", "miou_std",
    "n_seeds", "seeds", "mious", "delta", "delta_std", "delta_lo", "delta_hi", "teacher_miou",
    "published_miou", "published_source", "published_teacher_miou", "published_delta", "overhead",
    "student_params_m", "student_gflops", "teacher_params_m", "teacher_gflops", "flops_size",
    "iterations", "val_images", "val_subset", "scale", "notes", "source",
]
ABLATION_COLUMNS = [
    "dataset", "teacher", "student", "kind", "method", "variant", "label", "miou_mean", "miou_std",
    "n_seeds", "seeds", "mious", "baseline_miou", "delta", "delta_std", "delta_lo", "delta_hi",
    "delta_vs_full", "source",
]
SENSITIVITY_COLUMNS = [
    "dataset", "teacher", "student", "method", "axis1", "value1", "axis2", "value2", "miou_mean",
    "miou_std", "n_seeds", "seeds", "mious", "baseline_miou", "delta", "is_default", "source",
]


@dataclass(frozen=True)
class PairSpec:
    teacher: str
    student: str
    kind: str = ""

    @classmethod
    def parse(cls, token: str) -> PairSpec:
        """``teacher:student[:kind]``."""
        parts = token.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise DataError(f"pair {token!r} must look like teacher:student[:kind]")
        return cls(*parts)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (NaN for a single value)."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return mean, std


def by_seed(runs: list[RunResult]) -> dict[int, float]:
    return {r.seed: r.miou for r in runs}


def seed_columns(runs: list[RunResult]) -> dict[str, str]:
    """``seeds`` ("0 1 2"), the aligned ``mious`` ("50.0000 52.0000 54.0000") and the ``source``
    of a cell: ``ours`` (trained now), ``recorded@<commit>`` (recorded runs), both joined by
    ``+`` when the seeds mix them."""
    ordered = sorted(runs, key=lambda r: r.seed)
    return {"seeds": " ".join(str(r.seed) for r in ordered),
            "mious": " ".join(f"{r.miou:.4f}" for r in ordered),
            "source": "+".join(sorted({r.source for r in ordered}))}


def per_seed(row: Any) -> dict[int, float]:
    """seed -> mIoU of a table/ablation/sensitivity row (its ``seeds`` and ``mious`` columns)."""
    seeds, mious = str(row["seeds"]).split(), str(row["mious"]).split()
    if len(seeds) != len(mious):
        raise DataError(f"row {dict(row)} has {len(seeds)} seeds but {len(mious)} mIoU values; "
                        "rebuild the table with python -m harness report")
    return {int(s): float(m) for s, m in zip(seeds, mious)}


def _delta(runs: list[RunResult], base: list[RunResult]) -> dict[str, float]:
    """delta (difference of means), delta_std and the 95% interval of the paired deltas."""
    if not base:
        return dict.fromkeys(("delta", "delta_std", "delta_lo", "delta_hi"), math.nan)
    delta = mean_std([r.miou for r in runs])[0] - mean_std([r.miou for r in base])[0]
    own, ref = by_seed(runs), by_seed(base)
    paired = [own[s] - ref[s] for s in sorted(own.keys() & ref.keys())]
    interval = paired_interval(own, ref)
    return {"delta": delta, "delta_std": statistics.stdev(paired) if len(paired) > 1 else math.nan,
            "delta_lo": interval.lo, "delta_hi": interval.hi}


def select(runs: list[RunResult], *, student: str, method: str, teacher: str | None = None,
           what: str = "") -> list[RunResult]:
    """The runs of one table cell; more than one setting (preset/options) is refused."""
    if method == "baseline":
        chosen = [r for r in runs if r.student == student and r.method == "baseline"]
    else:
        chosen = [r for r in runs if r.student == student and r.teacher == teacher and r.method == method]
    settings = {r.setting for r in chosen}
    if len(settings) > 1:
        raise DataError(
            f"runs of {what or method} for {teacher} -> {student} mix settings {sorted(settings)}; "
            f"pass the runs of one setting"
        )
    seeds = [r.seed for r in chosen]
    if len(seeds) != len(set(seeds)):
        raise DataError(f"runs of {method} for {teacher} -> {student} repeat a seed: {sorted(seeds)}")
    return sorted(chosen, key=lambda r: r.seed)


def check_one(runs: list[RunResult], key: str) -> str:
    values = {getattr(r, key) for r in runs}
    if len(values) > 1:
        raise DataError(f"runs mix {key}s {sorted(values)}; a table holds one {key} (make one table each)")
    return values.pop()


RANDOM_INIT_NOTE = "student from random weights (no model.pretrained; the protocol assumes ImageNet weights)"


def _notes(runs: list[RunResult], method: str, pretrained_expected: bool) -> str:
    parts = ["student alone"] if method == "baseline" else []
    first = runs[0]
    if method != "baseline":
        if first.preset:
            parts.append(f"preset {first.preset}")
        if first.options:
            parts.append("options " + json.dumps(first.options, sort_keys=True))
        if first.terms:
            own = [t for t in first.terms if t not in ("loss_task", "loss_aux", "loss_total")]
            parts.append("terms " + " ".join(own))
    # a recorded run keeps no weights file name: only runs trained here can show random weights
    if pretrained_expected and any(r.pretrained is None and r.source == "ours" for r in runs):
        parts.append(RANDOM_INIT_NOTE)
    return "; ".join(parts)


def _cost(cost: pd.DataFrame | None, teacher: str, student: str, method: str,
          preset: str | None) -> float:
    """The benchmark's overhead for this cell: ``overhead_alone`` (the method timed alone, the
    steady measurement) when the cost table has it, else ``overhead`` (full step / limit)."""
    if cost is None or method == "baseline":
        return math.nan
    rows = cost[(cost.teacher == teacher) & (cost.student == student) & (cost.method == method)]
    if "preset" in rows:
        same = rows[rows.preset.fillna("").astype(str) == (preset or "")]
        rows = same if len(same) else rows
    if not len(rows):
        return math.nan
    row = rows.iloc[0]
    steady = row.get("overhead_alone", math.nan)
    return float(steady) if pd.notna(steady) else float(row.overhead)


Complexity = Callable[[str], Any]  # model name -> harness.models.complexity.Complexity or None


def _complexity_columns(complexity: Complexity | None, pair: PairSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"student_params_m": math.nan, "student_gflops": math.nan,
                           "teacher_params_m": math.nan, "teacher_gflops": math.nan, "flops_size": ""}
    for role, name in (("student", pair.student), ("teacher", pair.teacher)):
        info = complexity(name) if complexity is not None else None
        if info is not None:
            out[f"{role}_params_m"], out[f"{role}_gflops"] = info.params_m, info.gflops
            out["flops_size"] = "x".join(map(str, info.size))
    return out


def _published_columns(published: pd.DataFrame | None, dataset: str, split: str, pair: PairSpec,
                       method: str) -> dict[str, Any]:
    """The published figure of a cell, its teacher's, and the published gain over the baseline."""
    if published is None:
        return {"published_miou": math.nan, "published_source": "", "published_teacher_miou": math.nan,
                "published_delta": math.nan, "published_note": ""}
    found = pub.lookup(published, dataset, split, pair.teacher, pair.student, method)
    base = pub.lookup(published, dataset, split, pair.teacher, pair.student, "baseline")
    teacher = pub.lookup_teacher(published, dataset, split, pair.teacher)
    return {
        "published_miou": found[0] if found else math.nan,
        "published_source": found[1] if found else "",
        "published_teacher_miou": math.nan if teacher is None else teacher,
        "published_delta": found[0] - base[0] if found and base and method != "baseline" else math.nan,
        "published_note": found[2] if found else "",
    }


def _row(dataset: str, protocol: str, pair: PairSpec, method: str, cell: list[RunResult],
         base: list[RunResult]) -> dict[str, Any]:
    """The measured columns of one pair x method cell."""
    mean, std = mean_std([r.miou for r in cell])
    deltas = _delta(cell, base) if method != "baseline" else {**_delta(cell, []), "delta": 0.0}
    known = [r.iterations for r in cell if r.iterations is not None]
    images = [r.val_images for r in cell if r.val_images is not None]
    return {
        "dataset": dataset, "teacher": pair.teacher, "student": pair.student,
        "kind": pair.kind, "method": method, "protocol": protocol,
        "miou_mean": mean, "miou_std": std, "n_seeds": len(cell), **seed_columns(cell), **deltas,
        "iterations": min(known) if known else math.nan,
        "val_images": min(images) if images else math.nan,
        "val_subset": any(r.val_subset for r in cell),
    }


def build_table(runs: list[RunResult], pairs: list[PairSpec], methods: list[str], *,
                teacher_miou: dict[str, float], split: str = "val",
                published: pd.DataFrame | None = None, cost: pd.DataFrame | None = None,
                complexity: Complexity | None = None, scale: str = "full",
                pretrained_expected: bool = False) -> pd.DataFrame:
    """One row per pair x method (in the given orders); every cell must have runs.

    ``complexity`` gives a model's parameters and GFLOPs; ``scale`` (full or smoke) is recorded
    so that a comparison with published figures can say what was run; ``pretrained_expected``
    (a real dataset) notes the rows whose students started from random weights.
    """
    if not runs:
        raise DataError("no runs given; pass the metrics.json files of the table's runs")
    dataset = check_one(runs, "dataset")
    protocol = check_one(runs, "protocol")
    rows = []
    for pair in pairs:
        base = select(runs, student=pair.student, method="baseline")
        for method in methods:
            cell = select(runs, student=pair.student, method=method, teacher=pair.teacher)
            if not cell:
                raise DataError(f"no runs of {method} for {pair.teacher} -> {pair.student} among the inputs")
            figures = _published_columns(published, dataset, split, pair, method)
            notes = _notes(cell, method, pretrained_expected)
            published_note = figures.pop("published_note")
            if published_note:
                notes = "; ".join(n for n in (notes, f"published: {published_note}") if n)
            rows.append({
                **_row(dataset, protocol, pair, method, cell, base), **figures,
                **_complexity_columns(complexity, pair),
                "teacher_miou": teacher_miou.get(pair.teacher, math.nan),
                "overhead": _cost(cost, pair.teacher, pair.student, method, cell[0].preset),
                "scale": scale, "notes": notes,
            })
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def build_ablation(runs: list[RunResult], pairs: list[PairSpec], method: str,
                   variants: list[str], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows per pair x preset of ``method`` (the run's ``method.preset``; "default" when none).

    ``delta`` is the difference of means against the student alone, ``delta_std`` the std of the
    per-seed paired differences (empty below two paired seeds); ``label`` is the printed name
    (``labels``, e.g. the method's ``preset_labels``; the preset name otherwise).
    """
    dataset = check_one(runs, "dataset")
    labels = labels or {}
    rows = []
    for pair in pairs:
        base = select(runs, student=pair.student, method="baseline")
        if not base:
            raise DataError(f"no baseline runs of {pair.student} among the inputs; the ablation needs them")
        base_mean = mean_std([r.miou for r in base])[0]
        of_pair = [r for r in runs
                   if (r.teacher, r.student, r.method) == (pair.teacher, pair.student, method)]
        means: dict[str, float] = {}
        for variant in variants:
            cell = sorted((r for r in of_pair if (r.preset or "default") == variant), key=lambda r: r.seed)
            if not cell:
                raise DataError(f"no runs of {method} preset {variant} for {pair.teacher} -> {pair.student}")
            mean, std = mean_std([r.miou for r in cell])
            means[variant] = mean
            rows.append({
                "dataset": dataset, "teacher": pair.teacher, "student": pair.student,
                "kind": pair.kind, "method": method, "variant": variant,
                "label": labels.get(variant, variant), "miou_mean": mean, "miou_std": std,
                "n_seeds": len(cell), **seed_columns(cell), "baseline_miou": base_mean, **_delta(cell, base),
            })
        for row in rows[-len(variants):]:
            row["delta_vs_full"] = row["miou_mean"] - means["full"] if "full" in means else math.nan
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


Resolver = Callable[[str, str | None, dict[str, Any]], dict[str, Any]]


def resolve_options(method: str, preset: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """A method's effective options: defaults, then the preset, then the run's overrides."""
    from dataclasses import asdict

    from harness.methods import METHODS  # imports torch: only the sensitivity job needs it

    return asdict(METHODS.get(method).make_options(preset, **options))


def build_sensitivity(runs: list[RunResult], pair: PairSpec, method: str, axes: tuple[str, str],
                      resolve: Resolver = resolve_options) -> pd.DataFrame:
    """mIoU per (axis1, axis2) setting of ``method`` on one pair.

    The default setting (a run without overrides of the axes) is flagged ``is_default``; where it
    coincides with a grid point, the grid point's runs are used and the point is flagged.
    """
    dataset = check_one(runs, "dataset")
    base = select(runs, student=pair.student, method="baseline")
    if not base:
        raise DataError(f"no baseline runs of {pair.student} among the inputs; the plot marks them")
    base_mean = mean_std([r.miou for r in base])[0]
    groups: dict[tuple[float, float], dict[str, list[RunResult]]] = {}
    for run in runs:
        if run.method != method or run.teacher != pair.teacher or run.student != pair.student:
            continue
        values = resolve(method, run.preset, run.options)
        key = (float(values[axes[0]]), float(values[axes[1]]))
        explicit = any(a in run.options for a in axes)
        groups.setdefault(key, {}).setdefault("grid" if explicit else "default", []).append(run)
    if not groups:
        raise DataError(f"no runs of {method} for {pair.teacher} -> {pair.student} among the inputs")
    rows = []
    for (v1, v2), kinds in sorted(groups.items()):
        cell = kinds.get("grid") or kinds["default"]
        mean, std = mean_std([r.miou for r in cell])
        rows.append({
            "dataset": dataset, "teacher": pair.teacher, "student": pair.student, "method": method,
            "axis1": axes[0], "value1": v1, "axis2": axes[1], "value2": v2, "miou_mean": mean,
            "miou_std": std, "n_seeds": len(cell), **seed_columns(cell),
            "baseline_miou": base_mean, "delta": mean - base_mean, "is_default": "default" in kinds,
        })
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)


def _markdown(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return shown.to_markdown(index=False) + "\n"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def delta_cell(delta: float, lo: float, hi: float) -> str:
    """``+1.36 [+0.61, +2.11] *``: the delta, its 95% interval when defined, ``*`` when the
    interval excludes 0; empty for a NaN delta."""
    if pd.isna(delta):
        return ""
    if pd.isna(lo) or pd.isna(hi):
        return _signed(delta)
    mark = " *" if lo > 0 or hi < 0 else ""
    return f"{_signed(delta)} [{_signed(lo)}, {_signed(hi)}]{mark}"


def write_frame(frame: pd.DataFrame, csv_path: str | Path, md: bool | str = False) -> None:
    """CSV (full precision, NaN as empty) and optionally a Markdown twin (``md=True``: every
    column; a string: that text); both atomic."""
    csv_path = Path(csv_path)
    atomic_write_with(csv_path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.4f"))
    if md:
        text = md if isinstance(md, str) else _markdown(frame)
        atomic_write_with(csv_path.with_suffix(".md"), lambda tmp: tmp.write_text(text))
