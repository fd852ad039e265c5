"""End-to-end training on a tiny toycity: outputs and their keys, repeatability, NaN stop/skip,
forced bf16/channels_last on CPU, distillation with a teacher, and input checks that leave the
disk untouched."""
from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass

import pytest
import torch
import yaml

from harness.config import load_config, to_dict
from harness.engine import NonFiniteLossError, train
from harness.errors import CheckpointError, ConfigError, DataError, UserError
from harness.methods.base import METHODS, Distiller
from harness.methods.base import Options as BaseOptions
from harness.models import build_model, load_model, save_model

METRIC_KEYS = {"miou", "best_miou", "best_iteration", "per_class_iou", "pixel_accuracy", "iterations",
               "wall_time_s", "images_per_s", "peak_memory_mb", "trainable_params", "method_params",
               "method", "student", "teacher", "dataset", "seed", "protocol", "align_corners",
               "config", "teacher_model", "versions", "git_commit", "device"}


def tiny(root, *overrides):
    return load_config(None, [
        f"data.root={root}", "model.student=deeplabv3_tiny", "data.crop=[32, 32]", "data.batch_size=4",
        "data.workers=0", "train.iterations=4", "train.checkpoint_every=2", "train.eval_every=2",
        "train.threads=1", *overrides])


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A (random-weight) segformer_tiny teacher saved as a trained one would be."""
    folder = tmp_path_factory.mktemp("teacher") / "model"
    torch.manual_seed(0)
    save_model(build_model("segformer_tiny", 10), folder, {"dataset": "toycity", "miou": 12.5})
    return folder


def read_log(run):
    with open(run / "log.csv") as fh:
        return list(csv.DictReader(fh))


def test_outputs_present_with_documented_keys(toy_root, tmp_path):
    run = tmp_path / "run"
    config = tiny(toy_root)
    metrics = train(config, run)
    on_disk = json.loads((run / "metrics.json").read_text())
    assert METRIC_KEYS <= set(on_disk)
    assert on_disk["miou"] == pytest.approx(metrics["miou"])
    assert 0 <= on_disk["miou"] <= 100 and 0 <= on_disk["pixel_accuracy"] <= 100
    assert on_disk["best_miou"] >= on_disk["miou"] and on_disk["best_iteration"] in (2, 4)
    assert set(on_disk["per_class_iou"]) == {"sky", "building", "road", "sidewalk", "vegetation",
                                             "terrain", "pole", "sign", "person", "car"}
    assert on_disk["iterations"] == 4 and on_disk["seed"] == 0 and on_disk["teacher"] is None
    assert on_disk["teacher_model"] is None and on_disk["method"] == "baseline"
    # the reference protocol resizes logits with align_corners=True; the model folder records it
    assert on_disk["protocol"] == "reference" and on_disk["align_corners"] is True
    assert json.loads((run / "model" / "config.json").read_text())["align_corners"] is True
    student = build_model("deeplabv3_tiny", 10)
    assert on_disk["trainable_params"] == sum(p.numel() for p in student.parameters())
    assert on_disk["method_params"] == 0 and on_disk["images_per_s"] > 0
    assert set(on_disk["versions"]) >= {"python", "torch", "timm", "smp"}
    assert on_disk["config"] == to_dict(config)
    assert yaml.safe_load((run / "config.yaml").read_text()) == to_dict(config)
    rows = read_log(run)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]) == {"iteration", "lr", "loss_task", "loss_aux", "loss_total", "time_s", "val_miou"}
    assert [r["val_miou"] != "" for r in rows] == [False, True, False, True]  # eval_every=2
    for row in rows:  # total = task + 0.4 * aux term (already weighted)
        expected = float(row["loss_task"]) + float(row["loss_aux"])
        assert float(row["loss_total"]) == pytest.approx(expected, rel=1e-5)
    base = 0.02 * 4 / 16
    assert [float(r["lr"]) for r in rows] == pytest.approx([base * (1 - i / 4) ** 0.9 for i in range(4)])
    model, meta = load_model(run / "model", expect_name="deeplabv3_tiny", expect_num_classes=10,
                             expect_dataset="toycity")
    assert meta["miou"] == pytest.approx(metrics["miou"]) and meta["iterations"] == 4 and meta["seed"] == 0
    state = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    assert state["iteration"] == 4 and len(state["log_rows"]) == 4

    # the eval command reproduces the final mIoU from the saved model
    from harness.cli import main
    assert main(["eval", "--model", str(run), "--dataset", "toycity", "--root", str(toy_root),
                 "--out", str(tmp_path / "eval.json")]) == 0
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores["miou"] == pytest.approx(metrics["miou"], abs=1e-9)
    assert scores["per_class_iou"] == pytest.approx(metrics["per_class_iou"])
    assert scores["images"] == 4


def test_same_seed_repeats_and_other_seed_differs(toy_root, tmp_path):
    first = train(tiny(toy_root), tmp_path / "a")
    second = train(tiny(toy_root), tmp_path / "b")
    other = train(tiny(toy_root, "seed=1"), tmp_path / "c")
    for key in ("miou", "best_miou", "pixel_accuracy", "per_class_iou"):
        assert first[key] == second[key]
    losses = lambda run: [(r["loss_task"], r["loss_aux"]) for r in read_log(run)]  # noqa: E731
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")
    assert first["per_class_iou"] != other["per_class_iou"]


@dataclass(frozen=True)
class ProbeOptions(BaseOptions):
    bad_iteration: int = 3  # 1-based call at which the loss is NaN
    value: str = "nan"  # a string: float options must be finite and >= 0


@METHODS.register("nonfiniteprobe")
class NonFiniteProbe(Distiller):
    """Test method: a small trainable term that becomes non-finite at one iteration."""

    Options = ProbeOptions
    needs_teacher = False

    def __init__(self, student, teacher, options):
        super().__init__(student, teacher, options)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, out_s, out_t, labels):
        self.calls += 1
        term = 0.01 * self.scale * out_s.logits.float().pow(2).mean()
        if int(self.calls) == self.options.bad_iteration:
            term = term * float(self.options.value)
        return {"loss_probe": term}


def test_nonfinite_loss_stops_with_iteration_and_term_and_keeps_checkpoint(toy_root, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"loss_probe.*iteration 3.*last\.pt") as err:
        train(tiny(toy_root, "method.name=nonfiniteprobe"), run)
    assert isinstance(err.value, UserError)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 2  # the last good checkpoint is untouched
    assert all(torch.isfinite(v).all() for v in state["student"].values() if v.is_floating_point())
    assert not (run / "metrics.json").exists()


def test_nonfinite_loss_is_skipped_when_asked(toy_root, tmp_path):
    metrics = train(tiny(toy_root, "method.name=nonfiniteprobe", "method.options.value=inf",
                          "train.skip_nonfinite=true"), tmp_path / "run")
    assert metrics["skipped_batches"] == 1 and metrics["iterations"] == 4
    assert math.isfinite(metrics["miou"])
    rows = read_log(tmp_path / "run")
    assert [math.isfinite(float(r["loss_probe"])) for r in rows] == [True, True, False, True]
    # the distiller's parameter trained and stayed finite: the skipped step touched nothing
    model_state = torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)
    assert torch.isfinite(model_state["distiller"]["scale"]) and model_state["distiller"]["scale"] != 1


def test_forced_bf16_and_channels_last_run_on_cpu(toy_root, tmp_path):
    metrics = train(tiny(toy_root, "train.amp=bf16", "train.channels_last=on", "train.iterations=2",
                          "train.eval_every=0"), tmp_path / "run")
    assert metrics["amp"] == "bf16" and metrics["channels_last"] is True
    rows = read_log(tmp_path / "run")
    assert len(rows) == 2 and all(math.isfinite(float(r["loss_total"])) for r in rows)


def test_distillation_uses_teacher_and_trains_method_parameters(toy_root, tmp_path, teacher_dir):
    run = tmp_path / "run"
    metrics = train(tiny(toy_root, "method.name=heteroakd", "model.teacher=segformer_tiny",
                         f"model.teacher_model={teacher_dir.parent}", "train.iterations=2",
                         "train.eval_every=0"), run)
    digest = hashlib.sha256((teacher_dir / "model.safetensors").read_bytes()).hexdigest()
    assert metrics["teacher_model"] == {"path": str(teacher_dir), "sha256": digest,
                                             "dataset": "toycity", "miou": 12.5}
    assert metrics["teacher"] == "segformer_tiny" and metrics["method_params"] > 0
    columns = set(read_log(run)[0])
    assert {"loss_task", "loss_aux", "loss_total"} < columns and len(columns) > 6
    # method parameters moved (they are in the optimiser); the teacher file is not rewritten
    from harness.methods import build_distiller
    torch.manual_seed(0)
    state = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    assert set(state["distiller"]) == set(build_distiller(
        "heteroakd", build_model("deeplabv3_tiny", 10).info, build_model("segformer_tiny", 10).info
    ).state_dict())
    assert hashlib.sha256((teacher_dir / "model.safetensors").read_bytes()).hexdigest() == digest


def test_every_method_starts_the_same_student_and_random_stream(toy_root, tmp_path, teacher_dir):
    """Teacher loading and the method's modules draw from a side stream: the student's initial
    weights and the random draws after set-up are those of the baseline run with the same seed,
    so a table's delta compares runs that differ by the method alone."""
    from harness.engine.prepare import prepare_run
    from harness.engine.seeding import seed_everything

    starts = {}
    for method in ("baseline", "kd", "heteroakd", "cirkd", "afdcd"):
        extra = [] if method == "baseline" else [
            f"method.name={method}", "model.teacher=segformer_tiny",
            f"model.teacher_model={teacher_dir.parent}"]
        config = tiny(toy_root, *extra)
        seed_everything(config.seed)
        inputs = prepare_run(config, tmp_path / method)
        starts[method] = (inputs.student.state_dict(), torch.rand(4))
    baseline_state, baseline_draw = starts.pop("baseline")
    for method, (state, draw) in starts.items():
        assert torch.equal(draw, baseline_draw), method
        assert all(torch.equal(state[key], baseline_state[key]) for key in baseline_state), method
    seed_everything(1)
    other = prepare_run(tiny(toy_root, "seed=1"), tmp_path / "seed1").student.state_dict()
    assert not all(torch.equal(other[key], baseline_state[key]) for key in baseline_state)


@pytest.mark.parametrize("method", ["heteroakd", "afdcd"])
def test_benchmark_full_step_gives_the_terms_of_a_training_iteration(toy_root, tmp_path, teacher_dir,
                                                                      monkeypatch, method):
    """The cost benchmark times the step that trains: on the loop's first batch, the run's
    initial models and the random state the step started from (the student has dropout),
    ``DistillStep.full_step`` returns exactly the loss terms of log.csv row 1."""
    import copy

    from harness.bench.step import DistillStep, build_optimizer
    from harness.engine import loop
    from harness.engine.seeding import rng_state, set_rng_state
    from harness.engine.step import Precision

    seen = {}

    def spy_prepare(*args, **kwargs):
        inputs = real_prepare(*args, **kwargs)
        seen["models"] = copy.deepcopy((inputs.student, inputs.teacher, inputs.distiller))
        return inputs

    def spy_loader(*args, **kwargs):
        loader, sampler = real_loader(*args, **kwargs)

        class FirstBatchKept:
            def __iter__(self):
                for batch in loader:
                    if "batch" not in seen:  # workers=0: the sample's RNG use is undone
                        seen["batch"], seen["rng"] = batch, rng_state()
                    yield batch

        return FirstBatchKept(), sampler

    real_prepare, real_loader = loop.prepare_run, loop.build_train_loader
    monkeypatch.setattr(loop, "prepare_run", spy_prepare)
    monkeypatch.setattr(loop, "build_train_loader", spy_loader)
    config = tiny(toy_root, f"method.name={method}", "model.teacher=segformer_tiny",
                  f"model.teacher_model={teacher_dir.parent}", "train.iterations=1",
                  "train.eval_every=0")
    train(config, tmp_path / "run")
    row = read_log(tmp_path / "run")[0]
    logged = {k: float(v) for k, v in row.items() if k.startswith("loss_")}

    student, teacher, distiller = seen["models"]
    images, labels = seen["batch"]
    step = DistillStep(student, teacher, distiller, images, labels, Precision(False, False),
                       build_optimizer(student, distiller, "sgd", 0.01), config=config)
    set_rng_state(seen["rng"])
    step.full_step()
    assert {"loss_task", "loss_aux", "loss_total"} < set(logged)
    assert step.last_terms == logged  # same names, same order, bit-identical values


@pytest.fixture(scope="module")
def wrong_teachers(tmp_path_factory):
    base = tmp_path_factory.mktemp("wrong")
    save_model(build_model("segformer_tiny", 10), base / "other_dataset", {"dataset": "cityscapes"})
    save_model(build_model("segformer_tiny", 7), base / "other_classes", {"dataset": "toycity"})
    return base


@pytest.mark.parametrize("overrides, error, match", [
    (["data.name=camvid", "data.root={missing}"], DataError, "does not exist"),
    (["model.student=deeplabv3_huge"], ConfigError, "model.student"),
    (["method.name=magic"], ConfigError, "method.name"),
    (["data.name=mnist"], ConfigError, "data.name"),
    (["method.name=kd", "method.options.weight=-1"], ConfigError, r"method\.options\.weight"),
    (["method.name=kd", "method.options.temperature=.nan"], ConfigError, r"method\.options\.temperature"),
    (["method.name=kd", "method.options.weigth=1"], ConfigError, "weigth"),
    (["method.name=kd"], ConfigError, "needs a teacher"),
    (["method.name=kd", "model.teacher=deeplabv3_small", "model.teacher_model={teacher}"],
     CheckpointError, "segformer_tiny"),
    (["method.name=kd", "model.teacher=segformer_tiny", "model.teacher_model={wrong}/other_dataset"],
     CheckpointError, "cityscapes"),
    (["method.name=kd", "model.teacher=segformer_tiny", "model.teacher_model={wrong}/other_classes"],
     CheckpointError, "7 classes"),
    (["method.name=kd", "model.teacher=segformer_tiny", "model.teacher_model={wrong}/absent"],
     CheckpointError, "does not exist"),
])
def test_bad_inputs_raise_before_any_file_is_written(toy_root, tmp_path, teacher_dir, wrong_teachers,
                                                     overrides, error, match):
    filled = [o.format(missing=tmp_path / "nowhere", teacher=teacher_dir, wrong=wrong_teachers)
              for o in overrides]
    run = tmp_path / "run"
    with pytest.raises(error, match=match):
        train(tiny(toy_root, *filled), run)
    assert not run.exists()


def test_unwritable_output_folder_is_refused_up_front(toy_root, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot be written"):
        train(tiny(toy_root), blocker / "run")
    assert blocker.read_text() == "not a folder"


def test_cli_train_reports_user_errors_as_one_line(toy_root, tmp_path, capsys):
    from harness.cli import main

    code = main(["train", "--set", f"data.root={toy_root}", "--set", "train.lr=abc",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "train.lr" in err and "\n" not in err
    assert not (tmp_path / "run").exists()
