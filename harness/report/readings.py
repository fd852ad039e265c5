"""Readings of a method compared on evidence: each open choice against the student alone and KD.

A *reading* is a set of option overrides on top of the method's main-table setting (``{}`` is the
main setting itself, labelled ``default``), e.g. ``{kem_form: pixel}`` or ``{stages: [-2]}``
for HeteroAKD (docs/methods.md §HeteroAKD, "Readings"). For each pair and reading the table
gives the mIoU over seeds and two paired deltas with their 95% t-intervals
(``harness/report/stats.py``): against the student trained alone and against a reference
method (KD by default), seed by seed.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
import yaml

from harness.errors import ConfigError, DataError
from harness.report.runs import RunResult
from harness.report.stats import Interval, paired_interval
from harness.report.tables import PairSpec, by_seed, check_one, delta_cell, mean_std, seed_columns, select

READINGS_COLUMNS = [
    "dataset", "teacher", "student", "kind", "method", "reading", "options", "miou_mean",
    "miou_std", "n_seeds", "seeds", "mious", "delta_student", "student_lo", "student_hi",
    "n_student", "reference", "delta_reference", "reference_lo", "reference_hi", "n_reference",
]


def parse_reading(text: str) -> dict[str, Any]:
    """A reading as the command line gives it: a YAML flow mapping such as ``{kem_form: pixel}``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if value is None and text.strip() in ("{}", ""):
        value = {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"reading {text!r} must be a mapping of options, e.g. "
                          "'{kem_form: pixel}' or '{}' for the main setting")
    return value


def reading_label(overrides: dict[str, Any]) -> str:
    """``default`` for no overrides, else ``key=value`` pairs in key order (values as YAML)."""
    if not overrides:
        return "default"
    def text(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")
    return ", ".join(f"{k}={text(v)}" for k, v in sorted(overrides.items()))


def _cell(runs: list[RunResult], pair: PairSpec, method: str, preset: str | None,
          options: dict[str, Any]) -> list[RunResult]:
    chosen = [r for r in runs if r.method == method and r.teacher == pair.teacher
              and r.student == pair.student and r.preset == preset and r.options == options]
    seeds = [r.seed for r in chosen]
    if len(seeds) != len(set(seeds)):
        raise DataError(f"runs of {method} {options} for {pair.teacher} -> {pair.student} "
                        f"repeat a seed: {sorted(seeds)}")
    return sorted(chosen, key=lambda r: r.seed)


def _interval_columns(prefix: str, interval: Interval) -> dict[str, float]:
    return {f"delta_{prefix}": interval.mean, f"{prefix}_lo": interval.lo,
            f"{prefix}_hi": interval.hi, f"n_{prefix}": interval.n}


def build_readings(runs: list[RunResult], pairs: list[PairSpec], method: str,
                   readings: list[dict[str, Any]], *, preset: str | None = None,
                   options: dict[str, Any] | None = None, reference: str = "kd") -> pd.DataFrame:
    """One row per pair x reading (in the given orders); every cell must have runs.

    ``preset``/``options``: the method's main setting; a reading's runs carry
    ``{**options, **reading}``. ``reference``: the method every reading is also compared to
    (its main-table runs on the pair).
    """
    if not runs:
        raise DataError("no runs given; pass the metrics.json files of the readings' runs")
    dataset = check_one(runs, "dataset")
    rows = []
    for pair in pairs:
        base = select(runs, student=pair.student, method="baseline")
        ref = select(runs, student=pair.student, method=reference, teacher=pair.teacher)
        if not base or not ref:
            missing = "baseline" if not base else reference
            raise DataError(f"no runs of {missing} for {pair.teacher} -> {pair.student} among "
                            "the inputs; the readings are compared to it")
        for overrides in readings:
            wanted = {**(options or {}), **overrides}
            cell = _cell(runs, pair, method, preset, wanted)
            if not cell:
                raise DataError(f"no runs of {method} with options {wanted} for {pair.teacher} "
                                f"-> {pair.student} among the inputs")
            mean, std = mean_std([r.miou for r in cell])
            own = by_seed(cell)
            rows.append({
                "dataset": dataset, "teacher": pair.teacher, "student": pair.student,
                "kind": pair.kind, "method": method, "reading": reading_label(overrides),
                "options": yaml.safe_dump(wanted, default_flow_style=True).strip(),
                "miou_mean": mean, "miou_std": std, "n_seeds": len(cell), **seed_columns(cell),
                **_interval_columns("student", paired_interval(own, by_seed(base))),
                "reference": reference,
                **_interval_columns("reference", paired_interval(own, by_seed(ref))),
            })
    return pd.DataFrame(rows, columns=READINGS_COLUMNS)


def readings_markdown(frame: pd.DataFrame) -> str:
    """Per pair and reading: mIoU, n, and both deltas with their intervals (``*``: excludes 0)."""
    reference = frame.reference.iloc[0] if len(frame) else "kd"
    shown = pd.DataFrame({
        "pair": [f"{t} -> {s}" for t, s in zip(frame.teacher, frame.student)],
        "kind": frame.kind, "reading": frame.reading,
        "miou": [f"{m:.2f}" + ("" if math.isnan(s) else f" +- {s:.2f}")
                 for m, s in zip(frame.miou_mean, frame.miou_std)],
        "n": frame.n_seeds,
        "vs student alone [95% CI]": [delta_cell(d, lo, hi) for d, lo, hi in
                                      zip(frame.delta_student, frame.student_lo, frame.student_hi)],
        f"vs {reference} [95% CI]": [delta_cell(d, lo, hi) for d, lo, hi in
                                     zip(frame.delta_reference, frame.reference_lo,
                                         frame.reference_hi)],
    })
    method = frame.method.iloc[0] if len(frame) else ""
    return (f"# {method} readings on {frame.dataset.iloc[0] if len(frame) else ''}\n\n"
            + shown.to_markdown(index=False)
            + "\n\nDeltas are paired by seed (mIoU points); `*`: the 95% t-interval excludes 0; "
            "n: seeds. `default` is the method's main-table setting.\n")
