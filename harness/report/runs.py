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
