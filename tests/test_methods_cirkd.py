"""CIRKD: each loss against a hand value or an independent formula, the queues, the module."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from fixtures_methods import model_info, random_output

from harness.errors import ConfigError
from harness.methods.base import METHODS
from harness.methods.cirkd import (
    CIRKD,
    enqueue,
    memory_kl_loss,
    p2p_batch_loss,
    p2p_pool_size,
    relation_kl,
    ring_write,
    sample_negatives,
    select_pixels,
    select_pixels_raster,
)
from harness.methods.common import resize_labels, soft_kl_sum
from harness.models.base import ModelInfo, SegOutput

torch.set_num_threads(1)


def direct_relation_kl(fs_i, fs_j, ft_i, ft_j, tau):
    """Mean over rows of KL(softmax(S_t) || softmax(S_s)), straight from the definition."""
    s_s = (F.normalize(fs_i, dim=0).T @ F.normalize(fs_j, dim=0)) / tau
    s_t = (F.normalize(ft_i, dim=0).T @ F.normalize(ft_j, dim=0)) / tau
    return F.kl_div(F.log_softmax(s_s, 1), F.softmax(s_t, 1), reduction="batchmean")


def test_registered():
    assert METHODS.get("cirkd") is CIRKD


def test_p2p_of_identical_features_is_zero():
    feat = torch.randn(2, 5, 3, 4)
    assert p2p_batch_loss(feat, feat.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_p2p_two_pixel_case_by_hand():
    # student pixels e1, e2 -> S_s = [[10, 0], [0, 10]]; teacher pixels both e1 -> p_t uniform.
    feat_s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    feat_t = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]).reshape(1, 3, 1, 2)  # C_t = 3
    # each row: sum 0.5 * (log 0.5 - log p_s) with log p_s = (-log(1+e^-10), -10 - log(1+e^-10))
    expected = -math.log(2) + 5 + math.log(1 + math.exp(-10))
    assert p2p_batch_loss(feat_s, feat_t, tau=0.1).item() == pytest.approx(expected, rel=1e-5)


def test_p2p_groups_of_two_and_chunking_match_the_definition():
    torch.manual_seed(0)
    feat_s = torch.randn(3, 4, 2, 3, requires_grad=True)
    feat_t = torch.randn(3, 6, 2, 3)
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2)]  # groups {0, 1} and {2}
    fs, ft = feat_s.flatten(2), feat_t.flatten(2)
    expected = sum(direct_relation_kl(fs[i], fs[j], ft[i], ft[j], 0.1) for i, j in pairs) / 5
    whole = p2p_batch_loss(feat_s, feat_t, tau=0.1, group=2, row_chunk=1000)
    chunked = p2p_batch_loss(feat_s, feat_t, tau=0.1, group=2, row_chunk=4)  # checkpointed
    assert whole.item() == pytest.approx(expected.item(), rel=1e-5)
    assert chunked.item() == pytest.approx(expected.item(), rel=1e-5)
    (grad_whole,) = torch.autograd.grad(whole, feat_s)
    (grad_chunked,) = torch.autograd.grad(chunked, feat_s)
    (grad_direct,) = torch.autograd.grad(expected, feat_s)
    torch.testing.assert_close(grad_chunked, grad_direct, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grad_whole, grad_direct, rtol=1e-4, atol=1e-6)


def test_memory_kl_equals_a_direct_computation_with_a_fixed_queue():
    torch.manual_seed(1)
    anchor_s = F.normalize(torch.randn(7, 5), dim=1)
    anchor_t = F.normalize(torch.randn(7, 5), dim=1)
    keys = F.normalize(torch.randn(11, 5), dim=1)
    for temperature in (1.0, 2.0):
        scale = 0.1 * temperature
        expected = F.kl_div(F.log_softmax(anchor_s @ keys.T / scale, 1),
                            F.softmax(anchor_t @ keys.T / scale, 1),
                            reduction="batchmean") * temperature**2
        got = memory_kl_loss(anchor_s, anchor_t, keys, tau=0.1, temperature=temperature,
                             row_chunk=3)
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert memory_kl_loss(anchor_s, anchor_s, keys).item() == pytest.approx(0.0, abs=1e-6)
    assert memory_kl_loss(anchor_s[:0], anchor_t[:0], keys).item() == 0.0


def test_relation_kl_sums_rows():
    a = torch.randn(4, 3)
    keys = torch.randn(5, 3)
    one_row = relation_kl(a[:1], keys, a[1:2], keys, tau=0.5)
    rows = relation_kl(a[:2], keys, a[1:3], keys, tau=0.5)
    second = relation_kl(a[1:2], keys, a[2:3], keys, tau=0.5)
    assert rows.item() == pytest.approx(one_row.item() + second.item(), rel=1e-6)


def test_soft_kl_sum_value_and_gradient_equal_autograd():
    torch.manual_seed(3)
    logits_s = (torch.randn(6, 9) * 3).requires_grad_()
    logits_t = (torch.randn(6, 9) * 3).requires_grad_()
    reference_s = logits_s.detach().clone().requires_grad_()
    expected = F.kl_div(F.log_softmax(reference_s, 1), F.softmax(logits_t.detach(), 1),
                        reduction="sum")
    total = soft_kl_sum(logits_s, logits_t)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    (2.5 * total).backward()
    (2.5 * expected).backward()
    torch.testing.assert_close(logits_s.grad, reference_s.grad, rtol=1e-5, atol=1e-6)
    assert logits_t.grad is None  # the target side gets no gradient
    assert soft_kl_sum(logits_t, logits_t).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("budget", [2**26, 1])
def test_relation_kl_gradients_with_and_without_recompute(budget):
    torch.manual_seed(4)
    anchor_s, keys_s = torch.randn(7, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    anchor_t, keys_t = torch.randn(7, 6), torch.randn(5, 6)
    ref_a, ref_k = anchor_s.detach().clone().requires_grad_(), keys_s.detach().clone().requires_grad_()
    expected = F.kl_div(F.log_softmax(ref_a @ ref_k.T / 0.1, 1), F.softmax(anchor_t @ keys_t.T / 0.1, 1),
                        reduction="sum")
    total = relation_kl(anchor_s, keys_s, anchor_t, keys_t, tau=0.1, row_chunk=3, saved_budget=budget)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()
    expected.backward()
    torch.testing.assert_close(anchor_s.grad, ref_a.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(keys_s.grad, ref_k.grad, rtol=1e-4, atol=1e-5)


def test_ring_write_wraps_and_advances_the_pointer():
    queue = torch.zeros(2, 4, 1)
    ptr = torch.tensor([2, 0])
    values = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    ring_write(queue, ptr, torch.tensor([0, 1, 0, 0]), values)
    # class 0 gets 1, 3, 4 at slots 2, 3, 0 (wrap); class 1 gets 2 at slot 0
    assert queue[0, :, 0].tolist() == [4.0, 0.0, 1.0, 3.0]
    assert queue[1, :, 0].tolist() == [2.0, 0.0, 0.0, 0.0]
    assert ptr.tolist() == [1, 1]
    # more entries than slots: only the last 4 survive, the pointer still moves by the count
    ring_write(queue, ptr, torch.zeros(6, dtype=torch.long), torch.arange(10.0, 16.0)[:, None])
    assert sorted(queue[0, :, 0].tolist()) == [12.0, 13.0, 14.0, 15.0]
    assert queue[0, (1 + 5) % 4, 0].item() == 15.0
    assert ptr.tolist() == [(1 + 6) % 4, 1]


def test_enqueue_writes_region_means_and_random_class_pixels():
    torch.manual_seed(0)
    dim, classes = 3, 3
    emb = F.normalize(torch.randn(2, dim, 4, 5), dim=1)
    labels = torch.full((2, 4, 5), 255)
    labels[0, :2] = 0  # 10 pixels of class 0 in image 0
    labels[0, 2:, :2] = 2  # 4 pixels of class 2 in image 0
    labels[1, 1:] = 0  # 15 pixels of class 0 in image 1
    pixel_queue, region_queue = torch.zeros(classes, 20, dim), torch.zeros(classes, 3, dim)
    pixel_ptr, region_ptr = torch.tensor([0, 0, 19]), torch.tensor([2, 0, 1])
    enqueue(pixel_queue, pixel_ptr, region_queue, region_ptr, emb, labels, pixels_per_class=8)

    def region(b, mask):
        return F.normalize(emb[b][:, mask].mean(1), dim=0)

    # class 0: image 0's mean at slot 2, then image 1's at slot 0 (wrap); pointer 2 -> 1
    torch.testing.assert_close(region_queue[0, 2], region(0, labels[0] == 0))
    torch.testing.assert_close(region_queue[0, 0], region(1, labels[1] == 0))
    torch.testing.assert_close(region_queue[2, 1], region(0, labels[0] == 2))
    assert region_queue[1].abs().sum().item() == 0.0
    assert region_ptr.tolist() == [1, 0, 2]
    # pixels: min(count, 8) per (image, class); class 0 gets 8 + 8, class 2 gets 4 (19, 0, 1, 2)
    assert pixel_ptr.tolist() == [16, 0, (19 + 4) % 20]
    pixels_of = {c: emb.permute(0, 2, 3, 1)[labels == c] for c in (0, 2)}
    for c, slots in ((0, range(16)), (2, [19, 0, 1, 2])):
        for slot in slots:
            distance = (pixels_of[c] - pixel_queue[c, slot]).abs().sum(1).min()
            assert distance.item() < 1e-6  # every entry is a real pixel of that class
    image0 = emb[0].permute(1, 2, 0)[labels[0] == 0]
    firsts = pixel_queue[0, :8]
    assert torch.cdist(firsts, image0).min(1).values.max().item() < 1e-6  # image 0 first
    assert len({tuple(v.tolist()) for v in firsts}) == 8  # 8 distinct pixels, no repeats


def test_select_pixels_caps_per_image_and_class_and_follows_the_seed():
    labels = torch.randint(0, 3, (2, 6, 6))
    labels[:, 0] = 255
    torch.manual_seed(3)
    first = select_pixels(labels, 3, per_class=4)
    torch.manual_seed(3)
    again = select_pixels(labels, 3, per_class=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    image, position, cls = first
    assert torch.equal(labels.flatten(1)[image, position], cls)
    counts = torch.zeros(2, 3, dtype=torch.long).index_put_((image, cls), torch.ones_like(cls),
                                                            accumulate=True)
    present = torch.stack([torch.bincount(labels[b][labels[b] != 255], minlength=3)
                           for b in range(2)])
    assert torch.equal(counts, present.clamp(max=4))


def test_reference_sampling_draws_among_the_first_n_c_raster_positions():
    labels = torch.full((2, 4, 5), 255)
    labels[0, 3, 1:4] = 1  # 3 pixels of class 1, at positions 16..18; n_c = 3
    labels[0, :2] = 2  # 10 pixels of class 2 at positions 0..9
    labels[1, 2:, :] = 0  # 10 pixels of class 0 at positions 10..19
    torch.manual_seed(4)
    image, position, cls = select_pixels_raster(labels, 3, per_class=4)
    torch.manual_seed(4)
    again = select_pixels_raster(labels, 3, per_class=4)
    assert all(torch.equal(a, b) for a, b in zip((image, position, cls), again))
    # image-major, classes ascending; min(n_c, 4) entries per (image, class)
    assert image.tolist() == [0] * 7 + [1] * 4
    assert cls.tolist() == [1] * 3 + [2] * 4 + [0] * 4
    # class 1 takes all of positions 0..2 (ignored and class-2 pixels, as the reference does)
    assert sorted(position[:3].tolist()) == [0, 1, 2]
    # class 2: 4 distinct positions among 0..9; class 0 of image 1: among 0..9, all ignored
    assert len(set(position[3:7].tolist())) == 4 and max(position[3:].tolist()) <= 9
    assert (labels[1].flatten()[position[7:]] == 255).all()


def test_pixel_sampling_option_and_pooling_presets():
    method = build(pixel_sampling="reference", lambda_p2p_batch=0.0)
    out_s, out_t, labels = make_outputs(grad=False)
    torch.manual_seed(2)
    method(out_s, out_t, labels)
    grid = resize_labels(labels, (6, 8))
    counts = torch.stack([torch.bincount(grid[b][grid[b] != 255], minlength=3) for b in range(2)])
    assert method.pixel_ptr.tolist() == (counts.clamp(max=16).sum(0) % 50).tolist()
    with pytest.raises(ConfigError, match="pixel_sampling"):
        build(pixel_sampling="raster")
    segformer = CIRKD.make_options("segformer")
    assert (segformer.pixel_queue_size, segformer.p2p_pool, segformer.region_queue_size) == \
        (2000, 2, 2000)
    # unset, they follow the student's family as the reference's two training scripts do
    transformer = ModelInfo("s", "transformer", 3, (8, 16), (4, 8), 6, 4)
    for student, expected in ((model_info("s", decoder_channels=6), (20000, 1)), (transformer, (2000, 2))):
        built = CIRKD(student, model_info("t", decoder_channels=10), CIRKD.make_options(region_queue_size=7))
        assert (built.options.pixel_queue_size, built.options.p2p_pool) == expected
        assert built.pixel_queue.shape == (3, expected[0], 10)
    mlp = ModelInfo("s", "mlp", 3, (8, 16), (4, 8), 6, 4)
    with pytest.raises(ConfigError, match=r"no default for \['p2p_pool', 'pixel_queue_size'\]"):
        CIRKD(mlp, model_info("t", decoder_channels=10), CIRKD.make_options())
    assert CIRKD(mlp, model_info("t", decoder_channels=10), CIRKD.make_options("cnn")).options.p2p_pool == 1
    # CIRKD 2025 pools 4x4 from 256x256 up; below, or when off, the 2023 flag decides
    assert p2p_pool_size((256, 512), 1, auto=True) == 4
    assert p2p_pool_size((255, 512), 2, auto=True) == 2
    assert p2p_pool_size((512, 512), 1, auto=False) == 1


def test_auto_pool_equals_explicit_4x4_pooling_on_large_maps():
    torch.manual_seed(0)
    feat_s, feat_t = torch.randn(1, 4, 256, 256), torch.randn(1, 5, 256, 256)
    out_s = SegOutput(torch.randn(1, 3, 256, 256), [], feat_s)
    out_t = SegOutput(torch.randn(1, 3, 256, 256), [], feat_t)
    labels = torch.zeros(1, 256, 256, dtype=torch.long)
    options = {"lambda_pixel_memory": 0.0, "lambda_region_memory": 0.0, "lambda_kd": 0.0}
    auto = CIRKD(model_info("s", decoder_channels=4), model_info("t", decoder_channels=5),
                 CIRKD.make_options(p2p_auto_pool=True, **options))
    expected = p2p_batch_loss(F.avg_pool2d(feat_s, 4), F.avg_pool2d(feat_t, 4), 0.1, 2)
    assert auto(out_s, out_t, labels)["loss_p2p_batch"].item() == pytest.approx(
        expected.item(), rel=1e-5)


def test_sample_negatives_uses_one_index_set_for_every_class():
    queue = torch.arange(3 * 10, dtype=torch.float).reshape(3, 10, 1)
    keys = sample_negatives(queue, 4).reshape(3, 4)
    assert torch.equal(keys[1] - keys[0], torch.full((4,), 10.0))
    assert torch.equal(keys[2] - keys[0], torch.full((4,), 20.0))
    assert len(set(keys[0].tolist())) == 4


def make_outputs(seed: int = 0, grad: bool = True):
    gen = torch.Generator().manual_seed(seed)
    out_s = random_output(gen, logits=(2, 3, 6, 8), decoder=(2, 6, 6, 8), grad=grad)
    out_t = random_output(gen, logits=(2, 3, 3, 4), decoder=(2, 10, 3, 4), grad=grad)
    labels = torch.randint(0, 3, (2, 48, 64), generator=gen)
    labels[:, :8] = 255
    return out_s, out_t, labels


def build(**overrides) -> CIRKD:
    options = CIRKD.make_options(pixel_queue_size=50, region_queue_size=7, **overrides)
    return CIRKD(model_info("s", decoder_channels=6), model_info("t", decoder_channels=10), options)


def test_forward_terms_gradients_and_teacher_untouched():
    torch.manual_seed(0)
    method = build()
    out_s, out_t, labels = make_outputs()
    losses = method(out_s, out_t, labels)
    assert sorted(losses) == ["loss_kd", "loss_p2p_batch", "loss_pixel_memory",
                              "loss_region_memory"]
    assert all(torch.isfinite(v) and v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert out_s.decoder_feature.grad.abs().sum() > 0 and out_s.logits.grad.abs().sum() > 0
    assert out_t.decoder_feature.grad is None and out_t.logits.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in method.project.parameters())
    assert method.pixel_queue.shape == (3, 50, 10) and method.region_queue.shape == (3, 7, 10)
    # the queues moved by what the labels on the student grid (6x8) hold
    grid = resize_labels(labels, (6, 8))
    counts = torch.stack([torch.bincount(grid[b][grid[b] != 255], minlength=3) for b in range(2)])
    assert method.region_ptr.tolist() == (counts > 0).sum(0).tolist()
    assert method.pixel_ptr.tolist() == (counts.clamp(max=16).sum(0) % 50).tolist()


def test_weights_scale_the_terms_and_the_voc_preset():
    out_s, out_t, labels = make_outputs(grad=False)
    torch.manual_seed(5)
    base = build()(out_s, out_t, labels)
    torch.manual_seed(5)
    scaled = build(lambda_pixel_memory=0.01, lambda_kd=2.0)(out_s, out_t, labels)
    assert scaled["loss_pixel_memory"].item() == pytest.approx(
        base["loss_pixel_memory"].item() / 10, rel=1e-5)
    assert scaled["loss_kd"].item() == pytest.approx(2 * base["loss_kd"].item(), rel=1e-6)
    voc = CIRKD.make_options("voc")
    assert (voc.lambda_pixel_memory, voc.lambda_region_memory) == (0.01, 0.01)
    built = CIRKD(model_info("s", decoder_channels=6), model_info("t", decoder_channels=10),
                  CIRKD.make_options())
    assert built.options.pixel_queue_size == 20000
    assert CIRKD.make_options().region_queue_size == 2000
    without = build(lambda_pixel_memory=0.0, lambda_region_memory=0.0)
    assert sorted(without(out_s, out_t, labels)) == ["loss_kd", "loss_p2p_batch"]
    assert without.region_ptr.tolist() == [0, 0, 0]  # no memory terms: the queues stay


def test_same_seed_same_loss_and_state_round_trips():
    out_s, out_t, labels = make_outputs(grad=False)
    torch.manual_seed(11)
    first = build()
    losses_a = first(out_s, out_t, labels)
    torch.manual_seed(11)
    second = build()
    losses_b = second(out_s, out_t, labels)
    assert {k: v.item() for k, v in losses_a.items()} == {k: v.item() for k, v in losses_b.items()}
    torch.manual_seed(12)
    third = build()
    assert third(out_s, out_t, labels)["loss_pixel_memory"].item() != \
        losses_a["loss_pixel_memory"].item()

    state = first.state_dict()
    assert {"pixel_queue", "pixel_ptr", "region_queue", "region_ptr"} <= set(state)
    torch.manual_seed(99)
    restored = build()
    restored.load_state_dict(state)
    for key, value in state.items():
        assert torch.equal(restored.state_dict()[key], value)
    first.eval()
    restored.eval()
    torch.manual_seed(4)
    after_a = first(out_s, out_t, labels)
    torch.manual_seed(4)
    after_b = restored(out_s, out_t, labels)
    assert {k: v.item() for k, v in after_a.items()} == {k: v.item() for k, v in after_b.items()}
