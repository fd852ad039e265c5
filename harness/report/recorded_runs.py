"""The recorded-runs store ``results/recorded/runs/<dataset>/``: finished runs as plain text.

Two files per dataset (docs/protocol.md §Recorded runs):

- ``runs.csv``: one row per finished run (:data:`COLUMNS`); ``options`` and ``per_class_iou`` are
  JSON with sorted keys, numbers as Python writes them, so a row reads back exactly.
- ``fingerprints.json``: ``{id: fingerprint}``; a row's ``fingerprint`` names what makes it
  comparable to another run (schedule, protocol, teacher file, data), see :func:`fingerprint`.

Both are validated on load (:func:`load_store`) with the reader of the published figures
(:func:`harness.report.published.read_rows`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.report.published import read_rows

COLUMNS = ("dataset", "teacher", "student", "method", "variant", "options", "seed", "miou",
           "best_miou", "per_class_iou", "iterations", "protocol", "fingerprint", "commit",
           "versions")
RUNS_FILE = "runs.csv"
FINGERPRINTS_FILE = "fingerprints.json"
#: train settings that decide how a run executes, not what it learns (left out of the fingerprint)
MECHANICS = ("threads", "log_every", "checkpoint_every", "eval_every", "amp", "channels_last",
             "sync_bn")
#: data settings that say where the files are or how they are read (the dataset part covers them)
DATA_LOCATION = ("root", "workers", "name")
KEY = ("teacher", "student", "variant", "seed", "fingerprint")
#: the file beside a teacher's saved model in the store naming its recorded run's fingerprint
MODEL_FINGERPRINT = "fingerprint"


def teacher_model_dir(store_dir: str | Path, teacher: str) -> Path:
    """Where the store keeps a recorded teacher's saved model (``record --teacher-models``)."""
    return Path(store_dir) / "teachers" / teacher


def fingerprint(metrics: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs comparable, from a finished run's ``metrics.json``."""
    teacher = metrics.get("teacher_model") or None  # harness/engine/loop.py writes it
    return fingerprint_of(metrics["config"], metrics["align_corners"], None if teacher is None else
                          {"name": metrics["teacher"], "sha256": teacher["sha256"],
                           "miou": teacher["miou"]})


def fingerprint_of(config: dict[str, Any], align_corners: bool, teacher: dict[str, Any] | None,
                   dataset: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fingerprint of a run of the resolved run ``config`` (``metrics.json``'s ``config``):
    the protocol and resolved ``align_corners``, the method's preset and options, the file name
    of the student's ImageNet weights (``model.pretrained``), the schedule (crop, iterations, batch,
    optimiser, lr and its reference batch, aux weight, ...), the eval settings, the teacher
    (name, sha256 of its weights, mIoU) and the data's fingerprint (read under ``data.root``,
    which must exist, unless ``dataset`` gives it); see docs/protocol.md §Recorded runs."""
    from harness.data import dataset_fingerprint

    data, method, model = config["data"], config.get("method") or {}, config.get("model") or {}
    return {
        "protocol": config["protocol"],
        "method": {"preset": method.get("preset"), "options": method.get("options") or {}},
        "pretrained": Path(model["pretrained"]).name if model.get("pretrained") else None,
        "align_corners": align_corners,
        "schedule": {k: v for k, v in config["train"].items() if k not in MECHANICS},
        "data": {k: v for k, v in data.items() if k not in DATA_LOCATION},
        "teacher": teacher,
        "dataset": dataset or dataset_fingerprint(data["name"], data["root"],
                                                  [data["train_split"], data["val_split"]]),
    }


def fingerprint_id(print_: dict[str, Any]) -> str:
    """The first 16 hex digits of the sha256 of the fingerprint's canonical JSON."""
    text = json.dumps(print_, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def run_variant(folder: Path) -> str:
    """The run's variant from the workflow's layout (harness/workflow/grid.py): ``teacher`` under
    ``teachers/``, ``baseline`` under ``students/``, else the folder above ``seed<N>``."""
    kind = folder.parent.parent.name
    return {"teachers": "teacher", "students": "baseline"}.get(kind, folder.parent.name)


def record_row(folder: Path, metrics: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """One store row (text fields) and its fingerprint from a finished run's folder and metrics."""
    print_ = fingerprint(metrics)
    method = metrics["config"].get("method") or {}
    versions = metrics.get("versions") or {}
    row = {
        "dataset": metrics["dataset"], "teacher": metrics["teacher"] or "",
        "student": metrics["student"], "method": metrics["method"], "variant": run_variant(folder),
        "options": _json({"preset": method.get("preset"), "options": method.get("options") or {}}),
        "seed": str(int(metrics["seed"])), "miou": repr(float(metrics["miou"])),
        "best_miou": repr(float(metrics["best_miou"])),
        "per_class_iou": _json(metrics["per_class_iou"]),
        "iterations": str(int(metrics["iterations"])), "protocol": metrics["protocol"],
        "fingerprint": fingerprint_id(print_), "commit": metrics.get("git_commit") or "unknown",
        "versions": ";".join(f"{k}={versions[k]}" for k in sorted(versions)),
    }
    return row, print_


@dataclass(frozen=True)
class Store:
    """A dataset's recorded runs: rows (text fields, file order) and fingerprints by id."""

    rows: list[dict[str, str]]
    fingerprints: dict[str, dict[str, Any]]


def store_text(store: Store) -> tuple[str, str]:
    """(runs.csv, fingerprints.json) text; rows sorted by their key so a new record diffs small."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(store.rows, key=lambda r: (r["teacher"], r["student"], r["variant"],
                                                       int(r["seed"]), r["fingerprint"])))
    return buffer.getvalue(), json.dumps(store.fingerprints, indent=2, sort_keys=True) + "\n"


def load_store(folder: str | Path) -> Store:
    """The store of ``folder`` (``results/recorded/runs/<dataset>``), validated; see
    :func:`_check_row` for the row checks. A folder without files is an empty store."""
    folder = Path(folder)
    runs, prints = folder / RUNS_FILE, folder / FINGERPRINTS_FILE
    if not runs.exists() and not prints.exists():
        return Store([], {})
    fingerprints = _load_fingerprints(prints)
    rows, seen = [], {}
    for line, fields in read_rows(runs, COLUMNS, "recorded runs"):
        row = dict(zip(COLUMNS, fields))
        _check_row(runs, line, row, folder.name, fingerprints)
        key = tuple(row[k] for k in KEY)
        if key in seen:
            raise DataError(f"{runs} line {line}: the same run as line {seen[key]} "
                            f"({', '.join(KEY)} = {', '.join(key)}); keep one")
        seen[key] = line
        rows.append(row)
    return Store(rows, fingerprints)


def _load_fingerprints(path: Path) -> dict[str, dict[str, Any]]:
    """``{id: fingerprint}`` whose every id is the hash of its fingerprint (no hand edits)."""
    if not path.is_file():
        raise DataError(f"recorded runs file {path} does not exist; record the runs again "
                        "(python -m harness record) or restore it from the repository")
    try:
        prints = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not UTF-8 JSON ({err}); restore it from the repository") from None
    if not isinstance(prints, dict) or not all(isinstance(v, dict) for v in prints.values()):
        raise DataError(f"{path} is not an object of fingerprints by id; restore it from the repository")
    for key, value in prints.items():
        if fingerprint_id(value) != key:
            raise DataError(f"{path}: fingerprint {key} does not hash to its id "
                            f"({fingerprint_id(value)}); it was edited by hand, record the runs again")
    return prints


def _check_row(path: Path, line: int, row: dict[str, str], dataset: str,
               fingerprints: dict[str, dict[str, Any]]) -> None:
    """Names, numbers, JSON fields and the fingerprint id of one row; a DataError names the line."""
    where = f"{path} line {line}"
    if row["dataset"] != dataset:
        raise DataError(f"{where}: dataset {row['dataset']!r} in the store of {dataset!r}; "
                        f"move the row to results/recorded/runs/{row['dataset']}/")
    for key in ("student", "method", "variant", "protocol", "commit"):
        if not row[key].strip():
            raise DataError(f"{where}: empty {key}; every recorded run needs one")
    for key in ("seed", "iterations"):
        if not row[key].isdigit():
            raise DataError(f"{where}: {key} {row[key]!r} is not a whole number")
    for key in ("miou", "best_miou"):
        _percentage(where, key, row[key])
    options, per_class = _parse_json(where, "options", row), _parse_json(where, "per_class_iou", row)
    if not isinstance(options, dict) or set(options) != {"preset", "options"}:
        raise DataError(f"{where}: options must be a JSON object with keys preset and options")
    if not isinstance(per_class, dict):
        raise DataError(f"{where}: per_class_iou must be a JSON object of class -> IoU")
    for name, value in per_class.items():
        if value is not None:
            _percentage(where, f"per_class_iou {name}", value)
    if row["fingerprint"] not in fingerprints:
        raise DataError(f"{where}: fingerprint {row['fingerprint']} is not in {FINGERPRINTS_FILE}; "
                        "record the runs again")


def _percentage(where: str, key: str, value: Any) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {key} {value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number) or not 0 <= number <= 100:
        raise DataError(f"{where}: {key} {value!r} is outside [0, 100] (a percentage)")


def _parse_json(where: str, key: str, row: dict[str, str]) -> Any:
    try:
        return json.loads(row[key])
    except json.JSONDecodeError:
        raise DataError(f"{where}: {key} is not valid JSON ({row[key][:40]!r})") from None


def collect(runs_dir: str | Path) -> Store:
    """Every finished run under ``runs_dir`` (a folder with ``metrics.json``) as a store; a
    malformed run, a run of another dataset or the same run twice is a DataError naming it."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise DataError(f"runs folder {runs_dir} does not exist; pass the runs/<dataset> folder "
                        "the workflow trained into")
    return collect_runs(sorted(runs_dir.rglob("metrics.json")), str(runs_dir))


def collect_runs(metrics_files: list[Path], runs_dir: str) -> Store:
    """The finished runs of ``metrics_files`` (in the workflow's layout) as a store; see
    :func:`collect`."""
    from harness.report.runs import load_run

    rows, prints = [], {}
    for metrics_file in metrics_files:
        load_run(metrics_file)  # the checks every report applies to a run
        row, print_ = record_row(metrics_file.parent, json.loads(metrics_file.read_text()))
        rows.append(row)
        prints[row["fingerprint"]] = print_
    if not rows:
        raise DataError(f"no finished run (metrics.json) under {runs_dir}; train the grid first")
    datasets = sorted({r["dataset"] for r in rows})
    if len(datasets) > 1:
        raise DataError(f"{runs_dir} holds runs of {datasets}; record one dataset at a time "
                        "(pass runs/<dataset>)")
    return merged(Store([], {}), Store(rows, prints), what=runs_dir)


def merged(old: Store, new: Store, what: str = "the new runs") -> Store:
    """``old`` with the rows of ``new`` added; a new row replaces an old one with the same key
    (a rerun of the same run); the same key twice in ``new`` is a DataError. Fingerprints no row
    uses are dropped."""
    rows = {tuple(r[k] for k in KEY): r for r in old.rows}
    seen: set[tuple[str, ...]] = set()
    for row in new.rows:
        key = tuple(row[k] for k in KEY)
        if key in seen:
            raise DataError(f"{what} holds the same run twice ({', '.join(KEY)} = "
                            f"{', '.join(key)}); keep one run folder of it")
        seen.add(key)
        rows[key] = row
    prints = {**old.fingerprints, **new.fingerprints}
    used = {r["fingerprint"] for r in rows.values()}
    return Store(list(rows.values()), {k: v for k, v in prints.items() if k in used})


def write_store(store: Store, folder: str | Path) -> None:
    """Write ``runs.csv`` and ``fingerprints.json`` atomically, fingerprints first (a row never
    names a fingerprint the file lacks)."""
    from harness.io import atomic_write_text

    folder = Path(folder)
    runs_text, prints_text = store_text(store)
    atomic_write_text(folder / FINGERPRINTS_FILE, prints_text)
    atomic_write_text(folder / RUNS_FILE, runs_text)


def write_teacher_model(run: Path, store_dir: str | Path) -> None:
    """Copy the saved model of the finished teacher run ``run`` to ``<store>/teachers/<name>/``
    with the fingerprint id of its recorded row (:data:`MODEL_FINGERPRINT`), so ``reuse_recorded`` can use
    it instead of training the teacher; each file written atomically, the id last."""
    from harness.io import atomic_write_text, atomic_write_with

    metrics = json.loads((run / "metrics.json").read_text())
    row, _ = record_row(run, metrics)
    folder = teacher_model_dir(store_dir, row["student"])
    for source in teacher_model_files(run):
        atomic_write_with(folder / source.name, lambda tmp, src=source: tmp.write_bytes(src.read_bytes()))
    atomic_write_text(folder / MODEL_FINGERPRINT, row["fingerprint"] + "\n")


def teacher_model_files(run: Path) -> list[Path]:
    """The saved-model files of a finished teacher run; a missing one is a DataError."""
    from harness.models.saved import CONFIG_FILE, WEIGHTS_FILE

    files = [run / "model" / name for name in (CONFIG_FILE, WEIGHTS_FILE)]
    for file in files:
        if not file.is_file():
            raise DataError(f"teacher run {run} has no model/{file.name}; train it again")
    return files


REUSE_MODES = ("false", "true", "strict")


def differences(recorded: Any, wanted: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted field, recorded value, wanted value) for every field the two fingerprints disagree
    on, in sorted field order; a field only one side has differs from ``None``."""
    if isinstance(recorded, dict) and isinstance(wanted, dict):
        out = []
        for key in sorted(set(recorded) | set(wanted)):
            out += differences(recorded.get(key), wanted.get(key), f"{prefix}{key}.")
        return out
    return [] if recorded == wanted else [(prefix.rstrip("."), recorded, wanted)]


def recorded_of(store: Store, run: dict[str, Any]) -> list[dict[str, str]]:
    """The rows of ``run`` (teacher "" for none, student, variant, seed) under any fingerprint."""
    return [r for r in store.rows if (r["teacher"], r["student"], r["variant"], int(r["seed"]))
            == (run["teacher"], run["student"], run["variant"], int(run["seed"]))]


def match(store: Store, run: dict[str, Any],
          wanted: dict[str, Any]) -> tuple[dict[str, str] | None, tuple[str, Any, Any] | None]:
    """(the row of ``run`` recorded with fingerprint ``wanted``, None), or (None, the first
    differing field of its recorded fingerprint as (field, recorded, wanted)); (None, None)
    when the store has no row of ``run``."""
    same, wanted_id = recorded_of(store, run), fingerprint_id(wanted)
    for row in same:
        if row["fingerprint"] == wanted_id:
            return row, None
    if not same:
        return None, None
    recorded = store.fingerprints[same[0]["fingerprint"]]
    # equal values of other JSON types (1 and 1.0) hash differently
    return None, (differences(recorded, wanted) or [("fingerprint", same[0]["fingerprint"], wanted_id)])[0]


def reusable(store: Store, run: dict[str, Any], wanted: dict[str, Any],
             mode: str) -> tuple[dict[str, str] | None, str | None]:
    """The recorded row a planned run can take instead of training, and why not when none.

    ``run`` names it (teacher "" for none, student, variant, seed); ``wanted`` is the fingerprint
    it would train with. Returns (row, None) on a fingerprint match; (None, reason) when rows of
    that run exist under other fingerprints (the run retrains, the reason names the first
    differing field); (None, None) when nothing is recorded. With ``mode`` "strict" a mismatch is
    a ConfigError of one line instead; with "false" nothing is reused."""
    from harness.errors import ConfigError

    if mode not in REUSE_MODES:
        raise ConfigError(f"reuse_recorded {mode!r} is not one of {', '.join(REUSE_MODES)}")
    if mode == "false":
        return None, None
    row, difference = match(store, run, wanted)
    if difference is None:
        return row, None
    field, was, now = difference
    name = (f"{run['variant']} seed {run['seed']} of {run['teacher']} -> {run['student']}"
            if run["teacher"] else f"{run['variant']} {run['student']} seed {run['seed']}")
    reason = f"the recorded run {name} differs in {field} (recorded {was!r}, this run {now!r})"
    if mode == "strict":
        raise ConfigError(f"{reason}; with reuse_recorded=strict it is not retrained: restore "
                          f"{field} or set reuse_recorded=true to retrain it")
    return None, reason
