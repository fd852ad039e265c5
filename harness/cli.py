"""``python -m harness <command> ...``: one entry point; each area registers its commands.

Every command module exposes ``register(subparsers)`` which adds its sub-parser(s) and sets
``func`` (a callable taking the parsed args and returning an exit code). Errors meant for users
(:class:`harness.errors.UserError`) print as one line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from harness.errors import UserError

# Order is the order of `python -m harness --help`.
COMMAND_MODULES = (
    "harness.data.commands",  # data prepare / data check
    "harness.engine.commands",  # train / eval
    "harness.models.commands",  # models import
    "harness.bench.commands",  # bench
    "harness.report.commands",  # report ... / compare
    "harness.workflow.commands",  # grid check / gpu run / gpu status
)


def build_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
                 ) -> argparse.ArgumentParser:
    """The parser of every command (``parser_class`` also builds the sub-parsers)."""
    parser = parser_class(prog="python -m harness", description=__doc__.splitlines()[0])
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
