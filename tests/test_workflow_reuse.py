"""reuse_recorded: which runs of a grid take a recorded run instead of training."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import align_corners, load_config, to_dict
from harness.engine.provenance import sha256_of
from harness.errors import ConfigError
from harness.report import recorded_runs as R
from harness.workflow import grid, rules
from harness.workflow.reuse import planned_runs, reuse_plan

TEACHER_MIOU = {"deeplabv3_small": 52.3, "segformer_small": 59.1}


def _config(tmp_path: Path, crop: list[int] | None = None) -> dict:
    config = grid.load_workflow_config()
    config["seeds"], config["runs_dir"] = 2, str(tmp_path / "runs")
    config["recorded_runs"] = str(tmp_path / "store")
    grid.normalise(config)
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
    for folder, run, settings in planned_runs(plan):
        if run["variant"] != "cwd":
            _write_finished_run(Path(folder), run, settings, plan)
    store = tmp_path / "store"
    R.write_store(R.collect(Path(config["runs_dir"]) / "toycity"), store / "toycity")
    plan = grid.plan_dataset(config, "toycity")  # a fresh plan: nothing reused yet
    return {"config": config, "plan": plan, "store": store}


def _write_finished_run(folder: Path, run: dict, settings: list[str], plan) -> None:
    """metrics.json with the fields training writes from the same settings."""
    resolved = load_config(None, settings)
    teacher = run["teacher"] or None
    model = Path(plan.teacher_model(teacher)) if teacher else None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({
        "miou": 30.0 + run["seed"], "best_miou": 31.0, "per_class_iou": {"sky": 50.0},
        "iterations": resolved.train.iterations, "method": resolved.method.name,
        "student": run["student"], "teacher": teacher, "dataset": "toycity", "seed": run["seed"],
        "protocol": resolved.protocol, "align_corners": align_corners(resolved), "lr": 0.01,
        "config": to_dict(resolved), "git_commit": "abc", "versions": {"torch": "2.14.1"},
        "teacher_model": None if model is None else {
            "path": str(model), "sha256": sha256_of(model / "model.safetensors"),
            "dataset": "toycity", "miou": TEACHER_MIOU[teacher]},
    }))


def test_reuse_trains_only_the_runs_the_store_lacks(world: dict) -> None:
    plan = world["plan"]
    runs = planned_runs(plan)
    reused, reasons = reuse_plan(plan, "true")
    trained = sorted(f for f, _, _ in runs if f not in reused)
    # 2 seeds x 3 pairs of CWD: the only runs the store lacks
    assert len(runs) == len(reused) + 6 and reasons == []
    assert all("/cwd/seed" in f for f in trained) and len(trained) == 6
    assert reuse_plan(plan, "false") == ({}, [])


def test_a_changed_crop_or_teacher_makes_the_record_unusable(world: dict, tmp_path: Path) -> None:
    config = _config(tmp_path, crop=[96, 192])
    plan = grid.plan_dataset(config, "toycity")
    reused, reasons = reuse_plan(plan, "true")
    # one line per pair (and student alone) and field, counting its runs
    assert reused == {} and len(reasons) == 2 + 3
    assert all("differs in data.crop (recorded [64, 128], this run [96, 192])" in r for r in reasons)
    counts = sorted(int(r.rsplit("; ", 1)[1].split()[0]) for r in reasons)
    assert sum(counts) == len(planned_runs(plan)) - 6
    with pytest.raises(ConfigError, match="differs in data.crop .* reuse_recorded=strict"):
        reuse_plan(plan, "strict")
    plan = world["plan"]
    (Path(plan.teacher_model("segformer_small")) / "model.safetensors").write_bytes(b"retrained")
    reused, reasons = reuse_plan(plan, "true")
    changed = [f for f, run, _ in planned_runs(plan)
               if run["teacher"] == "segformer_small" and run["variant"] != "cwd"]
    assert changed and not set(changed) & set(reused)
    [line] = [r for r in reasons if "differs in teacher.sha256" in r]
    assert line.startswith("reuse_recorded: toycity segformer_small -> deeplabv3_tiny: differs in "
                           "teacher.sha256")
    assert line.endswith(f"; {len(changed)} recorded run(s) trained again")


def test_a_recorded_teacher_is_reused_only_with_its_saved_model(world: dict, tmp_path: Path) -> None:
    """Teacher runs recorded, the saved model of deeplabv3_small alone in the store: a grid in a
    fresh runs folder takes that teacher and every recorded run distilled from it, and trains
    segformer_small (and so every run distilled from it) as usual."""
    plan, store = world["plan"], world["store"] / "toycity"
    for teacher in TEACHER_MIOU:
        folder = Path(plan.teacher_dir(teacher))
        _write_finished_run(folder, {"teacher": "", "student": teacher, "seed": 0},
                            plan.train_settings(teacher, 0, as_teacher=True), plan)
    R.write_store(R.merged(R.load_store(store), R.collect(Path(plan.runs_dir) / "toycity")), store)
    R.write_teacher_model(Path(plan.teacher_dir("deeplabv3_small")), store)
    config = _config(tmp_path)
    config["runs_dir"], config["reuse_recorded"] = str(tmp_path / "fresh"), "true"
    fresh = grid.plan_dataset(config, "toycity")
    reused, reasons = reuse_plan(fresh, "true")
    assert fresh.reused_teachers == {"deeplabv3_small": str(store / "teachers/deeplabv3_small")}
    assert fresh.trained_teachers == ["segformer_small"]
    assert fresh.teacher_model("deeplabv3_small") == str(store / "teachers/deeplabv3_small")
    assert sha256_of(store / "teachers/deeplabv3_small/model.safetensors") == sha256_of(
        Path(plan.teacher_model("deeplabv3_small")) / "model.safetensors")
    fresh.reused = reused
    jobs = rules.jobs(fresh)
    trained = sorted((w["teacher"] if r != "train_student" else "-", w.get("variant", ""))
                     for r, w in jobs if r in ("distill", "train_student", "train_teacher"))
    # the CWD runs (never recorded) and every run of segformer_small, which is trained
    cwd = [("deeplabv3_small", "cwd")] * 4 + [("segformer_small", "cwd")] * 2
    seg_variants = {v.name for p, v in fresh.distill_runs() if p.teacher == "segformer_small"}
    assert trained == sorted(cwd + [("segformer_small", "")]
                             + [("segformer_small", v) for v in seg_variants if v != "cwd"] * 2)
    assert ("reuse_recorded: toycity segformer_small: recorded, but the store holds no saved model "
            "of it (record --teacher-models), so it is trained; 1 recorded run(s) trained again") in reasons
    assert any(r.startswith("reuse_recorded: toycity segformer_small -> deeplabv3_tiny: teacher "
                            "segformer_small is not trained yet") for r in reasons)
    args = rules.command(fresh, "table", {"dataset": "toycity"})
    keys = args[args.index("--reuse") + 1:]
    assert args[args.index("--recorded-runs") + 1] == str(store)
    assert len(keys) == sum(r in reused for r in fresh.table_runs())
    assert not any(a.endswith("metrics.json") and a[: -len("/metrics.json")] in reused for a in args)
    assert all(k.split(":")[0] in ("_", "deeplabv3_small") for k in keys)


def test_a_dataset_not_generated_yet_has_the_fingerprint_data_prepare_gives_it(world: dict) -> None:
    (Path(world["config"]["datasets"]["toycity"]["root"]) / "manifest.json").unlink()
    plan = grid.plan_dataset(world["config"], "toycity")
    reused, reasons = reuse_plan(plan, "true")
    # the fixture's manifest is of generator version 1; data prepare writes the current one
    assert reused == {} and reasons, reasons
    assert all("differs in dataset.generator_version (recorded 1, this run 2)" in r for r in reasons), reasons


def test_other_method_options_or_pretrained_weights_make_the_record_unusable(world: dict,
                                                                           tmp_path: Path) -> None:
    config = _config(tmp_path)
    config["datasets"]["toycity"]["methods"]["kd"] = {"options": {"temperature": 2.0}}
    config["pretrained"] = {"segformer_tiny": "/weights/mit_tiny.safetensors"}
    plan = grid.plan_dataset(config, "toycity")
    reused, reasons = reuse_plan(plan, "true")
    kd = [f for f, run, _ in planned_runs(plan) if run["variant"] == "kd"]
    tiny = [f for f, run, _ in planned_runs(plan) if run["student"] == "segformer_tiny"]
    assert not set(kd + tiny) & set(reused)
    assert len(reused) == len(planned_runs(plan)) - len(set(kd + tiny)) - 4  # and CWD's 4 others
    assert any("differs in method.options.temperature (recorded None, this run 2.0)" in r for r in reasons)
    assert any(r.startswith("reuse_recorded: toycity segformer_tiny: differs in pretrained (recorded "
                            "None, this run 'mit_tiny.safetensors')") for r in reasons)
