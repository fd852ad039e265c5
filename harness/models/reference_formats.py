"""The reference codebases' checkpoint formats, as data (docs/protocol.md §Imported checkpoints):
where each tensor of a harness model sits in their files, and the input and resizing their
weights were trained with.

A :data:`Table` is a tuple of ``(harness prefix, reference prefix)`` pairs: a harness state-dict
key takes the reference name given by its longest matching harness prefix (``rename``). Tables
only rename; the one arithmetic step, folding a conv bias into the next BatchNorm, is listed in
:attr:`Layout.folds`. Sources (read, not copied):

- winycg/CIRKD: ``models/deeplabv3.py``, ``models/pspnet.py``, ``models/deeplabv3_mobile.py``,
  ``models/segformer.py``, ``models/base_models/resnetv1b.py`` (``resnet.py`` before 2025),
  ``models/base_models/mobilenetv2.py``; ``train_baseline.py`` saves ``model.state_dict()``.
- NVlabs/SegFormer (mmseg 0.11 based): ``mmseg/models/backbones/mix_transformer.py`` (the MiT key
  names smp and CIRKD share) and ``mmseg/models/decode_heads/segformer_head.py``; its configs
  normalise RGB images with the ImageNet mean/std and resize with ``align_corners=False``.
"""
from __future__ import annotations

from dataclasses import dataclass

Table = tuple[tuple[str, str], ...]

# Input spaces (SegModel.input_space). The data pipeline feeds imagenet_rgb: RGB in [0, 1]
# minus the ImageNet mean, over its std (harness/data/transforms.py), as NVlabs/mmseg configs
# do at 0..255. CIRKD's datasets (dataset/*.py) feed cv2's BGR image in 0..255 minus this
# mean, with no std; a model holding CIRKD weights converts its input to that.
IMAGENET_RGB, CIRKD_BGR = "imagenet_rgb", "cirkd_bgr"
CIRKD_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)


def under(ours: str, theirs: str, table: Table) -> Table:
    """``table`` with ``ours`` / ``theirs`` put in front of its harness / reference prefixes."""
    return tuple((ours + a, theirs + b) for a, b in table)


def rename(key: str, table: Table) -> str | None:
    """The reference name of harness ``key`` under ``table``; None when no prefix matches."""
    best = max((pair for pair in table if key.startswith(pair[0])), key=lambda p: len(p[0]), default=None)
    return None if best is None else best[1] + key[len(best[0]):]


# ---- encoders (keys relative to the encoder module) ----

# CIRKD ResNetV1s deep stem conv1/bn1/conv2/bn2/conv3/bn3 = timm's conv1.{0,1,3,4,6} + bn1;
# layer1..layer4 (blocks, downsample.0/1) carry the same names in both.
RESNET_V1S: Table = (("conv1.0.", "conv1."), ("conv1.1.", "bn1."), ("conv1.3.", "conv2."),
                     ("conv1.4.", "bn2."), ("conv1.6.", "conv3."), ("bn1.", "bn3."), ("layer", "layer"))

# CIRKD MobileNetV2 (``features.i``, tonylins' layout): features.0 is the stem, features.1..17 the
# inverted residual blocks, which timm groups into stages of these lengths; features.18 (the
# 1x1 conv to 1280 channels) exists only in ImageNet files, as timm's conv_head/bn2.
MBV2_STAGE_DEPTHS = (1, 2, 3, 4, 3, 3, 1)
_MBV2_FIRST_BLOCK: Table = (("conv_dw.", "conv.0."), ("bn1.", "conv.1."), ("conv_pw.", "conv.3."),
                            ("bn2.", "conv.4."))
_MBV2_BLOCK: Table = (("conv_pw.", "conv.0."), ("bn1.", "conv.1."), ("conv_dw.", "conv.3."),
                      ("bn2.", "conv.4."), ("conv_pwl.", "conv.6."), ("bn3.", "conv.7."))


def _mobilenetv2() -> Table:
    rows = [("conv_stem.", "features.0.0."), ("bn1.", "features.0.1."),
            ("conv_head.", "features.18.0."), ("bn2.", "features.18.1.")]
    index = 1
    for stage, depth in enumerate(MBV2_STAGE_DEPTHS):
        for block in range(depth):
            layers = _MBV2_FIRST_BLOCK if index == 1 else _MBV2_BLOCK
            rows += under(f"blocks.{stage}.{block}.", f"features.{index}.", layers)
            index += 1
    return tuple(rows)


MOBILENETV2: Table = _mobilenetv2()
SAME: Table = (("", ""),)  # smp's MiT = NVlabs' and CIRKD's MiT key names; timm files as they are

# ---- heads (keys relative to the whole model) ----

CIRKD_ASPP_HEAD: Table = (
    ("head.aspp.branches.0.", "head.aspp.b0."),
    ("head.aspp.branches.1.", "head.aspp.b1.block."),
    ("head.aspp.branches.2.", "head.aspp.b2.block."),
    ("head.aspp.branches.3.", "head.aspp.b3.block."),
    ("head.aspp.image_pool.1.0.", "head.aspp.b4.gap.1."),
    ("head.aspp.image_pool.1.1.", "head.aspp.b4.gap.2."),
    ("head.aspp.project.0.0.", "head.aspp.project.0."),
    ("head.aspp.project.0.1.", "head.aspp.project.1."),
    ("head.block.", "head.block."),
    ("head.classifier.", "head.block.4."),
)
CIRKD_PSP_HEAD: Table = (
    *((f"head.psp.convs.{i}.", f"head.psp.conv{i + 1}.") for i in range(4)),
    ("head.block.", "head.block."),
    ("head.classifier.", "head.classifier."),
)
CIRKD_FCN_AUX: Table = (("aux_head.block.0.0.", "auxlayer.block.0."),
                        ("aux_head.block.0.1.", "auxlayer.block.1."),
                        ("aux_head.block.2.", "auxlayer.block.4."))
# smp's decoder lists its per-stage MLPs deepest first: mlp_stage.0 reads c4, mlp_stage.3 reads c1,
# and concatenates them in that order, as the references' torch.cat([_c4, _c3, _c2, _c1]).
_SEGFORMER_MLPS: Table = tuple((f"decoder.mlp_stage.{i}.linear.", f"linear_c{4 - i}.proj.") for i in range(4))
CIRKD_SEGFORMER: Table = (("encoder.", ""), *_SEGFORMER_MLPS, ("decoder.fuse_stage.0.", "linear_fuse.0."),
                          ("decoder.fuse_stage.1.", "linear_fuse.1."), ("classifier.", "linear_pred."))
MMSEG_SEGFORMER: Table = (("encoder.", "backbone."), *under("", "decode_head.", _SEGFORMER_MLPS),
                          ("decoder.fuse_stage.0.", "decode_head.linear_fuse.conv."),
                          ("decoder.fuse_stage.1.", "decode_head.linear_fuse.bn."),
                          ("classifier.", "decode_head.linear_pred."))


@dataclass(frozen=True)
class Layout:
    """How one architecture is stored in one reference format.

    table:   harness prefix -> reference prefix (see :func:`rename`).
    ignored: reference prefixes with no harness tensor, dropped on purpose (an unused classifier).
    folds:   (bias key, running-mean key) pairs in reference names: a conv bias the harness model
             lacks, folded into the next BatchNorm as running_mean - bias (exact in eval:
             BN(Wx + b) with mean m equals BN(Wx) with mean m - b).
    input_space:   the input the weights were trained on (see IMAGENET_RGB, CIRKD_BGR).
    align_corners: how the reference resizes logits to the label size (loss and evaluation).
    """

    table: Table
    ignored: tuple[str, ...] = ()
    folds: tuple[tuple[str, str], ...] = ()
    input_space: str = IMAGENET_RGB
    align_corners: bool = False


# CIRKD: its SegCrossEntropyLoss and validation upsample with align_corners=True (losses/task.py,
# train_*.py), on its BGR mean-subtracted input.
_CIRKD = {"input_space": CIRKD_BGR, "align_corners": True}
_DEEPLAB_RESNET = Layout(under("encoder.", "pretrained.", RESNET_V1S) + CIRKD_ASPP_HEAD + CIRKD_FCN_AUX,
                         **_CIRKD)
_PSP_RESNET = Layout(under("encoder.", "pretrained.", RESNET_V1S) + CIRKD_PSP_HEAD + CIRKD_FCN_AUX, **_CIRKD)
_DEEPLAB_MBV2 = Layout(under("encoder.", "pretrained.net.", MOBILENETV2) + CIRKD_ASPP_HEAD, **_CIRKD)
# CIRKD's SegFormer: linear_fuse = Conv2d(4E, E, 1) *with* bias, BN, ReLU (models/segformer.py).
_CIRKD_SEGFORMER = Layout(CIRKD_SEGFORMER, folds=(("linear_fuse.0.bias", "linear_fuse.1.running_mean"),),
                          **_CIRKD)
# NVlabs' SegFormerHead subclasses mmseg's BaseDecodeHead, whose conv_seg it never calls.
_MMSEG_SEGFORMER = Layout(MMSEG_SEGFORMER, ignored=("decode_head.conv_seg.",), input_space=IMAGENET_RGB,
                          align_corners=False)

# format -> harness model name -> layout; the import command accepts exactly these pairs.
FORMATS: dict[str, dict[str, Layout]] = {
    "cirkd": {"deeplabv3_r101": _DEEPLAB_RESNET, "deeplabv3_r101_w512": _DEEPLAB_RESNET,
              "deeplabv3_r18": _DEEPLAB_RESNET, "deeplabv3_r18_w512": _DEEPLAB_RESNET,
              "deeplabv3_mbv2": _DEEPLAB_MBV2, "pspnet_r18": _PSP_RESNET},
    "cirkd-segformer": {name: _CIRKD_SEGFORMER for name in ("segformer_b0", "segformer_b1", "segformer_b4")},
    "mmseg": {name: _MMSEG_SEGFORMER for name in ("segformer_b0", "segformer_b1", "segformer_b4")},
}

# Encoder-only (ImageNet) files, told apart by a key only their layout has; anything else is read
# with timm's / smp's own names (SAME). ``ignored`` drops the ImageNet classifier of each layout.
ENCODER_FILES: tuple[tuple[str, str, Layout], ...] = (
    ("features.1.conv.0.weight", "CIRKD MobileNetV2",
     Layout(MOBILENETV2, ignored=("features.18.", "classifier."))),
    ("conv3.weight", "CIRKD ResNetV1s", Layout(RESNET_V1S, ignored=("fc.",))),
)
TIMM_ENCODER_FILE = Layout(SAME, ignored=("fc.", "head.", "classifier.", "conv_head.", "bn2."))

# A key that tells what a file is, for the "likely cause" of a refused import (first match wins).
FILE_KINDS: tuple[tuple[str, str], ...] = (
    ("decode_head.convs.0.conv.weight",
     ("an OpenMMLab mmseg SegformerHead checkpoint (conv-BN-ReLU per stage, decode_head.convs.*), "
      "which is not the all-MLP head of the segformer models and cannot be imported; use the "
      "NVlabs/SegFormer release with --format mmseg")),
    ("decode_head.linear_fuse.conv.weight", "an NVlabs SegFormer (mmseg) checkpoint: --format mmseg"),
    ("linear_fuse.0.weight", "a CIRKD SegFormer checkpoint: --format cirkd-segformer"),
    ("pretrained.net.features.0.0.weight",
     "a CIRKD MobileNetV2 model: --format cirkd --model deeplabv3_mbv2"),
    ("head.psp.conv1.0.weight", "a CIRKD PSPNet: --format cirkd --model pspnet_r18"),
    ("head.aspp.b0.0.weight", "a CIRKD DeepLabV3: --format cirkd with a deeplabv3_* model"),
    ("features.1.conv.0.weight", "an ImageNet MobileNetV2 encoder: load it as pretrained weights instead"),
    ("patch_embed1.proj.weight", "an ImageNet MiT encoder: load it as pretrained weights instead"),
    ("conv3.weight", "an ImageNet ResNetV1s encoder (CIRKD): load it as pretrained weights instead"),
    ("fc.weight", "an ImageNet classifier: load it as pretrained weights instead"),
)
