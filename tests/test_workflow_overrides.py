"""`snakemake --config` overrides: nested values arrive as strings and are re-typed by the schema."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml
from fixtures_workflow import ROOT
from snakemake.cli import parse_config
from snakemake.utils import update_config

from harness.workflow.grid import load_schema, validate_schema
from harness.workflow.overrides import coerce_config

CONFIG = yaml.safe_load((ROOT / "workflow/config/config.yaml").read_text())


def overridden(*entries: str) -> dict:
    """The config as the Snakefile sees it: the file, then --config merged over it (snakemake's own
    parser and merge), then coerced."""
    config = copy.deepcopy(CONFIG)
    update_config(config, parse_config(list(entries)))
    return coerce_config(config, load_schema())


def test_snakemake_passes_nested_values_as_strings() -> None:
    """The problem being fixed: without coercion the schema sees strings."""
    raw = parse_config(["datasets={cityscapes: {schedule: {crop: [128, 256]}}}"])
    assert raw["datasets"]["cityscapes"]["schedule"]["crop"] == ["128", "256"]


def test_nested_numbers_nulls_and_booleans_are_retyped() -> None:
    config = overridden(
        "datasets={cityscapes: {root: /data/cs, val_split: '1', schedule: {crop: [128, 256], workers: 0,"
        " optim: {cnn: {optimizer: sgd, lr: 1e-3}}}, teachers: {segformer_b4: {model: null}},"
        " run_overrides: {train.eval_every: 50}, generated: false}}",
        "check_roots=false", "seeds=2")
    cs = config["datasets"]["cityscapes"]
    assert cs["schedule"]["crop"] == [128, 256] and cs["schedule"]["workers"] == 0
    cnn = cs["schedule"]["optim"]["cnn"]
    assert cnn["lr"] == 0.001 and cnn["optimizer"] == "sgd"
    assert cs["teachers"]["segformer_b4"]["model"] is None
    assert cs["run_overrides"] == {"train.eval_every": 50} and cs["generated"] is False
    assert cs["root"] == "/data/cs" and cs["val_split"] == "1"  # string-only keys stay strings
    assert config["check_roots"] is False and config["seeds"] == 2
    validate_schema(config)  # what failed before: '128' is not of type 'integer'


def test_values_of_the_config_file_are_unchanged() -> None:
    assert overridden() == CONFIG


def test_snakefile_coerces_before_validating() -> None:
    text = (ROOT / "Snakefile").read_text()
    assert text.index("coerce_config(config") < text.index("validate(config")


def test_dry_run_with_a_nested_crop_override(tmp_path: Path) -> None:
    from test_workflow import snakemake

    result = snakemake("-n", "-p", "--forceall", "results/table_cityscapes.csv", "--config",
                       "check_roots=false", "datasets={cityscapes: {schedule: {crop: [128, 256]}}}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "data.crop=[128, 256]" in result.stdout
