"""The output-folder rule (README "Resuming and repeating runs"): a run resumes only from an
unfinished run of its config and code; a finished run of the same config is nothing to do; a
run of another config is refused in one line naming the folder unless --overwrite or
--move-stale says otherwise; the final checkpoint is written before the final evaluation, and a
finished run keeps no resume state. Runs go through the CLI, as a user's would."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_files import listing, refused
from PIL import Image

from harness.cli import main as cli_main

TINY = ["model.student=deeplabv3_tiny", "data.crop=[32, 32]", "data.batch_size=4",
        "data.workers=0", "train.iterations=4", "train.checkpoint_every=2", "train.eval_every=0",
        "train.threads=1"]


def train_args(root, out, *extra):
    flags = [e for e in extra if e.startswith("--")]
    args = ["train", "--out", str(out), *flags]
    for setting in [f"data.root={root}", *TINY, *(e for e in extra if not e.startswith("--"))]:
        args += ["--set", setting]
    return args


def trained(args, caplog) -> str:
    """Run the CLI; assert exit 0; return the log text."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert cli_main(args) == 0
    return caplog.text


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def finished(toy_root, tmp_path_factory):
    """A finished 4-iteration run; tests copy it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert cli_main(train_args(toy_root, run)) == 0
    return run


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def test_a_finished_run_keeps_no_resume_state(finished):
    assert not (finished / "checkpoints" / "last.pt").exists()
    state = torch.load(finished / "checkpoints" / "final.pt", weights_only=True)
    assert state["iteration"] == 4 and len(state["log_rows"]) == 4
    assert metrics_of(finished)["code"] == state["code"]


def test_finished_run_of_the_same_config_is_nothing_to_do(toy_root, finished, tmp_path, caplog):
    run = copy_of(finished, tmp_path)
    before = listing(tmp_path)
    log = trained(train_args(toy_root, run, "train.threads=2"), caplog)  # threads may differ
    assert "holds a finished run of this config" in log and "nothing to do" in log
    assert listing(tmp_path) == before


def test_finished_run_of_another_config_is_refused_even_without_checkpoints(toy_root, finished,
                                                                            tmp_path, capsys):
    run = copy_of(finished, tmp_path)
    shutil.rmtree(run / "checkpoints")
    before = listing(tmp_path)
    refused(train_args(toy_root, run, "train.lr=0.5"), capsys, f"{run} holds a finished run",
            "another config (differs in: train.lr)", "--overwrite")
    assert listing(tmp_path) == before


def test_overwrite_trains_again_and_move_stale_keeps_the_old_run_aside(toy_root, finished,
                                                                       tmp_path, caplog):
    run = copy_of(finished, tmp_path)
    old = listing(run)
    log = trained(train_args(toy_root, run, "--move-stale", "train.lr=0.5"), caplog)
    stale = tmp_path / "run.stale-1"
    assert f"moved a finished run of another config (differs in: train.lr) from {run} to {stale}" in log
    assert listing(stale) == {path.replace(str(run), str(stale), 1): entry
                              for path, entry in old.items()}
    assert metrics_of(run)["config"]["train"]["lr"] == 0.5 and metrics_of(run)["resumed_from"] is None
    log = trained(train_args(toy_root, run, "--overwrite"), caplog)
    assert "--overwrite removed the finished run" in log
    assert metrics_of(run)["config"]["train"]["lr"] == 0.02
    assert metrics_of(run)["miou"] == metrics_of(finished)["miou"]  # the same seed and config
    assert not (tmp_path / "run.stale-2").exists()


def test_outputs_removed_after_finishing_train_from_scratch(toy_root, finished, tmp_path, caplog):
    """What a forced Snakemake job meets: metrics.json and model/ removed, the rest left."""
    run = copy_of(finished, tmp_path)
    for name in ("metrics.json", "model/config.json", "model/model.safetensors"):
        (run / name).unlink()
    log = trained(train_args(toy_root, run), caplog)
    assert f"starting {run} from scratch" in log and "resuming" not in log
    assert metrics_of(run)["resumed_from"] is None
    assert metrics_of(run)["miou"] == metrics_of(finished)["miou"]


def unfinished(finished: Path, tmp_path: Path, **changes) -> Path:
    """A run stopped after its last iteration's checkpoint, before its outputs (e.g. a bad
    val file): last.pt at the final iteration, no metrics.json."""
    run = copy_of(finished, tmp_path)
    (run / "metrics.json").unlink()
    state = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    state.update(changes)
    torch.save(state, run / "checkpoints" / "last.pt")
    (run / "checkpoints" / "final.pt").unlink()
    return run


def test_unfinished_run_of_the_same_config_and_code_resumes(toy_root, finished, tmp_path, caplog):
    run = unfinished(finished, tmp_path)
    log = trained(train_args(toy_root, run), caplog)
    assert f"resuming {run / 'checkpoints' / 'last.pt'} from iteration 4" in log
    assert metrics_of(run)["resumed_from"] == 4
    assert metrics_of(run)["miou"] == metrics_of(finished)["miou"]


@pytest.mark.parametrize("extra, changes, fragment", [
    (["train.lr=0.5"], {}, "an unfinished run of another config (differs in: train.lr)"),
    ([], {"code": "0123456789abcdef"}, "an unfinished run of other training code (code 0123456789abcdef"),
])
def test_unfinished_run_of_another_config_or_code_is_refused(toy_root, finished, tmp_path, capsys,
                                                             extra, changes, fragment):
    run = unfinished(finished, tmp_path, **changes)
    before = listing(tmp_path)
    refused(train_args(toy_root, run, *extra), capsys, str(run), fragment, "--overwrite")
    assert listing(tmp_path) == before


def test_final_checkpoint_is_written_before_the_final_evaluation(toy_root, finished, tmp_path,
                                                                 capsys, caplog):
    root = tmp_path / "toycity"
    shutil.copytree(toy_root, root)
    label = sorted((root / "labels" / "val").glob("*.png"))[-1]
    good = label.read_bytes()
    Image.fromarray(np.full((32, 64), 77, np.uint8)).save(label)  # class 77 of 10: bad value
    run = tmp_path / "run"
    refused(train_args(root, run), capsys, str(label), "[77]")
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 4 and not (run / "metrics.json").exists()
    label.write_bytes(good)  # fixed: the rerun evaluates and finishes, without training again
    log = trained(train_args(root, run), caplog)
    assert "from iteration 4" in log and metrics_of(run)["resumed_from"] == 4
    assert metrics_of(run)["miou"] == metrics_of(finished)["miou"]


def test_ctrl_c_says_where_the_run_resumes_from(toy_root, tmp_path):
    run = tmp_path / "run"
    args = train_args(toy_root, run, "train.iterations=400", "train.checkpoint_every=5")
    # the child starts with Ctrl-C's default disposition even when this test runs in a background
    # job (which inherits SIGINT ignored, and a run started so rightly ignores Ctrl-C)
    child = subprocess.Popen([sys.executable, "-m", "harness", *args], stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoint = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted: ")]
    saved = torch.load(checkpoint, weights_only=True)["iteration"]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{checkpoint} (iteration {saved})" in lines[0] and "the same command resumes" in lines[0]
