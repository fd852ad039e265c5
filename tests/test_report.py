"""Report layer: tables, ablation, sensitivity, published results, CKA, figures, compare."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.errors import DataError
from harness.models.complexity import Complexity
from harness.report import cka, pivot, plots, published, tables
from harness.report.compare import compare_text
from harness.report.curves import build_curves
from harness.report.runs import load_run, load_runs

ROOT = Path(__file__).resolve().parents[1]
T, S = "deeplabv3_small", "segformer_tiny"


def write_run(folder: Path, *, miou: float, method: str, student: str = S, teacher: str | None = T,
              seed: int = 0, preset: str | None = None, options: dict | None = None,
              dataset: str = "toycity", protocol: str = "reference", terms: tuple[str, ...] = ()) -> Path:
    """A finished run folder as `python -m harness train` writes it (the keys the report reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {
        "miou": miou, "best_miou": miou, "method": method, "student": student,
        "teacher": None if method == "baseline" else teacher, "dataset": dataset, "seed": seed,
        "protocol": protocol,
        "config": {"method": {"name": method, "preset": preset, "options": options or {}}},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if terms:
        (folder / "log.csv").write_text("iteration,lr," + ",".join(terms) + ",total\n1,0.1,"
                                        + ",".join("0.5" for _ in terms) + ",1.0\n")
    return folder


@pytest.fixture
def grid_runs(tmp_path: Path) -> list[Path]:
    runs = []
    for seed, value in enumerate([50.0, 52.0, 54.0]):
        runs.append(write_run(tmp_path / f"base{seed}", miou=value, method="baseline", seed=seed))
    for seed, value in enumerate([53.0, 56.0, 56.0]):
        runs.append(write_run(tmp_path / f"kd{seed}", miou=value, method="kd", seed=seed,
                              terms=("loss_task", "loss_aux", "loss_kd", "loss_total")))
    runs.append(write_run(tmp_path / "cwd0", miou=51.0, method="cwd", seed=0, preset="cirkd",
                          terms=("loss_task", "loss_cwd_logits", "loss_cwd_feature")))
    return runs


def test_table_mean_std_delta_by_hand(tmp_path: Path, grid_runs: list[Path]) -> None:
    rec = tmp_path / "published.csv"
    rec.write_text("dataset,split,teacher,student,method,miou,source,note\n"
                   f"toycity,val,{T},{S},kd,60.5,a paper,\n"
                   f"toycity,val,{T},{S},baseline,58.0,a paper,\n"
                   f"toycity,val,,{T},teacher,80.0,a paper,\n")
    # cwd has the steady measurement (the method timed alone); kd only the full-step ratio
    cost = pd.DataFrame({"teacher": [T, T], "student": [S, S], "method": ["kd", "cwd"],
                         "preset": [None, "cirkd"], "overhead": [1.07, 0.46],
                         "overhead_alone": [float("nan"), 1.21]})
    sizes = {S: Complexity(0.44, 0.11, (64, 128)), T: Complexity(0.69, 0.52, (64, 128))}
    frame = tables.build_table(load_runs(grid_runs), [tables.PairSpec(T, S, "heterogeneous")],
                               ["baseline", "kd", "cwd"], teacher_miou={T: 70.0},
                               published=published.load_published(rec), cost=cost,
                               complexity=sizes.get, scale="smoke", pretrained_expected=True)
    assert list(frame.columns) == tables.TABLE_COLUMNS
    base, kd, cwd = (frame.iloc[i] for i in range(3))
    assert (base.method, base.miou_mean, base.miou_std, base.n_seeds, base.delta) == (
        "baseline", 52.0, 2.0, 3, 0.0)
    assert kd.miou_mean == pytest.approx(55.0)
    assert kd.miou_std == pytest.approx(math.sqrt(3.0))  # deviations -2, 1, 1 -> 6 / 2
    assert kd.delta == pytest.approx(3.0)
    assert kd.delta_std == pytest.approx(1.0)  # paired differences 3, 4, 2
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n)
    assert (kd.delta_lo, kd.delta_hi) == pytest.approx((3.0 - half, 3.0 + half), abs=1e-5)
    assert kd.mious == "53.0000 56.0000 56.0000"
    assert tables.per_seed(kd) == {0: 53.0, 1: 56.0, 2: 56.0}
    assert kd.seeds == "0 1 2" and kd.teacher_miou == 70.0 and kd.kind == "heterogeneous"
    assert (kd.published_miou, kd.published_source) == (60.5, "a paper")
    assert kd.published_teacher_miou == 80.0 and kd.overhead == pytest.approx(1.07)
    assert kd.published_delta == pytest.approx(2.5)  # 60.5 - 58.0
    assert kd.notes == "terms loss_kd; " + tables.RANDOM_INIT_NOTE
    sizes_back = (kd.student_params_m, kd.student_gflops, kd.teacher_params_m, kd.teacher_gflops)
    assert sizes_back == (0.44, 0.11, 0.69, 0.52)
    assert kd.flops_size == "64x128" and kd.scale == "smoke"
    assert math.isnan(base.overhead) and base.published_miou == 58.0 and math.isnan(base.published_delta)
    # one seed: no std, delta still the difference of means
    assert cwd.n_seeds == 1 and math.isnan(cwd.miou_std) and cwd.delta == pytest.approx(-1.0)
    assert math.isnan(cwd.delta_lo) and math.isnan(base.delta_lo)
    assert cwd.overhead == pytest.approx(1.21)
    assert cwd.notes.startswith("preset cirkd; terms loss_cwd_logits loss_cwd_feature; student from")
    assert math.isnan(cwd.published_delta)  # no published cwd figure

    out = tmp_path / "out" / "table_toycity.csv"
    tables.write_frame(frame, out)
    back = pd.read_csv(out)
    assert back.miou_std.iloc[1] == pytest.approx(1.7321) and math.isnan(back.miou_std.iloc[2])


def test_pivot_markdown_and_latex_by_hand(tmp_path: Path, grid_runs: list[Path]) -> None:
    sizes = {S: Complexity(0.44, 0.113, (64, 128)), T: Complexity(0.69, 0.52, (64, 128))}
    frame = tables.build_table(load_runs(grid_runs), [tables.PairSpec(T, S, "heterogeneous")],
                               ["baseline", "kd", "cwd"], teacher_miou={T: 70.0}, complexity=sizes.get)
    table = pivot.build_pivot(frame, {"kd": "KD", "cwd": "CWD"})
    assert table.header == ["teacher -> student", "kind", "params (M)", "GFLOPs", "n", "alone", "KD", "CWD"]
    assert table.rows == [
        [f"{T} (teacher)", "", "0.69", "0.52", "1", "70.00", "", ""],
        # kd: mean 55, std sqrt(3), delta +3 with paired std 1; cwd: one seed, delta -1
        # the kd delta's 95% interval [+0.52, +5.48] excludes 0: starred
        [f"{T} -> {S}", "hetero", "0.44", "0.113", "3", "52.00 ± 2.00", "55.00 ± 1.73 (+3.00 ± 1.00)*",
         "51.00 (-1.00) [n=1]"],
    ]
    markdown = pivot.to_markdown(table)
    assert markdown.splitlines()[0] == ("| teacher -> student | kind | params (M) | GFLOPs | n | alone | KD "
                                        "| CWD |")
    assert "mean ± std over n seeds" in markdown and "64x128" in markdown and "*: the 95%" in markdown
    latex = pivot.to_latex(table)
    assert r"deeplabv3\_small $\rightarrow$ segformer\_tiny & hetero" in latex
    assert r"55.00 $\pm$ 1.73 (+3.00 $\pm$ 1.00)*" in latex
    assert latex.count(r"\midrule") == 2 and latex.startswith(r"\begin{tabular}{llrrrrrr}")


def test_table_refuses_missing_cells_mixed_settings_and_protocols(tmp_path: Path, grid_runs) -> None:
    runs = load_runs(grid_runs)
    pair = [tables.PairSpec(T, S, "heterogeneous")]
    with pytest.raises(DataError, match="no runs of cirkd"):
        tables.build_table(runs, pair, ["baseline", "cirkd"], teacher_miou={})
    other = load_run(write_run(tmp_path / "kd_other", miou=1.0, method="kd", seed=5, options={"weight": 2.0}))
    with pytest.raises(DataError, match="mix settings"):
        tables.build_table(runs + [other], pair, ["baseline", "kd"], teacher_miou={})
    mmseg = load_run(write_run(tmp_path / "mm", miou=1.0, method="kd", seed=7, protocol="mmseg"))
    with pytest.raises(DataError, match="mix protocols"):
        tables.build_table(runs + [mmseg], pair, ["baseline", "kd"], teacher_miou={})


def test_load_run_refuses_bad_metrics(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_run(tmp_path / "nothing")
    bad = write_run(tmp_path / "bad", miou=130.0, method="kd")
    with pytest.raises(DataError, match=r"\[0, 100\]"):
        load_run(bad)
    (bad / "metrics.json").write_text('{"miou": 5')
    with pytest.raises(DataError, match="not valid JSON"):
        load_run(bad)


def test_ablation_by_hand(tmp_path: Path) -> None:
    runs = [write_run(tmp_path / "b0", miou=40.0, method="baseline"),
            write_run(tmp_path / "b1", miou=42.0, method="baseline", seed=1)]
    values = {"full": (45.0, 47.0), "no_kmm": (44.0, 44.0), "kd_only": (41.0, 43.0)}
    for preset, pair_values in values.items():
        for seed, value in enumerate(pair_values):
            runs.append(write_run(tmp_path / f"{preset}{seed}", miou=value, method="heteroakd",
                                  preset=preset, seed=seed))
    frame = tables.build_ablation(load_runs(runs), [tables.PairSpec(T, S, "heterogeneous")],
                                  "heteroakd", ["full", "no_kmm", "kd_only"], {"no_kmm": "w/o KMM"})
    assert list(frame.columns) == tables.ABLATION_COLUMNS
    assert list(frame.variant) == ["full", "no_kmm", "kd_only"]
    assert list(frame.label) == ["full", "w/o KMM", "kd_only"]
    # paired deltas: full 5, 5 -> std 0; no_kmm 4, 2 -> std sqrt(2); kd_only 1, 1 -> 0
    assert list(frame.delta_std) == pytest.approx([0.0, math.sqrt(2.0), 0.0])
    assert list(frame.miou_mean) == [46.0, 44.0, 42.0]
    assert frame.miou_std.iloc[0] == pytest.approx(math.sqrt(2.0)) and frame.miou_std.iloc[1] == 0.0
    assert list(frame.delta) == [5.0, 3.0, 1.0]  # baseline mean 41
    assert list(frame.delta_vs_full) == [0.0, -2.0, -4.0]
    assert list(frame.seeds) == ["0 1"] * 3 and frame.mious.iloc[0] == "45.0000 47.0000"
    png = tmp_path / "ablation.png"
    plots.ablation_figure(frame, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sensitivity_resolves_defaults_and_marks_them(tmp_path: Path) -> None:
    # KD's defaults are temperature 1, weight 1 (harness/methods/kd.py): the run without options
    # sits at (1, 1), where the grid also has a point -> that point is flagged as the default.
    runs = [write_run(tmp_path / "base", miou=50.0, method="baseline"),
            write_run(tmp_path / "default", miou=99.0, method="kd")]
    grid = {(1.0, 1.0): 52.0, (1.0, 4.0): 53.0, (2.0, 1.0): 49.0, (2.0, 4.0): 51.5}
    for (temperature, weight), value in grid.items():
        runs.append(write_run(tmp_path / f"t{temperature}w{weight}", miou=value, method="kd",
                              options={"temperature": temperature, "weight": weight}))
    frame = tables.build_sensitivity(load_runs(runs), tables.PairSpec(T, S), "kd", ("temperature", "weight"))
    assert list(frame.columns) == tables.SENSITIVITY_COLUMNS
    got = {(r.value1, r.value2): (r.miou_mean, r.delta, r.is_default) for r in frame.itertuples()}
    assert got == {(1.0, 1.0): (52.0, 2.0, True), (1.0, 4.0): (53.0, 3.0, False),
                   (2.0, 1.0): (49.0, -1.0, False), (2.0, 4.0): (51.5, 1.5, False)}
    assert (frame.baseline_miou == 50.0).all()
    png = tmp_path / "sens.png"
    plots.sensitivity_figure(frame, png)
    assert png.stat().st_size > 1000


def test_published_file_of_the_project_is_valid() -> None:
    frame = published.load_published(ROOT / "results/published/published_results.csv")
    assert len(frame) == 42 and frame.miou.between(0, 100).all() and (frame.source != "").all()
    found = published.lookup(frame, "cityscapes", "val", "segformer_b4", "deeplabv3_mbv2", "heteroakd")
    assert found[0] == 74.91
    assert published.lookup_teacher(frame, "cityscapes", "val", "deeplabv3_r101") == 78.07


@pytest.mark.parametrize("row, message", [
    ("cityscapes,val,a,b,kd,77.0,,", "empty source"),
    ("cityscapes,val,a,b,kd,120,src,", r"outside \[0, 100\]"),
    ("cityscapes,val,a,b,kd,high,src,", "not a number"),
    ("cityscapes,dev,a,b,kd,70,src,", "split 'dev'"),
    ("cityscapes,val,a,b,kd,70,src,\ncityscapes,val,a,b,kd,71,src2,", "more than one figure"),
])
def test_published_validation_rejects_bad_files(tmp_path: Path, row: str, message: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("dataset,split,teacher,student,method,miou,source,note\n" + row + "\n")
    with pytest.raises(DataError, match=message):
        published.load_published(bad)
    bad.write_text("dataset,teacher,student,method,miou,source\ncityscapes,a,b,kd,70,src\n")
    with pytest.raises(DataError, match="expected exactly"):
        published.load_published(bad)


def test_linear_cka_hand_value_and_invariances() -> None:
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    y = torch.tensor([[1.0], [3.0], [2.0], [4.0]])
    # one feature each: CKA is the squared correlation; centred dot 4, squared norms 5 and 5
    assert cka.linear_cka(x, y) == pytest.approx(16 / 25, abs=1e-12)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(300, 12, generator=gen)
    assert cka.linear_cka(feats, feats) == pytest.approx(1.0, abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=gen, dtype=torch.float64))
    other = torch.randn(300, 7, generator=gen)
    base = cka.linear_cka(feats, other)
    rotated = (feats.double() @ q) * 3.5 + 2.0  # orthogonal, isotropic scale, offset (centred away)
    assert cka.linear_cka(rotated, other) == pytest.approx(base, abs=1e-10)
    assert cka.linear_cka(feats, rotated) == pytest.approx(1.0, abs=1e-10)
    assert 0.0 < base < 0.2  # independent noise: little similarity
    with pytest.raises(ValueError):
        cka.linear_cka(feats, other[:10])


def test_stage_cka_pools_to_a_common_grid_and_is_one_for_the_same_model() -> None:
    gen = torch.Generator().manual_seed(1)
    cnn = [torch.randn(1, 8, 16, 32, generator=gen), torch.randn(1, 16, 8, 16, generator=gen)]
    vit = [torch.randn(1, 4, 16, 32, generator=gen), torch.randn(1, 6, 4, 8, generator=gen)]
    x, y = cka.paired_samples(cnn[1], vit[1])
    assert x.shape == (4 * 8, 16) and y.shape == (4 * 8, 6)
    matrix = cka.stage_cka([cnn, cnn], [cnn, cnn])
    assert matrix[0][0] == pytest.approx(1.0) and matrix[1][1] == pytest.approx(1.0)
    assert len(cka.stage_cka([cnn], [vit])) == 2


def test_cka_and_qualitative_figures_write_pngs(tmp_path: Path) -> None:
    frame = pd.DataFrame([
        {"dataset": "toycity", "teacher": "a", "student": "b", "kind": k, "teacher_stage": i,
         "student_stage": j, "cka": 0.1 * (i + j) + (0.3 if k == "homogeneous" else 0.0), "images": 8}
        for k in ("heterogeneous", "homogeneous") for i in range(4) for j in range(3)])
    plots.cka_figure(frame, tmp_path / "cka.png")
    image = np.random.default_rng(0).normal(size=(3, 8, 16))
    label = np.zeros((8, 16), dtype=np.int64)
    label[0, 0], label[1, 1] = 255, 2
    palette = ((10, 20, 30), (0, 0, 0), (255, 0, 51))
    rgb = plots.colourise(label, palette, ignore_colour=(224, 224, 192))
    assert rgb.shape == (8, 16, 3)
    assert rgb[0, 0].tolist() == pytest.approx([224 / 255, 224 / 255, 192 / 255])
    assert rgb[1, 1].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert rgb[2, 2].tolist() == pytest.approx([10 / 255, 20 / 255, 30 / 255])
    shown = plots.display_image(image)
    assert shown.min() == 0.0 and shown.max() == 1.0
    plots.qualitative_figure([shown], [label], {"teacher": [label], "kd": [label]}, ("a", "b", "c"), palette,
                             tmp_path / "q.png")
    for name in ("cka.png", "q.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_text_colour_contrasts_with_the_cell() -> None:
    assert plots.text_colour((1.0, 1.0, 1.0)) == "black" and plots.text_colour((0.0, 0.0, 0.3)) == "white"
    assert plots.text_colour((1.0, 1.0, 0.0)) == "black"  # yellow: luminance 0.93


def test_official_palettes_have_one_colour_per_class() -> None:
    from harness.data import DATASETS

    for name in DATASETS.names():
        cls = DATASETS.get(name)
        assert len(cls.palette) == cls.num_classes == len(cls.class_names), name
        assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in cls.palette), name
    # spot checks against the published colour tables
    assert DATASETS.get("cityscapes").palette[0] == (128, 64, 128)  # road
    assert DATASETS.get("cityscapes").palette[18] == (119, 11, 32)  # bicycle
    voc = DATASETS.get("voc").palette
    assert voc[:4] == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)) and voc[15] == (192, 128, 128)
    ade = DATASETS.get("ade20k").palette
    assert ade[0] == (120, 120, 120) and ade[149] == (92, 0, 255) and len(set(ade)) >= 140


def _write_log(folder: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(folder / "log.csv", index=False)


def test_curves_bin_losses_and_keep_evaluations(tmp_path: Path) -> None:
    base = write_run(tmp_path / "b0", miou=40.0, method="baseline")
    kd = write_run(tmp_path / "kd0", miou=42.0, method="kd")
    _write_log(base, [{"iteration": i, "lr": 0.1, "loss_task": float(i), "loss_aux": 1.0,
                       "loss_total": float(i) + 1.0, "val_miou": 30.0 if i == 4 else None}
                      for i in range(1, 5)])
    _write_log(kd, [{"iteration": i, "lr": 0.1, "loss_task": 2.0, "loss_kd": 0.5 * i,
                     "loss_total": 2.0 + 0.5 * i} for i in range(1, 5)])
    frame = build_curves(load_runs([base, kd]), [tables.PairSpec(T, S)], ["baseline", "kd"], bins=2)
    got = {(r.method, r.term, r.iteration): r.value for r in frame.itertuples()}
    # two bins of two iterations, labelled by their last iteration; aux is not a method term
    assert got == {("baseline", "loss_task", 2): 1.5, ("baseline", "loss_task", 4): 3.5,
                   ("baseline", "val_miou", 4): 30.0,
                   ("kd", "loss_task", 2): 2.0, ("kd", "loss_task", 4): 2.0,
                   ("kd", "loss_distill", 2): 0.75, ("kd", "loss_distill", 4): 1.75}
    plots.curves_figure(frame, tmp_path / "curves.png", {"kd": "KD"})
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    (kd / "log.csv").unlink()
    with pytest.raises(DataError, match="log.csv does not exist"):
        build_curves(load_runs([base, kd]), [tables.PairSpec(T, S)], ["baseline", "kd"])


def test_compare_prints_ours_beside_published(tmp_path: Path) -> None:
    frame = pd.DataFrame([
        {"dataset": "cityscapes", "teacher": "segformer_b4", "student": "deeplabv3_mbv2",
         "method": "baseline", "miou_mean": 69.0, "miou_std": 0.2, "n_seeds": 3, "delta": 0.0,
         "delta_std": float("nan"), "published_miou": 73.92, "published_source": "HeteroAKD paper",
         "published_delta": float("nan"), "scale": "full", "iterations": 40000, "val_images": 500,
         "val_subset": False},
        {"dataset": "cityscapes", "teacher": "segformer_b4", "student": "deeplabv3_mbv2",
         "method": "heteroakd", "miou_mean": 70.0, "miou_std": 0.5, "n_seeds": 3, "delta": 1.0,
         "delta_std": 0.25, "published_miou": 74.91, "published_source": "HeteroAKD paper",
         "published_delta": 0.99, "scale": "full", "iterations": 40000, "val_images": 500,
         "val_subset": False},
        {"dataset": "cityscapes", "teacher": "segformer_b4", "student": "deeplabv3_mbv2",
         "method": "kd", "miou_mean": 69.0, "miou_std": float("nan"), "n_seeds": 1, "delta": 0.5,
         "delta_std": float("nan"), "published_miou": float("nan"), "published_source": float("nan"),
         "published_delta": float("nan"), "scale": "full", "iterations": 40000, "val_images": 500,
         "val_subset": False}])
    table = tmp_path / "table.csv"
    frame.to_csv(table, index=False)
    text = compare_text(table)
    lines = text.splitlines()
    hetero = next(line for line in lines if "heteroakd" in line)
    assert "70.00 ± 0.50 (n=3)" in hetero and "+1.00 ± 0.25" in hetero and "74.91" in hetero
    assert "+0.99" in hetero and "-4.91" in hetero and "40000" in hetero and "500" in hetero
    assert "69.00 (n=1)" in text and "2 of 3 rows of cityscapes" in text and "!" not in text
    # smoke scale and a val subset are marked, and the marks explained
    frame["scale"], frame["val_subset"], frame["val_images"] = "smoke", True, 4
    frame.to_csv(table, index=False)
    text = compare_text(table)
    assert "(n=3) !" in text and "4 (subset)" in text and "not a result" in text
    # a dataset without published rows: ours only, no empty columns
    frame["published_miou"], frame["published_delta"] = float("nan"), float("nan")
    frame.to_csv(table, index=False)
    text = compare_text(table)
    assert "published" not in text.splitlines()[0] and "no published figures for cityscapes" in text
    with pytest.raises(DataError, match="does not exist"):
        compare_text(tmp_path / "missing.csv")


@pytest.fixture
def reading_runs(tmp_path: Path, grid_runs: list[Path]) -> list[Path]:
    """Beside grid_runs (baseline 50/52/54, kd 53/56/56): heteroakd full and two readings."""
    runs = [p for p in grid_runs if not p.name.startswith("cwd")]
    values = {"default": ({}, [51.0, 53.0, 55.0]),
              "pixel": ({"kem_form": "pixel"}, [54.0, 57.0, 58.0]),
              "stage": ({"stages": [-2]}, [50.0, 52.0, 54.0])}
    for name, (options, mious) in values.items():
        for seed, value in enumerate(mious):
            runs.append(write_run(tmp_path / f"{name}{seed}", miou=value, method="heteroakd",
                                  preset="full", options=options, seed=seed))
    return runs


def test_readings_paired_deltas_by_hand(reading_runs: list[Path], tmp_path: Path) -> None:
    from harness.report import readings

    frame = readings.build_readings(
        load_runs(reading_runs), [tables.PairSpec(T, S, "heterogeneous")], "heteroakd",
        [{}, {"kem_form": "pixel"}, {"stages": [-2]}], preset="full")
    assert list(frame.columns) == readings.READINGS_COLUMNS
    assert list(frame.reading) == ["default", "kem_form=pixel", "stages=[-2]"]
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2) / sqrt(3): s = 1 below
    default, pixel, stage = (frame.iloc[i] for i in range(3))
    # default - baseline: 1, 1, 1 (a zero-width interval); - kd: -2, -3, -1
    assert (default.delta_student, default.student_lo, default.n_student) == (1.0, 1.0, 3)
    assert (default.reference_lo, default.reference_hi) == pytest.approx((-2 - half, -2 + half),
                                                                         abs=1e-5)
    assert pixel.delta_student == pytest.approx(13 / 3) and pixel.mious == "54.0000 57.0000 58.0000"
    assert pixel.delta_reference == pytest.approx(4 / 3)  # 1, 1, 2
    assert (stage.delta_student, stage.delta_reference) == (0.0, -3.0)  # -3, -4, -2 vs kd
    md = readings.readings_markdown(frame)
    assert "| stages=[-2] " in md and "-3.00 [-5.48, -0.52] *" in md
    assert "+1.33 [-0.10, +2.77] " in md and "+1.33 [-0.10, +2.77] *" not in md  # spans 0
    png = tmp_path / "readings.png"
    plots.readings_figure(frame, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError, match="no runs of heteroakd with options {'kem_form': 'binary'}"):
        readings.build_readings(load_runs(reading_runs), [tables.PairSpec(T, S)], "heteroakd",
                                [{"kem_form": "binary"}], preset="full")


def test_readings_command(reading_runs: list[Path], tmp_path: Path) -> None:
    from harness.cli import main

    out = tmp_path / "res" / "readings_toycity.csv"
    args = ["report", "readings", *map(str, reading_runs), "--pairs", f"{T}:{S}:heterogeneous",
            "--method", "heteroakd", "--preset", "full", "--reading", "{}",
            "--reading", "{kem_form: pixel}", "--out", str(out)]
    assert main(args) == 0
    back = pd.read_csv(out)
    assert list(back.reading) == ["default", "kem_form=pixel"]
    assert back.delta_reference.iloc[1] == pytest.approx(4 / 3, abs=1e-4)
    assert out.with_suffix(".png").is_file() and out.with_suffix(".md").is_file()
    bad = tmp_path / "bad" / "readings.csv"
    assert main([*args[:-1], str(bad), "--reading", "kem_form pixel"]) == 2
    assert not bad.exists() and not bad.with_suffix(".png").exists()
