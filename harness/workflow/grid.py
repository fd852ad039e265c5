"""The experiment grid of the workflow config: validation, expansion and the run-folder layout.

The Snakefile (``workflow/rules/common.smk``) and ``python -m harness grid check`` both use this
module, so the grid is expanded once, in plain Python (no torch import: a dry run of the whole
paper grid must stay fast).

Run folders (relative to ``runs_dir``)::

    {dataset}/teachers/{teacher}/seed{seed}/            a teacher trained by the workflow
    {dataset}/teachers/{teacher}/eval.json              the teacher's mIoU (trained or supplied)
    {dataset}/students/{student}/seed{seed}/            the student alone (method baseline)
    {dataset}/{teacher}__{student}/{variant}/seed{seed}/  a distilled student

A *variant* is a method with a preset and options. The main-table variant of a method is named
after the method; ablation and sensitivity variants that differ from it get a suffix naming the
difference (``heteroakd-no_kmm``, ``heteroakd-lambda1_0.5-lambda2_2``); a variant equal to the
main one reuses its runs.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config import current_value
from harness.errors import ConfigError

log = logging.getLogger(__name__)

WORKFLOW_DIR = Path(__file__).resolve().parents[2] / "workflow"
DEFAULT_CONFIG = WORKFLOW_DIR / "config" / "config.yaml"
SCHEMA = WORKFLOW_DIR / "schemas" / "config.schema.yaml"

FAMILIES = ("cnn", "transformer")
# Keys of a family's optimiser block and the RunConfig key each one sets.
OPTIM_KEYS = {
    "optimizer": "train.optimizer",
    "lr": "train.lr",
    "lr_reference_batch": "train.lr_reference_batch",
    "weight_decay": "train.weight_decay",
    "momentum": "train.momentum",
    "warmup_iterations": "train.warmup_iterations",
}


@dataclass(frozen=True)
class Pair:
    """A teacher -> student pair; ``kind`` is heterogeneous when the families differ."""

    teacher: str
    student: str
    kind: str

    @property
    def token(self) -> str:
        """``teacher:student:kind``, the form the report commands take."""
        return f"{self.teacher}:{self.student}:{self.kind}"

    @property
    def folder(self) -> str:
        return f"{self.teacher}__{self.student}"


@dataclass(frozen=True)
class Variant:
    """A method with a preset and option overrides (``options`` as sorted key/value pairs)."""

    name: str
    method: str
    preset: str | None
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class Scale:
    """What the config's ``scale`` changes. ``full`` runs the datasets' schedules; ``smoke``
    shrinks every job to the ``smoke`` limits (an end-to-end check in minutes) and keeps its runs,
    results, logs and benchmarks in ``smoke/`` folders. :meth:`of` is the one place that reads
    ``scale``."""

    name: str
    folder: str  # "" or "smoke/"
    iterations: int | None = None  # None: the schedule's
    teacher_iterations: int | None = None
    max_batch: int | None = None
    max_val_images: int | None = None  # also the images of the CKA and qualitative figures
    max_bench_repeats: int | None = None  # warm-up and timed repeats of the cost benchmark
    bench_isolate: str | None = None  # `bench --isolate` (None: the benchmark's default)
    max_crop: tuple[int, int] | None = None  # training (and benchmark) crop, per side
    max_workers: int | None = None  # loader workers
    evals: int | None = None  # evaluations per run (None: the run config's default)
    max_val_size: tuple[int, int] | None = None  # val images shrunk to fit (H, W)
    seeds: int | None = None  # seeds per dataset (None: the dataset's own)

    @classmethod
    def of(cls, config: dict[str, Any]) -> Scale:
        if config["scale"] == "full":
            return cls("full", "")
        if config["scale"] != "smoke":
            raise ConfigError(f"config key 'scale' must be 'full' or 'smoke', got {config['scale']!r}")
        limits = config["smoke"]
        # smoke times one step after one warm-up, in the workflow's process, and evaluates twice
        # (halfway and at the end) so the periodic evaluation runs too
        size = limits.get("val_max_size")
        return cls("smoke", "smoke/", limits["iterations"], limits["teacher_iterations"],
                   limits["batch"], limits["max_val_images"], 1, "none", tuple(limits["crop"]),
                   limits["workers"], 2, None if size is None else tuple(size), limits.get("seeds"))

    def batch(self, full: int) -> int:
        return full if self.max_batch is None else min(full, self.max_batch)

    def crop(self, full: list[int]) -> list[int]:
        return list(full) if self.max_crop is None else [min(a, b) for a, b in zip(full, self.max_crop)]

    def workers(self, full: int) -> int:
        return full if self.max_workers is None else min(full, self.max_workers)

    def images(self, full: int) -> int:
        return full if self.max_val_images is None else min(full, self.max_val_images)

    def image_args(self) -> list[str]:
        """``--max-size H W`` of the commands that run models on val images (none at full scale)."""
        return [] if self.max_val_size is None else ["--max-size", *map(str, self.max_val_size)]

    def eval_every(self, iterations: int) -> int | None:
        """``train.eval_every`` of a run of ``iterations`` (None: leave the run config's)."""
        return None if self.evals is None else max(1, iterations // self.evals)

    def bench_repeats(self, full: int) -> int:
        return full if self.max_bench_repeats is None else min(full, self.max_bench_repeats)


@dataclass
class DatasetPlan:
    """Everything the workflow runs for one dataset."""

    name: str
    cfg: dict[str, Any]  # datasets.<name>
    config: dict[str, Any]  # the whole workflow config
    scale: Scale
    runs_dir: str
    results_dir: str
    seeds: list[int]
    pairs: list[Pair]
    main: dict[str, Variant]  # method -> its main-table variant (baseline included)
    ablation_pairs: list[Pair] = field(default_factory=list)
    ablation: dict[str, Variant] = field(default_factory=dict)  # preset -> variant
    sensitivity_pair: Pair | None = None
    sensitivity: list[tuple[dict[str, float], Variant]] = field(default_factory=list)
    readings_pairs: list[Pair] = field(default_factory=list)
    readings: list[tuple[dict[str, Any], Variant]] = field(default_factory=list)  # overrides
    # reuse_recorded (harness/workflow/reuse.py): run folder -> the recorded row taken instead of
    # training it, and teacher -> the saved model in the store used instead of training it
    reused: dict[str, dict[str, str]] = field(default_factory=dict)
    reused_teachers: dict[str, str] = field(default_factory=dict)

    # ----------------------------------------------------------------- layout
    def teacher_dir(self, teacher: str) -> str:
        return f"{self.runs_dir}/{self.name}/teachers/{teacher}/seed{self.cfg['teacher_seed']}"

    def teacher_eval(self, teacher: str) -> str:
        return f"{self.runs_dir}/{self.name}/teachers/{teacher}/eval.json"

    def imported_dir(self, teacher: str) -> str:
        return f"{self.runs_dir}/{self.name}/teachers/{teacher}/imported"

    def teacher_model(self, teacher: str) -> str:
        """The model folder the students are distilled from (trained, imported or user-supplied)."""
        spec = self.cfg["teachers"][teacher]
        if teacher in self.reused_teachers:
            return self.reused_teachers[teacher]
        if spec.get("format"):
            return self.imported_dir(teacher)
        return spec["model"] or f"{self.teacher_dir(teacher)}/model"

    def student_dir(self, student: str, seed: int) -> str:
        return f"{self.runs_dir}/{self.name}/students/{student}/seed{seed}"

    def distill_dir(self, pair: Pair, variant: str, seed: int) -> str:
        return f"{self.runs_dir}/{self.name}/{pair.folder}/{variant}/seed{seed}"

    def run_dir(self, pair: Pair, variant: Variant, seed: int) -> str:
        if variant.method == "baseline":
            return self.student_dir(pair.student, seed)
        return self.distill_dir(pair, variant.name, seed)

    def result(self, stem: str, ext: str) -> str:
        return f"{self.results_dir}/{stem}_{self.name}.{ext}"

    @property
    def store_dir(self) -> str:
        """The dataset's recorded-runs store (``recorded_runs``/<dataset>)."""
        return f"{recorded_dir(self.config)}/{self.name}"

    def trained(self, runs: list[str]) -> list[str]:
        """The run folders of ``runs`` this workflow trains (not taken from recorded runs)."""
        return [r for r in runs if r not in self.reused]

    # ------------------------------------------------------------- the grid
    @property
    def teachers(self) -> list[str]:
        """Teachers the pairs use, in first-use order."""
        return list(dict.fromkeys(p.teacher for p in self.pairs))

    @property
    def trained_teachers(self) -> list[str]:
        return [t for t in self.teachers
                if not self.cfg["teachers"][t]["model"] and t not in self.reused_teachers]

    @property
    def imported_teachers(self) -> list[str]:
        """Teachers given as a reference checkpoint file (``format`` set), converted by a job."""
        return [t for t in self.teachers if self.cfg["teachers"][t].get("format")]

    @property
    def students(self) -> list[str]:
        return list(dict.fromkeys(p.student for p in self.pairs))

    def distill_runs(self) -> list[tuple[Pair, Variant]]:
        """Every distinct (pair, variant) the dataset trains, main table first, no repeats."""
        out: dict[tuple[str, str], tuple[Pair, Variant]] = {}
        for pair in self.pairs:
            for variant in self.main.values():
                if variant.method != "baseline":
                    out.setdefault((pair.folder, variant.name), (pair, variant))
        for pair in self.ablation_pairs:
            for variant in self.ablation.values():
                out.setdefault((pair.folder, variant.name), (pair, variant))
        if self.sensitivity_pair is not None:
            for _, variant in self.sensitivity:
                out.setdefault((self.sensitivity_pair.folder, variant.name), (self.sensitivity_pair, variant))
        for pair in self.readings_pairs:
            for _, variant in self.readings:
                out.setdefault((pair.folder, variant.name), (pair, variant))
        return list(out.values())

    def variant(self, pair_folder: str, name: str) -> tuple[Pair, Variant]:
        for pair, variant in self.distill_runs():
            if pair.folder == pair_folder and variant.name == name:
                return pair, variant
        raise ConfigError(
            f"run {self.name}/{pair_folder}/{name} is not in the grid of workflow/config/config.yaml; "
            f"request a target the config defines"
        )

    def table_runs(self) -> list[str]:
        """Run folders behind results/table_{dataset}.csv."""
        runs = [self.run_dir(p, v, s) for p in self.pairs for v in self.main.values() for s in self.seeds]
        return list(dict.fromkeys(runs))  # a student shared by two pairs has one baseline

    def ablation_runs(self) -> list[str]:
        runs = [self.run_dir(p, v, s) for p in self.ablation_pairs
                for v in [self.main["baseline"], *self.ablation.values()] for s in self.seeds]
        return list(dict.fromkeys(runs))

    def sensitivity_runs(self) -> list[str]:
        assert self.sensitivity_pair is not None
        variants = [self.main["baseline"]] + [v for _, v in self.sensitivity]
        return list(dict.fromkeys(self.run_dir(self.sensitivity_pair, v, s)
                                  for v in variants for s in self.seeds))

    def readings_runs(self) -> list[str]:
        """Run folders behind results/readings_{dataset}.csv: the student alone, the reference
        method and every reading, on each readings pair and seed."""
        reference = self.main[self.cfg["readings"]["reference"]]
        variants = [self.main["baseline"], reference, *(v for _, v in self.readings)]
        return list(dict.fromkeys(self.run_dir(p, v, s) for p in self.readings_pairs
                                  for v in variants for s in self.seeds))

    def targets(self) -> list[str]:
        """The dataset's result files (what ``rule all`` asks for)."""
        out = [self.result("table", "csv"), self.result("table", "md")]
        if self.cfg.get("cost"):
            out += [self.result("cost", "csv")]
        if self.ablation:
            out += [self.result("ablation", "csv"), self.result("ablation", "png")]
        if self.sensitivity:
            out += [self.result("sensitivity", "csv"), self.result("sensitivity", "png")]
        if self.readings:
            out += [self.result("readings", ext) for ext in ("csv", "md", "png")]
        out += [self.result("cka", "csv"), self.result("cka", "png"), self.result("qualitative", "png"),
                self.result("curves", "csv"), self.result("curves", "png")]
        out += [self.result("claims", "csv"), self.result("claims", "md")]
        return out

    def claims_inputs(self) -> dict[str, str]:
        """The result tables the claims read (``report claims`` flag -> file), as available."""
        out = {"table": self.result("table", "csv"), "cka": self.result("cka", "csv")}
        if self.ablation:
            out["ablation"] = self.result("ablation", "csv")
        if self.sensitivity:
            out["sensitivity"] = self.result("sensitivity", "csv")
        return out

    @property
    def val_batch(self) -> int:
        """Val images per evaluation forward (the schedule's ``val_batch``, default 1)."""
        return self.cfg["schedule"].get("val_batch", 1)

    def qualitative_pair(self) -> Pair:
        wanted = self.cfg["qualitative"].get("pair")
        if wanted:
            return _find_pair(self, wanted, "qualitative.pair")
        hetero = [p for p in self.pairs if p.kind == "heterogeneous"]
        return (hetero or self.pairs)[0]

    # ----------------------------------------------------------- run config
    def train_settings(self, student: str, seed: int, *, teacher: str | None = None,
                       variant: Variant | None = None, as_teacher: bool = False) -> list[str]:
        """``key=value`` overrides for ``python -m harness train --set ...`` (one run)."""
        cfg, config, scale = self.cfg, self.config, self.scale
        schedule = cfg["schedule"]
        family = config["families"][student]
        iterations = scale.teacher_iterations if as_teacher else scale.iterations
        if iterations is None:
            iterations = schedule["teacher_iterations" if as_teacher else "iterations"]
        batch = scale.batch(schedule["teacher_batch" if as_teacher else "batch"])
        values: dict[str, Any] = {
            "seed": seed,
            "protocol": cfg["protocol"],
            "data.name": self.name,
            "data.root": cfg["root"],
            "data.crop": scale.crop(schedule["crop"]),
            "data.batch_size": batch,
            "data.workers": scale.workers(schedule["workers"]),
            "data.val_split": cfg["val_split"],
            "model.student": student,
            "train.iterations": iterations,
            "train.threads": config["threads"],
            "train.checkpoint_every": min(schedule["checkpoint_every"], iterations),
        }
        for key, target in OPTIM_KEYS.items():
            if key in schedule["optim"][family]:
                values[target] = schedule["optim"][family][key]
        if scale.max_val_images is not None:
            values["data.max_val_images"] = scale.max_val_images
        if scale.max_val_size is not None:
            values["data.val_max_size"] = list(scale.max_val_size)
        if self.val_batch != 1:
            values["data.val_batch_size"] = self.val_batch
        if scale.eval_every(iterations) is not None:
            values["train.eval_every"] = scale.eval_every(iterations)
        if config["pretrained"].get(student):
            values["model.pretrained"] = config["pretrained"][student]
        method = variant or self.main["baseline"]
        values["method.name"] = method.method
        if method.preset:
            values["method.preset"] = method.preset
        for key, value in method.options:
            values[f"method.options.{key}"] = value
        if teacher is not None:
            values["model.teacher"] = teacher
            values["model.teacher_model"] = self.teacher_model(teacher)
        values.update(cfg["run_overrides"])
        return [f"{key}={_yaml_scalar(value)}" for key, value in values.items()]


def _yaml_scalar(value: Any) -> str:
    """A value as ``--set`` parses it back (YAML; JSON is valid YAML)."""
    return value if isinstance(value, str) else json.dumps(value)


def set_flags(settings: list[str]) -> list[str]:
    """``--set k=v`` arguments of ``python -m harness train``, one pair per setting."""
    return [word for setting in settings for word in ("--set", setting)]


def _fmt(value: Any) -> str:
    """An option value in a variant name: ``0.5``, ``pixel``, ``true``, a list as ``-2`` or
    ``1_2`` (run folders take letters, digits, ``.``, ``_`` and ``-``)."""
    if isinstance(value, (list, tuple)):
        return "_".join(_fmt(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value).lower()


def _variant(method: str, preset: str | None, options: dict[str, Any], main: Variant | None) -> Variant:
    """The variant (method, preset, options); named after what differs from the main one."""
    items = tuple(sorted(options.items()))
    if main is not None and main.preset == preset and main.options == items:
        return main
    name = method
    if main is None or preset != main.preset:
        name += f"-{preset or 'default'}"
    main_options = main.options_dict if main is not None else {}
    for key, value in items:
        if main_options.get(key, object()) != value:
            name += f"-{key}_{_fmt(value)}"
    return Variant(name, method, preset, items)


def _find_pair(plan: DatasetPlan, spec: dict[str, str], key: str) -> Pair:
    for pair in plan.pairs:
        if pair.teacher == spec["teacher"] and pair.student == spec["student"]:
            return pair
    raise ConfigError(
        f"datasets.{plan.name}.{key} ({spec['teacher']} -> {spec['student']}) is not one of the "
        f"dataset's pairs; add it to datasets.{plan.name}.pairs or pick one of "
        f"{[p.teacher + ' -> ' + p.student for p in plan.pairs]}"
    )


def _truthy(value: Any, key: str) -> bool:
    # `snakemake --config k=false` passes the string "false" (only "True"/"False" become bools).
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")


def _renamed(node: dict[str, Any], old: str, new: str, where: str) -> None:
    """Move ``node[old]`` to ``node[new]`` with a one-line warning (old names work one release)."""
    if old not in node:
        return
    if new in node:
        raise ConfigError(f"config keys {where}{old} and {where}{new} are one setting; keep {where}{new}")
    log.warning("workflow config key %s%s is deprecated and goes in the next release; use %s%s",
                where, old, where, new)
    node[new] = node.pop(old)


def _require(node: dict[str, Any], key: str, where: str) -> None:
    if key not in node:
        raise ConfigError(f"workflow config key {where}{key} is missing; add it (see "
                          f"workflow/config/config.yaml)")


def upgrade(config: dict[str, Any]) -> dict[str, Any]:
    """Old workflow-config names replaced by the current ones, in place: ``recorded`` ->
    ``published``, ``datasets.<d>.prepare`` -> ``generated``, ``teachers.<t>.checkpoint`` ->
    ``model``, ``protocol: cirkd`` -> ``reference``."""
    _renamed(config, "recorded", "published", "")
    _require(config, "published", "")
    for name, cfg in config["datasets"].items():
        where = f"datasets.{name}."
        _renamed(cfg, "prepare", "generated", where)
        _require(cfg, "generated", where)
        protocol = cfg.get("protocol")
        if current_value("protocol", protocol) != protocol:
            cfg["protocol"] = current_value("protocol", protocol)
            log.warning("%sprotocol: %s is deprecated and goes in the next release; use "
                        "protocol: %s", where, protocol, cfg["protocol"])
        for teacher, spec in cfg["teachers"].items():
            _renamed(spec, "checkpoint", "model", f"{where}teachers.{teacher}.")
            _require(spec, "model", f"{where}teachers.{teacher}.")
    return config


def normalise(config: dict[str, Any]) -> dict[str, Any]:
    """Coerce command-line strings (``--config check_roots=false``) to their types and old key
    names to the current ones (:func:`upgrade`), in place."""
    config["check_roots"] = _truthy(config.get("check_roots", True), "check_roots")
    config["reuse_recorded"] = reuse_mode(config.get("reuse_recorded", False))
    config.setdefault("recorded_runs", None)
    return upgrade(config)


def reuse_mode(value: Any) -> str:
    """``reuse_recorded`` as one of false, true, strict (the command line passes strings)."""
    from harness.report.recorded_runs import REUSE_MODES

    mode = str(value).lower()
    if mode not in REUSE_MODES:
        raise ConfigError(f"config key 'reuse_recorded' must be false, true or strict, got {value!r}")
    return mode


def output_dirs(config: dict[str, Any]) -> tuple[str, str]:
    """(runs_dir, results_dir): smoke runs never overwrite full ones unless the user says so."""
    folder = Scale.of(config).folder
    runs_dir = config["runs_dir"] or f"runs/{folder}"
    results_dir = config["results_dir"] or f"results/{folder}"
    return runs_dir.rstrip("/"), results_dir.rstrip("/")


def recorded_dir(config: dict[str, Any]) -> str:
    """The folder of the recorded-runs stores: smoke runs are recorded apart from full ones."""
    folder = config.get("recorded_runs") or f"results/{Scale.of(config).folder}recorded/runs"
    return folder.rstrip("/")


def plan_dataset(config: dict[str, Any], name: str) -> DatasetPlan:
    """Expand one dataset of a schema-valid workflow config; inconsistencies raise ConfigError."""
    cfg = config["datasets"][name]
    runs_dir, results_dir = output_dirs(config)
    scale = Scale.of(config)
    n_seeds = config["seeds"] if config["seeds"] is not None else (scale.seeds or cfg["seeds"])
    if "baseline" not in cfg["methods"]:
        raise ConfigError(f"datasets.{name}.methods must include `baseline` (the delta reference)")
    main = {m: Variant(m, m, spec.get("preset"), tuple(sorted(spec.get("options", {}).items())))
            for m, spec in cfg["methods"].items()}
    plan = DatasetPlan(name, cfg, config, scale, runs_dir, results_dir,
                       list(range(n_seeds)), _pairs(config, name), main)
    if cfg.get("ablation"):
        _plan_ablation(plan)
    if cfg.get("sensitivity"):
        _plan_sensitivity(plan)
    if cfg.get("readings"):
        _plan_readings(plan)
    return plan


def _pairs(config: dict[str, Any], name: str) -> list[Pair]:
    """The dataset's pairs, each model with a family, an optimiser and (teachers) an entry."""
    cfg, families = config["datasets"][name], config["families"]
    pairs = []
    for i, spec in enumerate(cfg["pairs"]):
        for role in ("teacher", "student"):
            if spec[role] not in families:
                raise ConfigError(
                    f"datasets.{name}.pairs[{i}].{role} {spec[role]!r} has no family; add it to "
                    f"`families` (cnn or transformer)"
                )
        if spec["teacher"] not in cfg["teachers"]:
            raise ConfigError(
                f"datasets.{name}.pairs[{i}] uses teacher {spec['teacher']!r} that "
                f"datasets.{name}.teachers does not list; add `{spec['teacher']}: {{model: null}}` "
                f"(trained by the workflow) or a saved model folder"
            )
        teacher = cfg["teachers"][spec["teacher"]]
        if teacher.get("format") and not teacher["model"]:
            raise ConfigError(
                f"datasets.{name}.teachers.{spec['teacher']}.format is set but its model is null; "
                f"set model to the reference checkpoint file to import, or drop format"
            )
        same = families[spec["teacher"]] == families[spec["student"]]
        pairs.append(Pair(spec["teacher"], spec["student"], "homogeneous" if same else "heterogeneous"))
    for model in {p.student for p in pairs} | {p.teacher for p in pairs}:
        if families[model] not in cfg["schedule"]["optim"]:
            raise ConfigError(
                f"datasets.{name}.schedule.optim has no entry for family {families[model]!r} "
                f"(model {model}); add one"
            )
    return pairs


def _grid_method(plan: DatasetPlan, key: str) -> Variant:
    """The main variant of the method ``datasets.<d>.<key>.method`` names."""
    method = plan.cfg[key]["method"]
    if method not in plan.main:
        raise ConfigError(f"datasets.{plan.name}.{key}.method {method!r} is not in "
                          f"datasets.{plan.name}.methods; add it there")
    return plan.main[method]


def _select_pairs(plan: DatasetPlan, selection: Any, block: str) -> list[Pair]:
    """A block's ``pairs``: "heterogeneous" (every heterogeneous pair) or a list of pairs."""
    if selection == "heterogeneous":
        pairs = [p for p in plan.pairs if p.kind == "heterogeneous"]
    else:
        pairs = [_find_pair(plan, s, f"{block}.pairs") for s in selection]
    if not pairs:
        raise ConfigError(f"datasets.{plan.name}.{block} selects no pair; list pairs or add a "
                          "heterogeneous pair")
    return pairs


def _plan_ablation(plan: DatasetPlan) -> None:
    ablation, base = plan.cfg["ablation"], _grid_method(plan, "ablation")
    plan.ablation_pairs = _select_pairs(plan, ablation["pairs"], "ablation")
    plan.ablation = {p: _variant(base.method, p, base.options_dict, base) for p in ablation["presets"]}


def _plan_sensitivity(plan: DatasetPlan) -> None:
    sens, base = plan.cfg["sensitivity"], _grid_method(plan, "sensitivity")
    plan.sensitivity_pair = _find_pair(plan, sens["pair"], "sensitivity.pair")
    axes = list(sens["options"])
    if len(axes) != 2:
        raise ConfigError(f"datasets.{plan.name}.sensitivity.options must name exactly two options "
                          f"(e.g. lambda1, lambda2), got {axes}")
    points = [({}, base)]  # the method's default setting, marked in the plot
    for a in sens["options"][axes[0]]:
        for b in sens["options"][axes[1]]:
            values = {axes[0]: a, axes[1]: b}
            options = {**base.options_dict, **values}
            points.append((values, _variant(base.method, base.preset, options, base)))
    seen: set[str] = set()
    plan.sensitivity = [(v, var) for v, var in points if not (var.name in seen or seen.add(var.name))]


def _plan_readings(plan: DatasetPlan) -> None:
    """The readings block: the main setting (``{}``) first, then each reading once."""
    spec, base = plan.cfg["readings"], _grid_method(plan, "readings")
    if spec["reference"] not in plan.main or spec["reference"] == "baseline":
        raise ConfigError(f"datasets.{plan.name}.readings.reference {spec['reference']!r} is not "
                          f"a distillation method of datasets.{plan.name}.methods; add it there")
    plan.readings_pairs = _select_pairs(plan, spec["pairs"], "readings")
    seen: set[str] = set()
    for overrides in [{}, *spec["options"]]:
        variant = _variant(base.method, base.preset, {**base.options_dict, **overrides}, base)
        if variant.name not in seen:
            seen.add(variant.name)
            plan.readings.append((dict(overrides), variant))


def check_config(config: dict[str, Any]) -> dict[str, DatasetPlan]:
    """Plans for every dataset; raises ConfigError on the first inconsistency."""
    normalise(config)
    Scale.of(config)
    unknown = [d for d in config["default_datasets"] if d not in config["datasets"]]
    if unknown:
        raise ConfigError(f"default_datasets names {unknown} that `datasets` does not define; define them "
                          "or remove them")
    return {name: plan_dataset(config, name) for name in config["datasets"]}


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA.read_text())


def validate_schema(config: dict[str, Any]) -> None:
    """JSON-schema validation (what the Snakefile's ``validate`` does), as one ConfigError."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"workflow config key {where}: {err.message}; fix it in the config or --config")


def load_workflow_config(path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"workflow config {file} does not exist; pass an existing --config FILE")
    config = yaml.safe_load(file.read_text()) or {}
    validate_schema(config)
    return config


def check_roots(plans: dict[str, DatasetPlan], datasets: list[str]) -> None:
    """Refuse a dataset whose root is missing or malformed, naming the config key to set.

    Called by the workflow before its first job (``onstart``), only for the datasets that have
    jobs to run; built-in datasets (``generated: true``) are generated by a job instead.
    """
    from harness.data import check_dataset  # torch import: only when jobs are about to run
    from harness.errors import DataError

    for name in datasets:
        plan = plans[name]
        if plan.cfg["generated"]:
            continue
        try:
            check_dataset(name, plan.cfg["root"], splits=["train", plan.cfg["val_split"]])
        except DataError as err:
            raise DataError(
                f"{err} (set datasets.{name}.root in workflow/config/config.yaml or with "
                f"--config 'datasets={{{name}: {{root: /path/to/{name}}}}}'; "
                f"`snakemake -n` previews the grid without data)"
            ) from None


def variant_sources(plan: DatasetPlan) -> list[tuple[str, Variant]]:
    """Every variant the grid trains, with the workflow config key its settings come from:
    main table, ablation, sensitivity, then any other variant :meth:`DatasetPlan.distill_runs`
    plans (each once)."""
    name = plan.name
    sources = [(f"datasets.{name}.methods.{m}", v) for m, v in plan.main.items()]
    sources += [(f"datasets.{name}.ablation", v) for v in plan.ablation.values()]
    sources += [(f"datasets.{name}.sensitivity", v) for _, v in plan.sensitivity]
    sources += [(f"datasets.{name}.readings", v) for _, v in plan.readings]
    sources += [(f"datasets.{name} (variant {v.name})", v) for _, v in plan.distill_runs()]
    seen: set[str] = set()
    return [(key, v) for key, v in sources if not (v.name in seen or seen.add(v.name))]


def check_names(plans: dict[str, DatasetPlan], datasets: list[str]) -> None:
    """Every model, method, preset and method option the datasets' grids name is valid
    (imports torch): models and methods registered, presets known, each variant's options of
    the types and ranges the method's ``Options`` declare (what training would refuse), and
    ``generated`` as the dataset says.

    Run before the first job (``onstart``) and by ``grid check``, so a typo or a bad value fails
    in seconds rather than after hours of other jobs.
    """
    from harness.data import DATASETS
    from harness.methods import METHODS, method_options
    from harness.models import MODELS

    for name in datasets:
        plan = plans[name]
        if name in DATASETS and DATASETS.get(name).generated != plan.cfg["generated"]:
            raise ConfigError(f"datasets.{name}.generated is {str(plan.cfg['generated']).lower()}, but "
                              f"{name} is "
                              f"{'generated' if DATASETS.get(name).generated else 'read from its download'}; "
                              f"set it to {str(DATASETS.get(name).generated).lower()}")
        for pair in plan.pairs:
            for model in (pair.teacher, pair.student):
                if model not in MODELS:
                    raise ConfigError(
                        f"datasets.{name}.pairs names model {model!r}; valid: {', '.join(MODELS.names())}"
                    )
        check_imports(plan)
        for key, variant in variant_sources(plan):
            if variant.method not in METHODS:
                raise ConfigError(
                    f"datasets.{name}.methods names {variant.method!r}, which no file in harness/methods/ "
                    f"registers; valid: {', '.join(METHODS.names())}"
                )
            presets = METHODS.get(variant.method).presets
            if variant.preset and variant.preset not in presets:
                raise ConfigError(
                    f"datasets.{name}: method {variant.method} has no preset {variant.preset!r}; "
                    f"valid: {', '.join(sorted(presets))}"
                )
            method_options(variant.method, variant.preset, variant.options_dict, key=key,
                           fix="fix it in the workflow config or with --config")


def check_imports(plan: DatasetPlan) -> None:
    """Each imported teacher's ``format`` is one the importer knows for that model (imports torch)."""
    from harness.models.importer import layout_of

    for teacher in plan.imported_teachers:
        try:
            layout_of(plan.cfg["teachers"][teacher]["format"], teacher)
        except ConfigError as err:
            raise ConfigError(f"datasets.{plan.name}.teachers.{teacher}.format: {err}") from None


def check_published(config: dict[str, Any]) -> None:
    """The published figures (``published``) and the paper's claims (``claims``) are valid:
    validated before any job, because Snakemake removes a table before rerunning it and a table
    job that then fails on a bad row would leave the user with no table at all."""
    from harness.report.claims import load_claims
    from harness.report.published import load_published

    load_published(config["published"])
    load_claims(config["claims"])


def pretrained_warnings(config: dict[str, Any], plans: dict[str, DatasetPlan],
                        datasets: list[str]) -> list[str]:
    """One loud line per real dataset whose students or workflow-trained teachers start from
    random weights: the protocol (docs/protocol.md §Models) starts from ImageNet-pretrained encoders and
    distils from trained teachers, so such numbers are not comparable with published ones."""
    from harness.data import dataset_class

    lines = []
    weights = config["pretrained"]
    for name in datasets:
        if not dataset_class(name).pretrained_expected:
            continue
        plan = plans[name]
        students = [s for s in plan.students if not weights.get(s)]
        teachers = [t for t in plan.trained_teachers if not weights.get(t)]
        if students:
            lines.append(
                f"WARNING {name}: students {', '.join(students)} train from random weights (no "
                f"`pretrained:` file for them); the protocol starts from ImageNet weights, so their "
                f"mIoU is not comparable with published figures; set `pretrained: {{MODEL: /path/weights}}` "
                f"in the workflow config (README: Pretrained weights and teachers)")
        if teachers:
            lines.append(
                f"WARNING {name}: teachers {', '.join(teachers)} are trained here from random weights; "
                f"set datasets.{name}.teachers.MODEL.model to a trained model folder, or "
                f"`pretrained:` for their encoders")
    return lines
