"""Each loss of kd / cwd / heteroakd / ofa against a hand value or an independent formula."""
from __future__ import annotations

import math

import pytest
import torch

from harness.methods import build_distiller
from harness.methods.cwd import cwd_loss
from harness.methods.heteroakd import (
    heteroakd_loss,
    kem_weights,
    mix_knowledge,
    reliability,
    weighted_distillation,
)
from harness.methods.kd import kd_loss, kd_on_outputs
from harness.methods.ofa import ofa_loss
from harness.models.base import ModelInfo, SegOutput

TOL = 1e-5


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _labels(b: int, h: int, w: int, k: int, seed: int = 0, ignore_frac: float = 0.3):
    g = _gen(seed)
    labels = torch.randint(0, k, (b, h, w), generator=g)
    labels[torch.rand(b, h, w, generator=g) < ignore_frac] = 255
    return labels


# ---------------------------------------------------------------- KD
def test_kd_identical_logits_is_zero():
    z = torch.randn(2, 5, 4, 6, generator=_gen())
    assert kd_loss(z, z.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_two_class_closed_form():
    # one pixel, teacher p_t = (0.8, 0.2), student p_s = (0.5, 0.5)
    z_t = torch.tensor([math.log(0.8), math.log(0.2)]).view(1, 2, 1, 1)
    z_s = torch.zeros(1, 2, 1, 1)
    expected = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)  # 0.19274...
    assert kd_loss(z_s, z_t, 1.0).item() == pytest.approx(expected, abs=TOL)
    assert expected == pytest.approx(0.1927448, abs=1e-6)


def test_kd_temperature_squared_scaling():
    z_t = torch.randn(2, 4, 3, 3, generator=_gen(1))
    z_s = torch.randn(2, 4, 3, 3, generator=_gen(2))
    # KD at T on (z_s, z_t) == T^2 * KD at 1 on (z_s/T, z_t/T)
    t = 3.0
    assert kd_loss(z_s, z_t, t).item() == pytest.approx(
        t * t * kd_loss(z_s / t, z_t / t, 1.0).item(), abs=TOL)


def test_kd_all_pixel_reduction_and_ignore_aware():
    z_t = torch.randn(1, 3, 2, 2, generator=_gen(3))
    z_s = torch.randn(1, 3, 2, 2, generator=_gen(4))
    p_t, p_s = z_t.softmax(1), z_s.softmax(1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(1)[0]  # (2, 2)
    labels = torch.tensor([[[0, 255], [2, 255]]])
    # reference reduction: all 4 pixels, ignored included
    assert kd_on_outputs(z_s, z_t, labels, 1.0, False).item() == pytest.approx(
        kl.mean().item(), abs=TOL)
    # ignore_aware: only the 2 labelled pixels
    assert kd_on_outputs(z_s, z_t, labels, 1.0, True).item() == pytest.approx(
        (kl[0, 0] + kl[1, 0]).item() / 2, abs=TOL)
    # changing logits at ignored pixels changes nothing when ignore_aware
    z_s2 = z_s.clone()
    z_s2[..., 0, 1] += 7.0
    assert kd_on_outputs(z_s2, z_t, labels, 1.0, True).item() == pytest.approx(
        kd_on_outputs(z_s, z_t, labels, 1.0, True).item(), abs=TOL)


# ---------------------------------------------------------------- CWD
def test_cwd_one_channel_equals_spatial_kl():
    x_s = torch.randn(1, 1, 3, 4, generator=_gen(5))
    x_t = torch.randn(1, 1, 3, 4, generator=_gen(6))
    tau = 2.0
    p_t = torch.softmax(x_t.flatten() / tau, 0)
    p_s = torch.softmax(x_s.flatten() / tau, 0)
    expected = tau ** 2 * float((p_t * (p_t.log() - p_s.log())).sum())
    assert cwd_loss(x_s, x_t, tau).item() == pytest.approx(expected, abs=TOL)


def test_cwd_identical_is_zero_and_mean_over_channels():
    x = torch.randn(2, 3, 4, 4, generator=_gen(7))
    assert cwd_loss(x, x.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    y = torch.randn(2, 3, 4, 4, generator=_gen(8))
    per_map = [cwd_loss(y[b:b + 1, c:c + 1], x[b:b + 1, c:c + 1], 4.0).item()
               for b in range(2) for c in range(3)]
    assert cwd_loss(y, x, 4.0).item() == pytest.approx(sum(per_map) / 6, abs=TOL)


def test_cwd_tau_squared_factor():
    x_s = torch.randn(2, 3, 4, 4, generator=_gen(9))
    x_t = torch.randn(2, 3, 4, 4, generator=_gen(10))
    tau = 4.0
    assert cwd_loss(x_s, x_t, tau).item() == pytest.approx(
        tau ** 2 * cwd_loss(x_s / tau, x_t / tau, 1.0).item(), abs=TOL)


def test_cwd_presets_values():
    info = ModelInfo("s", "cnn", 3, (8, 16), (4, 8), 12, 8)
    info_t = ModelInfo("t", "transformer", 3, (8, 16), (4, 8), 20, 4)
    cirkd = build_distiller("cwd", info, info_t, preset="cirkd")
    assert (cirkd.options.tau, cirkd.options.logits_weight, cirkd.options.feature_weight) == \
        (4.0, 3.0, 50.0)
    assert cirkd.align.weight.shape == (20, 12, 1, 1) and cirkd.align.bias is None
    mmrazor = build_distiller("cwd", info, info_t, preset="mmrazor")
    out_s = SegOutput(torch.randn(1, 3, 4, 4), [], torch.randn(1, 12, 4, 4))
    out_t = SegOutput(torch.randn(1, 3, 8, 8), [], torch.randn(1, 20, 8, 8))
    terms = mmrazor(out_s, out_t, torch.zeros(1, 32, 32, dtype=torch.long))
    assert set(terms) == {"loss_cwd_logits"}
    resized_t = torch.nn.functional.interpolate(out_t.logits, size=(4, 4), mode="bilinear",
                                                align_corners=False)
    assert terms["loss_cwd_logits"].item() == pytest.approx(
        5.0 * cwd_loss(out_s.logits, resized_t, 1.0).item(), abs=TOL)
    segformer = build_distiller("cwd", info, info_t, preset="segformer")
    assert (segformer.options.logits_weight, segformer.options.feature_weight) == (0.3, 5.0)
    # the cirkd preset (and no preset) weigh by the student's family, as CIRKD's two scripts
    for preset in ("cirkd", None):
        as_student = build_distiller("cwd", info_t, info, preset=preset).options
        assert (as_student.tau, as_student.logits_weight, as_student.feature_weight) == \
            (4.0, 0.3, 5.0)
    assert build_distiller("cwd", info_t, info, preset="cnn").options.feature_weight == 50.0


def _cwd_feature_term(normalize_by: str) -> float:
    """CWD feature term, tau 1, for C_s = 1 -> C_t = 2 with align weights (1, 2): the student
    map (0, ln 3) becomes (0, ln 3) and (0, 2 ln 3); the teacher's maps are flat."""
    student = ModelInfo("s", "cnn", 2, (4,), (8,), 1, 8)
    teacher = ModelInfo("t", "cnn", 2, (4,), (8,), 2, 8)
    cwd = build_distiller("cwd", student, teacher, options={
        "tau": 1.0, "logits_weight": 0.0, "feature_weight": 1.0, "normalize_by": normalize_by})
    with torch.no_grad():
        cwd.align.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
    feat_s = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 2)
    out_s = SegOutput(torch.zeros(1, 2, 1, 2), [], feat_s)
    out_t = SegOutput(torch.zeros(1, 2, 1, 2), [], torch.zeros(1, 2, 1, 2))
    return cwd(out_s, out_t, torch.zeros(1, 8, 16, dtype=torch.long))["loss_cwd_feat"].item()


def test_cwd_feature_term_divides_by_student_channels_as_cirkd():
    # KL((1/2, 1/2) || (1/4, 3/4)) and KL((1/2, 1/2) || (1/10, 9/10)), by hand
    kl_0 = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    kl_1 = 0.5 * math.log(5.0) + 0.5 * math.log(5.0 / 9.0)
    # CIRKD losses/cwd.py: sum of KL / (N x C_student) with C_student = 1
    assert _cwd_feature_term("student") == pytest.approx(kl_0 + kl_1, abs=TOL)
    assert _cwd_feature_term("teacher") == pytest.approx((kl_0 + kl_1) / 2, abs=TOL)


# ---------------------------------------------------------------- HeteroAKD
def test_reliability_bce_independent():
    z = torch.randn(2, 3, 2, 2, generator=_gen(11))
    labels = torch.tensor([[[0, 1], [2, 255]], [[1, 1], [0, 2]]])
    y = torch.zeros(2, 3, 2, 2)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                if labels[b, i, j] != 255:
                    y[b, labels[b, i, j], i, j] = 1.0
    sig = 1.0 / (1.0 + torch.exp(-z.double()))
    expected = -(y * torch.log(sig) + (1 - y) * torch.log(1 - sig))
    got = reliability(z, y, "bce")
    assert torch.allclose(got.double(), expected, atol=TOL)
    # ce: -log softmax at the label, the same for every class of the pixel
    ce = reliability(z, y, "ce")
    expected_ce = -torch.log_softmax(z.double(), 1)[0, 2, 1, 0]  # image 0, pixel (1,0), class 2
    assert torch.allclose(ce[0, :, 1, 0].double(), expected_ce.expand(3), atol=TOL)


def test_mixed_knowledge_is_average_when_equally_reliable():
    z_t = torch.randn(1, 4, 3, 3, generator=_gen(12))
    z_s = torch.randn(1, 4, 3, 3, generator=_gen(13))
    h = torch.rand(1, 4, 3, 3, generator=_gen(14)) + 0.1
    mixed = mix_knowledge(z_t, z_s, h, h.clone(), eps=0.0)
    assert torch.allclose(mixed, (z_t + z_s) / 2, atol=TOL)
    assert not mixed.requires_grad
    # a perfectly reliable teacher (H_t = 0) gets the whole share
    mixed = mix_knowledge(z_t, z_s, torch.zeros_like(h), h, eps=0.0)
    assert torch.allclose(mixed, z_t, atol=TOL)


def test_kem_weights_sum_to_one_over_axis():
    h_s = torch.rand(2, 5, 3, 4, generator=_gen(15)) * 3
    h_h = torch.rand(2, 5, 3, 4, generator=_gen(16)) * 3
    labels = _labels(2, 3, 4, 5, seed=17)
    valid = labels != 255
    w = kem_weights(h_s, h_h, valid, "class")
    assert torch.allclose(w.sum(1), torch.ones(2, 3, 4), atol=TOL)
    # independent: softmax over classes of H_s + relu(H_s - H_h)
    score = h_s + torch.clamp(h_s - h_h, min=0)
    assert torch.allclose(w, torch.exp(score) / torch.exp(score).sum(1, keepdim=True), atol=TOL)
    ws = kem_weights(h_s, h_h, valid, "space")
    assert torch.allclose(ws.flatten(2).sum(-1), torch.ones(2, 5), atol=TOL)
    assert (ws.permute(1, 0, 2, 3)[:, ~valid] == 0).all()


def test_hakd_without_kmm_kem_is_soft_ce():
    k = 4
    z_s = torch.randn(2, k, 3, 5, generator=_gen(18))
    z_t = torch.randn(2, k, 3, 5, generator=_gen(19))
    labels = _labels(2, 3, 5, k, seed=20)
    valid = labels != 255
    t = 2.0
    ce = -(torch.softmax(z_t / t, 1) * torch.log_softmax(z_s / t, 1)).sum(1)
    expected = ce[valid].mean().item()
    got = heteroakd_loss(z_s, z_t, labels, kmm=False, kem=False, temperature=t)
    assert got.item() == pytest.approx(expected, abs=TOL)
    # kem_axis makes no difference when KEM is off
    got_space = heteroakd_loss(z_s, z_t, labels, kmm=False, kem=False, kem_axis="space",
                               temperature=t)
    assert got_space.item() == pytest.approx(expected, abs=TOL)


def test_hakd_full_independent_formula():
    k = 3
    z_s = torch.randn(1, k, 2, 3, generator=_gen(21))
    z_t = torch.randn(1, k, 2, 3, generator=_gen(22))
    labels = torch.tensor([[[0, 2, 255], [1, 1, 0]]])
    valid = labels != 255
    y = torch.nn.functional.one_hot(labels.clamp(max=k - 1), k).permute(0, 3, 1, 2).float()
    y = y * valid[:, None]

    def bce(z):
        s = torch.sigmoid(z)
        return -(y * torch.log(s) + (1 - y) * torch.log(1 - s))

    h_s, h_t = bce(z_s), bce(z_t)
    share = h_s / (h_t + h_s + 1e-6)
    z_h = share * z_t + (1 - share) * z_s
    score = h_s + torch.clamp(h_s - bce(z_h), min=0)
    w = k * torch.softmax(score, 1)
    per_pixel = -(w * torch.softmax(z_h, 1) * torch.log_softmax(z_s, 1)).sum(1)
    expected = per_pixel[valid].mean().item()
    assert heteroakd_loss(z_s, z_t, labels).item() == pytest.approx(expected, abs=TOL)


# One pixel, K = 2: Z_s = (0, ln 3) -> p_s = (1/4, 3/4); Z_h = (ln 3, 0) -> p_h = (3/4, 1/4);
# w = K * W = (1.5, 0.5). Sigmoids: sigma(Z_s) = (1/2, 3/4), sigma(Z_h) = (3/4, 1/2).
LN2, LN43 = math.log(2.0), math.log(4.0 / 3.0)
KEM_FORM_HAND = {
    # sum_c w_c p_h,c (-log p_s,c) = 1.5 * 3/4 * ln 4 + 0.5 * 1/4 * ln 4/3
    "target": 1.125 * 2 * LN2 + 0.125 * LN43,
    # (sum_c w_c p_h,c) = 1.25, times the soft CE 3/4 ln 4 + 1/4 ln 4/3
    "pixel": 1.25 * (0.75 * 2 * LN2 + 0.25 * LN43),
    # 1.5 * BCE(1/2; 3/4) + 0.5 * BCE(3/4; 1/2) = 1.5 ln 2 + 0.5 * (ln 4/3 + ln 4) / 2
    "binary": 1.5 * LN2 + 0.25 * (LN43 + 2 * LN2),
}


@pytest.mark.parametrize("form", sorted(KEM_FORM_HAND))
def test_kem_form_hand_values(form):
    z_s = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)
    z_h = torch.tensor([math.log(3.0), 0.0]).view(1, 2, 1, 1)
    w = torch.tensor([1.5, 0.5]).view(1, 2, 1, 1)
    got = weighted_distillation(z_s, z_h, w, form)
    assert got.shape == (1, 1, 1)
    assert got.item() == pytest.approx(KEM_FORM_HAND[form], abs=TOL)
    # the temperature divides both sides' logits: doubling them at T = 2 changes nothing
    got_t2 = weighted_distillation(2 * z_s, 2 * z_h, w, form, temperature=2.0)
    assert got_t2.item() == pytest.approx(KEM_FORM_HAND[form], abs=TOL)


def test_kem_form_pixel_keeps_the_target():
    """``pixel`` scales the soft-CE gradient (p_s - p_h)/T per pixel by sum_c w_c p_h,c;
    ``target`` does not: its gradient points at the weight-reshaped target."""
    k, t = 4, 2.0
    z_s = torch.randn(2, k, 3, 3, generator=_gen(40), requires_grad=True)
    z_h = torch.randn(2, k, 3, 3, generator=_gen(41))
    w = k * torch.softmax(torch.randn(2, k, 3, 3, generator=_gen(42)) * 3, 1)
    weighted_distillation(z_s, z_h, w, "pixel", t).sum().backward()
    p_h, p_s = torch.softmax(z_h / t, 1), torch.softmax(z_s.detach() / t, 1)
    scale = (w * p_h).sum(1, keepdim=True)
    assert torch.allclose(z_s.grad, scale * (p_s - p_h) / t, atol=TOL)
    z_s.grad = None
    weighted_distillation(z_s, z_h, w, "target", t).sum().backward()
    mass = w * p_h  # the target form's gradient: (sum_c m_c) p_s - m, over T
    assert torch.allclose(z_s.grad, (mass.sum(1, keepdim=True) * p_s - mass) / t, atol=TOL)


def _direct_hakd(z_s, z_t, labels, form, t):
    """L_hakd by the formulas of methods.md (KMM and KEM on, BCE reliability, class axis)."""
    k = z_s.shape[1]
    valid = labels != 255
    y = torch.nn.functional.one_hot(labels.clamp(max=k - 1), k).permute(0, 3, 1, 2).double()
    y = y * valid[:, None]
    z_s, z_t = z_s.double(), z_t.double()

    def bce(z, target):
        s = torch.sigmoid(z)
        return -(target * torch.log(s) + (1 - target) * torch.log(1 - s))

    h_s, h_t = bce(z_s, y), bce(z_t, y)
    share = h_s / (h_t + h_s + 1e-6)
    z_h = share * z_t + (1 - share) * z_s
    w = k * torch.softmax(h_s + torch.clamp(h_s - bce(z_h, y), min=0), 1)
    p_h, log_p_s = torch.softmax(z_h / t, 1), torch.log_softmax(z_s / t, 1)
    if form == "target":
        per_pixel = -(w * p_h * log_p_s).sum(1)
    elif form == "pixel":
        per_pixel = (w * p_h).sum(1) * -(p_h * log_p_s).sum(1)
    else:
        per_pixel = (w * bce(z_s / t, torch.sigmoid(z_h / t))).sum(1)
    return per_pixel[valid].mean().item()


@pytest.mark.parametrize("form", ["target", "pixel", "binary"])
def test_hakd_kem_forms_independent_formula(form):
    k, t = 3, 2.0
    z_s = torch.randn(2, k, 3, 4, generator=_gen(43))
    z_t = torch.randn(2, k, 3, 4, generator=_gen(44))
    labels = _labels(2, 3, 4, k, seed=45)
    got = heteroakd_loss(z_s, z_t, labels, kem_form=form, temperature=t)
    assert got.item() == pytest.approx(_direct_hakd(z_s, z_t, labels, form, t), abs=TOL)


def test_kem_forms_agree_without_kem():
    """KEM off: target and pixel are the same soft CE; binary is the plain per-class BCE sum."""
    k = 4
    z_s = torch.randn(2, k, 3, 5, generator=_gen(46))
    z_t = torch.randn(2, k, 3, 5, generator=_gen(47))
    labels = _labels(2, 3, 5, k, seed=48)
    valid = labels != 255
    target = heteroakd_loss(z_s, z_t, labels, kmm=False, kem=False, kem_form="target")
    pixel = heteroakd_loss(z_s, z_t, labels, kmm=False, kem=False, kem_form="pixel")
    assert pixel.item() == pytest.approx(target.item(), abs=TOL)
    binary = heteroakd_loss(z_s, z_t, labels, kmm=False, kem=False, kem_form="binary")
    per_class = torch.nn.functional.binary_cross_entropy_with_logits(
        z_s, torch.sigmoid(z_t), reduction="none").sum(1)
    assert binary.item() == pytest.approx(per_class[valid].mean().item(), abs=TOL)


def test_hakd_distiller_passes_kem_form():
    student, teacher, out_s, out_t, labels = _hetero_pair()
    distiller = build_distiller("heteroakd", student, teacher,
                                options={"kem_form": "binary", "lambda1": 0.0})
    distiller.eval()
    terms = distiller(out_s, out_t, labels)
    z_s = distiller.proj_s[0](out_s.features[-1])
    z_t = distiller.proj_t[0](out_t.features[-1])
    grid = labels[:, ::8, ::8]
    expected = heteroakd_loss(z_s, z_t, grid, kem_form="binary").item()
    assert terms["loss_hakd"].item() == pytest.approx(expected, abs=TOL)
    assert expected != pytest.approx(heteroakd_loss(z_s, z_t, grid).item(), abs=1e-3)


@pytest.mark.parametrize("kem_form", ["target", "pixel", "binary"])
@pytest.mark.parametrize("kem_axis", ["class", "space"])
@pytest.mark.parametrize("rel", ["bce", "ce"])
def test_hakd_ignored_pixels_change_nothing(kem_axis, rel, kem_form):
    k = 4
    z_s = torch.randn(2, k, 4, 4, generator=_gen(23))
    z_t = torch.randn(2, k, 4, 4, generator=_gen(24))
    labels = _labels(2, 4, 4, k, seed=25, ignore_frac=0.4)
    ignored = labels == 255
    assert ignored.any() and (~ignored).any()
    base = heteroakd_loss(z_s, z_t, labels, kem_axis=kem_axis, reliability_kind=rel,
                          kem_form=kem_form)
    z_s2, z_t2 = z_s.clone(), z_t.clone()
    noise = torch.randn(2, k, 4, 4, generator=_gen(26)) * 5
    z_s2 = torch.where(ignored[:, None], z_s2 + noise, z_s2)
    z_t2 = torch.where(ignored[:, None], z_t2 - noise, z_t2)
    changed = heteroakd_loss(z_s2, z_t2, labels, kem_axis=kem_axis, reliability_kind=rel,
                             kem_form=kem_form)
    assert changed.item() == pytest.approx(base.item(), abs=TOL)


def _hetero_pair():
    student = ModelInfo("s", "cnn", 3, (6, 10), (4, 8), 8, 8)
    teacher = ModelInfo("t", "transformer", 3, (12, 20), (4, 8), 16, 4)
    g = _gen(27)
    out_s = SegOutput(torch.randn(2, 3, 4, 4, generator=g),
                      [torch.randn(2, 6, 8, 8, generator=g), torch.randn(2, 10, 4, 4, generator=g)],
                      torch.randn(2, 8, 4, 4, generator=g))
    out_t = SegOutput(torch.randn(2, 3, 8, 8, generator=g),
                      [torch.randn(2, 12, 8, 8, generator=g),
                       torch.randn(2, 20, 4, 4, generator=g)],
                      torch.randn(2, 16, 8, 8, generator=g))
    labels = _labels(2, 32, 32, 3, seed=28)
    return student, teacher, out_s, out_t, labels


def test_hakd_distiller_terms_and_lambda2_zero():
    student, teacher, out_s, out_t, labels = _hetero_pair()
    full = build_distiller("heteroakd", student, teacher, preset="full")
    full.eval()  # BN in eval: projections are deterministic functions of the features
    terms = full(out_s, out_t, labels)
    assert set(terms) == {"loss_kd", "loss_hakd", "loss_proj"}
    kd_expected = 0.1 * kd_on_outputs(out_s.logits, out_t.logits, labels, 1.0, False).item()
    assert terms["loss_kd"].item() == pytest.approx(kd_expected, abs=TOL)
    z_s = full.proj_s[0](out_s.features[-1])
    z_t = full.proj_t[0](out_t.features[-1])  # same 4x4 grid: no resize
    grid = labels[:, ::8, ::8]  # nearest 32 -> 4 picks every 8th pixel
    assert torch.equal(grid, torch.nn.functional.interpolate(
        labels[:, None].float(), size=(4, 4), mode="nearest")[:, 0].long())
    assert terms["loss_hakd"].item() == pytest.approx(
        heteroakd_loss(z_s, z_t, grid).item(), abs=TOL)
    ce = torch.nn.functional.cross_entropy
    expected_proj = ce(z_s, grid, ignore_index=255) + ce(z_t, grid, ignore_index=255)
    assert terms["loss_proj"].item() == pytest.approx(expected_proj.item(), abs=TOL)

    kd_only = build_distiller("heteroakd", student, teacher, preset="kd_only")
    terms = kd_only(out_s, out_t, labels)
    assert set(terms) == {"loss_kd"}
    assert kd_only.extra_parameters() == 0
    assert terms["loss_kd"].item() == pytest.approx(kd_expected, abs=TOL)


def test_hakd_several_stages_average_pairs():
    student, teacher, out_s, out_t, labels = _hetero_pair()
    both = build_distiller("heteroakd", student, teacher, options={"stages": [0, 1],
                                                                     "lambda1": 0.0})
    both.eval()
    terms = both(out_s, out_t, labels)
    assert "loss_kd" not in terms
    per_pair = []
    for i in range(2):
        z_s = both.proj_s[i](out_s.features[i])
        z_t = both.proj_t[i](out_t.features[i])
        size = z_s.shape[-2:]
        grid = torch.nn.functional.interpolate(labels[:, None].float(), size=size,
                                               mode="nearest")[:, 0].long()
        per_pair.append(heteroakd_loss(z_s, z_t, grid).item())
    assert terms["loss_hakd"].item() == pytest.approx(sum(per_pair) / 2, abs=TOL)


def test_hakd_presets_switches():
    student, teacher, *_ = _hetero_pair()
    rows = {p: build_distiller("heteroakd", student, teacher, preset=p).options
            for p in ("full", "no_kmm", "no_kem", "no_both", "kd_only")}
    assert (rows["full"].kmm, rows["full"].kem, rows["full"].lambda2) == (True, True, 1.0)
    assert (rows["no_kmm"].kmm, rows["no_kmm"].kem) == (False, True)
    assert (rows["no_kem"].kmm, rows["no_kem"].kem) == (True, False)
    assert (rows["no_both"].kmm, rows["no_both"].kem) == (False, False)
    assert rows["kd_only"].lambda2 == 0.0 and rows["full"].lambda1 == 0.1


# ---------------------------------------------------------------- OFA
def test_ofa_loss_eps_one_is_soft_ce_and_eps_two_closed_form():
    k = 3
    z_s = torch.randn(1, k, 2, 2, generator=_gen(29))
    z_t = torch.randn(1, k, 2, 2, generator=_gen(30))
    labels = torch.tensor([[[0, 255], [2, 1]]])
    valid = labels != 255
    log_p_s = torch.log_softmax(z_s, 1)
    p_t = torch.softmax(z_t, 1)
    soft_ce = -(p_t * log_p_s).sum(1)
    assert ofa_loss(z_s, z_t, labels, eps=1.0).item() == pytest.approx(
        soft_ce[valid].mean().item(), abs=TOL)
    # eps = 2 at pixel (0,0), label 0: weights (p0+1)^2 - 1, p1^2, p2^2
    vals = []
    for (i, j) in [(0, 0), (1, 0), (1, 1)]:
        y = int(labels[0, i, j])
        wts = [(float(p_t[0, c, i, j]) + float(c == y)) ** 2 - float(c == y) for c in range(k)]
        vals.append(-sum(wts[c] * log_p_s[0, c, i, j] for c in range(k)))
    assert ofa_loss(z_s, z_t, labels, eps=2.0).item() == pytest.approx(
        float(sum(vals) / 3), abs=TOL)
