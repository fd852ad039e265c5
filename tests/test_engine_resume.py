"""Resume after SIGKILL reproduces the uninterrupted run exactly (CPU), and a checkpoint from a
different config is refused. Runs go through the CLI in subprocesses, as a user would."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from harness.config import load_config
from harness.engine import train
from harness.errors import CheckpointError

ITERATIONS = 30


def command(root, out, workers=0, *extra):
    settings = [f"data.root={root}", "model.student=deeplabv3_tiny", "data.crop=[32, 32]",
                "data.batch_size=4", f"data.workers={workers}", f"train.iterations={ITERATIONS}",
                "train.checkpoint_every=5", "train.eval_every=10", "train.threads=1", *extra]
    args = [sys.executable, "-m", "harness", "train", "--out", str(out)]
    for setting in settings:
        args += ["--set", setting]
    return args


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def losses(run):
    with open(run / "log.csv") as fh:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(fh)]


def config_of(args):
    return load_config(None, [a for a, prev in zip(args[1:], args) if prev == "--set"])


def test_sigkill_then_restart_equals_uninterrupted_run(toy_root, tmp_path):
    reference = tmp_path / "reference"
    train(config_of(command(toy_root, reference)), reference)  # in-process: saves a start-up

    run = tmp_path / "killed"
    # The resumed run uses a loader worker, the reference none: the data stream must not depend
    # on it (per-sample seeds).
    child = subprocess.Popen(command(toy_root, run, 1), env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    checkpoint = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    killed_at = torch.load(checkpoint, weights_only=True)["iteration"]
    assert 5 <= killed_at < ITERATIONS

    done = subprocess.run(command(toy_root, run, 1), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"resuming {checkpoint} from iteration {killed_at}" in done.stderr
    expected = json.loads((reference / "metrics.json").read_text())
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["resumed_from"] == killed_at and expected["resumed_from"] is None
    for key in ("miou", "best_miou", "best_iteration", "per_class_iou", "pixel_accuracy", "iterations"):
        assert resumed[key] == expected[key], key
    assert losses(run) == losses(reference)  # every iteration's lr and loss terms, bit for bit
    assert len(losses(run)) == ITERATIONS


def test_restart_with_another_config_is_refused_and_changes_nothing(toy_root, tmp_path):
    run = tmp_path / "run"
    train(config_of(command(toy_root, run, 0, "train.iterations=6")), run)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=r"another config \(differs in: train\.lr\)"):
        train(config_of(command(toy_root, run, 0, "train.iterations=6", "train.lr=0.5")), run)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    # what may differ without changing the result (threads, workers) is the same run: finished,
    # so there is nothing to do and nothing is rewritten
    metrics = train(config_of(command(toy_root, run, 1, "train.iterations=6")), run)
    assert metrics == json.loads((run / "metrics.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
