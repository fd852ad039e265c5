"""What a grid will cost before it starts: jobs, iterations, GPU-hours and wall time per rule.

Every training job of the workflow (``train_teacher``, ``train_student``, ``distill``) runs
``train.iterations`` steps of one *step configuration*: a model trained alone, or a teacher ->
student pair with a method and preset, at the dataset's crop and batch. The configurations and
iterations are read from the command lines the workflow runs (``rules.jobs`` and
``rules.command``, what the rules pass to ``python -m harness train``), so the plan prices exactly
the jobs Snakemake runs.
Given one time per step configuration (:mod:`harness.workflow.step_times`), a job costs
``iterations x step`` GPU-seconds; with ``gpus_per_job = k`` the batch is split over ``k``
devices and the job's wall time is taken as a ``k``-th of that (communication not counted).
The wall time of the whole grid is a list schedule on the GPU slots: the longest ready job
first, a distilled student only after its teacher has trained.

Not priced (listed as such): the other rules (teacher evaluation, cost benchmark, figures and
tables: minutes each), the evaluation pass at the end of each training run, and data loading
beyond what the step itself does (the loader is assumed to keep up).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import yaml

from harness.workflow import rules
from harness.workflow.grid import DatasetPlan

TRAINING_RULES = ("train_teacher", "train_student", "distill")


@dataclass(frozen=True)
class StepConfig:
    """What the time of one training step depends on (method options are assumed not to)."""

    dataset: str
    student: str
    teacher: str  # "" for a model trained alone
    method: str
    preset: str
    crop: tuple[int, int]
    batch: int

    @property
    def label(self) -> str:
        model = f"{self.teacher} -> {self.student}" if self.teacher else self.student
        method = f"{self.method}:{self.preset}" if self.preset else self.method
        return f"{self.dataset} {model} {method} {self.crop[0]}x{self.crop[1]} b{self.batch}"


@dataclass(frozen=True)
class StepTime:
    """Seconds per iteration of one step configuration on one device, and how they were taken.

    ``how``: ``measured`` (on ``device`` at the configuration's own crop and batch), ``scaled``
    (measured at ``measured_crop`` / ``measured_batch`` and scaled by pixels x batch) or
    ``assumed`` (too big to build on ``device``: the slowest measured step of its pair); ``file``:
    the step-time or cost file they were read from ("" when measured by this plan).
    """

    seconds: float
    how: str
    device: str
    measured_crop: tuple[int, int]
    measured_batch: int
    file: str = ""

    @property
    def source(self) -> str:
        """What the plan's table says: measured, scaled, or file."""
        return "file" if self.file else self.how


@dataclass(frozen=True)
class TrainingJob:
    rule: str
    run: str  # its run folder
    iterations: int
    step: StepConfig
    has_options: bool  # a variant with method options, priced at its preset's step time
    after: str | None  # the run folder of the teacher it waits for, when the grid trains it


def _settings(args: list[str]) -> dict[str, Any]:
    """The ``--set key=value`` pairs of a ``python -m harness train`` command line, as values
    (they are YAML scalars)."""
    pairs = [args[i + 1] for i, word in enumerate(args) if word == "--set"]
    return {key: yaml.safe_load(value) for key, _, value in (p.partition("=") for p in pairs)}


def _run_dir(plan: DatasetPlan, rule: str, wildcards: dict[str, str]) -> str:
    if rule == "train_teacher":
        return plan.teacher_dir(wildcards["teacher"])
    if rule == "train_student":
        return plan.student_dir(wildcards["student"], int(wildcards["seed"]))
    pair, _ = plan.variant(f"{wildcards['teacher']}__{wildcards['student']}", wildcards["variant"])
    return plan.distill_dir(pair, wildcards["variant"], int(wildcards["seed"]))


def _job(plan: DatasetPlan, rule: str, wildcards: dict[str, str]) -> TrainingJob:
    values = _settings(rules.command(plan, rule, wildcards))
    step = StepConfig(
        dataset=values["data.name"], student=values["model.student"],
        teacher=values.get("model.teacher", ""), method=values["method.name"],
        preset=values.get("method.preset") or "", crop=tuple(values["data.crop"]),
        batch=int(values["data.batch_size"]))
    has_options = any(key.startswith("method.options.") for key in values)
    teacher = wildcards.get("teacher") if rule == "distill" else None
    after = plan.teacher_dir(teacher) if teacher in plan.trained_teachers else None
    return TrainingJob(rule, _run_dir(plan, rule, wildcards), int(values["train.iterations"]), step,
                       has_options, after)


def training_jobs(plan: DatasetPlan) -> list[TrainingJob]:
    """Every training job of one dataset's grid, from the command lines the workflow runs."""
    return [_job(plan, rule, wildcards) for rule, wildcards in rules.jobs(plan)
            if rule in TRAINING_RULES]


def job_hours(job: TrainingJob, times: dict[StepConfig, StepTime], per_job: int) -> tuple[float, float]:
    """(GPU-hours, wall hours) of one job on ``per_job`` devices."""
    gpu_hours = job.iterations * times[job.step].seconds / 3600
    return gpu_hours, gpu_hours / per_job


def makespan_hours(jobs: list[TrainingJob], wall: dict[str, float], slots: int) -> float:
    """Hours until the last job ends when ``slots`` jobs run at once, the longest ready job
    first, and a job with ``after`` starts only once that job has ended."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    waiting = sorted(jobs, key=lambda j: -wall[j.run])
    running: list[tuple[float, str]] = []
    done: set[str] = set()
    now = 0.0
    while waiting or running:
        ready = [j for j in waiting if j.after is None or j.after in done]
        for job in ready[: slots - len(running)]:
            heapq.heappush(running, (now + wall[job.run], job.run))
            waiting.remove(job)
        if not running:
            missing = sorted({j.after for j in waiting})
            raise ValueError(f"jobs wait for runs that are not in the plan: {missing}")
        now, finished = heapq.heappop(running)
        done.add(finished)
    return now


# ------------------------------------------------------------------- the report
@dataclass
class RuleCost:
    """One rule of one dataset: its jobs and what they cost."""

    dataset: str
    rule: str
    jobs: int
    iterations: list[int]
    steps: list[float]  # seconds per iteration, one per job
    sources: set[str]
    gpu_hours: float
    wall_hours: list[float]  # one per job


def _number(value: float) -> str:
    """Three significant digits below 100, whole numbers with thousands separators above."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _span(values: list[float]) -> str:
    low, high = _number(min(values)), _number(max(values))
    return low if low == high else f"{low}-{high}"


def rule_costs(dataset: str, jobs: list[TrainingJob], times: dict[StepConfig, StepTime],
               per_job: int) -> list[RuleCost]:
    rows = []
    for rule in TRAINING_RULES:
        mine = [j for j in jobs if j.rule == rule]
        if not mine:
            continue
        hours = [job_hours(j, times, per_job) for j in mine]
        sources = {times[j.step].source for j in mine}
        if any(j.has_options for j in mine):
            sources.add("preset")
        rows.append(RuleCost(dataset, rule, len(mine), [j.iterations for j in mine],
                             [times[j.step].seconds for j in mine], sources,
                             sum(h for h, _ in hours), [w for _, w in hours]))
    return rows


def format_table(rows: list[RuleCost], unpriced: dict[tuple[str, str], int]) -> list[str]:
    """The per-rule table: priced training rules, then the rules the plan does not price."""
    header = ("dataset", "rule", "jobs", "iterations", "s/iteration", "step times", "GPU-hours",
              "hours/job")
    table = [header]
    for r in rows:
        table.append((r.dataset, r.rule, str(r.jobs), _span(r.iterations), _span(r.steps),
                      "+".join(sorted(r.sources)), f"{r.gpu_hours:,.1f}", _span(r.wall_hours)))
    for (dataset, rule), n in unpriced.items():
        table.append((dataset, rule, str(n), "-", "-", "not priced", "-", "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(cell.rjust(w) if i in (2, 3, 4, 6, 7) else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in table]


def duration(hours: float) -> str:
    return f"{hours:,.1f} h ({hours / 24:,.1f} days)" if hours >= 48 else f"{hours:,.1f} h"


def _source_lines(times: dict[StepConfig, StepTime]) -> list[str]:
    """One line per way the step times were obtained, saying what is measured and what assumed."""
    groups: dict[tuple, int] = {}
    for t in times.values():
        key = (t.file, t.how, t.device, t.measured_crop, t.measured_batch if t.how == "scaled" else 0)
        groups[key] = groups.get(key, 0) + 1
    lines = []
    for (file, how, device, crop, batch), n in sorted(groups.items()):
        where = f"read from {file}, " if file else ""
        if how == "measured":
            lines.append(f"  {n} {where}measured on {device} at their own crop and batch")
        elif how == "assumed":
            lines.append(f"  {n} {where}too big to build on {device} within the memory cap: "
                         f"priced at the slowest measured method of their pair (assumed)")
        else:
            lines.append(f"  {n} {where}measured on {device} at crop {crop[0]}x{crop[1]}, batch "
                         f"{batch}, and scaled to their crop and batch by pixels x batch (assumed)")
    return lines


def render(costs: list[RuleCost], unpriced: dict[tuple[str, str], int],
           times: dict[StepConfig, StepTime], gpus: int, per_job: int, wall_hours: float,
           n_preset_priced: int) -> str:
    """The plan as printed by ``python -m harness grid plan``."""
    slots = gpus // per_job
    total = sum(c.gpu_hours for c in costs)
    jobs = sum(c.jobs for c in costs)
    lines = [f"grid plan for {gpus} GPU(s), {per_job} per training job ({slots} at once)",
             f"step times of {len(times)} step configurations (seconds per iteration, one device):",
             *_source_lines(times)]
    if any(t.device.startswith("cpu") for t in times.values()):
        lines.append("  (CPU step times: the hours below are what a CPU would take in each GPU slot, "
                     "far more than a GPU; run the plan on the GPU box for its own figures)")
    lines += ["", *format_table(costs, unpriced), "",
              f"total: {total:,.1f} GPU-hours in {jobs} training jobs",
              f"wall time on {gpus} GPU(s): {duration(wall_hours)} (training jobs only; list "
              f"schedule, longest ready job first, students after their teacher)",
              "assumed:"]
    if per_job > 1:
        lines.append(f"  {per_job} GPUs per job split the batch and divide the step time by {per_job} "
                     f"(communication not counted)")
    if n_preset_priced:
        lines.append(f"  {n_preset_priced} distill jobs set method options (e.g. the sensitivity "
                     f"lambdas); they are priced at their preset's step time")
    lines += ["  synthetic batches (the data loader keeps up); the evaluation at the end of each "
              "run and the rules marked `not priced` (evaluation, cost table, figures, tables: "
              "minutes each) are not counted"]
    return "\n".join(lines) + "\n"


def detail_lines(jobs: list[TrainingJob], times: dict[StepConfig, StepTime]) -> list[str]:
    """Each step configuration: seconds per iteration, how obtained, its jobs and GPU-hours,
    the most expensive first."""
    hours: dict[StepConfig, float] = {}
    count: dict[StepConfig, int] = {}
    for job in jobs:
        hours[job.step] = hours.get(job.step, 0.0) + job.iterations * times[job.step].seconds / 3600
        count[job.step] = count.get(job.step, 0) + 1
    table = [("step configuration", "s/iteration", "how", "jobs", "GPU-hours")]
    for config in sorted(hours, key=lambda c: -hours[c]):
        table.append((config.label, _number(times[config].seconds), times[config].source,
                      str(count[config]), f"{hours[config]:,.1f}"))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    return ["  ".join(cell.ljust(w) if i in (0, 2) else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in table]
