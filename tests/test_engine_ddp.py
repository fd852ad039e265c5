"""torchrun with 2 CPU processes (gloo): the DDP path trains, shards the data, agrees on the
scores, and only rank 0 writes."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch


def test_two_process_gloo_smoke_run(toy_root, tmp_path):
    run = tmp_path / "run"
    settings = [f"data.root={toy_root}", "model.student=deeplabv3_tiny", "data.crop=[32, 32]",
                "data.batch_size=4", "data.workers=0", "train.iterations=3", "train.checkpoint_every=2",
                "train.eval_every=0", "train.threads=1"]
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "harness", "train", "--out", str(run)]
    for setting in settings:
        args += ["--set", setting]
    done = subprocess.run(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["iterations"] == 3
    assert metrics["val_images"] == 4 and 0 <= metrics["miou"] <= 100
    assert metrics["lr"] == pytest.approx(0.02 * 4 / 16)  # total batch 4 = 2 per rank
    with open(run / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all(math.isfinite(float(r["loss_total"])) for r in rows)
    # rank 1 wrote nothing of its own: no stray temp files beside rank 0's outputs
    names = sorted(p.name for p in run.iterdir())
    events = [n for n in names if n.startswith("events.out.tfevents.")]
    assert len(events) == 1  # rank 0's TensorBoard file, no other rank's
    assert [n for n in names if n not in events] == ["checkpoints", "config.yaml", "log.csv",
                                                      "metrics.json", "model"]


def test_cirkd_queues_gather_every_process_keys(tmp_path):
    """Two processes holding half a batch each end the step with the same queues, equal to
    those of one process that enqueued the whole batch (the keys are all-gathered first)."""
    from ddp_cirkd_queue import step
    from safetensors.torch import load_file

    script = os.path.join(os.path.dirname(__file__), "ddp_cirkd_queue.py")
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            script, str(tmp_path)]
    done = subprocess.run(args, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]
    whole = step()
    assert whole["pixel_ptr"].sum() > 0 and whole["region_ptr"].sum() > 0  # entries were written
    for rank in ranks:
        assert sorted(rank) == sorted(whole)
        for name, value in whole.items():
            assert torch.equal(rank[name], value), name
