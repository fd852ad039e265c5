"""Model zoo: every registered name builds with the documented shapes, strides and parameter
counts; checkpoints round-trip and mismatches are refused."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from harness.errors import CheckpointError
from harness.models import (
    MODELS,
    ModelInfo,
    SegOutput,
    build_model,
    count_parameters,
    load_model,
    save_model,
)

torch.set_num_threads(1)

K = 19
H, W = 64, 128
PAPER = ["deeplabv3_r101", "deeplabv3_r18", "deeplabv3_mbv2", "pspnet_r18",
         "segformer_b0", "segformer_b1", "segformer_b4"]
DEMO = ["deeplabv3_tiny", "deeplabv3_small", "segformer_tiny", "segformer_small"]
WIDE = ["deeplabv3_r101_w512", "deeplabv3_r18_w512"]  # CIRKD's 2025 DeepLabV3 head width

# Published parameter counts (K=19), millions. CNNs: CIRKD paper (Yang et al., CVPR 2022), Table of
# Cityscapes results: DeepLabV3-R101 61.1M, DeepLabV3-R18 13.6M, DeepLabV3-MBv2 3.2M,
# PSPNet-R18 12.9M (CNNs with the aux head, as trained). SegFormer paper (Xie et al., 2021),
# Table 1/2: MiT-B0 3.8M, B1 13.7M, B4 64.1M.
PUBLISHED_M = {"deeplabv3_r101": 61.1, "deeplabv3_r18": 13.6, "deeplabv3_mbv2": 3.2,
               "pspnet_r18": 12.9, "segformer_b0": 3.8, "segformer_b1": 13.7, "segformer_b4": 64.1}


@pytest.fixture(scope="module")
def built() -> dict:
    """Every registered model built once for K=19 (the big ones are slow to construct)."""
    torch.manual_seed(0)
    return {name: build_model(name, K).eval() for name in MODELS.names()}


@pytest.fixture(scope="module")
def outputs(built) -> dict:
    images = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return {name: model(images) for name, model in built.items()}


def test_registry_holds_paper_and_demo_models():
    assert set(PAPER + DEMO + WIDE) <= set(MODELS.names())


def test_unknown_name_lists_valid_names():
    with pytest.raises(KeyError, match="valid names: .*deeplabv3_r18"):
        build_model("deeplabv3_r999", K)


@pytest.mark.parametrize("name", PAPER + DEMO + WIDE)
def test_shapes_and_strides_match_info(name, built, outputs):
    model, out = built[name], outputs[name]
    info = model.info
    assert isinstance(out, SegOutput) and isinstance(info, ModelInfo)
    assert info.name == name and info.num_classes == K
    s = info.logits_stride
    assert out.logits.shape == (2, K, H // s, W // s)
    assert out.decoder_feature.shape == (2, info.decoder_channels, H // s, W // s)
    assert len(out.features) == len(info.stage_channels) == len(info.stage_strides) == 4
    for feat, ch, stride in zip(out.features, info.stage_channels, info.stage_strides):
        assert feat.shape == (2, ch, H // stride, W // stride)
    if info.family == "cnn":
        # deeplabv3_small's DeepLabV3+ decoder reads stage 1: logits at stride 4
        assert s == (4 if name == "deeplabv3_small" else 8) and info.stage_strides == (4, 8, 8, 8)
    else:
        assert info.family == "transformer"
        # segformer_tiny's last patch embedding keeps stride 16 (a 4x8 last stage at 64x128)
        strides = (4, 8, 16, 16) if name == "segformer_tiny" else (4, 8, 16, 32)
        assert s == 4 and info.stage_strides == strides and out.aux_logits is None
    if info.has_aux:
        assert out.aux_logits.shape == (2, K, H // 8, W // 8)
    else:
        assert out.aux_logits is None


def test_resnet_cnns_have_aux_and_mbv2_does_not(built):
    for name in ["deeplabv3_r101", "deeplabv3_r18", "pspnet_r18", "deeplabv3_tiny", "deeplabv3_small"]:
        assert built[name].info.has_aux, name
    assert not built["deeplabv3_mbv2"].info.has_aux


def test_decoder_channels_as_reference(built):
    # CIRKD: ASPP 256 for R101, 128 for R18 / MBv2, PSP projection 128; SegFormer E=256 (B0/B1), 768 (B4)
    expect = {"deeplabv3_r101": 256, "deeplabv3_r18": 128, "deeplabv3_mbv2": 128, "pspnet_r18": 128,
              "segformer_b0": 256, "segformer_b1": 256, "segformer_b4": 768}
    assert {n: built[n].info.decoder_channels for n in expect} == expect
    assert built["deeplabv3_r101"].info.stage_channels == (256, 512, 1024, 2048)
    assert built["segformer_b0"].info.stage_channels == (32, 64, 160, 256)


def deeplab_head_params(c_in: int, width: int, k: int = K) -> int:
    """ASPP (1x1, three 3x3, pooled 1x1, 5w -> w projection) + 3x3 block + classifier; conv
    weights without bias, 2 BN parameters per channel (harness/models/heads.py)."""
    aspp = 2 * (c_in * width + 2 * width) + 3 * (9 * c_in * width + 2 * width) + 5 * width * width + 2 * width
    return aspp + 9 * width * width + 2 * width + width * k + k


def test_deeplabv3_small_head_is_deeplabv3_plus(built):
    # ASPP on stage 4 (128 ch) + 1x1 reduction of stage 1 (16 -> 16) + 3x3 fuse (64 + 16 -> 64)
    aspp = 2 * (128 * 64 + 2 * 64) + 3 * (9 * 128 * 64 + 2 * 64) + 5 * 64 * 64 + 2 * 64
    expect = aspp + (16 * 16 + 2 * 16) + 9 * 80 * 64 + 2 * 64 + 64 * K + K
    head = built["deeplabv3_small"].head
    assert count_parameters(head) == expect
    assert built["deeplabv3_small"].encoder.feature_info.channels() == [16, 32, 64, 128]


@pytest.mark.parametrize("wide, base, c_in, width", [
    ("deeplabv3_r101_w512", "deeplabv3_r101", 2048, 256), ("deeplabv3_r18_w512", "deeplabv3_r18", 512, 128)])
def test_wide_variants_differ_by_the_head_width_only(built, wide, base, c_in, width):
    assert built[wide].info.decoder_channels == 512
    delta = count_parameters(built[wide]) - count_parameters(built[base])
    assert delta == deeplab_head_params(c_in, 512) - deeplab_head_params(c_in, width)
    wide_state = built[wide].state_dict()
    different = [k for k, v in built[base].state_dict().items() if wide_state[k].shape != v.shape]
    assert len(different) == 36 and all(k.startswith("head.") for k in different)


def test_resnet_dilation_pattern_matches_reference(built):
    """layer3 first block dilation 1 then 2; layer4 first block 2 then 4 (torchvision/CIRKD)."""
    enc = built["deeplabv3_r18"].encoder
    assert [b.conv1.dilation[0] for b in enc.layer3] == [1, 2]
    assert [b.conv2.dilation[0] for b in enc.layer3] == [2, 2]
    assert [b.conv1.dilation[0] for b in enc.layer4] == [2, 4]
    assert [b.conv2.dilation[0] for b in enc.layer4] == [4, 4]


@pytest.mark.parametrize("name", PAPER)
def test_parameter_counts_near_published(name, built):
    millions = count_parameters(built[name]) / 1e6
    assert millions == pytest.approx(PUBLISHED_M[name], rel=0.03), millions


def test_demo_small_has_clearly_more_capacity_than_tiny(built):
    for family in ["deeplabv3", "segformer"]:
        tiny = count_parameters(built[f"{family}_tiny"])
        small = count_parameters(built[f"{family}_small"])
        assert small >= 3 * tiny, (family, tiny, small)
    assert built["deeplabv3_tiny"].info.has_aux and built["segformer_tiny"].info.logits_stride == 4


def _metadata() -> dict:
    return {"dataset": "toycity", "miou": 41.5}


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model("deeplabv3_tiny", 11)
    # one training step's worth of BN statistics so that buffers differ from a fresh model
    model.train()
    model(torch.randn(2, 3, H, W))
    model.eval()
    save_model(model, tmp_path / "model", _metadata())
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config == {"name": "deeplabv3_tiny", "num_classes": 11, "dataset": "toycity", "miou": 41.5}
    loaded, meta = load_model(tmp_path / "model", expect_name="deeplabv3_tiny",
                              expect_num_classes=11, expect_dataset="toycity")
    assert meta == config and not loaded.training
    images = torch.randn(2, 3, H, W)
    with torch.no_grad():
        a, b = model(images), loaded(images)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.aux_logits, b.aux_logits)
    assert sorted(tmp_path.joinpath("model").iterdir()) == [
        tmp_path / "model" / "config.json", tmp_path / "model" / "model.safetensors"]


def test_segformer_round_trip(tmp_path):
    model = build_model("segformer_tiny", 5).eval()
    save_model(model, tmp_path, {"dataset": "toycity"})
    loaded, _ = load_model(tmp_path)
    images = torch.randn(1, 3, H, W)
    with torch.no_grad():
        assert torch.equal(model(images).logits, loaded(images).logits)


@pytest.mark.parametrize("kwargs, message", [
    ({"expect_name": "segformer_tiny"}, "is a 'deeplabv3_tiny' model but 'segformer_tiny'"),
    ({"expect_num_classes": 19}, "predicts 11 classes but 19 are needed"),
    ({"expect_dataset": "cityscapes"}, "trained on dataset 'toycity', not 'cityscapes'"),
])
def test_mismatched_checkpoint_refused(tmp_path, kwargs, message):
    save_model(build_model("deeplabv3_tiny", 11), tmp_path, _metadata())
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path, **kwargs)


def test_missing_checkpoint_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")


def test_tampered_weights_refused(tmp_path):
    """config says 11 classes but the weights are of a 5-class model -> wrong shapes named."""
    save_model(build_model("deeplabv3_tiny", 5), tmp_path, _metadata())
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_classes"] = 11
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wrong shapes head.classifier.weight"):
        load_model(tmp_path)


def test_save_refuses_metadata_overriding_name(tmp_path):
    with pytest.raises(ValueError, match="may not set"):
        save_model(build_model("segformer_tiny", 3), tmp_path, {"name": "other"})


def test_good_pretrained_file_loads(tmp_path):
    torch.manual_seed(3)
    source = build_model("deeplabv3_tiny", 11)
    state = {k: v.clone() for k, v in source.encoder.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 64)  # an ImageNet classifier key is ignored
    save_file(state, str(tmp_path / "enc.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.encoder.state_dict().items()}},
               tmp_path / "enc.pth")
    for file in ["enc.safetensors", "enc.pth"]:
        torch.manual_seed(4)
        model = build_model("deeplabv3_tiny", 11, pretrained=str(tmp_path / file))
        for key, value in source.encoder.state_dict().items():
            assert torch.equal(model.encoder.state_dict()[key], value), (file, key)


def test_cirkd_resnet_stem_names_are_mapped(tmp_path):
    """A CIRKD ResNetV1s file (stem conv1/bn1/conv2/bn2/conv3/bn3) loads into the timm deep stem."""
    source = build_model("deeplabv3_tiny", 11).encoder.state_dict()
    to_cirkd = {"conv1.0.": "conv1.", "conv1.1.": "bn1.", "conv1.3.": "conv2.", "conv1.4.": "bn2.",
                "conv1.6.": "conv3.", "bn1.": "bn3."}
    cirkd = {}
    for key, value in source.items():
        prefix = next((p for p in to_cirkd if key.startswith(p)), None)
        cirkd[to_cirkd[prefix] + key[len(prefix):] if prefix else key] = value.clone()
    assert "conv3.weight" in cirkd and "conv1.0.weight" not in cirkd
    torch.save(cirkd, tmp_path / "resnet-imagenet.pth")
    model = build_model("deeplabv3_tiny", 11, pretrained=str(tmp_path / "resnet-imagenet.pth"))
    assert torch.equal(model.encoder.state_dict()["conv1.6.weight"], cirkd["conv3.weight"])
    assert torch.equal(model.encoder.state_dict()["bn1.running_var"], cirkd["bn3.running_var"])


def test_segformer_pretrained_file_loads(tmp_path):
    source = build_model("segformer_tiny", 4)
    save_file(dict(source.encoder.state_dict()), str(tmp_path / "mit.safetensors"))
    model = build_model("segformer_tiny", 4, pretrained=str(tmp_path / "mit.safetensors"))
    key = "block1.0.attn.q.weight"
    assert torch.equal(model.encoder.state_dict()[key], source.encoder.state_dict()[key])


def test_pretrained_file_with_wrong_keys_refused(tmp_path):
    other = build_model("segformer_tiny", 11).encoder.state_dict()
    save_file(dict(other), str(tmp_path / "mit.safetensors"))
    with pytest.raises(CheckpointError,
                       match=r"mit\.safetensors does not fit .*missing \d+ keys: conv1\.0\.weight"):
        build_model("deeplabv3_tiny", 11, pretrained=str(tmp_path / "mit.safetensors"))


def test_pretrained_file_with_wrong_shapes_refused(tmp_path):
    small = build_model("deeplabv3_small", 11).encoder.state_dict()
    save_file(dict(small), str(tmp_path / "small.safetensors"))
    with pytest.raises(CheckpointError, match=r"does not fit the deeplabv3_tiny encoder .*wrong shapes: "
                                              r"layer3\.0\.conv1\.weight \(64, 32, 3, 3\) "
                                              r"vs \(48, 32, 3, 3\)"):
        build_model("deeplabv3_tiny", 11, pretrained=str(tmp_path / "small.safetensors"))


def test_missing_pretrained_file_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_model("segformer_tiny", 11, pretrained=str(tmp_path / "none.pth"))


def test_segformer_decoder_predicts_at_the_stride4_stage_size():
    """NVlabs SegFormerHead / mmseg / CIRKD resize every stage to c1's size; at 102x206 that is
    26x52 (the MiT patch embedding rounds up), where image // 4 would be 25x51."""
    from segmentation_models_pytorch.decoders.segformer.decoder import SegformerDecoder

    torch.manual_seed(0)
    model = build_model("segformer_tiny", 5).eval()
    with torch.no_grad():
        images = torch.randn(1, 3, 102, 206)
        out = model(images)
        assert tuple(out.logits.shape[-2:]) == (26, 52) == tuple(out.features[0].shape[-2:])
        # the head written out as in NVlabs' SegFormerHead: per-stage linear, resize to c1, fuse
        c1_size = out.features[0].shape[-2:]
        resized = []
        for mlp, stage in zip(model.decoder.mlp_stage, out.features[::-1]):
            projected = torch.einsum("bchw,ec->behw", stage, mlp.linear.weight)
            projected = projected + mlp.linear.bias.view(1, -1, 1, 1)
            resized.append(torch.nn.functional.interpolate(projected, size=c1_size,
                                                           mode="bilinear", align_corners=False))
        fused = model.decoder.fuse_stage(torch.cat(resized, dim=1))
        torch.testing.assert_close(out.decoder_feature, fused, rtol=1e-5, atol=1e-5)
        # at a multiple of 4 it is smp's decoder, with the same modules and weights
        smp = SegformerDecoder(list(model.encoder.out_channels), encoder_depth=5,
                               segmentation_channels=model.info.decoder_channels).eval()
        smp.load_state_dict(model.decoder.state_dict())
        even = torch.randn(1, 3, 64, 128)
        torch.testing.assert_close(model.decoder(model.encoder(even)), smp(model.encoder(even)),
                                   rtol=0, atol=0)
