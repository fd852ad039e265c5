"""``python -m harness <command> ...``: one entry point; each area registers its commands.

Every command module exposes ``register(subparsers)`` which adds its sub-parser(s) and sets
``func`` (a callable taking the parsed args and returning an exit code). Errors meant for users
(:class:`harness.errors.UserError`) print as one line on stderr and exit with status 2.
Every parser is a :class:`Parser`: ``--help`` prints each option's default and the command's
example (its ``epilog``), with the line breaks as written.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from harness import __version__
from harness.errors import UserError

# Order is the order of `python -m harness --help`.
COMMAND_MODULES = (
    "harness.data.commands",  # data prepare / data check
    "harness.engine.commands",  # train / eval
    "harness.models.commands",  # models import
    "harness.bench.commands",  # bench
    "harness.report.commands",  # report ... / compare
    "harness.workflow.commands",  # grid check / grid plan / gpu run / gpu status
)

DESCRIPTION = ("Knowledge distillation for semantic segmentation across architectures: "
               "datasets, training, evaluation, cost benchmark, tables and figures.")
EPILOG = """examples:
  python -m harness data prepare toycity --root data/toycity
  python -m harness train --out runs/s --set model.student=segformer_tiny
  python -m harness report table runs/*/metrics.json --pairs deeplabv3_small:segformer_tiny \\
      --methods baseline,kd --out results/table.csv
`python -m harness COMMAND --help` shows a command's options, their defaults and an example."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples keep their line breaks; an option with a default shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        hidden = (default is None or default is False or default is argparse.SUPPRESS
                  or default == [] or action.required or not action.option_strings)
        if hidden or "%(default)" in text or "(default" in text:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose sub-parsers (and theirs) all use :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(parser_class: type[argparse.ArgumentParser] = Parser) -> argparse.ArgumentParser:
    """The parser of every command (``parser_class`` also builds the sub-parsers)."""
    parser = parser_class(prog="python -m harness", description=DESCRIPTION, epilog=EPILOG,
                          formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # that area has no commands yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C: one line (the engine says where a run resumes)
        print(f"interrupted: {err}" if str(err) else "interrupted", file=sys.stderr)
        return 130
