"""reuse_recorded end to end at smoke scale: a small grid recorded with `snakemake record`, then a
fresh checkout of the workflow with that store and one new method trains only the new method's
run; a changed crop makes the record unusable (retrained with a warning; strict stops, naming
the field). One pair (deeplabv3_small -> deeplabv3_tiny), baseline and KD, one seed, a tiny
generated toycity."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fixtures_workflow import ROOT, SNAKEMAKE, copy_workflow

from harness.data import prepare_dataset
from harness.report.compare import compare_text
from harness.report.recorded_runs import load_store

TABLE = "results/smoke/table_toycity.csv"
STORE = "results/smoke/recorded/runs/toycity"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def grid_config(methods: dict, crop: list[int], reuse: str) -> dict:
    config = yaml.safe_load((ROOT / "workflow/config/config.yaml").read_text())
    config.update(scale="smoke", threads=1, reuse_recorded=reuse)
    toy = config["datasets"]["toycity"]
    toy["schedule"].update(crop=crop, checkpoint_every=2)
    toy["teachers"] = {"deeplabv3_small": toy["teachers"]["deeplabv3_small"]}
    toy["pairs"] = [{"teacher": "deeplabv3_small", "student": "deeplabv3_tiny"}]
    toy["methods"] = methods
    for key in ("ablation", "sensitivity", "readings", "cost"):
        toy.pop(key, None)
    return config


def snakemake(folder: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    (folder / "workflow/config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run([SNAKEMAKE, *args, "--cores", "2"], cwd=folder, env=ENV,
                          capture_output=True, text=True, timeout=600)


def job_stats(output: str) -> dict[str, int]:
    block = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)
            if m.group(1) != "total"}


@pytest.mark.slow
def test_a_new_method_trains_alone_against_the_recorded_runs(tmp_path: Path) -> None:
    (tmp_path / "recorded").mkdir()
    (tmp_path / "fresh").mkdir()
    recorded = copy_workflow(tmp_path / "recorded")
    prepare_dataset("toycity", recorded / "data/toycity", num_train=16, num_val=4, height=32, width=64)
    old = {"baseline": {}, "kd": {}}
    done = snakemake(recorded, grid_config(old, [32, 64], "false"), "record")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert job_stats(done.stdout + done.stderr) == {
        "prepare_data": 1, "train_teacher": 1, "train_student": 1, "distill": 1, "record_runs": 1,
        "record": 1}
    store = load_store(recorded / STORE)
    assert sorted(r["variant"] for r in store.rows) == ["baseline", "kd", "teacher"]
    assert (recorded / STORE / "teachers/deeplabv3_small/model.safetensors").is_file()

    # a fresh copy of the workflow with the store and the same data, and one new method
    fresh = copy_workflow(tmp_path / "fresh")
    shutil.copytree(recorded / "data", fresh / "data")
    shutil.copytree(recorded / STORE, fresh / STORE)
    new = grid_config({**old, "cwd": {"preset": "cirkd"}}, [32, 64], "true")
    done = snakemake(fresh, new, TABLE)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert job_stats(done.stdout + done.stderr) == {
        "prepare_data": 1, "eval_teacher": 1, "distill": 1, "table": 1}
    assert "reuse_recorded" not in done.stderr  # nothing differs, nothing to warn about
    assert [p.parent.name for p in (fresh / "runs").rglob("metrics.json")] == ["seed0"]
    assert (fresh / "runs/smoke/toycity/deeplabv3_small__deeplabv3_tiny/cwd/seed0/metrics.json").is_file()
    table = pd.read_csv(fresh / TABLE, dtype={"mious": str}).set_index("method")
    stored = {r["variant"]: float(r["miou"]) for r in store.rows}
    commit = store.rows[0]["commit"][:12]
    assert list(table.source) == [f"recorded@{commit}", f"recorded@{commit}", "ours"]
    for method in ("baseline", "kd"):
        assert table.mious[method] == f"{stored[method]:.4f}"
        assert table.miou_mean[method] == pytest.approx(stored[method], abs=1e-4)
    assert table.delta["cwd"] == pytest.approx(table.miou_mean["cwd"] - stored["baseline"], abs=1e-3)
    assert f"rows by origin: 1 ours, 2 recorded@{commit}" in compare_text(fresh / TABLE)

    # another crop: the recorded runs (and teacher) no longer match
    crop = grid_config({**old, "cwd": {"preset": "cirkd"}}, [32, 48], "true")
    done = snakemake(fresh, crop, "-n", TABLE)
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: reuse_recorded")]
    crop_field = ("differs in data.crop (recorded [32, 64], this run [32, 48]); 1 recorded run(s) "
                  "trained again")
    assert warnings == [
        f"warning: reuse_recorded: toycity deeplabv3_small: {crop_field}",  # the teacher
        f"warning: reuse_recorded: toycity deeplabv3_tiny: {crop_field}",  # the student alone
        "warning: reuse_recorded: toycity deeplabv3_small -> deeplabv3_tiny: teacher deeplabv3_small "
        "is not trained yet and not in the store, so its recorded runs cannot be matched; 1 recorded "
        "run(s) trained again"]
    assert {k: job_stats(done.stdout)[k] for k in ("train_teacher", "train_student", "distill")} == {
        "train_teacher": 1, "train_student": 1, "distill": 2}
    crop["reuse_recorded"] = "strict"
    done = snakemake(fresh, crop, "-n", TABLE)
    assert done.returncode != 0
    assert ("\nthe recorded run teacher deeplabv3_small seed 0 differs in data.crop (recorded [32, 64], "
            "this run [32, 48]); with reuse_recorded=strict it is not retrained: restore data.crop or "
            "set reuse_recorded=true to retrain it\n") in done.stdout + done.stderr
