"""Project-level invariants: packaging files agree, the registry behaves."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from harness.registry import Registry, UnknownNameError

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_pins_the_same_torch_pair_as_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {d.split("==")[0]: d.split("==")[1] for d in deps if "==" in d}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = {d.split("==")[0]: d.split("==")[1] for d in pip_section if "==" in d}
    assert env_pins == {k: pinned[k] for k in ("torch", "torchvision")}
    # and the rest comes from pyproject itself, with the test extra
    assert "-e .[test]" in pip_section


def test_makefile_installs_the_pyproject_torch_pair():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    makefile = (ROOT / "Makefile").read_text()
    for name in ("torch", "torchvision"):
        pin = next(d for d in deps if d.startswith(name + "=="))
        assert pin in makefile


def test_registry_rejects_duplicates_and_lists_valid_names():
    reg: Registry = Registry("widget")
    reg.register("alpha")(int)
    reg.register("beta")(float)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(str)
    with pytest.raises(UnknownNameError) as info:
        reg.get("gamma")
    assert str(info.value) == "unknown widget 'gamma'; valid names: alpha, beta"
    assert reg.get("beta") is float and len(reg) == 2 and "alpha" in reg


def test_registry_rejects_names_that_would_not_work_as_paths():
    reg: Registry = Registry("widget")
    with pytest.raises(ValueError):
        reg.register("Has-Caps")
