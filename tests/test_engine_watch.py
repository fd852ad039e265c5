"""Watching a run: evaluation leaves the training alone, log.csv grows as the run goes, TensorBoard
event files, progress lines with ETA, images/s and the last val mIoU."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch

from harness.engine.evaluate import evaluate
from harness.engine.watch import RunMonitor, csv_text, duration
from harness.models import build_model


class _Images(torch.utils.data.Dataset):
    num_classes = 3

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        return torch.full((3, 16, 16), float(index)), torch.zeros(16, 16, dtype=torch.long)


def test_evaluation_does_not_advance_the_global_rng() -> None:
    model = build_model("deeplabv3_tiny", 3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    evaluate(model, _Images(), num_classes=3)
    assert torch.equal(torch.get_rng_state(), before)


def _row(iteration: int) -> dict:
    return {"iteration": iteration, "lr": 0.1, "loss_task": 1.0 / iteration, "loss_total": 2.0 / iteration,
            "time_s": 0.5 * iteration}


def _read(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_log_csv_grows_row_by_row_with_val_miou_on_evaluated_rows(tmp_path: Path) -> None:
    rows: list[dict] = []
    monitor = RunMonitor(tmp_path, iterations=4, batch_size=8, rows=rows, log_every=10, active=True)
    assert (tmp_path / "log.csv").read_text() == ""
    for iteration in (1, 2, 3):
        rows.append(_row(iteration))
        monitor.step(rows[-1], step_seconds=0.5)
        if iteration == 2:
            monitor.evaluated(2, 41.5)
    # a row is written once the next begins (its evaluation, if any, is known by then)
    assert [r["iteration"] for r in _read(tmp_path / "log.csv")] == ["1", "2"]
    assert [r["val_miou"] for r in _read(tmp_path / "log.csv")] == ["", "41.5"]
    monitor.write_all()  # a checkpoint: the whole log, atomically
    assert [r["iteration"] for r in _read(tmp_path / "log.csv")] == ["1", "2", "3"]
    rows.append(_row(4))
    monitor.step(rows[-1], step_seconds=0.5)
    monitor.evaluated(4, 43.0)
    monitor.write_all()
    monitor.close()
    log = _read(tmp_path / "log.csv")
    assert [r["iteration"] for r in log] == ["1", "2", "3", "4"] and log[3]["val_miou"] == "43.0"
    assert list(log[0]) == ["iteration", "lr", "loss_task", "loss_total", "time_s", "val_miou"]


def test_a_resumed_run_drops_the_rows_it_redoes(tmp_path: Path) -> None:
    """Killed after iteration 3 with a checkpoint at 2: log.csv restarts from the checkpoint's rows."""
    (tmp_path / "log.csv").write_text(csv_text([_row(1), _row(2), _row(3)]))
    rows = [_row(1), _row(2)]
    monitor = RunMonitor(tmp_path, iterations=4, batch_size=8, rows=rows, log_every=10, active=True)
    assert [r["iteration"] for r in _read(tmp_path / "log.csv")] == ["1", "2"]
    for iteration in (3, 4):
        rows.append(_row(iteration))
        monitor.step(rows[-1], step_seconds=0.5)
    monitor.write_all()
    monitor.close()
    assert [r["iteration"] for r in _read(tmp_path / "log.csv")] == ["1", "2", "3", "4"]


def test_progress_lines_show_eta_images_per_s_and_the_last_val_miou(tmp_path: Path, caplog) -> None:
    rows: list[dict] = []
    monitor = RunMonitor(tmp_path, iterations=40, batch_size=8, rows=rows, log_every=20, active=True)
    with caplog.at_level(logging.INFO, logger="harness.engine.watch"):
        for iteration in range(1, 41):
            rows.append(_row(iteration))
            monitor.step(rows[-1], step_seconds=0.25)  # 8 images in 0.25 s: 32 images/s
            if iteration == 20:
                monitor.evaluated(20, 37.25)
    monitor.close()
    lines = [r.getMessage() for r in caplog.records]
    # the first iteration (nothing to wait for), every log_every, and the last
    assert [line.split()[1] for line in lines] == ["1/40", "20/40", "40/40"]
    assert "32.0 img/s" in lines[0] and "ETA 10s" in lines[0] and "val mIoU -" in lines[0]  # 39 x 0.25 s
    assert "ETA 5s" in lines[1] and "(50%)" in lines[1]
    assert "val mIoU 37.25 at 20" in lines[2] and "ETA 0s" in lines[2]


def test_tensorboard_events_hold_losses_lr_and_val_miou(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows: list[dict] = []
    monitor = RunMonitor(tmp_path, iterations=3, batch_size=8, rows=rows, log_every=10, active=True)
    for iteration in (1, 2, 3):
        rows.append(_row(iteration))
        monitor.step(rows[-1], step_seconds=0.5)
    monitor.evaluated(3, 50.0)
    monitor.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss_task", "train/loss_total", "train/lr", "val/miou"} <= set(scalars)
    assert [(e.step, e.value) for e in events.Scalars("train/loss_total")] == [
        (1, 2.0), (2, 1.0), (3, pytest.approx(2 / 3))]
    assert [(e.step, e.value) for e in events.Scalars("val/miou")] == [(3, 50.0)]


def test_only_the_main_process_writes(tmp_path: Path) -> None:
    rows = [_row(1)]
    monitor = RunMonitor(tmp_path, iterations=2, batch_size=8, rows=rows, log_every=1, active=False)
    monitor.step(rows[-1], step_seconds=0.1)
    monitor.evaluated(1, 10.0)
    monitor.write_all()
    monitor.close()
    assert list(tmp_path.iterdir()) == [] and rows[-1]["val_miou"] == 10.0


def test_duration_format() -> None:
    assert (duration(7.4), duration(130), duration(3725), duration(-3)) == ("7s", "2m10s", "1h02m", "0s")
