"""Af-DCD: feature generation and omni-contrast against independent references, the module."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from fixtures_methods import model_info, random_output

from harness.errors import ConfigError
from harness.methods.afdcd import (
    AfDCD,
    feature_generation_loss,
    generator_parameters,
    keep_mask,
    omni_contrast_loss,
)
from harness.methods.base import METHODS

torch.set_num_threads(1)

STUDENT, TEACHER = model_info("s", stage_channels=(4, 8)), model_info("t", stage_channels=(4, 32))


def loop_omni_contrast(gen, feat_t, tau, groups, pool, patch):
    """Anchor by anchor, straight from docs/methods.md §Af-DCD (crop to whole patches, drop
    extra channels)."""
    if pool > 1:
        window = (min(pool, gen.shape[-2]), min(pool, gen.shape[-1]))
        gen, feat_t = F.max_pool2d(gen, window), F.max_pool2d(feat_t, window)
    batch, channels, height, width = gen.shape
    ph, pw = min(patch, height), min(patch, width)
    height, width = height // ph * ph, width // pw * pw
    width_g = channels // groups
    total = 0.0
    for b in range(batch):
        for top in range(0, height, ph):
            for left in range(0, width, pw):
                cells = [(y, x) for y in range(top, top + ph) for x in range(left, left + pw)]

                def vec(m, y, x, g, b=b):
                    return m[b, g * width_g:(g + 1) * width_g, y, x]

                for y, x in cells:
                    for g in range(groups):
                        anchor = vec(gen, y, x, g)
                        sims = [-(anchor - vec(feat_t, y, x, g)).abs().sum()]
                        sims += [-(anchor - vec(feat_t, yy, xx, gg)).abs().sum()
                                 for yy, xx in cells for gg in range(groups) if gg != g]
                        logits = torch.stack(sims) / tau
                        total += torch.logsumexp(logits, 0) - logits[0]
    return total / (height * width) / batch


def test_registered_and_grad_clip():
    assert METHODS.get("afdcd") is AfDCD
    assert AfDCD.max_grad_norm == 15.0


def test_feature_generation_loss():
    feat = torch.randn(2, 3, 4, 5)
    assert feature_generation_loss(feat, feat.clone()).item() == 0.0
    ones, zeros = torch.ones(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    assert feature_generation_loss(ones * 2, zeros).item() == pytest.approx(4 * 24 / 2)


def test_omni_contrast_matches_the_loop_with_reference_sizes():
    # 16 groups of 2 channels (34 channels: the last 2 are left out), pooled 6x5 -> one 4x4 patch
    torch.manual_seed(0)
    gen, feat_t = torch.randn(1, 34, 24, 20), torch.randn(1, 34, 24, 20)
    expected = loop_omni_contrast(gen, feat_t, 0.07, 16, 4, 4)
    got = omni_contrast_loss(gen, feat_t, tau=0.07, groups=16, pool=4, patch=4)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_omni_contrast_matches_the_loop_over_many_patches_and_chunks():
    torch.manual_seed(1)
    gen = torch.randn(2, 6, 9, 8, requires_grad=True)
    feat_t = torch.randn(2, 6, 9, 8)
    expected = loop_omni_contrast(gen, feat_t, 0.5, 3, 1, 2)  # 4x4 patches of 2x2 per image
    got = omni_contrast_loss(gen, feat_t, tau=0.5, groups=3, pool=1, patch=2, patch_chunk=3)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    (grad_got,) = torch.autograd.grad(got, gen)
    (grad_expected,) = torch.autograd.grad(expected, gen)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-4, atol=1e-6)


def test_omni_contrast_on_a_map_smaller_than_a_patch():
    torch.manual_seed(2)
    gen, feat_t = torch.randn(1, 4, 2, 3), torch.randn(1, 4, 2, 3)
    expected = loop_omni_contrast(gen, feat_t, 0.07, 2, 1, 4)  # patch shrinks to 2x3
    got = omni_contrast_loss(gen, feat_t, tau=0.07, groups=2, pool=1, patch=4)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_omni_contrast_on_a_map_smaller_than_the_pooling_window():
    torch.manual_seed(3)
    gen, feat_t = torch.randn(2, 32, 2, 3), torch.randn(2, 32, 2, 3)
    expected = loop_omni_contrast(gen, feat_t, 0.07, 16, 4, 4)  # pooled to 1x1: 15 negatives
    got = omni_contrast_loss(gen, feat_t, tau=0.07, groups=16, pool=4, patch=4)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_omni_contrast_two_token_case_by_hand():
    # one position, 2 groups of 1 channel: anchor g0=1, g1=0; teacher t0=1, t1=3.
    gen = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1)
    feat_t = torch.tensor([1.0, 3.0]).reshape(1, 2, 1, 1)
    # anchor 0: pos -|1-1| = 0, neg -|1-3| = -2 ; anchor 1: pos -|0-3| = -3, neg -|0-1| = -1
    expected = math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))
    got = omni_contrast_loss(gen, feat_t, tau=1.0, groups=2, pool=1, patch=4)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_mask_zeroes_three_quarters():
    torch.manual_seed(0)
    mask = keep_mask(4, 64, 128, 0.75)
    assert mask.shape == (4, 1, 64, 128)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert (1 - mask.mean().item()) == pytest.approx(0.75, abs=0.01)
    assert keep_mask(1, 8, 8, 0.0).min().item() == 1.0


def test_generator_size():
    assert generator_parameters(2048) == 75_501_568
    method = AfDCD(STUDENT, TEACHER, AfDCD.make_options())
    assert sum(p.numel() for p in method.generator.parameters()) == generator_parameters(32)
    assert method.extra_parameters() == generator_parameters(32) + 8 * 32 + 32


def test_presets_and_bad_teacher():
    expected = {"cityscapes": (2e-6, 5e-3, 1.0), "ade20k": (1e-6, 0.04, 0.5),
                "voc": (1e-6, 5e-3, 1.0), "camvid": (8e-6, 0.01, 1.0),
                "cocostuff": (5e-6, 5e-3, 0.5)}
    for name, weights in expected.items():
        opt = AfDCD.make_options(name)
        assert (opt.lambda_fd, opt.lambda_ctr, opt.lambda_kd) == weights
    default = AfDCD.make_options()
    assert (default.lambda_fd, default.lambda_ctr, default.lambda_kd) == expected["cityscapes"]
    assert AfDCD.make_options("camvid").ctr_pool == 1
    with pytest.raises(ConfigError, match="ctr_groups"):
        AfDCD(STUDENT, model_info("t", stage_channels=(4, 12)), AfDCD.make_options())


def make_outputs(seed: int = 0, grad: bool = True):
    gen = torch.Generator().manual_seed(seed)
    out_s = random_output(gen, logits=(2, 3, 8, 8), features=((2, 4, 16, 16), (2, 8, 8, 8)),
                          decoder=(2, 8, 8, 8), grad=grad)
    # teacher c4 on a coarser grid (e.g. a transformer at 1/32): resized to the student's
    out_t = random_output(gen, logits=(2, 3, 4, 4), features=((2, 4, 8, 8), (2, 32, 4, 4)),
                          decoder=(2, 8, 4, 4), grad=grad)
    labels = torch.randint(0, 3, (2, 64, 64), generator=gen)
    return out_s, out_t, labels


def test_forward_terms_gradients_and_teacher_untouched():
    torch.manual_seed(0)
    method = AfDCD(STUDENT, TEACHER, AfDCD.make_options(ctr_pool=2))
    out_s, out_t, labels = make_outputs()
    losses = method(out_s, out_t, labels)
    assert sorted(losses) == ["loss_ctr", "loss_fd", "loss_kd"]
    assert all(torch.isfinite(v) and v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert out_s.features[-1].grad.abs().sum() > 0 and out_s.logits.grad.abs().sum() > 0
    assert all(t.grad is None for t in [out_t.logits, *out_t.features])
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())


def test_same_seed_same_loss_and_state_round_trips():
    out_s, out_t, labels = make_outputs(grad=False)
    torch.manual_seed(3)
    method = AfDCD(STUDENT, TEACHER, AfDCD.make_options(ctr_pool=1))
    torch.manual_seed(7)
    first = method(out_s, out_t, labels)
    torch.manual_seed(7)
    again = method(out_s, out_t, labels)
    torch.manual_seed(8)
    other = method(out_s, out_t, labels)
    assert {k: v.item() for k, v in first.items()} == {k: v.item() for k, v in again.items()}
    assert other["loss_fd"].item() != first["loss_fd"].item()  # the mask follows the seed
    restored = AfDCD(STUDENT, TEACHER, AfDCD.make_options(ctr_pool=1))
    restored.load_state_dict(method.state_dict())
    torch.manual_seed(7)
    after = restored(out_s, out_t, labels)
    assert {k: v.item() for k, v in after.items()} == {k: v.item() for k, v in first.items()}
