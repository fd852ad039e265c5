"""Watching a run: evaluation leaves the training alone, log.csv grows as the run goes, TensorBoard
event files, progress lines with ETA, images/s and the last val mIoU."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch

from harness.engine.evaluate import evaluate, same_size_batches
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


class _Sizes(torch.utils.data.Dataset):
    """Five images of two sizes (4x8 twice, 6x8, 4x8 twice): random pixels and labels."""

    num_classes = 4
    shapes = [(4, 8), (4, 8), (6, 8), (4, 8), (4, 8)]

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int):
        generator = torch.Generator().manual_seed(index)
        height, width = self.shapes[index]
        return (torch.randn(3, height, width, generator=generator),
                torch.randint(0, 4, (height, width), generator=generator))


def test_same_size_batches_stack_runs_of_one_size_up_to_the_batch() -> None:
    shapes = [tuple(images.shape) for images, _ in same_size_batches(iter(_Sizes()), 3)]
    assert shapes == [(2, 3, 4, 8), (1, 3, 6, 8), (2, 3, 4, 8)]
    shapes = [tuple(images.shape[:1]) for images, _ in same_size_batches(iter([_Sizes()[0]] * 7), 3)]
    assert shapes == [(3,), (3,), (1,)]


def test_batched_evaluation_counts_the_same_pixels_as_batch_one() -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 1)  # per pixel: batching cannot change a prediction

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = model

        def forward(self, images):
            return type("Out", (), {"logits": self.conv(images)})()

    one = evaluate(Wrapped(), _Sizes(), num_classes=4)
    four = evaluate(Wrapped(), _Sizes(), num_classes=4, batch_size=4)
    assert one == four and one["images"] == 5
    # the scores come from every pixel: 3 x 32 + 48 of them
    predictions = torch.cat([model(x[None]).argmax(1).flatten() for x, _ in _Sizes()])
    labels = torch.cat([y.flatten() for _, y in _Sizes()])
    assert one["pixel_accuracy"] == pytest.approx(100.0 * float((predictions == labels).double().mean()))


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


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    from harness.data import prepare_dataset

    root = tmp_path_factory.mktemp("toycity")
    prepare_dataset("toycity", root, num_train=16, num_val=4, height=32, width=64)
    return root


def _train(root: Path, out: Path, *overrides: str) -> dict:
    from harness.config import load_config
    from harness.engine import train

    return train(load_config(None, [
        f"data.root={root}", "model.student=deeplabv3_tiny", "data.crop=[32, 32]", "data.batch_size=4",
        "data.workers=0", "train.iterations=8", "train.checkpoint_every=4", "train.threads=1",
        "method.name=afdcd", "model.teacher=deeplabv3_tiny", *overrides]), out)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    from harness.models import build_model, save_model

    folder = tmp_path_factory.mktemp("teacher") / "model"
    torch.manual_seed(0)
    save_model(build_model("deeplabv3_tiny", 10), folder, {"dataset": "toycity", "miou": 1.0})
    return folder


def test_periodic_evaluation_leaves_the_training_identical(toy_root, teacher, tmp_path) -> None:
    """Af-DCD draws random masks every step: evaluating in between must not move its stream."""
    never = _train(toy_root, tmp_path / "never", f"model.teacher_model={teacher}", "train.eval_every=0")
    default = _train(toy_root, tmp_path / "default", f"model.teacher_model={teacher}")
    losses = [{k: v for k, v in r.items() if k.startswith("loss_")}
              for r in _read(tmp_path / "never/log.csv")]
    assert losses == [{k: v for k, v in r.items() if k.startswith("loss_")}
                      for r in _read(tmp_path / "default/log.csv")]
    assert default["miou"] == never["miou"]
    # the default evaluates every ceil(8 / 4) = 2 iterations; the rows say when and what
    evaluated = {int(r["iteration"]): float(r["val_miou"]) for r in _read(tmp_path / "default/log.csv")
                 if r["val_miou"]}
    assert sorted(evaluated) == [2, 4, 6, 8] and evaluated[8] == pytest.approx(default["miou"])
    assert default["best_miou"] == pytest.approx(max(evaluated.values()))
    assert [r["val_miou"] for r in _read(tmp_path / "never/log.csv")][-1] != ""  # the final one only
    assert sum(r["val_miou"] != "" for r in _read(tmp_path / "never/log.csv")) == 1


def test_a_run_writes_tensorboard_events_and_progress_lines(toy_root, teacher, tmp_path, caplog) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with caplog.at_level(logging.INFO, logger="harness.engine.watch"):
        _train(toy_root, tmp_path / "run", f"model.teacher_model={teacher}", "train.log_every=100")
    lines = [r.getMessage() for r in caplog.records]
    # 8 iterations, log_every 100: still the first and the last iteration
    assert [line.split()[1] for line in lines] == ["1/8", "8/8"]
    assert "img/s" in lines[0] and "ETA" in lines[0] and "val mIoU 6" not in lines[0]
    assert "val mIoU" in lines[1] and "at 6" in lines[1]  # the last evaluation before iteration 8
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss_total")] == list(range(1, 9))
    assert [e.step for e in events.Scalars("val/miou")] == [2, 4, 6, 8]
