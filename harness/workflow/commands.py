"""CLI: ``python -m harness grid check`` (validate the workflow config, count its jobs and parse
the command line of every one of them), ``python -m harness grid plan`` (price its training jobs
before starting) and ``python -m harness gpu run|status`` (the GPU slots of the workflow's jobs)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import ConfigError


def _load_grid_config(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The workflow config with the command's --seeds/--scale, and the datasets asked for."""
    from harness.workflow import grid

    config = grid.load_workflow_config(args.config)
    datasets = args.datasets or list(config["datasets"])
    unknown = [d for d in datasets if d not in config["datasets"]]
    if unknown:
        raise ConfigError(f"datasets {unknown} are not in {args.config}; valid: {sorted(config['datasets'])}")
    if args.seeds is not None:
        config["seeds"] = args.seeds
    if args.scale is not None:
        config["scale"] = args.scale
    return config, datasets


def _cmd_grid_check(args: argparse.Namespace) -> int:
    from harness.workflow import grid, rules

    config, datasets = _load_grid_config(args)
    counts = rules.job_counts(config, datasets)
    plans = grid.check_config(config)
    grid.check_names(plans, datasets)
    grid.check_published(config)
    checked = rules.check_commands(plans, datasets)
    width = max(map(len, counts))
    lines = [f"{rule:<{width}}  {n}" for rule, n in counts.items()]
    lines.append(f"{'total':<{width}}  {sum(counts.values())}")
    sys.stdout.write(f"config {args.config} is valid; jobs for {', '.join(datasets)} from scratch "
                     f"(the command line of all {checked} parses):\n" + "\n".join(lines) + "\n")
    for warning in grid.pretrained_warnings(config, plans, datasets):
        sys.stderr.write(warning + "\n")
    return 0


def _plan_gpus(args: argparse.Namespace, config: dict) -> tuple[int, int]:
    """(GPUs to plan for, GPUs per training job): the options, else this machine's slots."""
    from harness.workflow import gpus

    per_job = args.gpus_per_job or config["gpus_per_job"]
    total = args.gpus if args.gpus is not None else max(len(gpus.resolve_devices(config["gpus"]) or []), 1)
    if total < 1 or per_job < 1 or per_job > total:
        raise ConfigError(f"--gpus {total} and --gpus-per-job {per_job} must be >= 1 with "
                          f"--gpus-per-job <= --gpus")
    return total, per_job


def _step_times(args: argparse.Namespace, needed: list) -> dict:
    """The step times of ``needed``: from --step-times files, the rest measured here."""
    import torch

    from harness.workflow import step_times

    times = {}
    for path in args.step_times:
        times.update(step_times.read_step_times(path))
    missing = [c for c in needed if c not in times]
    if missing and args.no_measure:
        raise ConfigError(f"{len(missing)} step configurations are not in --step-times (first: "
                          f"{missing[0].label}); drop --no-measure to measure them here")
    if missing:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
        if device == "cpu":
            torch.set_num_threads(args.threads)
        reduce_to = None if device.startswith("cuda") and not args.reduce else (args.max_side, args.max_batch)
        if args.clock == "cpu" and device.startswith("cuda"):
            raise ConfigError("--clock cpu does not see GPU time; use --clock wall on a GPU")
        times.update(step_times.measure_step_times(missing, device=device, reduce_to=reduce_to,
                                                   warmup=args.warmup, repeats=args.repeats,
                                                   clock=args.clock, cpu_memory_gb=args.cpu_memory_gb))
    return {c: times[c] for c in needed}


def _cmd_grid_plan(args: argparse.Namespace) -> int:
    from harness.workflow import grid, plan, rules

    config, datasets = _load_grid_config(args)
    plans = grid.check_config(config)
    grid.check_names(plans, datasets)
    total_gpus, per_job = _plan_gpus(args, config)
    if args.record:
        from harness.io import ensure_writable_dir

        ensure_writable_dir(Path(args.record).parent)
    jobs = [job for name in datasets for job in plan.training_jobs(plans[name])]
    times = _step_times(args, list(dict.fromkeys(job.step for job in jobs)))
    if args.record:
        from harness.workflow.step_times import write_step_times

        write_step_times(args.record, times)
    costs, unpriced = [], {}
    for name in datasets:
        costs += plan.rule_costs(name, [j for j in jobs if j.step.dataset == name], times, per_job)
        for rule, n in rules.job_counts(config, [name]).items():
            if rule not in plan.TRAINING_RULES:
                unpriced[(name, rule)] = n
    wall = {job.run: plan.job_hours(job, times, per_job)[1] for job in jobs}
    makespan = plan.makespan_hours(jobs, wall, total_gpus // per_job)
    n_preset = sum(job.has_options for job in jobs)
    sys.stdout.write(plan.render(costs, unpriced, times, total_gpus, per_job, makespan, n_preset))
    if args.detail:
        sys.stdout.write("\n" + "\n".join(plan.detail_lines(jobs, times)) + "\n")
    return 0


def _cmd_gpu_run(args: argparse.Namespace) -> int:
    from harness.workflow import gpus

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigError("gpu run needs a command after `--`, e.g. gpu run --devices 0,1 -- python -m "
                          "harness train ...")
    pool = [d for d in args.devices.split(",") if d]
    if not pool:
        raise ConfigError("gpu run --devices is empty; list device ids (0,1,...) or run the command directly")
    lock_dir = Path(args.lock_dir) if args.lock_dir else gpus.default_lock_dir()
    return gpus.run_on_devices(command, pool, args.count, lock_dir, args.label or " ".join(command))


def _cmd_gpu_status(args: argparse.Namespace) -> int:
    import yaml

    from harness.workflow import gpus, grid

    config = grid.load_workflow_config(args.config)
    spec = yaml.safe_load(args.gpus) if args.gpus is not None else config["gpus"]
    machine = gpus.detect_devices()
    pool = gpus.resolve_devices(spec, machine)
    lock_dir = Path(args.lock_dir) if args.lock_dir else gpus.default_lock_dir()
    lines = [f"machine: {len(machine)} GPU(s) {machine}"]
    if pool is None:
        lines.append(f"gpus={spec}: no local slots (the cluster assigns each job its devices)")
    else:
        busy = gpus.held_devices(pool, lock_dir)
        lines.append(f"gpus={args.gpus or spec}: {len(pool)} slot(s) {pool}; Snakemake runs GPU jobs while "
                     f"their devices fit in gpu={gpus.scheduler_limit(pool)}")
        lines.append(f"held now ({lock_dir}): {busy or 'none'}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _register_plan(grid_sub: argparse._SubParsersAction, default_config: str) -> None:
    plan = grid_sub.add_parser(
        "plan", help="jobs, iterations, GPU-hours and wall time per rule, before starting",
        description="Price the training jobs of the grid from step times measured here on the "
                    "real models (or read with --step-times).",
        epilog="""examples:
  python -m harness grid plan --datasets cityscapes --gpus 8
  python -m harness grid plan --datasets cityscapes --gpus 4 --gpus-per-job 2 \\
      --step-times results/step_times.csv --no-measure""")
    plan.add_argument("--config", default=default_config, help="workflow config")
    plan.add_argument("--datasets", nargs="*", default=None, help="default: the config's default_datasets")
    plan.add_argument("--seeds", type=int, default=None, help="default: each dataset's seeds")
    plan.add_argument("--scale", choices=("full", "smoke"), default=None, help="default: the config's scale")
    plan.add_argument("--gpus", type=int, default=None,
                      help="GPUs of the box to plan for (default: this machine's slots, at least 1)")
    plan.add_argument("--gpus-per-job", type=int, default=None, help="default: the config's gpus_per_job")
    plan.add_argument("--step-times", nargs="*", default=[], metavar="CSV",
                      help="step times from `grid plan --record` or a `harness bench` cost table; "
                           "configurations not in them are measured")
    plan.add_argument("--no-measure", action="store_true", help="refuse to measure (all from --step-times)")
    plan.add_argument("--record", metavar="CSV", help="write the step times the plan used")
    plan.add_argument("--detail", action="store_true",
                      help="also list every step configuration with its jobs and GPU-hours")
    plan.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    plan.add_argument("--reduce", action="store_true",
                      help="measure at a reduced crop and batch on a GPU too (always on CPU)")
    plan.add_argument("--max-side", type=int, default=128,
                      help="reduced crop: its longer side (default 128)")
    plan.add_argument("--max-batch", type=int, default=2, help="reduced batch (default 2)")
    plan.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration")
    plan.add_argument("--repeats", type=int, default=3, help="timed steps (their median is kept)")
    plan.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
    plan.add_argument("--cpu-memory-gb", type=float, default=6.0,
                      help="memory the measurement may add on a CPU; a configuration needing more "
                           "is priced as its pair's slowest (default 6)")
    plan.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                      help="cpu: CPU seconds of the process (a CPU shared with other jobs; use "
                           "with --threads 1)")
    plan.set_defaults(func=_cmd_grid_plan)


def _register_gpu(subparsers: argparse._SubParsersAction, default_config: str) -> None:
    gpu = subparsers.add_parser("gpu", help="GPU slots of the workflow's jobs")
    sub = gpu.add_subparsers(dest="gpu_command", metavar="WHAT", required=True)
    run = sub.add_parser("run", help="run a command on free devices (CUDA_VISIBLE_DEVICES)",
                         description="Take --count free devices of --devices (lock files), run "
                                     "the command with CUDA_VISIBLE_DEVICES set to them, exit with its "
                                     "status.",
                         epilog="""example:
  python -m harness gpu run --devices 0,1,2,3 --count 2 -- torchrun --standalone \\
      --nproc_per_node=2 -m harness train --out runs/s --set model.student=deeplabv3_r18""")
    run.add_argument("--devices", required=True, help="the slots, comma-separated (0,1,2,3)")
    run.add_argument("--count", type=int, default=1, help="devices this command needs")
    run.add_argument("--lock-dir", default=None, help="default .snakemake/gpu-slots/<host>")
    run.add_argument("--label", default=None, help="names the job in the journal (default: the command)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    run.set_defaults(func=_cmd_gpu_run)
    status = sub.add_parser("status", help="the machine's GPUs, the slots and which are held",
                            epilog="example:\n  python -m harness gpu status --gpus auto")
    status.add_argument("--config", default=default_config, help="the workflow config file")
    status.add_argument("--gpus", default=None, help="a value of the config key gpus (default: the config's)")
    status.add_argument("--lock-dir", default=None, help="default .snakemake/gpu-slots/<host>")
    status.set_defaults(func=_cmd_gpu_status)


def register(subparsers: argparse._SubParsersAction) -> None:
    grid_cmd = subparsers.add_parser("grid", help="the workflow's experiment grid")
    grid_sub = grid_cmd.add_subparsers(dest="grid_command", metavar="WHAT", required=True)
    check = grid_sub.add_parser("check", help="validate the workflow config and count its jobs",
                                epilog="""example:
  python -m harness grid check --datasets cityscapes voc ade20k --seeds 3""")
    from harness.workflow.grid import DEFAULT_CONFIG

    check.add_argument("--config", default=str(DEFAULT_CONFIG), help="the workflow config file")
    check.add_argument("--datasets", nargs="*", default=None, help="datasets to count (default: all)")
    check.add_argument("--seeds", type=int, default=None, help="override every dataset's seeds")
    check.add_argument("--scale", choices=("full", "smoke"), default=None, help="override the config's scale")
    check.set_defaults(func=_cmd_grid_check)
    _register_plan(grid_sub, str(DEFAULT_CONFIG))
    _register_gpu(subparsers, str(DEFAULT_CONFIG))
