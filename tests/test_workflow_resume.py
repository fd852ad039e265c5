"""A workflow job killed mid-run resumes from its checkpoint when Snakemake is started again.

This is the user's path after a crash, a pre-empted SLURM job or a Ctrl-C gone wrong:
`snakemake --unlock` (a SIGKILLed Snakemake leaves its lock behind) and then the same command
with `--rerun-incomplete`. The training job must pick up `checkpoints/last.pt`, which is not a
declared output and therefore survives Snakemake's clean-up, instead of starting from scratch.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from fixtures_workflow import ROOT, SNAKEMAKE, copy_workflow

ITERATIONS = 400
CHECKPOINT_EVERY = 20


def _kill_session(session_id: int) -> None:
    """SIGKILL every process of the session (Snakemake, its job shell, the training process)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == session_id:
                os.kill(int(entry.name), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


@pytest.mark.slow
def test_killed_job_resumes_from_checkpoint_with_rerun_incomplete(tmp_path: Path) -> None:
    copy_workflow(tmp_path)
    config = yaml.safe_load((ROOT / "workflow/config/config.yaml").read_text())
    config["threads"] = 1
    # Long enough to be killed after the first checkpoint, short enough to finish in seconds.
    config["datasets"]["toycity"]["schedule"].update(
        iterations=ITERATIONS, checkpoint_every=CHECKPOINT_EVERY, batch=2, crop=[32, 64])
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run = tmp_path / "runs/toycity/students/deeplabv3_tiny/seed0"
    # the target first: --configfile takes every word after it
    command = [SNAKEMAKE, f"{run.relative_to(tmp_path)}/metrics.json", "--cores", "1",
               "--configfile", "cfg.yaml"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    first = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    _kill_session(first.pid)
    first.wait()
    assert first.returncode == -signal.SIGKILL, first.stdout.read()[-3000:]
    assert not (run / "metrics.json").exists()
    killed_at = torch.load(checkpoint, weights_only=True)["iteration"]
    assert CHECKPOINT_EVERY <= killed_at < ITERATIONS

    unlock = subprocess.run([SNAKEMAKE, "--unlock", "--configfile", "cfg.yaml"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    again = subprocess.run([*command, "--rerun-incomplete"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    log = (tmp_path / "logs/toycity/students/deeplabv3_tiny_seed0.log").read_text()
    assert "resuming" in log and f"from iteration {killed_at}" in log
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_from"] >= killed_at and metrics["iterations"] == ITERATIONS
