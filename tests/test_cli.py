"""The command line as a user meets it: --version, every command's --help (defaults, an example,
plain text), and the one pair syntax."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import __version__
from harness.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(path, parser) of every leaf command, e.g. (("report", "table"), parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, child in subs[0].choices.items():
        yield from _commands(child, prefix + (name,))


LEAVES = list(_commands(build_parser()))


def test_version_prints_the_package_version() -> None:
    result = subprocess.run([sys.executable, "-m", "harness", "--version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"harness {__version__}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'version = {attr = "harness.__version__"}' in pyproject  # one place for the version


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"train", "eval", "bench", "compare", "grid check", "data prepare", "report table",
            "report cka", "report qualitative", "report curves"} <= names


@pytest.mark.parametrize("path, parser", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_help_shows_an_example_and_defaults_in_plain_text(path, parser) -> None:
    text = parser.format_help()
    assert re.search(r"^examples?\b", text, re.M), f"{path}: no example in --help"
    assert f"python -m harness {' '.join(path)}" in text.split("example", 1)[1]
    assert "``" not in text and ":class:" not in text and ":func:" not in text, f"{path}: RST markup"
    flat = " ".join(text.split())
    for action in parser._actions:
        default = action.default
        if not action.option_strings or action.required or default is None or default is False \
                or default is argparse.SUPPRESS or default == []:
            continue
        assert f"(default: {default})" in flat or "(default" in (action.help or ""), (path, action.dest)


def test_top_level_help_has_examples_and_no_markup() -> None:
    text = build_parser().format_help()
    assert "python -m harness train" in text and "``" not in text and "--version" in text


def test_pair_syntax_is_the_same_everywhere() -> None:
    """TEACHER:STUDENT[:KIND] for every --pair/--pairs of every command."""
    for path, parser in LEAVES:
        for action in parser._actions:
            if action.dest in ("pair", "pairs"):
                assert re.fullmatch(r"TEACHER(_MODEL)?:STUDENT(_MODEL)?(\[:KIND\])?", str(action.metavar)), (
                    path, action.metavar)


def test_grid_check_warns_loudly_about_random_weights(tmp_path: Path, capsys) -> None:
    import yaml

    from harness.cli import main

    assert main(["grid", "check", "--datasets", "cityscapes", "toycity"]) == 0
    err = capsys.readouterr().err
    assert "WARNING cityscapes: students deeplabv3_r18, deeplabv3_mbv2, segformer_b0 train from random" in err
    assert "WARNING cityscapes: teachers segformer_b4, deeplabv3_r101 are trained here" in err
    assert "toycity" not in err  # the built-in demo trains from scratch by design
    config = yaml.safe_load((ROOT / "workflow/config/config.yaml").read_text())
    config["pretrained"] = {m: "/w.pth" for m in ("deeplabv3_r18", "deeplabv3_mbv2", "segformer_b0")}
    config["datasets"]["cityscapes"]["teachers"] = {"segformer_b4": {"model": "/t"},
                                                    "deeplabv3_r101": {"model": "/t2"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["grid", "check", "--config", str(tmp_path / "c.yaml"), "--datasets", "cityscapes"]) == 0
    assert "WARNING" not in capsys.readouterr().err
