"""The command line of every workflow job, built from the dataset's plan.

Each rule in ``workflow/rules/*.smk`` runs ``python -m harness ARGS --out OUTPUT`` with
``params: args=rule_args("<rule>")`` (``common.smk``), and ``ARGS`` comes from :func:`command`
here; ``python -m harness grid check`` builds the same lines for every job of the grid
(:func:`jobs`) and parses them with the CLI's own parser (:func:`check_commands`), so a grid that
passes the check runs the commands that were checked.
"""
from __future__ import annotations

import argparse
import shlex
from collections import Counter
from collections.abc import Callable

import yaml

from harness.errors import ConfigError
from harness.workflow.grid import DatasetPlan, Pair, check_config, reuse_mode, set_flags

Wildcards = dict[str, str]


def metrics_of(runs: list[str]) -> list[str]:
    return [f"{run}/metrics.json" for run in runs]


def model_files(folder: str) -> list[str]:
    """The files of a saved model folder (what a rule that reads the model depends on)."""
    return [f"{folder}/config.json", f"{folder}/model.safetensors"]


def figure_models(plan: DatasetPlan, pair: Pair) -> tuple[str, str]:
    """(teacher model, seed-0 baseline student model) of a pair, for the figures."""
    return plan.teacher_model(pair.teacher), f"{plan.student_dir(pair.student, plan.seeds[0])}/model"


def cka_pairs(plan: DatasetPlan) -> list[tuple[Pair, str, str]]:
    """(pair, teacher model, baseline student model) for every pair and student seed: the CKA
    figure averages over seeds, and the claims pair its per-seed gap (the seed is read from the
    student model's config)."""
    return [(pair, plan.teacher_model(pair.teacher), f"{plan.student_dir(pair.student, seed)}/model")
            for pair in plan.pairs for seed in plan.seeds]


def cka_models(plan: DatasetPlan) -> list[str]:
    """Every model folder the CKA figure reads, each once."""
    return list(dict.fromkeys(m for _, teacher, student in cka_pairs(plan)
                              for m in (teacher, student)))


def qualitative_models(plan: DatasetPlan) -> dict[str, str]:
    """label -> model folder: teacher, baseline student, KD and HeteroAKD (when configured)."""
    pair = plan.qualitative_pair()
    teacher, student = figure_models(plan, pair)
    models = {"teacher": teacher, "baseline": student}
    for method in ("kd", "heteroakd"):
        if method in plan.main:
            models[method] = f"{plan.distill_dir(pair, plan.main[method].name, plan.seeds[0])}/model"
    return models


def _split(plan: DatasetPlan) -> list[str]:
    return ["--dataset", plan.name, "--root", plan.cfg["root"], "--split", plan.cfg["val_split"]]


def _prepare_data(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    return ["data", "prepare", plan.name, "--root", plan.cfg["root"]]


def _train(settings: list[str]) -> list[str]:
    """A training job's command. ``--move-stale``: a job Snakemake reruns because its params
    changed finds the old run in its folder and moves it to ``<folder>.stale-N`` before
    training from scratch; a job killed mid-run still resumes (engine/run_folder.py)."""
    return ["train", "--move-stale", *set_flags(settings)]


def _train_teacher(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    settings = plan.train_settings(wildcards["teacher"], int(wildcards["seed"]), as_teacher=True)
    return _train(settings)


def _train_student(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    return _train(plan.train_settings(wildcards["student"], int(wildcards["seed"])))


def _distill(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    pair, variant = plan.variant(f"{wildcards['teacher']}__{wildcards['student']}", wildcards["variant"])
    settings = plan.train_settings(pair.student, int(wildcards["seed"]), teacher=pair.teacher,
                                   variant=variant)
    return _train(settings)


def _import_teacher(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    teacher = wildcards["teacher"]
    spec = plan.cfg["teachers"][teacher]
    return ["models", "import", spec["model"], "--format", spec["format"], "--model", teacher,
            "--dataset", plan.name]


def _eval_teacher(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    args = ["eval", "--model", plan.teacher_model(wildcards["teacher"]), *_split(plan)]
    if plan.scale.max_val_images is not None:
        args += ["--max-images", str(plan.scale.max_val_images)]
    if plan.val_batch != 1:
        args += ["--batch", str(plan.val_batch)]
    return args + plan.scale.image_args()


def _cost(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    schedule, cost = plan.cfg["schedule"], plan.cfg["cost"]
    methods = [v.method + (f":{v.preset}" if v.preset else "")
               for v in plan.main.values() if v.method != "baseline"]
    args = ["bench", "--dataset", plan.name, "--crop", *map(str, plan.scale.crop(schedule["crop"])),
            "--batch", str(plan.scale.batch(schedule["batch"])),
            "--pairs", *(f"{p.teacher}:{p.student}" for p in plan.pairs), "--methods", *methods,
            "--warmup", str(plan.scale.bench_repeats(cost["warmup"])),
            "--repeats", str(plan.scale.bench_repeats(cost["repeats"]))]
    if plan.scale.bench_isolate is not None:
        args += ["--isolate", plan.scale.bench_isolate]
    return args


def _runs(plan: DatasetPlan, runs: list[str]) -> list[str]:
    """A report's runs: the metrics of those trained here, then, with ``reuse_recorded``, the
    store and the recorded runs taken instead of the others (``--reuse``, harness/report/runs.py)."""
    from harness.report.runs import reuse_key

    args = metrics_of(plan.trained(runs))
    if reuse_mode(plan.config.get("reuse_recorded", False)) != "false":
        reused = [reuse_key(plan.reused[r]) for r in runs if r in plan.reused]
        args += ["--recorded-runs", plan.store_dir] + (["--reuse", *reused] if reused else [])
    return args


def _table(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    args = ["report", "table", "--dataset", plan.name, "--split", plan.cfg["val_split"],
            "--pairs", *(p.token for p in plan.pairs), "--methods", ",".join(plan.main),
            "--teacher-eval", *(f"{t}={plan.teacher_eval(t)}" for t in plan.teachers),
            "--published", plan.config["published"], "--scale", plan.scale.name]
    if plan.cfg.get("cost"):
        args += ["--cost", plan.result("cost", "csv")]
    return args + _runs(plan, plan.table_runs())


def _ablation(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    return ["report", "ablation", "--pairs", *(p.token for p in plan.ablation_pairs),
            "--method", plan.cfg["ablation"]["method"], "--presets", ",".join(plan.ablation),
            *_runs(plan, plan.ablation_runs())]


def _sensitivity(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    assert plan.sensitivity_pair is not None
    sens = plan.cfg["sensitivity"]
    return ["report", "sensitivity", "--pair", plan.sensitivity_pair.token, "--method",
            sens["method"], "--axes", ",".join(sens["options"]), *_runs(plan, plan.sensitivity_runs())]


def recorded_inputs(plan: DatasetPlan) -> list[str]:
    """The metrics of every run of the grid trained here, teachers included (``record``)."""
    teachers = [plan.teacher_dir(t) for t in plan.trained_teachers]
    runs = [plan.run_dir(pair, variant, seed) for pair in plan.pairs
            for variant in plan.main.values() for seed in plan.seeds]
    runs += [plan.distill_dir(pair, variant.name, seed) for pair, variant in plan.distill_runs()
             for seed in plan.seeds]
    return metrics_of(teachers + plan.trained(list(dict.fromkeys(runs))))


def _record(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    return ["record", "--teacher-models", "--out", plan.store_dir, *recorded_inputs(plan)]


def _curves(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    return ["report", "curves", "--pairs", *(p.token for p in plan.pairs), "--methods",
            ",".join(plan.main), *metrics_of(plan.table_runs())]


def _cka(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    args = ["report", "cka", *_split(plan), "--images", str(plan.scale.images(plan.cfg["cka"]["images"])),
            *plan.scale.image_args()]
    for pair, teacher, student in cka_pairs(plan):
        args += ["--pair", f"{teacher}:{student}:{pair.kind}"]
    return args


def _flow(options: dict) -> str:
    """Options as a YAML flow mapping (``{kem_form: pixel}``), the form ``--reading`` takes."""
    return yaml.safe_dump(options, default_flow_style=True, sort_keys=True).strip()


def _readings(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    spec = plan.cfg["readings"]
    base = plan.main[spec["method"]]
    args = ["report", "readings", "--pairs", *(p.token for p in plan.readings_pairs),
            "--method", base.method, "--options", _flow(base.options_dict),
            "--reference", spec["reference"]]
    if base.preset:
        args += ["--preset", base.preset]
    for overrides, _ in plan.readings:
        args += ["--reading", _flow(overrides)]
    return args + _runs(plan, plan.readings_runs())


def _claims(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    args = ["report", "claims", "--claims", plan.config["claims"]]
    for flag, path in plan.claims_inputs().items():
        args += [f"--{flag}", path]
    return args


def _qualitative(plan: DatasetPlan, wildcards: Wildcards) -> list[str]:
    images = plan.scale.images(plan.cfg["qualitative"]["images"])
    args = ["report", "qualitative", *_split(plan), "--images", str(images), *plan.scale.image_args()]
    for label, folder in qualitative_models(plan).items():
        args += ["--model", f"{label}={folder}"]
    return args


#: rule -> its arguments; the shell of each rule but prepare_data and record_runs adds ``--out``
#: (and ``bench`` its ``--threads``)
COMMANDS: dict[str, Callable[[DatasetPlan, Wildcards], list[str]]] = {
    "prepare_data": _prepare_data,
    "train_teacher": _train_teacher,
    "import_teacher": _import_teacher,
    "eval_teacher": _eval_teacher,
    "train_student": _train_student,
    "distill": _distill,
    "cost": _cost,
    "table": _table,
    "record_runs": _record,
    "ablation": _ablation,
    "sensitivity": _sensitivity,
    "readings": _readings,
    "claims": _claims,
    "cka": _cka,
    "qualitative": _qualitative,
    "curves": _curves,
}


def command(plan: DatasetPlan, rule: str, wildcards: Wildcards) -> list[str]:
    """The arguments of ``python -m harness`` for one job of ``rule`` (without ``--out``)."""
    return COMMANDS[rule](plan, wildcards)


def shell_args(plan: DatasetPlan, rule: str, wildcards: Wildcards) -> str:
    """:func:`command` quoted for a shell line."""
    return shlex.join(command(plan, rule, wildcards))


def jobs(plan: DatasetPlan) -> list[tuple[str, Wildcards]]:
    """Every job (rule, wildcards) that builds the dataset's targets from scratch."""
    out: list[tuple[str, Wildcards]] = []
    seeds = [str(s) for s in plan.seeds]
    if plan.cfg["generated"]:
        out.append(("prepare_data", {}))
    out += [("train_teacher", {"teacher": t, "seed": str(plan.cfg["teacher_seed"])})
            for t in plan.trained_teachers]
    out += [("import_teacher", {"teacher": t}) for t in plan.imported_teachers]
    out += [("eval_teacher", {"teacher": t}) for t in plan.teachers]
    out += [("train_student", {"student": s, "seed": seed}) for s in plan.students for seed in seeds
            if plan.student_dir(s, int(seed)) not in plan.reused]
    out += [("distill", {"teacher": pair.teacher, "student": pair.student, "variant": variant.name,
                         "seed": seed})
            for pair, variant in plan.distill_runs() for seed in seeds
            if plan.distill_dir(pair, variant.name, int(seed)) not in plan.reused]
    if plan.cfg.get("cost"):
        out.append(("cost", {}))
    out.append(("table", {}))
    if plan.ablation:
        out.append(("ablation", {}))
    if plan.sensitivity:
        out.append(("sensitivity", {}))
    if plan.readings:
        out.append(("readings", {}))
    out += [("cka", {}), ("qualitative", {}), ("curves", {}), ("claims", {})]
    return [(rule, {"dataset": plan.name, **wildcards}) for rule, wildcards in out]


def job_counts(config: dict, datasets: list[str]) -> dict[str, int]:
    """Jobs per rule to build every target of ``datasets`` from scratch (``grid check``)."""
    plans = check_config(config)
    return dict(Counter(rule for name in datasets for rule, _ in jobs(plans[name])))


class _Refusal(argparse.ArgumentParser):
    """The CLI's parser, raising instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def check_commands(plans: dict[str, DatasetPlan], datasets: list[str]) -> int:
    """Parse every job's command line with the CLI's parser, and every training job's settings
    with the run-config loader and the method's option check (what ``train`` does first); the
    first that fails is a ConfigError naming the job. Returns the number of jobs checked
    (imports torch)."""
    from harness.cli import build_parser
    from harness.config import load_config
    from harness.methods import method_options

    parser = build_parser(_Refusal)
    checked = 0
    for name in datasets:
        plan = plans[name]
        for rule, wildcards in jobs(plan):
            args = command(plan, rule, wildcards)
            try:
                whole = rule in ("prepare_data", "record_runs")
                parsed = parser.parse_args(args if whole else [*args, "--out", "out"])
                if rule in ("train_teacher", "train_student", "distill"):
                    method = load_config(None, parsed.overrides).method
                    method_options(method.name, method.preset, method.options)
            except (ValueError, ConfigError) as err:
                raise ConfigError(f"job {rule} {wildcards} would run `python -m harness "
                                  f"{shlex.join(args)}`, which fails: {err}; fix "
                                  f"datasets.{name} in the workflow config") from None
            checked += 1
    return checked
