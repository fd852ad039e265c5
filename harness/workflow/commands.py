"""CLI: ``python -m harness grid check`` (validate the workflow config and count its jobs)."""
from __future__ import annotations

import argparse
import sys

from harness.errors import ConfigError


def _cmd_grid_check(args: argparse.Namespace) -> int:
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
    counts = grid.job_counts(config, datasets)
    grid.check_names(grid.check_config(config), datasets)
    grid.check_recorded(config)
    width = max(map(len, counts))
    lines = [f"{rule:<{width}}  {n}" for rule, n in counts.items()]
    lines.append(f"{'total':<{width}}  {sum(counts.values())}")
    sys.stdout.write(f"config {args.config} is valid; jobs for {', '.join(datasets)} from scratch:\n"
                     + "\n".join(lines) + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    grid_cmd = subparsers.add_parser("grid", help="the workflow's experiment grid")
    grid_sub = grid_cmd.add_subparsers(dest="grid_command", metavar="WHAT", required=True)
    check = grid_sub.add_parser("check", help="validate the workflow config and count its jobs")
    from harness.workflow.grid import DEFAULT_CONFIG

    check.add_argument("--config", default=str(DEFAULT_CONFIG))
    check.add_argument("--datasets", nargs="*", default=None)
    check.add_argument("--seeds", type=int, default=None)
    check.add_argument("--scale", choices=("full", "smoke"), default=None)
    check.set_defaults(func=_cmd_grid_check)
