"""The seed paper's testable claims, checked against our result tables
(docs/protocol.md §Comparisons over seeds).

The claims live in ``results/published/published_claims.csv`` (validated on load by
:func:`load_claims`), one row each: what is compared (``test``), on which pairs, the
``threshold`` the effect must clear, the published effect where the paper gives one, and the
source. Each claim expands into comparisons; each comparison is a paired effect over seeds with
its 95% t-interval (``harness/report/stats.py``) and a verdict: supported when the interval lies
above the threshold, contradicted when below, inconclusive when it spans it or fewer than 3
seeds exist. A claim's verdict combines its comparisons by ``quantifier``: ``all`` (every
comparison must hold: one contradicted comparison contradicts it) or ``any`` (one supported
comparison supports it; all contradicted contradict it).

Tests (effect = what the claim says is positive):
- ``beats_methods``: ``method`` minus each other distillation method of the main table, per pair.
- ``improves_student``: ``method`` minus ``versus`` (the student alone), per pair or, with
  ``over = mean``, the per-seed mean over the pairs.
- ``ablation_gain``: ablation variant ``method`` minus variant ``versus``, per ablation pair.
- ``sensitivity_gain``: each point of the sensitivity grid minus the student alone.
- ``cka_gap``: mean matched-stage linear CKA of the homogeneous pairs minus that of the
  heterogeneous pairs, per student seed.
- ``exceeds_teacher``: each distilled student (``method``, or every method when empty) minus its
  teacher's mIoU.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import DataError
from harness.report.published import read_rows
from harness.report.stats import Interval, paired_interval, t_interval, verdict
from harness.report.tables import per_seed

CLAIM_COLUMNS = ("claim", "statement", "test", "method", "versus", "pairs", "over", "quantifier",
                 "threshold", "published_effect", "source")
CHOICES = {
    "test": ("beats_methods", "improves_student", "ablation_gain", "sensitivity_gain", "cka_gap",
             "exceeds_teacher"),
    "pairs": ("heterogeneous", "homogeneous", "all"),
    "over": ("each", "mean"),
    "quantifier": ("all", "any"),
}
CLAIMS_OUT_COLUMNS = ["dataset", "claim", "comparison", "effect", "lo", "hi", "n", "threshold",
                      "verdict", "claim_verdict", "published_effect", "statement", "source"]


def _number(text: str, path: Path, line: int, key: str, empty_ok: bool) -> float:
    if not text.strip() and empty_ok:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path} line {line}: {key} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path} line {line}: {key} {text!r} is not a finite number")
    return value


def load_claims(path: str | Path) -> pd.DataFrame:
    """The claims file as a DataFrame; refuses unknown columns or choices, a claim without a
    statement or source, a non-numeric threshold, and repeated claim names."""
    path = Path(path)
    numbered = read_rows(path, CLAIM_COLUMNS, "claims")
    frame = pd.DataFrame([row for _, row in numbered], columns=list(CLAIM_COLUMNS), dtype=str)
    for (line, _), (_, row) in zip(numbered, frame.iterrows()):
        for key in ("claim", "statement", "source"):
            if not row[key].strip():
                raise DataError(f"{path} line {line}: empty {key}; every claim needs one")
        for key, valid in CHOICES.items():
            if row[key] not in valid:
                raise DataError(f"{path} line {line}: {key} {row[key]!r} is not one of {valid}")
        _number(row["threshold"], path, line, "threshold", empty_ok=False)
        _number(row["published_effect"], path, line, "published_effect", empty_ok=True)
    dupes = frame.claim[frame.claim.duplicated()]
    if len(dupes):
        raise DataError(f"{path}: claim {dupes.iloc[0]!r} appears more than once; keep one")
    frame["threshold"] = frame.threshold.astype(float)
    frame["published_effect"] = pd.to_numeric(frame.published_effect.replace("", math.nan))
    return frame


@dataclass
class Results:
    """The result tables of one dataset; ``ablation``, ``sensitivity``, ``cka`` when it has them."""

    table: pd.DataFrame
    ablation: pd.DataFrame | None = None
    sensitivity: pd.DataFrame | None = None
    cka: pd.DataFrame | None = None


Comparison = tuple[str, Interval]


def _of_kind(frame: pd.DataFrame, pairs: str) -> pd.DataFrame:
    return frame if pairs == "all" else frame[frame.kind == pairs]


def _pair_order(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(frame.teacher, frame.student)))


def _cell(frame: pd.DataFrame, teacher: str, student: str, key: str,
          value: str) -> dict[int, float] | None:
    rows = frame[(frame.teacher == teacher) & (frame.student == student) & (frame[key] == value)]
    return per_seed(rows.iloc[0]) if len(rows) else None


def _versus(frame: pd.DataFrame, pairs: str, key: str, own: str,
            others: Callable[[pd.DataFrame], list[str]]) -> list[tuple[str, dict, dict]]:
    """(label, own seeds, other seeds) for each pair of the kind and each other row."""
    out = []
    chosen = _of_kind(frame, pairs)
    for teacher, student in _pair_order(chosen):
        rows = chosen[(chosen.teacher == teacher) & (chosen.student == student)]
        mine = _cell(rows, teacher, student, key, own)
        if mine is None:
            continue
        for other in others(rows):
            theirs = _cell(rows, teacher, student, key, other)
            if theirs is not None:
                out.append((f"{teacher} -> {student}: {own} - {other}", mine, theirs))
    return out


def _beats_methods(res: Results, claim: Any) -> list[Comparison]:
    def others(rows: pd.DataFrame) -> list[str]:
        return [m for m in rows.method if m not in ("baseline", claim.method)]

    return [(label, paired_interval(a, b))
            for label, a, b in _versus(res.table, claim.pairs, "method", claim.method, others)]


def _improves_student(res: Results, claim: Any) -> list[Comparison]:
    found = _versus(res.table, claim.pairs, "method", claim.method, lambda rows: [claim.versus])
    if claim.over == "each" or not found:
        return [(label, paired_interval(a, b)) for label, a, b in found]
    seeds = sorted(set.intersection(*(set(a) & set(b) for _, a, b in found)))
    means = [sum(a[s] - b[s] for _, a, b in found) / len(found) for s in seeds]
    label = f"mean over {len(found)} {claim.pairs} pairs: {claim.method} - {claim.versus}"
    return [(label, t_interval(means))]


def _ablation_gain(res: Results, claim: Any) -> list[Comparison]:
    if res.ablation is None:
        return []
    found = _versus(res.ablation, claim.pairs, "variant", claim.method, lambda rows: [claim.versus])
    return [(label, paired_interval(a, b)) for label, a, b in found]


def _sensitivity_gain(res: Results, claim: Any) -> list[Comparison]:
    if res.sensitivity is None:
        return []
    out = []
    for row in res.sensitivity.itertuples(index=False):
        base = _cell(res.table, row.teacher, row.student, "method", "baseline")
        if base is None:
            continue
        label = (f"{row.teacher} -> {row.student}: {row.axis1}={row.value1:g}, "
                 f"{row.axis2}={row.value2:g} - baseline")
        out.append((label, paired_interval(per_seed(row._asdict()), base)))
    return out


def _cka_gap(res: Results, claim: Any) -> list[Comparison]:
    if res.cka is None or "seed" not in res.cka:
        return []
    matched = res.cka[res.cka.teacher_stage == res.cka.student_stage]
    by_kind = matched.groupby(["seed", "kind"]).cka.mean().unstack("kind")
    if not {"homogeneous", "heterogeneous"} <= set(by_kind.columns):
        return []
    gaps = (by_kind.homogeneous - by_kind.heterogeneous).dropna()
    return [("matched-stage CKA: homogeneous - heterogeneous", t_interval(list(gaps)))]


def _exceeds_teacher(res: Results, claim: Any) -> list[Comparison]:
    rows = _of_kind(res.table, claim.pairs)
    rows = rows[rows.method == claim.method] if claim.method else rows[rows.method != "baseline"]
    out = []
    for row in rows.itertuples(index=False):
        if pd.isna(row.teacher_miou):
            continue
        gains = [v - row.teacher_miou for v in per_seed(row._asdict()).values()]
        out.append((f"{row.teacher} -> {row.student}: {row.method} - teacher", t_interval(gains)))
    return out


TESTS: dict[str, Callable[[Results, Any], list[Comparison]]] = {
    "beats_methods": _beats_methods,
    "improves_student": _improves_student,
    "ablation_gain": _ablation_gain,
    "sensitivity_gain": _sensitivity_gain,
    "cka_gap": _cka_gap,
    "exceeds_teacher": _exceeds_teacher,
}


def combine(verdicts: list[str], quantifier: str) -> str:
    """A claim's verdict from its comparisons' (module docstring); none -> inconclusive."""
    if not verdicts:
        return "inconclusive"
    if quantifier == "all":
        if "contradicted" in verdicts:
            return "contradicted"
        return "supported" if all(v == "supported" for v in verdicts) else "inconclusive"
    if "supported" in verdicts:
        return "supported"
    return "contradicted" if all(v == "contradicted" for v in verdicts) else "inconclusive"


def build_claims(results: Results, claims: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison of each claim (a claim the tables cannot test gets one row saying
    so, with n = 0 and verdict inconclusive)."""
    dataset = results.table.dataset.iloc[0] if len(results.table) else ""
    rows = []
    for claim in claims.itertuples(index=False):
        found = TESTS[claim.test](results, claim)
        if not found:
            found = [(f"not measured: {dataset} has no results for this test",
                      Interval(math.nan, math.nan, math.nan, 0))]
        verdicts = [verdict(interval, claim.threshold) for _, interval in found]
        overall = combine(verdicts, claim.quantifier)
        for (label, interval), each in zip(found, verdicts):
            rows.append({
                "dataset": dataset, "claim": claim.claim, "comparison": label,
                "effect": interval.mean, "lo": interval.lo, "hi": interval.hi, "n": interval.n,
                "threshold": claim.threshold, "verdict": each, "claim_verdict": overall,
                "published_effect": claim.published_effect, "statement": claim.statement,
                "source": claim.source,
            })
    return pd.DataFrame(rows, columns=CLAIMS_OUT_COLUMNS)


def claims_markdown(frame: pd.DataFrame) -> str:
    """A summary (one line per claim) and the comparisons behind each verdict."""
    def num(value: float) -> str:
        return "" if pd.isna(value) else f"{value:+.2f}"

    summary = []
    for claim, rows in frame.groupby("claim", sort=False):
        counts = rows.verdict.value_counts()
        summary.append({
            "claim": claim, "verdict": rows.claim_verdict.iloc[0],
            "statement": rows.statement.iloc[0],
            "comparisons": ", ".join(f"{counts[v]} {v}" for v in counts.index),
            "published": num(rows.published_effect.iloc[0]), "source": rows.source.iloc[0],
        })
    detail = pd.DataFrame({
        "claim": frame.claim, "comparison": frame.comparison,
        "effect [95% CI]": [num(e) if pd.isna(lo) else f"{num(e)} [{num(lo)}, {num(hi)}]"
                            for e, lo, hi in zip(frame.effect, frame.lo, frame.hi)],
        "n": frame.n, "threshold": frame.threshold.map(lambda v: f"{v:g}"),
        "verdict": frame.verdict,
    })
    dataset = frame.dataset.iloc[0] if len(frame) else ""
    return (f"# The seed paper's claims on {dataset}\n\n"
            + pd.DataFrame(summary).to_markdown(index=False)
            + "\n\nEffects are paired per seed (mIoU points; CKA for the CKA claim); the interval "
            "is a 95% t-interval over seeds. supported: the interval lies above the threshold; "
            "contradicted: below it; inconclusive: it spans the threshold, or n < 3.\n\n"
            + detail.to_markdown(index=False) + "\n")
