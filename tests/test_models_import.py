"""Importing the reference codebases' checkpoints (harness/models/importer.py): a harness model
written under the reference key names imports back to exactly the same logits for each format;
misfits (another width, class count, format, a truncated or tampered file) are refused with the
cause, before anything is written."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from harness.cli import main
from harness.errors import CheckpointError
from harness.io import sha256_of
from harness.models import build_model, load_model
from harness.models.importer import import_checkpoint, reference_state_dict

torch.set_num_threads(1)

K = 19  # cityscapes
X = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))

# The number of tensors in each reference model's state_dict, measured by building the reference
# code (winycg/CIRKD at 1a2eb98, aux=True for ResNets, 19 classes); CIRKD's SegFormer adds the
# fuse conv bias that the harness folds into the BatchNorm.
REFERENCE_COUNTS = {("cirkd", "deeplabv3_r101"): 688, ("cirkd", "deeplabv3_r18"): 190,
                    ("cirkd", "pspnet_r18"): 178, ("cirkd", "deeplabv3_mbv2"): 350,
                    ("cirkd-segformer", "segformer_b0"): 193, ("mmseg", "segformer_b0"): 192}

# Reference names and shapes read off the reference code (CIRKD models/*.py and base_models/*.py,
# NVlabs SegFormer segformer_head.py), independently of the key tables: one key per table row.
_RESNET_STEM = {"pretrained.conv1.weight": (64, 3, 3, 3), "pretrained.bn1.weight": (64,),
                "pretrained.conv2.weight": (64, 64, 3, 3), "pretrained.bn2.running_mean": (64,),
                "pretrained.conv3.weight": (128, 64, 3, 3), "pretrained.bn3.running_var": (128,)}


def _aspp(c_in: int, width: int) -> dict:
    return {"head.aspp.b0.0.weight": (width, c_in, 1, 1), "head.aspp.b0.1.bias": (width,),
            "head.aspp.b1.block.0.weight": (width, c_in, 3, 3), "head.aspp.b1.block.1.weight": (width,),
            "head.aspp.b2.block.1.running_mean": (width,), "head.aspp.b3.block.0.weight": (width, c_in, 3, 3),
            "head.aspp.b4.gap.1.weight": (width, c_in, 1, 1), "head.aspp.b4.gap.2.running_var": (width,),
            "head.aspp.project.0.weight": (width, 5 * width, 1, 1), "head.aspp.project.1.weight": (width,),
            "head.block.0.weight": (width, width, 3, 3), "head.block.1.bias": (width,),
            "head.block.4.weight": (K, width, 1, 1), "head.block.4.bias": (K,)}


def _aux(c_in: int) -> dict:
    return {"auxlayer.block.0.weight": (c_in // 4, c_in, 3, 3), "auxlayer.block.1.running_var": (c_in // 4,),
            "auxlayer.block.4.weight": (K, c_in // 4, 1, 1), "auxlayer.block.4.bias": (K,)}


def _segformer_head(prefix: str, fuse: str, bn: str) -> dict:
    return {f"{prefix}linear_c4.proj.weight": (256, 256), f"{prefix}linear_c3.proj.weight": (256, 160),
            f"{prefix}linear_c2.proj.weight": (256, 64), f"{prefix}linear_c1.proj.weight": (256, 32),
            f"{prefix}linear_fuse.{fuse}.weight": (256, 1024, 1, 1),
            f"{prefix}linear_fuse.{bn}.running_mean": (256,), f"{prefix}linear_pred.weight": (K, 256, 1, 1)}


REFERENCE_KEYS = {
    ("cirkd", "deeplabv3_r101"): {**_RESNET_STEM, **_aspp(2048, 256), **_aux(1024),
                                  "pretrained.layer3.22.conv3.weight": (1024, 256, 1, 1),
                                  "pretrained.layer4.0.downsample.1.weight": (2048,)},
    ("cirkd", "deeplabv3_r18"): {**_RESNET_STEM, **_aspp(512, 128), **_aux(256),
                                 "pretrained.layer4.1.bn2.running_mean": (512,)},
    ("cirkd", "pspnet_r18"): {**_RESNET_STEM, **_aux(256),
                              **{f"head.psp.conv{i}.0.weight": (128, 512, 1, 1) for i in (1, 2, 3, 4)},
                              **{f"head.psp.conv{i}.1.weight": (128,) for i in (1, 2, 3, 4)},
                              "head.block.0.weight": (128, 1024, 3, 3), "head.block.1.running_var": (128,),
                              "head.classifier.weight": (K, 128, 1, 1)},
    ("cirkd", "deeplabv3_mbv2"): {**_aspp(320, 128),
                                  "pretrained.net.features.0.0.weight": (32, 3, 3, 3),
                                  "pretrained.net.features.0.1.weight": (32,),
                                  "pretrained.net.features.1.conv.0.weight": (32, 1, 3, 3),
                                  "pretrained.net.features.1.conv.1.bias": (32,),
                                  "pretrained.net.features.1.conv.3.weight": (16, 32, 1, 1),
                                  "pretrained.net.features.1.conv.4.bias": (16,),
                                  "pretrained.net.features.2.conv.0.weight": (96, 16, 1, 1),
                                  "pretrained.net.features.2.conv.1.weight": (96,),
                                  "pretrained.net.features.7.conv.3.weight": (192, 1, 3, 3),
                                  "pretrained.net.features.14.conv.4.running_var": (576,),
                                  "pretrained.net.features.17.conv.6.weight": (320, 960, 1, 1),
                                  "pretrained.net.features.17.conv.7.running_mean": (320,)},
    ("cirkd-segformer", "segformer_b0"): {**_segformer_head("", "0", "1"), "linear_fuse.0.bias": (256,),
                                          "patch_embed1.proj.weight": (32, 3, 7, 7),
                                          "block1.0.attn.kv.weight": (64, 32), "norm4.bias": (256,)},
    ("mmseg", "segformer_b0"): {**_segformer_head("decode_head.", "conv", "bn"),
                                "backbone.block4.1.mlp.dwconv.dwconv.weight": (1024, 1, 3, 3),
                                "backbone.norm4.weight": (256,)},
}
CASES = list(REFERENCE_COUNTS)


def randomized(name: str, num_classes: int = K, seed: int = 0) -> nn.Module:
    """``name`` in eval mode with random weights and BatchNorm statistics (not the init values)."""
    torch.manual_seed(seed)
    model = build_model(name, num_classes)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) / 8)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            module.num_batches_tracked.fill_(7)
    return model.eval()


@pytest.fixture(scope="module")
def models() -> dict:
    return {name: randomized(name) for name in {name for _, name in CASES}}


def logits(model: nn.Module, input_space: str | None = None) -> torch.Tensor:
    """``model``'s logits for X, its weights read as trained on ``input_space`` (default: its own)."""
    own = model.input_space
    model.input_space = input_space or own
    try:
        with torch.no_grad():
            return model(X).logits
    finally:
        model.input_space = own


@pytest.mark.parametrize("fmt, name", CASES)
def test_reference_names_are_those_of_the_reference_code(fmt, name, models):
    state = reference_state_dict(models[name], fmt)
    assert len(state) == REFERENCE_COUNTS[fmt, name]
    assert {k: tuple(state[k].shape) for k in REFERENCE_KEYS[fmt, name]} == REFERENCE_KEYS[fmt, name]


@pytest.mark.parametrize("fmt, name", CASES)
def test_import_round_trips_logits_exactly(fmt, name, models, tmp_path):
    model = models[name]
    state = reference_state_dict(model, fmt)
    if fmt == "mmseg":  # an mmcv checkpoint: meta + state_dict, with the head's unused conv_seg
        state = {"meta": {"CLASSES": ["road"] * K, "iter": 160000},
                 "state_dict": {**state, "decode_head.conv_seg.weight": torch.zeros(K, 128, 1, 1),
                                "decode_head.conv_seg.bias": torch.zeros(K)}}
    torch.save(state, tmp_path / "ref.pth")
    config = import_checkpoint(tmp_path / "ref.pth", fmt, name, "cityscapes", tmp_path / "model")
    loaded, saved = load_model(tmp_path / "model", expect_name=name, expect_num_classes=K,
                               expect_dataset="cityscapes")
    cirkd = fmt.startswith("cirkd")  # CIRKD's weights expect its BGR input and align corners
    assert loaded.input_space == ("cirkd_bgr" if cirkd else "imagenet_rgb")
    assert torch.equal(logits(loaded), logits(model, loaded.input_space))
    if model.info.has_aux:
        model.input_space = loaded.input_space
        with torch.no_grad():
            assert torch.equal(loaded(X).aux_logits, model(X).aux_logits)
        model.input_space = "imagenet_rgb"
    assert saved == config and saved["align_corners"] is cirkd
    assert saved.get("input_space", "imagenet_rgb") == loaded.input_space
    assert saved["source"] == {
        "file": str(tmp_path / "ref.pth"), "sha256": sha256_of(tmp_path / "ref.pth"), "format": fmt}


def test_cirkd_segformer_fuse_bias_folds_into_the_running_mean(models, tmp_path):
    """BN(Wx + b) with mean m = BN(Wx) with mean m - b. Dyadic values make m + b - b exact in
    float32, so the imported model equals the original bit for bit."""
    model = randomized("segformer_b0", seed=3)
    bn = model.decoder.fuse_stage[1]
    bn.running_mean.copy_(torch.round(bn.running_mean * 256) / 256)
    state = reference_state_dict(model, "cirkd-segformer")
    bias = torch.round(torch.randn(256, generator=torch.Generator().manual_seed(4)) * 64) / 64
    assert bias.abs().sum() > 10
    state["linear_fuse.0.bias"] = bias
    state["linear_fuse.1.running_mean"] = state["linear_fuse.1.running_mean"] + bias
    torch.save(state, tmp_path / "cirkd_segformer.pth")
    import_checkpoint(tmp_path / "cirkd_segformer.pth", "cirkd-segformer", "segformer_b0",
                      "cityscapes", tmp_path / "model")
    loaded, _ = load_model(tmp_path / "model")
    assert torch.equal(loaded.decoder.fuse_stage[1].running_mean, bn.running_mean)
    assert torch.equal(logits(loaded), logits(model, "cirkd_bgr"))


def test_cli_import_wrapped_ddp_file_without_bn_counters(models, tmp_path, capsys):
    """{'model': {'module.' + key}} without num_batches_tracked (CIRKD's loader accepts it)."""
    state = {f"module.{k}": v for k, v in reference_state_dict(models["deeplabv3_r18"], "cirkd").items()
             if not k.endswith("num_batches_tracked")}
    torch.save({"model": state}, tmp_path / "deeplabv3_resnet18_citys_best_model.pth")
    assert main(["models", "import", str(tmp_path / "deeplabv3_resnet18_citys_best_model.pth"),
                 "--format", "cirkd", "--model", "deeplabv3_r18", "--dataset", "cityscapes",
                 "--out", str(tmp_path / "r18")]) == 0
    loaded, config = load_model(tmp_path / "r18")
    assert torch.equal(logits(loaded), logits(models["deeplabv3_r18"], "cirkd_bgr"))
    assert config["source"]["format"] == "cirkd"
    assert int(loaded.head.block[1].num_batches_tracked) == 0  # the model's own counter


def refused(tmp_path, state_or_bytes, fmt, name, dataset="cityscapes") -> str:
    """Import ``state_or_bytes`` and return the error; asserts that nothing was written."""
    file = tmp_path / "in.pth"
    if isinstance(state_or_bytes, bytes):
        file.write_bytes(state_or_bytes)
    else:
        torch.save(state_or_bytes, file)
    with pytest.raises(CheckpointError) as info:
        import_checkpoint(file, fmt, name, dataset, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pth"]
    return str(info.value)


def test_wider_head_is_refused_naming_the_variant_that_fits(tmp_path):
    """A CIRKD 2025 DeepLabV3-R18 (ASPP/head 512) has 36 tensors of another shape."""
    wide = reference_state_dict(randomized("deeplabv3_r18_w512"), "cirkd")
    message = refused(tmp_path, wide, "cirkd", "deeplabv3_r18")
    assert "36 wrong shapes: head.aspp.b0.0.weight (512, 512, 1, 1) vs (128, 512, 1, 1)" in message
    assert message.endswith("it fits deeplabv3_r18_w512 (a 512-channel head): "
                            "pass --model deeplabv3_r18_w512")
    narrow = reference_state_dict(randomized("deeplabv3_r18"), "cirkd")
    assert refused(tmp_path, narrow, "cirkd", "deeplabv3_r18_w512").endswith(
        "it fits deeplabv3_r18 (a 128-channel head): pass --model deeplabv3_r18")


def test_truncated_file_is_refused(models, tmp_path):
    torch.save(reference_state_dict(models["deeplabv3_r18"], "cirkd"), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "full.pth").unlink()
    message = refused(tmp_path, data[: len(data) // 2], "cirkd", "deeplabv3_r18")
    assert "cannot be read" in message and "truncated" in message


def test_missing_and_unused_tensors_are_named(models, tmp_path):
    state = reference_state_dict(models["deeplabv3_r18"], "cirkd")
    del state["auxlayer.block.4.bias"]
    state["head.proj_head.0.weight"] = torch.zeros(1)
    message = refused(tmp_path, state, "cirkd", "deeplabv3_r18")
    assert "missing 1 keys: auxlayer.block.4.bias; unexpected 1 keys: head.proj_head.0.weight" in message
    assert "not a complete cirkd deeplabv3_r18 checkpoint" in message


def test_class_count_mismatch_names_the_classes(tmp_path):
    voc = reference_state_dict(randomized("deeplabv3_r18", num_classes=21), "cirkd")
    message = refused(tmp_path, voc, "cirkd", "deeplabv3_r18")
    assert message.endswith("the file predicts 21 classes and cityscapes has 19; pass the --dataset "
                            "it was trained on")


def test_wrong_format_names_the_file_kind(models, tmp_path):
    cirkd = reference_state_dict(models["deeplabv3_r18"], "cirkd")
    assert "looks like a CIRKD DeepLabV3" in refused(tmp_path, cirkd, "mmseg", "segformer_b0")
    mmseg_own = {"backbone.layers.0.0.projection.weight": torch.zeros(1),
                 "decode_head.convs.0.conv.weight": torch.zeros(1)}
    assert "looks like an OpenMMLab mmseg SegformerHead" in refused(
        tmp_path, {"state_dict": mmseg_own}, "mmseg", "segformer_b0")


def test_pickled_objects_are_not_loaded(tmp_path):
    message = refused(tmp_path, {"state_dict": {}, "meta": Unsafe()}, "cirkd", "deeplabv3_r18")
    assert "objects other than tensors" in message and "not loaded" in message


class Unsafe:
    """A class a weights_only load refuses to construct."""


def test_format_and_model_must_match(capsys, tmp_path):
    (tmp_path / "x.pth").write_bytes(b"")
    assert main(["models", "import", str(tmp_path / "x.pth"), "--format", "cirkd", "--model",
                 "segformer_b4", "--dataset", "cityscapes", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "segformer_b4 is imported with --format cirkd-segformer or mmseg" in err[0]
    assert not (tmp_path / "o").exists()


def test_cirkd_mobilenetv2_imagenet_file_loads_as_pretrained_encoder(tmp_path):
    """CIRKD's mobilenetv2-imagenet.pth: features.i.conv.j names, features.18 / classifier of the
    ImageNet net (ignored), no num_batches_tracked."""
    source = randomized("deeplabv3_mbv2").encoder
    state = {k.removeprefix("pretrained.net."): v
             for k, v in reference_state_dict(randomized("deeplabv3_mbv2"), "cirkd").items()
             if k.startswith("pretrained.") and not k.endswith("num_batches_tracked")}
    assert tuple(state["features.1.conv.3.weight"].shape) == (16, 32, 1, 1)
    state |= {"features.18.0.weight": torch.zeros(1280, 320, 1, 1), "features.18.1.weight": torch.ones(1280),
              "classifier.1.weight": torch.zeros(1000, 1280), "classifier.1.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "mobilenetv2-imagenet.pth")
    model = build_model("deeplabv3_mbv2", K, pretrained=str(tmp_path / "mobilenetv2-imagenet.pth")).eval()
    with torch.no_grad():
        assert torch.equal(model.encoder(X)[-1], source(X)[-1])
    del state["features.17.conv.7.running_var"]
    torch.save(state, tmp_path / "mobilenetv2-imagenet.pth")
    with pytest.raises(CheckpointError, match=r"missing 1 keys: features\.17\.conv\.7\.running_var; "
                                              r"read with CIRKD MobileNetV2 key names"):
        build_model("deeplabv3_mbv2", K, pretrained=str(tmp_path / "mobilenetv2-imagenet.pth"))


def test_imported_teacher_trains_a_student(tmp_path):
    """The imported folder is a teacher checkpoint like a trained one (model.teacher_model)."""
    from harness.config import load_config
    from harness.data import prepare_dataset
    from harness.engine import train

    root = tmp_path / "toycity"
    prepare_dataset("toycity", root, num_train=4, num_val=2, height=32, width=64)
    torch.save({"state_dict": reference_state_dict(randomized("segformer_b0", num_classes=10), "mmseg")},
               tmp_path / "segformer.b0.toy.pth")
    import_checkpoint(tmp_path / "segformer.b0.toy.pth", "mmseg", "segformer_b0", "toycity",
                      tmp_path / "teacher")
    metrics = train(load_config(None, [
        f"data.root={root}", "model.student=deeplabv3_tiny", "model.teacher=segformer_b0",
        f"model.teacher_model={tmp_path / 'teacher'}", "method.name=kd", "data.crop=[32, 32]",
        "data.batch_size=2", "data.workers=0", "train.iterations=1", "train.eval_every=0",
        "train.threads=1"]), tmp_path / "run")
    assert metrics["teacher_model"]["sha256"] == sha256_of(tmp_path / "teacher" / "model.safetensors")
    assert json.loads((tmp_path / "teacher" / "config.json").read_text())["source"]["format"] == "mmseg"


def test_save_model_replaces_a_model_folder_only(tmp_path):
    model = build_model("segformer_tiny", 3)
    from harness.models import save_model

    save_model(model, tmp_path / "m", {"dataset": "toycity"})
    save_model(model, tmp_path / "m", {"dataset": "toycity", "miou": 1.0})  # a model folder: replaced
    assert json.loads((tmp_path / "m" / "config.json").read_text())["miou"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(CheckpointError, match="is not a saved-model folder .*metrics.json"):
        save_model(model, tmp_path / "run", {"dataset": "toycity"})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.json"]


def test_out_folder_holding_other_files_is_refused_before_reading(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"run exists and is not a saved-model folder .*metrics\.json"):
        import_checkpoint(tmp_path / "absent.pth", "cirkd", "deeplabv3_r18", "cityscapes", tmp_path / "run")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["metrics.json", "run"]


def test_cirkd_input_space_is_bgr_0_255_minus_cirkd_mean():
    """A pixel (R, G, B) = (255, 0, 128) normalised by the data pipeline becomes, for CIRKD's
    weights, (B, G, R) - (104.00698793, 116.66876762, 122.67891434) (CIRKD dataset/*.py)."""
    from harness.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from harness.models.base import imagenet_rgb_to_cirkd_bgr

    rgb = torch.tensor([255.0, 0.0, 128.0]).view(1, 3, 1, 1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ours = (rgb / 255 - mean) / std
    expected = torch.tensor([128 - 104.00698793, 0 - 116.66876762, 255 - 122.67891434])
    torch.testing.assert_close(imagenet_rgb_to_cirkd_bgr(ours).flatten(), expected, rtol=0, atol=1e-4)


def test_imported_cirkd_model_sees_what_cirkd_fed_its_weights(models, tmp_path):
    """The imported model on the pipeline's input equals the same weights on CIRKD's input
    (up to float rounding of the conversion)."""
    from harness.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    torch.save(reference_state_dict(models["deeplabv3_r18"], "cirkd"), tmp_path / "r18.pth")
    import_checkpoint(tmp_path / "r18.pth", "cirkd", "deeplabv3_r18", "cityscapes", tmp_path / "model")
    loaded, _ = load_model(tmp_path / "model")
    image = torch.randint(0, 256, (1, 3, 32, 48), generator=torch.Generator().manual_seed(5)).float()
    def column(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values).view(1, 3, 1, 1)

    pipeline = (image / 255 - column(IMAGENET_MEAN)) / column(IMAGENET_STD)
    cirkd = image.flip(1) - column((104.00698793, 116.66876762, 122.67891434))
    with torch.no_grad():
        ours, theirs = loaded(pipeline).logits, models["deeplabv3_r18"](cirkd).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * theirs.abs().max().item())


def test_unknown_input_space_in_config_json_is_refused(tmp_path):
    from harness.models import save_model

    save_model(build_model("segformer_tiny", 3), tmp_path / "m", {"dataset": "toycity"})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "input_space": "bgr"}))
    with pytest.raises(CheckpointError, match="'input_space' must be one of imagenet_rgb, cirkd_bgr, got"):
        load_model(tmp_path / "m")
