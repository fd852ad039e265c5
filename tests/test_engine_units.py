"""Engine pieces without a training run: scores from a confusion matrix, the lr schedule, the
task loss precision, the resumable sampler, and that the engine never names a method."""
import math
import re
from pathlib import Path

import pytest
import torch

from harness.config import TrainConfig, align_corners, load_config
from harness.engine.data import ResumableSampler
from harness.engine.distributed import DistContext, sync_batchnorm
from harness.engine.evaluate import confusion_matrix, predict_logits, scores_from_confusion
from harness.engine.optim import build_optimizer, poly_lr, scaled_lr, trainable_parameters
from harness.engine.task_loss import task_losses
from harness.errors import ConfigError
from harness.models.base import SegOutput


def test_confusion_matrix_counts_and_ignores():
    labels = torch.tensor([[0, 0, 1, 255], [2, 1, 1, 0]])
    pred = torch.tensor([[0, 1, 1, 2], [2, 1, 0, 0]])
    cm = confusion_matrix(pred, labels, 3)
    expected = torch.tensor([[2, 1, 0], [1, 2, 0], [0, 0, 1]])
    assert torch.equal(cm, expected)
    assert cm.sum() == 7  # the ignored pixel is not counted


def test_scores_from_hand_made_confusion():
    # rows = truth, cols = prediction
    cm = torch.tensor([[8, 2, 0], [1, 4, 0], [0, 0, 0]])
    scores = scores_from_confusion(cm, ["road", "car", "sign"])
    iou_road = 8 / (10 + 9 - 8)
    iou_car = 4 / (5 + 6 - 4)
    assert scores["per_class_iou"]["road"] == pytest.approx(100 * iou_road)
    assert scores["per_class_iou"]["car"] == pytest.approx(100 * iou_car)
    # 'sign' never appears nor is predicted: no IoU, left out of the mean (not a 0, not NaN)
    assert scores["per_class_iou"]["sign"] is None
    assert scores["absent_classes"] == ["sign"]
    assert scores["miou"] == pytest.approx(100 * (iou_road + iou_car) / 2)
    assert scores["pixel_accuracy"] == pytest.approx(100 * 12 / 15)


def test_predicted_but_absent_class_counts_as_zero():
    cm = torch.tensor([[3, 1], [0, 0]])  # class 1 never true but predicted once: IoU 0
    scores = scores_from_confusion(cm)
    assert scores["per_class_iou"] == {"0": pytest.approx(75.0), "1": 0.0}
    assert scores["miou"] == pytest.approx(37.5)


def test_poly_lr_values_and_linear_batch_scaling():
    train = TrainConfig(lr=0.02, lr_reference_batch=16)
    base = scaled_lr(train, 8)
    assert base == pytest.approx(0.01)
    assert poly_lr(base, 0, 100) == pytest.approx(0.01)
    assert poly_lr(base, 50, 100) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(base, 99, 100) == pytest.approx(0.01 * 0.01 ** 0.9)
    values = [poly_lr(base, i, 100) for i in range(100)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_linear_warmup_scales_the_poly_rate():
    # iteration i < W: (i + 1) / W of the poly rate; from W on, the poly rate itself
    assert poly_lr(0.01, 0, 100, warmup=4) == pytest.approx(0.01 * 0.25)
    assert poly_lr(0.01, 2, 100, warmup=4) == pytest.approx(0.01 * 0.75 * 0.98 ** 0.9)
    assert poly_lr(0.01, 3, 100, warmup=4) == pytest.approx(0.01 * 0.97 ** 0.9)
    assert poly_lr(0.01, 50, 100, warmup=4) == poly_lr(0.01, 50, 100)
    with pytest.raises(ConfigError, match="train.warmup_iterations must be >= 0"):
        load_config(overrides=["train.warmup_iterations=-1"])


def test_optimizer_takes_student_and_distiller_params_never_frozen_ones():
    student, projector, teacher = torch.nn.Linear(3, 4), torch.nn.Linear(4, 4), torch.nn.Linear(3, 4)
    teacher.requires_grad_(False)
    params = trainable_parameters(student, projector, teacher)
    assert len(params) == 4
    sgd = build_optimizer(TrainConfig(optimizer="sgd", momentum=0.9, weight_decay=1e-4), params, 0.1)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["weight_decay"] == 1e-4
    adamw = build_optimizer(TrainConfig(optimizer="adamw", weight_decay=0.01), params, 2e-4)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["lr"] == 2e-4
    assert adamw.defaults["fused"] is True


def test_task_loss_matches_cross_entropy_and_stays_float32_under_bf16():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    aux = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, 0, :] = 255
    out = SegOutput(logits=logits.bfloat16(), features=[], decoder_feature=logits, aux_logits=aux.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = task_losses(out, labels, aux_weight=0.4)
    assert all(t.dtype == torch.float32 for t in terms.values())
    up = torch.nn.functional.interpolate(logits.bfloat16().float(), size=(8, 8), mode="bilinear")
    expected = torch.nn.functional.cross_entropy(up, labels, ignore_index=255)
    assert terms["loss_task"].item() == pytest.approx(expected.item(), rel=1e-5)
    up_aux = torch.nn.functional.interpolate(aux.bfloat16().float(), size=(8, 8), mode="bilinear")
    assert terms["loss_aux"].item() == pytest.approx(
        0.4 * torch.nn.functional.cross_entropy(up_aux, labels, ignore_index=255).item(), rel=1e-5)


def _softplus_mean(values):
    return sum(math.log1p(math.exp(v)) for v in values) / len(values)


@pytest.mark.parametrize("align, upsampled", [(True, [0.0, 1.0, 2.0, 3.0]),
                                              (False, [0.0, 0.75, 2.25, 3.0])])
def test_task_loss_and_evaluation_resize_with_the_protocol_corner_alignment(align, upsampled):
    # class 0 logits (0, 3) on a 1x2 map, class 1 logits 0; every label is class 1, so each
    # pixel's CE is log(1 + exp(z_0)) of the upsampled class-0 logit
    logits = torch.tensor([[0.0, 3.0], [0.0, 0.0]]).view(1, 2, 1, 2)
    out = SegOutput(logits=logits, features=[], decoder_feature=logits)
    terms = task_losses(out, torch.ones(1, 1, 4, dtype=torch.long), 0.4, align_corners=align)
    assert terms["loss_task"].item() == pytest.approx(_softplus_mean(upsampled), rel=1e-6)
    model = lambda images: out  # noqa: E731 - a model whose output is fixed
    predicted = predict_logits(model, torch.zeros(1, 3, 1, 4), (1, 4), align_corners=align)
    assert predicted[0, 0, 0].tolist() == pytest.approx(upsampled)


def test_protocol_sets_align_corners_unless_the_run_overrides_it():
    assert align_corners(load_config(None, [])) is True  # the reference protocol (CIRKD, Af-DCD)
    assert align_corners(load_config(None, ["train.align_corners=false"])) is False
    with pytest.raises(ConfigError, match="protocol 'mmseg' is unknown; valid: reference"):
        load_config(None, ["protocol=mmseg"])


def test_sync_batchnorm_converts_student_and_method_modules_on_cuda_ddp_only():
    from harness.methods import build_distiller
    from harness.models.base import ModelInfo

    student_info = ModelInfo("s", "cnn", 3, (8, 16), (4, 8), 12, 8)
    teacher_info = ModelInfo("t", "transformer", 3, (16, 32), (4, 8), 20, 4)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    methods = [build_distiller(name, student_info, teacher_info) for name in ("cirkd", "heteroakd")]

    def norms(module):
        return [type(m).__name__ for m in module.modules() if "BatchNorm" in type(m).__name__]

    cuda_ddp = DistContext(rank=0, world_size=2, local_rank=0, device=torch.device("cuda"))
    cpu_ddp = DistContext(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    names = [sorted(m.state_dict()) for m in methods]
    assert sync_batchnorm(cpu_ddp, True, student, *methods) == (student, *methods)
    assert sync_batchnorm(cuda_ddp, False, student, *methods) == (student, *methods)
    converted = sync_batchnorm(cuda_ddp, True, student, *methods)
    assert all(norms(m) and set(norms(m)) == {"SyncBatchNorm"} for m in converted)
    assert [sorted(m.state_dict()) for m in converted[1:]] == names  # checkpoints still load


def test_task_loss_of_all_ignored_batch_is_zero_not_nan():
    out = SegOutput(logits=torch.randn(1, 3, 2, 2), features=[], decoder_feature=torch.zeros(1))
    terms = task_losses(out, torch.full((1, 4, 4), 255), aux_weight=0.4)
    assert terms == {"loss_task": torch.tensor(0.0)}


def test_sampler_is_seeded_sharded_and_resumes_mid_epoch():
    data = list(range(10))
    full = list(ResumableSampler(data, num_replicas=1, rank=0, seed=3))
    again = list(ResumableSampler(data, num_replicas=1, rank=0, seed=3))
    other = list(ResumableSampler(data, num_replicas=1, rank=0, seed=4))
    assert full == again and full != other
    assert sorted(i for i, _ in full) == data
    resumed = ResumableSampler(data, num_replicas=1, rank=0, seed=3)
    resumed.set_position(0, 4)
    assert list(resumed) == full[4:] and len(resumed) == 6
    epoch1 = ResumableSampler(data, num_replicas=1, rank=0, seed=3)
    epoch1.set_position(1, 0)
    assert list(epoch1) != full  # a new order (and new augmentation seeds) each epoch
    shards = [list(ResumableSampler(data, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not {i for i, _ in shards[0]} & {i for i, _ in shards[1]}


def test_engine_sources_never_name_a_method():
    from harness.methods import METHODS

    engine = Path(__file__).resolve().parents[1] / "harness" / "engine"
    names = [n for n in METHODS.names() if n != "baseline"]
    assert {"kd", "cwd", "cirkd", "heteroakd"} <= set(names)
    for file in engine.glob("*.py"):
        text = file.read_text()
        for name in names:
            assert not re.search(rf"['\"]{name}['\"]|method\s*==|\b{name}\b", text), (file.name, name)
