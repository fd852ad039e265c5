"""Snakemake reruns jobs cleanly (README "Resuming and repeating runs", the workflow): a forced
training job trains from scratch, a job whose params changed moves the stale run aside and trains
from scratch (never mixing configs), a bad published row stops the workflow before Snakemake
removes the table it would rebuild, and a bad method option stops it before any job. A smoke
grid of one pair (baseline, kd) on a tiny generated toycity, in a temporary copy of the workflow."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fixtures_files import listing
from fixtures_workflow import ROOT, SNAKEMAKE, copy_workflow

from harness.data import prepare_dataset

STUDENT = "runs/smoke/toycity/students/deeplabv3_tiny/seed0"
TABLE = "results/smoke/table_toycity.csv"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def grid_config(edit=None) -> dict:
    config = yaml.safe_load((ROOT / "workflow/config/config.yaml").read_text())
    config.update(scale="smoke", threads=1)
    toy = config["datasets"]["toycity"]
    toy["schedule"].update(crop=[32, 64], checkpoint_every=2)
    toy["teachers"] = {"deeplabv3_small": toy["teachers"]["deeplabv3_small"]}
    toy["pairs"] = [{"teacher": "deeplabv3_small", "student": "deeplabv3_tiny"}]
    toy["methods"] = {"baseline": {}, "kd": {}}
    for key in ("ablation", "sensitivity", "readings", "cost"):
        toy.pop(key, None)
    if edit is not None:
        edit(config)
    return config


def snakemake(folder: Path, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
    """Run Snakemake in ``folder``; ``config`` replaces the workflow's config file (a
    --configfile would be merged into it, keeping the default grid's methods and teachers)."""
    if config is not None:
        (folder / "workflow/config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run([SNAKEMAKE, *args, "--cores", "1"], cwd=folder, env=ENV,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory) -> Path:
    """The smoke table built once (tests work on copies)."""
    folder = copy_workflow(tmp_path_factory.mktemp("grid"))
    prepare_dataset("toycity", folder / "data/toycity", num_train=16, num_val=4, height=32, width=64)
    done = snakemake(folder, TABLE, config=grid_config())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "grid"
    shutil.copytree(folder, target, symlinks=True)  # copy2 keeps the mtimes Snakemake compares
    return target


def job_log(folder: Path, name: str) -> str:
    return (folder / "logs/smoke/toycity" / name).read_text()


def metrics(folder: Path, run: str) -> dict:
    return json.loads((folder / run / "metrics.json").read_text())


def test_forced_training_job_trains_from_scratch(finished_grid, tmp_path):
    folder = copy_of(finished_grid, tmp_path)
    old = metrics(folder, STUDENT)
    done = snakemake(folder, f"{STUDENT}/metrics.json", "--forcerun", "train_student")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = job_log(folder, "students/deeplabv3_tiny_seed0.log")
    assert f"starting {STUDENT} from scratch" in log and "resuming" not in log
    new = metrics(folder, STUDENT)
    assert new["resumed_from"] is None and new["iterations"] == old["iterations"] == 4
    assert new["miou"] == old["miou"]  # the same seed and config, retrained: the same result
    assert not list(folder.glob(f"{STUDENT}.stale-*"))


def test_changed_params_move_the_stale_run_aside_and_train_from_scratch(finished_grid, tmp_path):
    folder = copy_of(finished_grid, tmp_path)
    before = listing(folder / STUDENT)
    old_config = (folder / STUDENT / "config.yaml").read_text()
    config = grid_config(lambda c: c["smoke"].update(iterations=6))
    done = snakemake(folder, f"{STUDENT}/metrics.json", config=config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stale = folder / f"{STUDENT}.stale-1"
    log = job_log(folder, "students/deeplabv3_tiny_seed0.log")
    # smoke's checkpoint and evaluation intervals follow the iterations: they differ too
    assert re.search(rf"of another config \(differs in: [\w., ]*train\.iterations[\w., ]*\) from "
                     rf"{re.escape(STUDENT)} to {re.escape(STUDENT)}\.stale-1", log), log[-2000:]
    assert f"starting {STUDENT} from scratch" in log and "resuming" not in log
    # the stale run's files are kept as they were, but the outputs Snakemake removed before the job
    kept = {p.replace(str(folder / STUDENT), str(stale), 1): e for p, e in before.items()
            if e[0] is not None and not p.endswith(("metrics.json", "model.safetensors", "config.json"))}
    assert {p: e for p, e in listing(stale).items() if e[0] is not None} == kept
    assert (stale / "config.yaml").read_text() == old_config and (stale / "checkpoints/final.pt").is_file()
    new = metrics(folder, STUDENT)
    assert new["iterations"] == 6 and new["resumed_from"] is None
    assert yaml.safe_load((folder / STUDENT / "config.yaml").read_text())["train"]["iterations"] == 6


def test_bad_published_row_stops_the_workflow_before_the_table_is_removed(finished_grid, tmp_path):
    folder = copy_of(finished_grid, tmp_path)
    published = folder / "results/published/published_results.csv"
    with published.open("a") as fh:
        fh.write("toycity,val,deeplabv3_small,deeplabv3_tiny,kd,70,a paper, with a comma,\n")
    before = listing(folder / "results", folder / "runs", folder / "logs")
    done = snakemake(folder, TABLE)
    assert done.returncode != 0
    assert f"{published.relative_to(folder)} line " in done.stderr and "9 fields" in done.stderr
    assert listing(folder / "results", folder / "runs", folder / "logs") == before


def test_bad_method_option_stops_the_workflow_before_any_job(tmp_path):
    folder = copy_workflow(tmp_path)
    config = grid_config(lambda c: c["datasets"]["toycity"]["methods"]["kd"].update(
        options={"temprature": 4.0}))
    done = snakemake(folder, TABLE, config=config)
    assert done.returncode != 0
    assert "unknown option(s) ['temprature']" in done.stderr
    assert "datasets.toycity.methods.kd.options" in done.stderr
    assert not (folder / "runs").exists() and not (folder / "logs").exists()
