"""The cost benchmark's wiring (not its speed): columns, finite ratios, the GPU path on CPU."""
from __future__ import annotations

import csv
import math
import time

import pytest
import torch

from harness.bench.cost import COLUMNS, CostConfig, resolve_preset, split_method, synthetic_batch
from harness.bench.pipeline import accumulator_throughput
from harness.bench.step import DistillStep, build_optimizer
from harness.bench.table import to_markdown
from harness.bench.timing import interleaved_medians
from harness.cli import main
from harness.engine.step import Precision
from harness.methods import build_distiller
from harness.models import build_model

NOISE = 0.15  # a cheap method's full step can time below the limit by cache/allocator noise


def test_cli_cost_table_has_every_column_and_finite_ratios(tmp_path):
    out = tmp_path / "cost_{dataset}.csv"
    code = main(["bench", "--dataset-classes", "5", "--crop", "32", "64", "--batch", "2",
                 "--warmup", "1", "--repeats", "3", "--threads", "1", "--isolate", "none",
                 "--clock", "cpu",  # CPU seconds: ratios survive the other jobs on this machine
                 "--pairs", "segformer_small:deeplabv3_tiny",
                 "--methods", "kd", "heteroakd:no_kem", "--out", str(out)])
    assert code == 0
    with open(tmp_path / "cost_k5.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == COLUMNS
    assert [(r["method"], r["preset"]) for r in rows] == [("kd", ""), ("heteroakd", "no_kem")]
    for row in rows:
        assert (row["dataset"], row["crop"], row["batch"], row["threads"]) == ("k5", "32x64", "2", "1")
        assert row["torch"] == torch.__version__ and row["device"] == "cpu"
        assert row["clock"] == "cpu"
        teacher, student, full = (float(row[k]) for k in ("teacher_fwd_ms", "student_step_ms",
                                                          "full_step_ms"))
        assert min(teacher, student, full) > 0
        assert float(row["method_ms"]) == pytest.approx(full - teacher - student, abs=2e-3)
        overhead = float(row["overhead"])
        assert math.isfinite(overhead) and overhead >= 1 - NOISE
        assert overhead == pytest.approx(full / (teacher + student), rel=1e-3)
        alone = float(row["method_alone_ms"])
        assert alone > 0 and float(row["overhead_alone"]) == pytest.approx(
            (teacher + student + alone) / (teacher + student), rel=1e-3)
        assert float(row["images_per_s"]) == pytest.approx(2 / (full / 1e3), rel=1e-3)
        assert float(row["peak_mem_mb"]) >= float(row["limit_peak_mem_mb"]) > 0
        assert row["mem_kind"] == "rss_cumulative"  # in-process on CPU: said, not hidden
        assert math.isfinite(float(row["method_gflops"]))
    assert int(rows[0]["method_params"]) == 0  # KD adds nothing trainable
    assert int(rows[1]["method_params"]) > 0  # HeteroAKD's projectors
    md = (tmp_path / "cost_k5.md").read_text().splitlines()
    assert md[0].startswith("| teacher | student | method |") and len(md) >= 4


def test_bad_pair_is_a_user_error_before_any_file(tmp_path, capsys):
    code = main(["bench", "--dataset-classes", "5", "--pairs", "resnet_nope:deeplabv3_tiny",
                 "--out", str(tmp_path / "c.csv")])
    assert code == 2
    assert "unknown model 'resnet_nope'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_gpu_path_wiring_runs_on_cpu():
    """bf16 autocast + channels_last (the CUDA defaults), forced on CPU: the step runs, the
    models compute in bf16, the loss terms stay float32 and finite."""
    assert Precision.resolve("auto", "auto", torch.device("cpu")) == Precision(False, False)
    assert Precision.resolve("auto", "auto", torch.device("cuda")) == Precision(True, True)
    precision = Precision.resolve("bf16", "on", torch.device("cpu"))
    torch.manual_seed(0)
    student, teacher = build_model("deeplabv3_tiny", 5), build_model("segformer_tiny", 5)
    distiller = build_distiller("kd", student.info, teacher.info)
    images, labels = synthetic_batch(2, (32, 64), 5, torch.Generator().manual_seed(0))
    step = DistillStep(student, teacher, distiller, images, labels, precision,
                       build_optimizer(student, distiller, "sgd", 0.01))
    assert step.images.is_contiguous(memory_format=torch.channels_last)
    conv = next(m for m in student.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with precision.autocast(step.device):
        assert student(step.images).logits.dtype == torch.bfloat16
    before = conv.weight.detach().clone()
    step.full_step()
    assert list(step.last_terms) == ["loss_task", "loss_aux", "loss_kd", "loss_total"]
    assert all(math.isfinite(v) for v in step.last_terms.values())
    assert not torch.equal(before, conv.weight.detach())  # the optimiser stepped


def test_synthetic_batch_shapes_and_labels():
    images, labels = synthetic_batch(3, (32, 64), 7, torch.Generator().manual_seed(1))
    assert images.shape == (3, 3, 32, 64) and labels.shape == (3, 32, 64)
    assert labels.dtype == torch.int64
    values = set(labels.unique().tolist())
    assert 255 in values and values - {255} <= set(range(7))
    # blocky: each 8x8 cell is one label
    assert torch.equal(labels[:, ::8, ::8].repeat_interleave(8, 1).repeat_interleave(8, 2), labels)


def test_method_specs_and_dataset_presets():
    assert split_method("heteroakd:no_kmm") == ("heteroakd", "no_kmm")
    assert split_method("kd") == ("kd", None)
    assert resolve_preset("cirkd", None, "toycity") == "toycity"  # the grid's own preset
    assert resolve_preset("cirkd", "voc", "toycity") == "voc"
    assert resolve_preset("kd", None, "toycity") is None


def test_interleaved_medians_order_and_values():
    calls: list[str] = []
    medians = interleaved_medians(
        {"a": lambda: calls.append("a"), "b": lambda: (calls.append("b"), time.sleep(0.02))},
        torch.device("cpu"), warmup=1, repeats=3)
    assert calls == ["a", "b"] * 4
    assert medians["b"] >= 0.02 > medians["a"]


def test_accumulator_throughput_is_positive():
    pixels_per_s = accumulator_throughput(5, (32, 64), repeats=3)
    assert math.isfinite(pixels_per_s) and pixels_per_s > 0


def test_markdown_table():
    text = to_markdown([{"a": 1, "b": 0.123456}, {"a": 2, "b": float("nan")}], ["a", "b"], ["n"])
    assert text == "| a | b |\n|---|---|\n| 1 | 0.1235 |\n| 2 | n/a |\n\n- n\n"


def test_fresh_process_isolation_reports_its_memory_kind():
    from harness.bench.cost import run_cost

    config = CostConfig(dataset="k5", num_classes=5, teacher="deeplabv3_tiny",
                        student="deeplabv3_tiny", method="kd", crop=(32, 64), batch=2, warmup=1,
                        repeats=3, threads=1, clock="cpu")
    (row,) = run_cost([config], isolate=True)
    assert row["mem_kind"] == "rss_fresh_process" and row["threads"] == 1
    assert row["peak_mem_mb"] >= row["limit_peak_mem_mb"] >= row["base_mem_mb"] > 0
    assert math.isfinite(row["overhead"]) and row["overhead"] >= 1 - NOISE
