"""Read finished runs (``metrics.json`` of a run folder) into small records the tables group."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import current_value
from harness.errors import DataError

REQUIRED = ("miou", "method", "student", "teacher", "dataset", "seed", "protocol", "config")


@dataclass(frozen=True)
class RunResult:
    """One finished training run."""

    folder: Path
    dataset: str
    teacher: str | None
    student: str
    method: str
    preset: str | None
    options: dict[str, Any]
    seed: int
    protocol: str
    miou: float
    terms: tuple[str, ...] = field(default=())  # loss terms the run logged (log.csv header)
    iterations: int | None = None  # training iterations done
    val_images: int | None = None  # images the final mIoU was computed on
    val_subset: bool = False  # evaluated on the first data.max_val_images images only
    crop: tuple[int, int] | None = None  # training crop (H, W)
    pretrained: str | None = None  # the student's local ImageNet weights (model.pretrained)
    source: str = "ours"  # "ours": trained here; "recorded@<commit>": a row of the recorded runs

    @property
    def setting(self) -> str:
        """What distinguishes runs of one method on one pair (preset and options)."""
        return json.dumps({"preset": self.preset, "options": self.options}, sort_keys=True)


def load_run(path: str | Path) -> RunResult:
    """A run from its folder or its ``metrics.json``; a missing or malformed file is a DataError."""
    path = Path(path)
    metrics_file = path if path.name == "metrics.json" else path / "metrics.json"
    if not metrics_file.is_file():
        raise DataError(f"{metrics_file} does not exist; run the training (snakemake builds it) first")
    try:
        metrics = json.loads(metrics_file.read_text())
    except json.JSONDecodeError:
        raise DataError(f"{metrics_file} is not valid JSON; delete it and rerun that training") from None
    missing = [k for k in REQUIRED if k not in metrics]
    if missing:
        raise DataError(f"{metrics_file} lacks {missing}; it was not written by `python -m harness train`")
    miou = metrics["miou"]
    if not isinstance(miou, (int, float)) or not math.isfinite(miou) or not 0 <= miou <= 100:
        raise DataError(f"{metrics_file}: miou {miou!r} is not a percentage in [0, 100]")
    config = metrics.get("config") or {}
    method_cfg, data_cfg = config.get("method") or {}, config.get("data") or {}
    folder = metrics_file.parent
    return RunResult(
        folder=folder,
        dataset=metrics["dataset"],
        teacher=metrics["teacher"] or None,
        student=metrics["student"],
        method=metrics["method"],
        preset=method_cfg.get("preset"),
        options=dict(method_cfg.get("options") or {}),
        seed=int(metrics["seed"]),
        protocol=current_value("protocol", metrics["protocol"]),
        miou=float(miou),
        terms=_logged_terms(folder / "log.csv"),
        iterations=metrics.get("iterations"),
        val_images=metrics.get("val_images"),
        val_subset=data_cfg.get("max_val_images") is not None,
        crop=tuple(data_cfg["crop"]) if data_cfg.get("crop") else None,
        pretrained=(config.get("model") or {}).get("pretrained"),
    )


def _logged_terms(log_csv: Path) -> tuple[str, ...]:
    """The ``loss_*`` columns of a run's log (which terms the method really trained with)."""
    if not log_csv.is_file():
        return ()
    with log_csv.open(newline="") as fh:
        header = next(csv.reader(fh), [])
    return tuple(c for c in header if c.startswith("loss_"))


def load_runs(paths: list[str | Path]) -> list[RunResult]:
    """Each distinct run folder once (a folder named twice is read once)."""
    folders = dict.fromkeys(Path(p).resolve().parent if Path(p).name == "metrics.json"
                            else Path(p).resolve() for p in paths)
    return [load_run(folder) for folder in folders]


def reuse_key(row: dict[str, str]) -> str:
    """``teacher:student:variant:seed:fingerprint`` (teacher ``_`` for none): how a workflow
    job names a recorded run it takes instead of training (``report ... --reuse KEY``)."""
    return ":".join([row["teacher"] or "_", row["student"], row["variant"], row["seed"],
                     row["fingerprint"]])


def recorded_run(row: dict[str, str], fingerprint: dict[str, Any], folder: Path) -> RunResult:
    """A recorded run (a row of ``results/recorded/runs/<dataset>/runs.csv`` and its fingerprint)
    as if it had just been run in ``folder``; its source is ``recorded@<commit>`` (the commit's
    first 12 characters). The store keeps no val image count nor the student's weights file."""
    setting, data = json.loads(row["options"]), fingerprint.get("data") or {}
    return RunResult(folder=folder, dataset=row["dataset"], teacher=row["teacher"] or None,
                     student=row["student"], method=row["method"], preset=setting["preset"],
                     options=dict(setting["options"]), seed=int(row["seed"]),
                     protocol=current_value("protocol", row["protocol"]), miou=float(row["miou"]),
                     iterations=int(row["iterations"]),
                     val_subset=data.get("max_val_images") is not None,
                     crop=tuple(data["crop"]) if data.get("crop") else None,
                     source=f"recorded@{row['commit'][:12]}")


def load_recorded(store_dir: str | Path, keys: list[str]) -> list[RunResult]:
    """The recorded runs ``keys`` (:func:`reuse_key`) of the store ``store_dir``; a key the store
    lacks is a DataError (the store changed after the workflow planned the job)."""
    from harness.report.recorded_runs import load_store

    store = load_store(store_dir)
    rows = {reuse_key(r): r for r in store.rows}
    missing = [k for k in keys if k not in rows]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"the recorded runs {store_dir} lack {missing[0]}{more}; the store changed "
                        "since the workflow planned this job, run the workflow again")
    return [recorded_run(rows[k], store.fingerprints[rows[k]["fingerprint"]],
                         Path(store_dir) / k.replace(":", "/")) for k in keys]
