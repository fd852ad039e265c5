"""The Snakemake workflow: config schema and cross-checks, dry runs of each real dataset's grid
(job counts computed here from the config by hand), lint, and the dataset-root check."""
from __future__ import annotations

import copy
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from fixtures_workflow import ROOT, SNAKEMAKE, copy_workflow

from harness.errors import ConfigError
from harness.workflow import grid, rules

CONFIG = yaml.safe_load((ROOT / "workflow/config/config.yaml").read_text())
REAL = ["cityscapes", "voc", "ade20k", "camvid"]


def snakemake(*args: str, cwd: Path = ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    """Snakemake in the checkout. Dry runs that count jobs pass --forceall: runs a user has
    already made in this checkout (`make demo`) must not change the counts."""
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def job_stats(output: str) -> dict[str, int]:
    block = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)
            if m.group(1) != "total"}


def expected_jobs(name: str) -> dict[str, int]:
    """Jobs for every target of a dataset, counted from its config entry by hand."""
    d = CONFIG["datasets"][name]
    seeds = d["seeds"]
    pairs = [(p["teacher"], p["student"]) for p in d["pairs"]]
    family = CONFIG["families"]
    teachers = {t for t, _ in pairs}
    students = {s for _, s in pairs}
    distill = len(pairs) * (len(d["methods"]) - 1)  # every pair x every method but baseline
    counts = {"eval_teacher": len(teachers), "train_student": len(students) * seeds, "table": 1,
              "cka": 1, "qualitative": 1, "curves": 1, "claims": 1}
    trained = [t for t in teachers if d["teachers"][t]["model"] is None]
    if trained:
        counts["train_teacher"] = len(trained)
    if "ablation" in d:
        hetero = [p for p in pairs if family[p[0]] != family[p[1]]]
        main_preset = d["methods"][d["ablation"]["method"]].get("preset")
        # the preset equal to the main-table setting reuses those runs
        distill += len(hetero) * len([p for p in d["ablation"]["presets"] if p != main_preset])
        counts["ablation"] = 1
    if "sensitivity" in d:
        grid_values = list(d["sensitivity"]["options"].values())
        # the main heteroakd runs set no lambda, so every grid point is a run of its own
        distill += len(grid_values[0]) * len(grid_values[1])
        counts["sensitivity"] = 1
    if "readings" in d:
        hetero = [p for p in pairs if family[p[0]] != family[p[1]]]
        # every reading overrides the main setting, so each is a run of its own
        distill += len(hetero) * len(d["readings"]["options"])
        counts["readings"] = 1
    if "cost" in d:
        counts["cost"] = 1
    counts["distill"] = distill * seeds
    return counts


def test_paper_grid_numbers_of_cityscapes_by_hand() -> None:
    # 5 pairs x 5 methods, ablation 3 heterogeneous pairs x 4 extra presets, 4 x 4 lambdas; 3 seeds
    assert expected_jobs("cityscapes")["distill"] == (25 + 12 + 16) * 3 == 159
    assert expected_jobs("cityscapes")["train_student"] == 3 * 3


@pytest.mark.parametrize("name", REAL)
def test_dry_run_of_each_real_dataset_counts_its_jobs(name: str) -> None:
    targets = grid.plan_dataset(grid.normalise(copy.deepcopy(CONFIG)), name).targets()
    result = snakemake("-n", "--forceall", "--config", "check_roots=false", "--", *targets)
    assert result.returncode == 0, result.stderr[-2000:]
    assert job_stats(result.stdout + result.stderr) == expected_jobs(name)
    # and `python -m harness grid check` counts the same
    counts = rules.job_counts(copy.deepcopy(CONFIG), [name])
    assert counts == expected_jobs(name)


def test_default_target_is_the_builtin_dataset_grid() -> None:
    result = snakemake("-n", "--forceall")
    assert result.returncode == 0, result.stderr[-2000:]
    stats = job_stats(result.stdout + result.stderr)
    expected = expected_jobs("toycity") | {"prepare_data": 1, "all": 1}
    assert stats == expected
    # 2 teachers (CNN + Transformer), 2 heterogeneous pairs + 1 homogeneous, 5 ablation presets,
    # 2 x 2 lambdas, 2 readings on the 2 heterogeneous pairs
    assert expected["train_teacher"] == 2 and expected["distill"] == 3 * 5 + 2 * 4 + 4 + 2 * 2


def test_smoke_scale_shrinks_schedules_and_keeps_results_apart() -> None:
    result = snakemake("-n", "-p", "--forceall", "--config", "scale=smoke", "seeds=2", "gpus_per_job=2")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "train.iterations=4 " in out and "train.iterations=500" not in out
    assert "data.max_val_images=2" in out and "--out runs/smoke/toycity/" in out
    assert "train.eval_every=2" in out  # halfway and at the end
    assert "results/smoke/table_toycity.csv" in out
    assert job_stats(out)["train_student"] == 2 * 2  # seeds=2 overrides toycity's 1
    assert "torchrun --standalone --nproc_per_node=2 -m harness train" in out


def test_smoke_shrinks_what_makes_a_real_dataset_slow() -> None:
    """Cityscapes at smoke scale: the 512x1024 crop, 8 loader workers, the val set and the figures'
    images shrink to the `smoke` limits, which the README's smoke target names."""
    result = snakemake("-n", "-p", "--forceall", "results/smoke/table_cityscapes.csv",
                       "results/smoke/cka_cityscapes.png", "results/smoke/qualitative_cityscapes.png",
                       "--config", "scale=smoke", "check_roots=false")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    train_lines = [line for line in out.splitlines() if " -m harness train " in line]
    assert train_lines and all("data.crop=[64, 128]" in line and "data.workers=0" in line
                               and "data.max_val_images=2" in line for line in train_lines)
    assert "512, 1024" not in out and "data.workers=8" not in out
    assert "--images 2 " in out and "--max-images 2 " in out  # CKA figure and teacher evaluation
    # every evaluation and figure shrinks the 1024x2048 val images to the smoke crop
    assert all("data.val_max_size=[64, 128]" in line for line in train_lines)
    for command in ("-m harness eval ", "-m harness report cka ", "-m harness report qualitative "):
        lines = [line for line in out.splitlines() if command in line]
        assert lines and all("--max-size 64 128 " in line for line in lines), command
    # one seed at smoke scale (cityscapes has 3): 3 students trained alone, 1 seed of each run
    assert job_stats(out)["train_student"] == 3
    assert not re.search(r"seed=[12] ", out)
    smoke = copy.deepcopy(CONFIG)
    smoke["scale"] = "smoke"
    assert grid.Scale.of(smoke).crop([32, 2048]) == [32, 128]  # each side at most the limit
    assert grid.plan_dataset(grid.normalise(smoke), "cityscapes").seeds == [0]
    smoke["seeds"] = 3  # an explicit seed count wins over smoke.seeds
    assert grid.plan_dataset(grid.normalise(smoke), "cityscapes").seeds == [0, 1, 2]


def test_every_job_runs_the_command_line_the_planner_builds() -> None:
    """Snakemake's shell lines are `python -m harness` + the planner's arguments (+ the output),
    so `grid check`, which parses those arguments, checks what the jobs run."""
    result = snakemake("-n", "-p", "--forceall", "--config", "scale=smoke")
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout
    config = copy.deepcopy(CONFIG)
    config["scale"] = "smoke"
    plan = grid.check_config(config)["toycity"]
    jobs = rules.jobs(plan)
    assert len(jobs) == sum(job_stats(printed).values()) - 1  # `all` has no command
    for rule, wildcards in jobs:
        assert f"python -m harness {rules.shell_args(plan, rule, wildcards)} " in printed, rule
    smoke = grid.Scale.of(config)
    assert (smoke.folder, smoke.iterations, smoke.max_batch, smoke.batch(8), smoke.batch(1)) == (
        "smoke/", 4, 2, 2, 1)
    assert (smoke.bench_repeats(7), smoke.bench_isolate) == (1, "none")
    assert grid.Scale.of(CONFIG) == grid.Scale("full", "")


def test_builtin_benchmark_evaluates_sixteen_images_per_forward() -> None:
    """toycity's `schedule.val_batch` reaches every training run and the teachers' evaluation;
    a dataset without it keeps batch 1 (no key, no flag)."""
    plan = grid.plan_dataset(grid.normalise(copy.deepcopy(CONFIG)), "toycity")
    assert "data.val_batch_size=16" in plan.train_settings("segformer_tiny", 0)
    assert "data.val_batch_size=16" in plan.train_settings("deeplabv3_small", 0, as_teacher=True)
    evaluation = rules.shell_args(plan, "eval_teacher", {"dataset": "toycity", "teacher": "deeplabv3_small"})
    assert " --batch 16" in evaluation and "--max-size" not in evaluation
    city = grid.plan_dataset(grid.normalise(copy.deepcopy(CONFIG)), "cityscapes")
    assert not any("val_batch_size" in s for s in city.train_settings("deeplabv3_r18", 0))
    evaluation = rules.shell_args(city, "eval_teacher", {"dataset": "cityscapes", "teacher": "segformer_b4"})
    assert "--batch" not in evaluation


def test_grid_check_refuses_a_command_that_would_fail() -> None:
    config = bad("datasets.toycity.run_overrides", {"train.amp": 16})
    with pytest.raises(ConfigError, match=r"job train_teacher .* config key 'train.amp' must be"):
        rules.check_commands(grid.check_config(config), ["toycity"])
    checked = rules.check_commands(grid.check_config(copy.deepcopy(CONFIG)), ["toycity"])
    assert checked == sum(expected_jobs("toycity").values()) + 1  # + prepare_data


def test_profiles_rerun_only_on_real_changes_and_slurm_launches_torchrun() -> None:
    default = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert "resources" not in default  # the workflow sets the gpu limit from its GPU slots
    assert sorted(default["rerun-triggers"]) == ["input", "mtime", "params"]  # not code edits
    slurm = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm" and "gpus_per_job=4" in slurm["config"]
    assert "code" not in slurm["rerun-triggers"] and "resources" not in slurm
    assert "gpus=cluster" in slurm["config"]  # SLURM assigns devices: no local slots or limit


def test_lint_passes() -> None:
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_conda_env_lists_the_pyproject_dependencies() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "workflow/envs/harness.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == sorted(deps)


def bad(path: str, value) -> dict:
    config = copy.deepcopy(CONFIG)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


@pytest.mark.parametrize("path, value, message", [
    ("colour", "red", "Additional properties are not allowed .'colour' was unexpected"),
    ("datasets.toycity.schedule.lr", 0.1, "'lr' was unexpected"),
    ("seeds", "three", "datasets|seeds"),
    ("datasets.toycity.schedule.iterations", "300", "'300' is not of type 'integer'"),
    ("datasets.toycity.schedule.crop", [64], "too short"),
    ("datasets.toycity.methods.heteroakd", {"options": {"lambda1": -1.0}}, "lambda1"),
    ("datasets.toycity.sensitivity.options", {"lambda1": [-0.1, 1.0], "lambda2": [1.0]}, "minimum of 0"),
    ("datasets.toycity.schedule.optim.cnn.optimizer", "adam", "'adam' is not one of"),
    ("scale", "huge", "scale"),
    ("datasets.toycity.readings.options", [{}], "should be non-empty|does not have enough"),
    ("datasets.toycity.readings.options", [{"temperature": -4.0}], "options.0.temperature"),
    ("datasets.toycity.readings.colour", "red", "'colour' was unexpected"),
])
def test_schema_rejects_bad_configs(path: str, value, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        grid.validate_schema(bad(path, value))


def test_schema_accepts_the_shipped_config() -> None:
    grid.validate_schema(copy.deepcopy(CONFIG))
    plans = grid.check_config(copy.deepcopy(CONFIG))
    assert set(plans) == {"toycity", *REAL}


@pytest.mark.parametrize("path, value, message", [
    ("datasets.toycity.pairs", [{"teacher": "deeplabv3_small", "student": "unet_tiny"}], "has no family"),
    ("datasets.toycity.pairs", [{"teacher": "deeplabv3_r101", "student": "segformer_tiny"}], "does not list"),
    ("datasets.toycity.sensitivity.pair", {"teacher": "segformer_small", "student": "segformer_tiny"},
     "is not one of the dataset's pairs"),
    ("datasets.toycity.ablation.method", "ofa", "is not in datasets.toycity.methods"),
    ("datasets.toycity.readings.reference", "ofa", "readings.reference 'ofa' is not a distillation"),
    ("datasets.toycity.readings.pairs", [{"teacher": "segformer_small", "student": "segformer_tiny"}],
     "readings.pairs .* is not one of the dataset's pairs"),
    ("default_datasets", ["toycity", "kitti"], "does not define"),
    ("check_roots", "maybe", "true or false"),
])
def test_config_cross_checks_name_the_key(path: str, value, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        grid.check_config(bad(path, value))


def test_variant_names_reuse_the_main_runs() -> None:
    plan = grid.plan_dataset(grid.normalise(copy.deepcopy(CONFIG)), "toycity")
    assert plan.ablation["full"].name == "heteroakd"  # main preset is full: same runs
    assert plan.ablation["no_kmm"].name == "heteroakd-no_kmm"
    names = [v.name for _, v in plan.sensitivity]
    assert names[0] == "heteroakd" and "heteroakd-lambda1_0.1-lambda2_2" in names and len(names) == 5
    settings = plan.train_settings("segformer_tiny", 0, teacher="deeplabv3_small",
                                   variant=plan.sensitivity[1][1])
    assert "method.options.lambda1=0.1" in settings and "train.optimizer=adamw" in settings
    warmup = CONFIG["datasets"]["toycity"]["schedule"]["optim"]["transformer"]["warmup_iterations"]
    assert f"train.warmup_iterations={warmup}" in settings  # the family's optim keys reach the run
    assert "model.teacher_model=runs/toycity/teachers/deeplabv3_small/seed0/model" in settings


def test_readings_plan_one_run_per_reading_and_their_report_commands() -> None:
    config = copy.deepcopy(CONFIG)
    config["seeds"] = 2
    options = [{"kem_form": "pixel"}, {"stages": [-2]}, {"kem_form": "pixel"}]  # one repeat
    config["datasets"]["toycity"]["readings"]["options"] = options
    plan = grid.check_config(config)["toycity"]
    assert [(o, v.name) for o, v in plan.readings] == [
        ({}, "heteroakd"), ({"kem_form": "pixel"}, "heteroakd-kem_form_pixel"),
        ({"stages": [-2]}, "heteroakd-stages_-2")]
    assert [p.student for p in plan.readings_pairs] == ["segformer_tiny", "deeplabv3_tiny"]
    # per pair: baseline, kd, and 3 readings (the first the main runs), 2 seeds each
    runs = plan.readings_runs()
    assert len(runs) == 2 * 5 * 2 and "runs/toycity/deeplabv3_small__segformer_tiny/kd/seed1" in runs
    assert "runs/toycity/segformer_small__deeplabv3_tiny/heteroakd-stages_-2/seed0" in runs
    settings = plan.train_settings("segformer_tiny", 0, teacher="deeplabv3_small",
                                   variant=plan.readings[2][1])
    assert "method.options.stages=[-2]" in settings and "method.preset=full" in settings
    args = rules.command(plan, "readings", {"dataset": "toycity"})
    assert args[:4] == ["report", "readings", "--pairs", "deeplabv3_small:segformer_tiny:heterogeneous"]
    readings = [args[i + 1] for i, a in enumerate(args) if a == "--reading"]
    assert readings == ["{}", "{kem_form: pixel}", "{stages: [-2]}"]
    claims = rules.command(plan, "claims", {"dataset": "toycity"})
    assert claims[claims.index("--table") + 1] == "results/table_toycity.csv"
    assert claims[claims.index("--claims") + 1] == "results/published/published_claims.csv"
    assert "--ablation" in claims and "--sensitivity" in claims
    voc = grid.check_config(copy.deepcopy(CONFIG))["voc"]  # no ablation, sensitivity, readings
    assert rules.command(voc, "claims", {"dataset": "voc"})[4:] == [
        "--table", "results/table_voc.csv", "--cka", "results/cka_voc.csv"]
    assert "results/claims_voc.md" in voc.targets() and not voc.readings
    cka = rules.command(plan, "cka", {"dataset": "toycity"})
    assert cka.count("--pair") == 3 * 2  # every pair and student seed
    assert cka[cka.index("--pair"):][:2] == [
        "--pair", "runs/toycity/teachers/deeplabv3_small/seed0/model:"
        "runs/toycity/students/segformer_tiny/seed0/model:heterogeneous"]


def test_workflow_families_agree_with_each_models_own_family() -> None:
    """`families:` decides heterogeneous vs homogeneous and the optimiser; it must say what each
    model reports as its family (ModelInfo.family), for every registered model."""
    import torch

    from harness.models import MODELS, build_model

    assert set(CONFIG["families"]) == set(MODELS.names())
    torch.manual_seed(0)
    for name, family in CONFIG["families"].items():
        assert build_model(name, 2).info.family == family, name


def test_old_workflow_key_names_plan_the_same_grid_with_one_warning_each(caplog) -> None:
    old = copy.deepcopy(CONFIG)
    old["recorded"] = old.pop("published")
    toy = old["datasets"]["toycity"]
    toy["prepare"] = toy.pop("generated")
    toy["protocol"] = "cirkd"
    for spec in toy["teachers"].values():
        spec["checkpoint"] = spec.pop("model")
    grid.validate_schema(copy.deepcopy(old))
    with caplog.at_level("WARNING", logger="harness.workflow.grid"):
        plans = grid.check_config(old)
    assert len(caplog.records) == 5 and all("deprecated" in r.getMessage() for r in caplog.records)
    assert "datasets.toycity.prepare is deprecated" in caplog.records[1].getMessage()
    new = grid.check_config(copy.deepcopy(CONFIG))
    for rule, wildcards in rules.jobs(new["toycity"]):
        assert rules.command(plans["toycity"], rule, wildcards) == rules.command(
            new["toycity"], rule, wildcards)
    both = copy.deepcopy(CONFIG)
    both["recorded"] = both["published"]
    with pytest.raises(ConfigError, match="recorded and published are one setting"):
        grid.check_config(both)


def test_generated_must_say_what_the_dataset_is() -> None:
    plans = grid.check_config(bad("datasets.cityscapes.generated", True))
    with pytest.raises(ConfigError, match="datasets.cityscapes.generated is true, but cityscapes is "
                                          "read from its download; set it to false"):
        grid.check_names(plans, ["cityscapes"])


def test_snakemake_refuses_a_bad_config_before_any_job() -> None:
    result = snakemake("-n", "--config", "colour=red")
    assert result.returncode != 0 and "colour" in result.stdout + result.stderr
    result = snakemake("-n", "--config", "seeds=0")
    assert result.returncode != 0 and "seeds" in result.stdout + result.stderr


def test_missing_dataset_root_is_one_clear_error_before_any_job(tmp_path: Path) -> None:
    pytest.importorskip("harness.data")
    work = copy_workflow(tmp_path)
    # --touch: were the check to let it through, jobs would only touch files (nothing trains)
    result = snakemake("--cores", "1", "--touch", "--config",
                       f"datasets={{cityscapes: {{root: {tmp_path / 'no_cityscapes'}}}}}",
                       "--", "results/table_cityscapes.csv", cwd=work)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "datasets.cityscapes.root" in text and "leftImg8bit" in text
    assert not (work / "runs").exists() and not (work / "results/table_cityscapes.csv").exists()
    # a dry run previews the grid without data
    assert snakemake("-n", "--", "results/table_cityscapes.csv", cwd=work).returncode == 0


def test_unregistered_method_model_or_preset_is_refused_by_name() -> None:
    plans = grid.check_config(bad("datasets.toycity.methods.mykd", {}))
    with pytest.raises(ConfigError, match="'mykd', which no file in harness/methods/ registers"):
        grid.check_names(plans, ["toycity"])
    plans = grid.check_config(bad("datasets.toycity.methods.cirkd", {"preset": "kitti"}))
    with pytest.raises(ConfigError, match="no preset 'kitti'"):
        grid.check_names(plans, ["toycity"])
    config = bad("families.unet_tiny", "cnn")
    config["datasets"]["toycity"]["pairs"].append({"teacher": "deeplabv3_small", "student": "unet_tiny"})
    with pytest.raises(ConfigError, match="names model 'unet_tiny'"):
        grid.check_names(grid.check_config(config), ["toycity"])
    grid.check_names(grid.check_config(copy.deepcopy(CONFIG)), ["toycity", *REAL])


CIRKD_FILE = "/ckpt/deeplabv3_resnet101_citys_best_model.pth"


def test_imported_teacher_is_converted_by_its_own_job_and_distilled_from() -> None:
    config = bad("datasets.cityscapes.teachers.deeplabv3_r101", {"model": CIRKD_FILE, "format": "cirkd"})
    grid.validate_schema(config)
    plans = grid.check_config(config)
    plan = plans["cityscapes"]
    folder = "runs/cityscapes/teachers/deeplabv3_r101/imported"
    assert plan.teacher_model("deeplabv3_r101") == folder
    assert plan.trained_teachers == ["segformer_b4"] and plan.imported_teachers == ["deeplabv3_r101"]
    assert rules.command(plan, "import_teacher", {"teacher": "deeplabv3_r101"}) == [
        "models", "import", CIRKD_FILE, "--format", "cirkd", "--model", "deeplabv3_r101",
        "--dataset", "cityscapes"]
    pair = next(p for p in plan.pairs if p.teacher == "deeplabv3_r101")
    settings = plan.train_settings(pair.student, 0, teacher=pair.teacher, variant=plan.main["kd"])
    assert f"model.teacher_model={folder}" in settings
    expected = expected_jobs("cityscapes") | {"train_teacher": 1, "import_teacher": 1}
    assert rules.job_counts(config, ["cityscapes"]) == expected
    grid.check_names(plans, ["cityscapes"])
    assert rules.check_commands(plans, ["cityscapes"]) == sum(expected.values())


@pytest.mark.parametrize("spec, message", [
    ({"model": None, "format": "cirkd"}, "format is set but its model is null"),
    ({"model": CIRKD_FILE, "format": "mmseg"}, "teachers.deeplabv3_r101.format: --format mmseg holds"),
    ({"model": CIRKD_FILE, "format": "caffe"}, "unknown checkpoint format 'caffe'"),
])
def test_imported_teacher_config_is_checked_by_key(spec, message) -> None:
    config = bad("datasets.cityscapes.teachers.deeplabv3_r101", spec)
    with pytest.raises(ConfigError, match=message):
        grid.check_names(grid.check_config(config), ["cityscapes"])


def test_workflow_imports_a_reference_teacher_file(tmp_path: Path) -> None:
    """Snakemake runs `models import` on the configured file into the folder the pair's
    distillation runs read (planned in test_imported_teacher_is_converted_by_its_own_job...)."""
    import torch

    from harness.models import build_model
    from harness.models.importer import reference_state_dict

    work = copy_workflow(tmp_path)
    torch.save(reference_state_dict(build_model("deeplabv3_r18", 10), "cirkd"), tmp_path / "r18.pth")
    config = copy.deepcopy(CONFIG)
    toy = config["datasets"]["toycity"]
    toy["teachers"]["deeplabv3_r18"] = {"model": str(tmp_path / "r18.pth"), "format": "cirkd"}
    toy["pairs"].append({"teacher": "deeplabv3_r18", "student": "deeplabv3_tiny"})
    (work / "imported.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    target = "runs/toycity/teachers/deeplabv3_r18/imported/config.json"
    result = snakemake("--cores", "1", "--configfile", "imported.yaml", "--", target, cwd=work, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    saved = yaml.safe_load((work / target).read_text())
    assert saved["name"] == "deeplabv3_r18" and saved["dataset"] == "toycity"
    assert saved["source"]["format"] == "cirkd" and saved["source"]["file"] == str(tmp_path / "r18.pth")
    log = (work / "logs/toycity/teachers/deeplabv3_r18_import.log").read_text()
    assert "(cirkd, 190 tensors) as deeplabv3_r18 for toycity" in log
