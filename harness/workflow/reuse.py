"""Which student runs of a dataset's grid take a recorded run instead of training
(``reuse_recorded``; the store and its fingerprints: ``harness/report/recorded_runs.py``,
docs/protocol.md §Recorded runs).

A planned run is reused when the store holds a run of the same teacher, student, variant and
seed whose fingerprint equals the one the run would train with: that fingerprint is computed
here from the run's ``--set`` settings (the config ``harness train`` would resolve) and its
teacher's saved model, before any job runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.workflow.grid import DatasetPlan


def planned_runs(config: dict[str, Any], plan: DatasetPlan) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(run folder, its name in the store, its train settings) for every student run of the plan:
    the students alone, then every distilled (pair, variant), per seed."""
    out = []
    for seed in plan.seeds:
        for student in plan.students:
            out.append((plan.student_dir(student, seed),
                        {"teacher": "", "student": student, "variant": "baseline", "seed": seed},
                        plan.train_settings(student, seed)))
        for pair, variant in plan.distill_runs():
            out.append((plan.distill_dir(pair, variant.name, seed),
                        {"teacher": pair.teacher, "student": pair.student, "variant": variant.name,
                         "seed": seed},
                        plan.train_settings(pair.student, seed, teacher=pair.teacher, variant=variant)))
    return out


def teacher_record(plan: DatasetPlan, teacher: str) -> dict[str, Any] | None:
    """The teacher part of a fingerprint (name, sha256 of its weights, mIoU) from its saved model
    folder, as training records it; None while the teacher is not trained yet."""
    from harness.engine.provenance import sha256_of
    from harness.models.saved import CONFIG_FILE, WEIGHTS_FILE, read_model_config

    folder = Path(plan.teacher_model(teacher))
    if not (folder / WEIGHTS_FILE).is_file():
        return None
    meta = read_model_config(folder / CONFIG_FILE)
    return {"name": teacher, "sha256": sha256_of(folder / WEIGHTS_FILE), "miou": meta.get("miou")}


def planned_fingerprint(settings: list[str], teacher: dict[str, Any] | None) -> dict[str, Any]:
    """The fingerprint a run of ``settings`` would record (the config ``harness train`` resolves)."""
    from harness.config import align_corners, load_config, to_dict
    from harness.report.recorded_runs import fingerprint_of

    config = load_config(None, settings)
    return fingerprint_of(to_dict(config), align_corners(config), teacher)


def reuse_plan(config: dict[str, Any], plan: DatasetPlan, store_dir: str | Path,
               mode: str) -> tuple[dict[str, dict[str, str]], list[str]]:
    """({run folder: recorded row} for the runs that are not trained, [why a recorded run of
    the grid is retrained]). ``mode`` "strict" raises the first mismatch as one ConfigError
    line; "false" reuses nothing."""
    from harness.report.recorded_runs import load_store, reusable

    if mode == "false":
        return {}, []
    store = load_store(Path(store_dir) / plan.name)
    teachers = {t: teacher_record(plan, t) for t in plan.teachers}
    reused, reasons = {}, []
    for folder, run, settings in planned_runs(config, plan):
        if run["teacher"] and teachers[run["teacher"]] is None:
            reasons.append(f"{folder}: teacher {run['teacher']} is not trained yet, so no "
                           "recorded run can be matched to it")
            continue
        row, reason = reusable(store, run, planned_fingerprint(settings, teachers.get(run["teacher"])), mode)
        if row is not None:
            reused[folder] = row
        elif reason is not None:
            reasons.append(f"{folder}: {reason}")
    return reused, reasons
