"""Every registered method on one interface: built from ModelInfo alone, for CNN -> Transformer,
Transformer -> CNN and homogeneous pairs (different channels, strides and class-map sizes).

Parametrised over METHODS.names(), so a new method file is covered without editing this test.
"""
from __future__ import annotations

import logging

import pytest
import torch

from harness.errors import ConfigError
from harness.methods import METHODS, build_distiller
from harness.models.base import ModelInfo, SegOutput

log = logging.getLogger(__name__)

K = 5
IMAGE = (64, 128)  # labels; CNN logits 8x16 (stride 8), transformer logits 16x32 (stride 4)
BATCH = 2

CNN_S = ModelInfo("cnn_s", "cnn", K, (8, 16, 24, 32), (4, 8, 8, 8), 16, 8, has_aux=True)
CNN_T = ModelInfo("cnn_t", "cnn", K, (16, 32, 48, 64), (4, 8, 8, 8), 24, 8, has_aux=True)
TR_S = ModelInfo("tr_s", "transformer", K, (8, 16, 40, 64), (4, 8, 16, 32), 16, 4)
TR_T = ModelInfo("tr_t", "transformer", K, (16, 32, 80, 128), (4, 8, 16, 32), 32, 4)

# (teacher, student): "CNN -> Transformer" distils a CNN teacher into a Transformer student
PAIRS = {
    "cnn_to_transformer": (CNN_T, TR_S),
    "transformer_to_cnn": (TR_T, CNN_S),
    "homogeneous_cnn": (CNN_T, CNN_S),
    "homogeneous_transformer": (TR_T, TR_S),
}


def synthetic_output(info: ModelInfo, seed: int) -> SegOutput:
    """Random leaf tensors shaped as ``info`` declares, all requiring grad."""
    g = torch.Generator().manual_seed(seed)
    h, w = IMAGE

    def leaf(c: int, stride: int) -> torch.Tensor:
        return torch.randn(BATCH, c, h // stride, w // stride, generator=g).requires_grad_()

    feats = [leaf(c, s) for c, s in zip(info.stage_channels, info.stage_strides)]
    aux = leaf(K, info.stage_strides[2]) if info.has_aux else None
    return SegOutput(leaf(K, info.logits_stride), feats,
                     leaf(info.decoder_channels, info.logits_stride), aux)


def tensors(out: SegOutput) -> list[torch.Tensor]:
    extra = [out.aux_logits] if out.aux_logits is not None else []
    return [out.logits, out.decoder_feature, *out.features, *extra]


def labels_for(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, K, (BATCH, *IMAGE), generator=g)
    labels[torch.rand(BATCH, *IMAGE, generator=g) < 0.1] = 255
    return labels


def test_registry_lists_the_methods():
    expected = {"baseline", "kd", "cwd", "heteroakd", "ofa"}
    assert expected <= set(METHODS.names())


def test_build_errors_are_config_errors():
    with pytest.raises(ConfigError, match="valid names"):
        build_distiller("nope", CNN_S, CNN_T)
    with pytest.raises(ConfigError, match="unknown option"):
        build_distiller("kd", CNN_S, CNN_T, options={"temprature": 2.0})
    with pytest.raises(ConfigError, match="unknown preset"):
        build_distiller("cwd", CNN_S, CNN_T, preset="nope")
    with pytest.raises(ConfigError, match="needs a teacher"):
        build_distiller("kd", CNN_S, None)
    with pytest.raises(ConfigError, match="out of range"):
        build_distiller("heteroakd", CNN_S, TR_T, options={"stages": [7]})
    with pytest.raises(ConfigError, match="kem_axis"):
        build_distiller("heteroakd", CNN_S, TR_T, options={"kem_axis": "both"})
    with pytest.raises(ConfigError, match="kem_form"):
        build_distiller("heteroakd", CNN_S, TR_T, options={"kem_form": "weights"})
    assert build_distiller("baseline", CNN_S, None).needs_teacher is False


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("name", METHODS.names())
def test_method_interface(name: str, pair: str):
    teacher, student = PAIRS[pair]
    torch.manual_seed(0)
    distiller = build_distiller(name, student, teacher)
    distiller.train()
    out_s = synthetic_output(student, seed=1)
    out_t = synthetic_output(teacher, seed=2)
    labels = labels_for(seed=3)
    terms = distiller(out_s, out_t, labels)

    own = [p for p in distiller.parameters() if p.requires_grad]
    assert distiller.extra_parameters() == sum(p.numel() for p in own)
    log.info("%s %s: extra parameters %d", name, pair, distiller.extra_parameters())

    if name == "baseline":
        assert terms == {} and distiller.extra_parameters() == 0
        return
    assert terms, f"{name} returned no loss term"
    for key, value in terms.items():
        assert key.startswith("loss_"), key
        assert value.dim() == 0 and value.dtype == torch.float32, (key, value.shape, value.dtype)
        assert torch.isfinite(value), (key, value)
    sum(terms.values()).backward()

    student_grads = [t.grad for t in tensors(out_s) if t.grad is not None]
    assert student_grads, f"{name}: no gradient reached the student"
    assert any(g.abs().sum() > 0 for g in student_grads)
    assert all(torch.isfinite(g).all() for g in student_grads)
    for t in tensors(out_t):
        assert t.grad is None, f"{name}: a gradient reached the teacher"
    for pname, p in distiller.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
            assert torch.isfinite(p.grad).all(), pname

    # state round-trips into a fresh instance; both then compute the same terms
    fresh = build_distiller(name, student, teacher)
    fresh.load_state_dict(distiller.state_dict(), strict=True)
    for key, value in distiller.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    distiller.eval()
    fresh.eval()
    with torch.no_grad():
        torch.manual_seed(5)
        first = distiller(out_s, out_t, labels)
        torch.manual_seed(5)
        second = fresh(out_s, out_t, labels)
    assert set(first) == set(second)
    for key in first:
        assert torch.allclose(first[key], second[key], atol=1e-5), key


def _mlp_params(c_in: int, hidden: int, c_out: int) -> int:
    # conv1x1 no bias + BN (weight, bias) + conv1x1 with bias
    return c_in * hidden + 2 * hidden + hidden * c_out + c_out


def test_parameter_counts_by_hand():
    # CNN_T -> TR_S: last stages 64 (teacher) and 64 (student), D = 256
    hetero = build_distiller("heteroakd", TR_S, CNN_T)
    assert hetero.extra_parameters() == _mlp_params(64, 256, K) + _mlp_params(64, 256, K)
    assert build_distiller("heteroakd", TR_S, CNN_T, preset="kd_only").extra_parameters() == 0
    lit = build_distiller("heteroakd", TR_S, CNN_T, options={"projector": "conv_bn_relu"})
    assert lit.extra_parameters() == 2 * (64 * K + 2 * K)
    # CWD: decoder 16 -> 24 align (no bias); mmrazor preset has no feature term
    assert build_distiller("cwd", CNN_S, CNN_T).extra_parameters() == 16 * 24
    assert build_distiller("cwd", CNN_S, CNN_T, preset="mmrazor").extra_parameters() == 0
    assert build_distiller("kd", CNN_S, CNN_T).extra_parameters() == 0
    # OFA: one head per stage of the student
    assert build_distiller("ofa", CNN_S, TR_T).extra_parameters() == sum(
        _mlp_params(c, 256, K) for c in CNN_S.stage_channels)


DEMO_PAIRS = {  # (teacher, student)
    "cnn_to_transformer": ("deeplabv3_small", "segformer_tiny"),
    "transformer_to_cnn": ("segformer_small", "deeplabv3_tiny"),
    "homogeneous": ("deeplabv3_small", "deeplabv3_tiny"),
}


@pytest.mark.parametrize("pair", sorted(DEMO_PAIRS))
@pytest.mark.parametrize("name", METHODS.names())
def test_demo_models_one_training_step(name: str, pair: str):
    models = pytest.importorskip("harness.models")
    teacher_name, student_name = DEMO_PAIRS[pair]
    if not hasattr(models, "build_model") or not all(
            n in models.MODELS for n in (teacher_name, student_name)):
        pytest.skip("demo models are not registered yet")
    torch.manual_seed(0)
    student = models.build_model(student_name, K)
    teacher = models.build_model(teacher_name, K).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    distiller = build_distiller(name, student.info, teacher.info)
    params = list(student.parameters()) + [p for p in distiller.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    images = torch.randn(BATCH, 3, *IMAGE)
    labels = labels_for(seed=4)
    out_s = student(images)
    with torch.no_grad():
        out_t = teacher(images)
    terms = distiller(out_s, out_t, labels)
    task = torch.nn.functional.cross_entropy(
        torch.nn.functional.interpolate(out_s.logits, size=IMAGE, mode="bilinear",
                                        align_corners=False), labels, ignore_index=255)
    total = task + sum(terms.values())
    assert torch.isfinite(total)
    for key, value in terms.items():
        assert torch.isfinite(value), key
    optimizer.zero_grad()
    total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    before = [p.detach().clone() for p in distiller.parameters() if p.requires_grad]
    optimizer.step()
    after = [p.detach() for p in distiller.parameters() if p.requires_grad]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    log.info("%s %s: terms %s, extra parameters %d", name, pair,
             {k: round(v.item(), 4) for k, v in terms.items()}, distiller.extra_parameters())


@pytest.mark.parametrize("name", METHODS.names())
def test_terms_are_float32_under_autocast(name: str):
    teacher, student = PAIRS["cnn_to_transformer"]
    torch.manual_seed(0)
    distiller = build_distiller(name, student, teacher)
    out_s = synthetic_output(student, seed=1)
    out_t = synthetic_output(teacher, seed=2)
    for out in (out_s, out_t):  # what a bf16 model returns under autocast
        out.logits = out.logits.detach().bfloat16()
        out.decoder_feature = out.decoder_feature.detach().bfloat16()
        out.features = [f.detach().bfloat16() for f in out.features]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = distiller(out_s, out_t, labels_for(seed=3))
    for key, value in terms.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), (key, value)
