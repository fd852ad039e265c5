"""The whole built-in grid at `scale=smoke`, end to end on CPU (a few iterations per run)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fixtures_workflow import ROOT, SNAKEMAKE, copy_workflow

from harness.report.tables import ABLATION_COLUMNS, SENSITIVITY_COLUMNS, TABLE_COLUMNS


@pytest.mark.slow
def test_smoke_grid_on_toycity_end_to_end(tmp_path: Path) -> None:
    copy_workflow(tmp_path)
    config = yaml.safe_load((ROOT / "workflow/config/config.yaml").read_text())
    config["scale"] = "smoke"
    config["threads"] = 1  # two one-thread jobs at once on two cores
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run([SNAKEMAKE, "--cores", "2", "--resources", "gpu=2", "--configfile", "smoke.yaml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    results = tmp_path / "results/smoke"
    table = pd.read_csv(results / "table_toycity.csv")
    assert list(table.columns) == TABLE_COLUMNS
    toy = config["datasets"]["toycity"]
    assert len(table) == len(toy["pairs"]) * len(toy["methods"])
    assert list(table.method[: len(toy["methods"])]) == list(toy["methods"])  # config order
    assert set(table.kind) == {"heterogeneous", "homogeneous"}
    for column in ("miou_mean", "delta", "teacher_miou", "overhead"):
        values = table[column] if column != "overhead" else table[table.method != "baseline"][column]
        assert values.map(math.isfinite).all(), column
    assert table.miou_mean.between(0, 100).all() and (table.n_seeds == 1).all()
    base = table[table.method == "baseline"].set_index("student").miou_mean
    for row in table.itertuples():
        assert row.delta == pytest.approx(row.miou_mean - base[row.student], abs=1e-3)
    assert (results / "table_toycity.md").read_text().startswith("| dataset")

    ablation = pd.read_csv(results / "ablation_toycity.csv")
    assert list(ablation.columns) == ABLATION_COLUMNS
    assert len(ablation) == 2 * len(toy["ablation"]["presets"])  # two heterogeneous pairs
    assert ablation.miou_mean.map(math.isfinite).all()
    sensitivity = pd.read_csv(results / "sensitivity_toycity.csv")
    assert list(sensitivity.columns) == SENSITIVITY_COLUMNS
    assert len(sensitivity) == 5 and sensitivity.is_default.sum() == 1  # 2 x 2 grid + the default
    cka = pd.read_csv(results / "cka_toycity.csv")
    assert cka.cka.between(0, 1 + 1e-6).all() and set(cka.kind) == {"heterogeneous", "homogeneous"}
    for name in ("ablation", "sensitivity", "cka", "qualitative"):
        assert (results / f"{name}_toycity.png").read_bytes()[:4] == b"\x89PNG"

    compare = subprocess.run([sys.executable, "-m", "harness", "compare", str(results / "table_toycity.csv")],
                             capture_output=True, text=True, cwd=tmp_path)
    assert compare.returncode == 0 and "0 of 18 rows of toycity" in compare.stdout

    # nothing to do on a second call: params/inputs unchanged
    again = subprocess.run([SNAKEMAKE, "-n", "--configfile", "smoke.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
