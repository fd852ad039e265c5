"""reuse_recorded: which runs of a grid take a recorded run instead of training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import align_corners, load_config, to_dict
from harness.engine.provenance import sha256_of
from harness.errors import ConfigError
from harness.report import recorded_runs as R
from harness.workflow import grid
from harness.workflow.reuse import planned_runs, reuse_plan

TEACHER_MIOU = {"deeplabv3_small": 52.3, "segformer_small": 59.1}


def _config(tmp_path: Path, crop: list[int] | None = None) -> dict:
    config = grid.load_workflow_config()
    config["seeds"], config["runs_dir"] = 2, str(tmp_path / "runs")
    toy = config["datasets"]["toycity"]
    toy["root"] = str(tmp_path / "toycity")
    if crop:
        toy["schedule"]["crop"] = crop
    return config


@pytest.fixture()
def world(tmp_path: Path) -> dict:
    """A fake toycity folder (manifest only), saved teachers, and run folders as `harness train`
    writes them for every student run of the demo grid except the CWD ones, recorded."""
    root = tmp_path / "toycity"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"version": 1, "params": {"seed": 0}}))
    config = _config(tmp_path)
    plan = grid.plan_dataset(config, "toycity")
    for teacher, miou in TEACHER_MIOU.items():
        model = Path(plan.teacher_model(teacher))
        model.mkdir(parents=True)
        (model / "model.safetensors").write_bytes(teacher.encode())
        (model / "config.json").write_text(json.dumps({"name": teacher, "num_classes": 10, "miou": miou}))
    for folder, run, settings in planned_runs(config, plan):
        if run["variant"] != "cwd":
            _write_finished_run(Path(folder), run, settings, plan)
    store = tmp_path / "store"
    R.write_store(R.collect(Path(config["runs_dir"]) / "toycity"), store / "toycity")
    return {"config": config, "plan": plan, "store": store}


def _write_finished_run(folder: Path, run: dict, settings: list[str], plan) -> None:
    """metrics.json with the fields training writes from the same settings."""
    resolved = load_config(None, settings)
    teacher = run["teacher"] or None
    model = Path(plan.teacher_model(teacher)) if teacher else None
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({
        "miou": 30.0 + run["seed"], "best_miou": 31.0, "per_class_iou": {"sky": 50.0},
        "iterations": resolved.train.iterations, "method": resolved.method.name,
        "student": run["student"], "teacher": teacher, "dataset": "toycity", "seed": run["seed"],
        "protocol": resolved.protocol, "align_corners": align_corners(resolved), "lr": 0.01,
        "config": to_dict(resolved), "git_commit": "abc", "versions": {"torch": "2.14.1"},
        "teacher_checkpoint": None if model is None else {
            "path": str(model), "sha256": sha256_of(model / "model.safetensors"),
            "dataset": "toycity", "miou": TEACHER_MIOU[teacher]},
    }))


def test_reuse_trains_only_the_runs_the_store_lacks(world: dict) -> None:
    config, plan = world["config"], world["plan"]
    runs = planned_runs(config, plan)
    reused, reasons = reuse_plan(config, plan, world["store"], "true")
    trained = sorted(f for f, _, _ in runs if f not in reused)
    # 2 seeds x 3 pairs of CWD: the only runs the store lacks
    assert len(runs) == len(reused) + 6 and reasons == []
    assert all("/cwd/seed" in f for f in trained) and len(trained) == 6
    assert reuse_plan(config, plan, world["store"], "false") == ({}, [])


def test_a_changed_crop_or_teacher_makes_the_record_unusable(world: dict, tmp_path: Path) -> None:
    config = _config(tmp_path, crop=[96, 192])
    plan = grid.plan_dataset(config, "toycity")
    reused, reasons = reuse_plan(config, plan, world["store"], "true")
    assert reused == {} and len(reasons) == len(planned_runs(config, plan)) - 6
    assert all("differs in data.crop (recorded [64, 128], this run [96, 192])" in r for r in reasons)
    with pytest.raises(ConfigError, match="differs in data.crop .* reuse_recorded=strict"):
        reuse_plan(config, plan, world["store"], "strict")
    plan = world["plan"]
    (Path(plan.teacher_model("segformer_small")) / "model.safetensors").write_bytes(b"retrained")
    reused, reasons = reuse_plan(world["config"], plan, world["store"], "true")
    changed = [f for f, run, _ in planned_runs(world["config"], plan)
               if run["teacher"] == "segformer_small" and run["variant"] != "cwd"]
    assert changed and not set(changed) & set(reused)
    assert sum("differs in teacher.sha256" in r for r in reasons) == len(changed)
