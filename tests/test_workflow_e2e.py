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

from harness.report.claims import CLAIMS_OUT_COLUMNS, load_claims
from harness.report.readings import READINGS_COLUMNS, reading_label
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
    pivot = (results / "table_toycity.md").read_text()
    assert pivot.startswith("| teacher -> student | kind | params (M) | GFLOPs | n | alone |")
    assert "deeplabv3_small (teacher)" in pivot and "scale smoke" in pivot
    assert (results / "table_toycity.tex").read_text().startswith(r"\begin{tabular}")
    assert (table.scale == "smoke").all() and table.student_gflops.map(math.isfinite).all()

    ablation = pd.read_csv(results / "ablation_toycity.csv")
    assert list(ablation.columns) == ABLATION_COLUMNS
    assert len(ablation) == 2 * len(toy["ablation"]["presets"])  # two heterogeneous pairs
    assert ablation.miou_mean.map(math.isfinite).all()
    sensitivity = pd.read_csv(results / "sensitivity_toycity.csv")
    assert list(sensitivity.columns) == SENSITIVITY_COLUMNS
    assert len(sensitivity) == 5 and sensitivity.is_default.sum() == 1  # 2 x 2 grid + the default
    cka = pd.read_csv(results / "cka_toycity.csv")
    assert cka.cka.between(0, 1 + 1e-6).all() and set(cka.kind) == {"heterogeneous", "homogeneous"}
    assert len(cka) == 3 * 4 * 4  # three pairs, every teacher stage x student stage
    curves = pd.read_csv(results / "curves_toycity.csv")
    assert set(curves.term) == {"loss_task", "loss_distill", "val_miou"}
    assert set(curves.method) == set(toy["methods"]) and curves.value.map(math.isfinite).all()
    assert set(cka.seed) == {0}
    for name in ("ablation", "sensitivity", "readings", "cka", "qualitative", "curves"):
        assert (results / f"{name}_toycity.png").read_bytes()[:4] == b"\x89PNG"

    readings = pd.read_csv(results / "readings_toycity.csv")
    assert list(readings.columns) == READINGS_COLUMNS
    labels = ["default", *map(reading_label, toy["readings"]["options"])]
    assert list(readings.reading) == labels * 2  # both heterogeneous pairs
    assert readings.delta_student.map(math.isfinite).all() and (readings.n_student == 1).all()
    assert readings.student_lo.isna().all()  # one seed: no interval
    claims = pd.read_csv(results / "claims_toycity.csv")
    assert list(claims.columns) == CLAIMS_OUT_COLUMNS
    assert set(claims.claim) == set(load_claims(ROOT / config["claims"]).claim)
    assert set(claims.verdict) == {"inconclusive"} and (claims.n <= 1).all()  # 1 seed < 3
    assert (results / "claims_toycity.md").read_text().startswith("# The seed paper's claims")
    compare = subprocess.run([sys.executable, "-m", "harness", "compare", str(results / "table_toycity.csv")],
                             capture_output=True, text=True, cwd=tmp_path)
    assert compare.returncode == 0 and "no published figures for toycity" in compare.stdout
    assert "not a result" in compare.stdout  # smoke scale is said

    # the README's report command, on this workspace
    report = subprocess.run([SNAKEMAKE, "--report", "report.html", "--configfile", "smoke.yaml"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert "claims_toycity.csv" in html and "readings_toycity.png" in html

    # nothing to do on a second call: params/inputs unchanged
    again = subprocess.run([SNAKEMAKE, "-n", "--configfile", "smoke.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr
