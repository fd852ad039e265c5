"""Which runs of a dataset's grid take a recorded run instead of training (``reuse_recorded``;
the store and its fingerprints: ``harness/report/recorded_runs.py`` and
docs/protocol.md §Recorded runs; README "Compare a new method against recorded runs").

A planned run is reused when the store holds a run of the same teacher, student, variant and
seed whose fingerprint equals the one the run would train with: that fingerprint is computed
here from the run's ``--set`` settings (the config ``harness train`` would resolve), its
teacher's saved model and the data, before any job runs. A teacher is reused the same way, but
only when the store also holds its saved model (``record --teacher-models``) and the runs folder
holds no trained one; a distilled run can only be matched once its teacher's weights exist.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.workflow.grid import DatasetPlan


def planned_runs(plan: DatasetPlan) -> list[tuple[str, dict[str, Any], list[str]]]:
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


def planned_fingerprint(settings: list[str], teacher: dict[str, Any] | None,
                        dataset: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fingerprint a run of ``settings`` would record (the config ``harness train`` resolves);
    ``dataset``: the data's fingerprint when already known."""
    from harness.config import align_corners, load_config, to_dict
    from harness.report.recorded_runs import fingerprint_of

    config = load_config(None, settings)
    return fingerprint_of(to_dict(config), align_corners(config), teacher, dataset)


def data_fingerprint(plan: DatasetPlan) -> dict[str, Any]:
    """The data part of every fingerprint of the plan (a generated dataset: as it will be)."""
    from harness.data import dataset_fingerprint

    return dataset_fingerprint(plan.name, plan.cfg["root"], ["train", plan.cfg["val_split"]],
                               planned=True)


Notes = dict[tuple[str, str], int]  # (pair, what differs) -> recorded runs retrained


def _note(notes: Notes, run: dict[str, Any], what: str) -> None:
    pair = f"{run['teacher']} -> {run['student']}" if run["teacher"] else run["student"]
    notes[(pair, what)] = notes.get((pair, what), 0) + 1


def _differs(difference: tuple[str, Any, Any]) -> str:
    field, was, now = difference
    return f"differs in {field} (recorded {was!r}, this run {now!r})"


def _checked(store: Any, run: dict[str, Any], wanted: dict[str, Any], mode: str,
             notes: Notes) -> dict[str, str] | None:
    """The recorded row of ``run`` with fingerprint ``wanted``; a mismatch is noted (strict:
    the one-line ConfigError of :func:`reusable`)."""
    from harness.report.recorded_runs import match, reusable

    row, difference = match(store, run, wanted)
    if difference is not None:
        reusable(store, run, wanted, mode)  # raises in strict mode
        _note(notes, run, _differs(difference))
    return row


def reuse_teachers(plan: DatasetPlan, store: Any, mode: str, dataset: dict[str, Any],
                   notes: Notes) -> None:
    """Set ``plan.reused_teachers``: each trained teacher whose recorded run matches and whose
    saved model the store holds (and that the runs folder has not trained already)."""
    from harness.models.saved import WEIGHTS_FILE
    from harness.report.recorded_runs import MODEL_FINGERPRINT, teacher_model_dir

    seed = plan.cfg["teacher_seed"]
    for teacher in plan.trained_teachers:
        if (Path(plan.teacher_dir(teacher)) / "model" / WEIGHTS_FILE).is_file():
            continue  # trained here: used as is
        run = {"teacher": "", "student": teacher, "variant": "teacher", "seed": seed}
        wanted = planned_fingerprint(plan.train_settings(teacher, seed, as_teacher=True), None, dataset)
        row = _checked(store, run, wanted, mode, notes)
        folder = teacher_model_dir(plan.store_dir, teacher)
        marker = folder / MODEL_FINGERPRINT
        if row is None:
            continue
        if (folder / WEIGHTS_FILE).is_file() and marker.is_file() \
                and marker.read_text().strip() == row["fingerprint"]:
            plan.reused_teachers[teacher] = str(folder)
        else:
            _note(notes, run, "recorded, but the store holds no saved model of it "
                  "(record --teacher-models), so it is trained")


def reuse_plan(plan: DatasetPlan, mode: str) -> tuple[dict[str, dict[str, str]], list[str]]:
    """({run folder: recorded row} for the student runs that are not trained, [one warning line
    per pair and what differs]); also sets ``plan.reused_teachers``. ``mode`` "strict" raises
    the first mismatch as one ConfigError line; "false" reuses nothing. Data that cannot be
    fingerprinted reuses nothing (strict: a ConfigError)."""
    from harness.errors import ConfigError, DataError
    from harness.report.recorded_runs import load_store, recorded_of

    store = load_store(plan.store_dir)
    if mode == "false" or not store.rows:
        return {}, []
    try:
        dataset = data_fingerprint(plan)
    except DataError as err:
        if mode == "strict":
            raise ConfigError(f"reuse_recorded=strict: the data of {plan.name} cannot be "
                              f"fingerprinted ({err})") from None
        return {}, [f"reuse_recorded: {plan.name}: nothing reused, its data cannot be "
                    f"fingerprinted ({err})"]
    notes: Notes = {}
    reuse_teachers(plan, store, mode, dataset, notes)
    teachers = {t: teacher_record(plan, t) for t in plan.teachers}
    reused = {}
    for folder, run, settings in planned_runs(plan):
        if run["teacher"] and teachers[run["teacher"]] is None:
            if recorded_of(store, run):
                _note(notes, run, f"teacher {run['teacher']} is not trained yet and not in the "
                      "store, so its recorded runs cannot be matched")
            continue
        wanted = planned_fingerprint(settings, teachers.get(run["teacher"]), dataset)
        row = _checked(store, run, wanted, mode, notes)
        if row is not None:
            reused[folder] = row
    return reused, [f"reuse_recorded: {plan.name} {pair}: {what}; {count} recorded run(s) "
                    "trained again" for (pair, what), count in notes.items()]


def apply_reuse(plans: dict[str, DatasetPlan], mode: str) -> list[str]:
    """Set ``reused`` and ``reused_teachers`` of every plan whose store holds runs; returns the
    warning lines (one per pair and what differs)."""
    warnings = []
    for plan in plans.values():
        plan.reused, lines = reuse_plan(plan, mode)
        warnings += lines
    return warnings
