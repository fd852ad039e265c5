"""CLI: ``python -m harness grid check`` (validate the workflow config, count its jobs and parse
the command line of every one of them) and ``python -m harness gpu run|status`` (the GPU slots of
the workflow's jobs)."""
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
    _register_gpu(subparsers, str(DEFAULT_CONFIG))
