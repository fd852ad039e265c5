"""SegFormer: smp's Mix Transformer (MiT) encoders + the all-MLP decoder, logits at 1/4.

The encoder is smp's ``MixVisionTransformerEncoder`` (the NVIDIA MiT code); the paper models use
smp's ``mit_b0/b1/b4`` parameter sets, the demo models construct the same class with reduced
embed dims and depths. smp's encoder returns ``[image, 0-channel dummy, s4, s8, s16, s32]``; we keep
only the four real stages for ``SegOutput.features``.

The decoder is smp's ``SegformerDecoder`` (per-stage linear to E channels, bilinear resize to 1/4,
concat, 1x1 conv-BN-ReLU fuse), which is the SegFormer paper's all-MLP head; then dropout 0.1 and a
1x1 classifier as in the official ``SegFormerHead``. The resize target is the stride-4 stage's
own size, as in NVlabs SegFormer, mmseg and CIRKD (smp uses ``image // 4``, one less wherever a
side is not a multiple of 4; docs/protocol.md §SegFormer output size). Unlike smp's
``Segformer`` we do not upsample the logits: the engine upsamples to the label size and
distillers read logits at stride 4.
Embed dim E = 256 for B0/B1 and 768 for B4 (paper, Sec. 4 / official configs).
"""
from __future__ import annotations

import copy
from functools import partial

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.decoders.segformer.decoder import SegformerDecoder
from segmentation_models_pytorch.encoders.mix_transformer import (
    LayerNorm,
    MixVisionTransformerEncoder,
    mix_transformer_encoders,
)
from torch import nn

from harness.models import MODELS
from harness.models.base import ModelInfo, SegModel, SegOutput

_MIT_STRIDES = (4, 8, 16, 32)


class StageSizeSegformerDecoder(SegformerDecoder):
    """smp's all-MLP decoder (same modules and weights) whose stages are resized to the size of
    the stride-4 stage rather than to ``image // 4``."""

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: smp's ``[image, 0-channel dummy, s4, s8, s16, s32]`` -> (B, E, H_s4, W_s4)."""
        stages = [f for f in features[1:] if f.shape[1] > 0][::-1]  # deepest first
        size = stages[-1].shape[-2:]
        resized = [F.interpolate(mlp(stage), size=size, mode="bilinear", align_corners=False)
                   for mlp, stage in zip(self.mlp_stage, stages)]
        return self.fuse_stage(torch.cat(resized, dim=1))


class SegFormer(SegModel):
    """MiT encoder -> all-MLP decoder -> 1x1 classifier.

    forward: images (B, 3, H, W) -> SegOutput with logits (B, K, ceil(H/4), ceil(W/4)) (the
    stride-4 stage's size), features at strides 4/8/16/32, decoder_feature at the logits' size,
    no aux logits.
    """

    def __init__(self, name: str, encoder: MixVisionTransformerEncoder, num_classes: int,
                 decoder_channels: int, stage_strides: tuple[int, ...] = _MIT_STRIDES) -> None:
        super().__init__()
        self.encoder = encoder
        # smp's out_channels are [3, 0, c1, c2, c3, c4]; the decoder drops the dummy itself.
        self.decoder = StageSizeSegformerDecoder(list(encoder.out_channels), encoder_depth=5,
                                                 segmentation_channels=decoder_channels)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)
        self.info = ModelInfo(
            name=name,
            family="transformer",
            num_classes=num_classes,
            stage_channels=tuple(encoder.out_channels[2:]),
            stage_strides=stage_strides,
            decoder_channels=decoder_channels,
            logits_stride=4,
            has_aux=False,
        )

    def forward(self, images: torch.Tensor) -> SegOutput:
        smp_features = self.encoder(self.adapt_input(images))
        decoder_feature = self.decoder(smp_features)
        logits = self.classifier(self.dropout(decoder_feature))
        return SegOutput(logits=logits, features=list(smp_features[2:]),
                         decoder_feature=decoder_feature, aux_logits=None)


def mit_encoder(smp_name: str | None = None, **overrides) -> MixVisionTransformerEncoder:
    """smp's MiT encoder with smp's parameter set ``smp_name`` (never downloads weights), or a
    custom MiT when ``smp_name`` is None and ``overrides`` give embed_dims, depths, num_heads."""
    if smp_name is not None:
        params = copy.deepcopy(mix_transformer_encoders[smp_name]["params"])
    else:
        params = dict(patch_size=4, mlp_ratios=[4, 4, 4, 4], qkv_bias=True,
                      norm_layer=partial(LayerNorm, eps=1e-6), sr_ratios=[8, 4, 2, 1],
                      drop_rate=0.0, drop_path_rate=0.0)
    params.update(overrides)
    if "embed_dims" in overrides:
        params["out_channels"] = [3, 0, *overrides["embed_dims"]]
    return MixVisionTransformerEncoder(depth=5, **params)


def keep_resolution(encoder: MixVisionTransformerEncoder, stages: tuple[int, ...]) -> None:
    """Give the patch embedding of each 1-based MiT ``stages`` stride 1 instead of 2, so those
    stages keep the previous stage's grid (3x3 kernel, padding 1: the grid size is unchanged).
    The attention's spatial reduction (``sr_ratios``) is untouched."""
    for stage in stages:
        getattr(encoder, f"patch_embed{stage}").proj.stride = (1, 1)


@MODELS.register("segformer_b0")
def segformer_b0(num_classes: int) -> SegFormer:
    """SegFormer-B0 (student): MiT-B0, E=256; ~3.8M params."""
    return SegFormer("segformer_b0", mit_encoder("mit_b0"), num_classes, 256)


@MODELS.register("segformer_b1")
def segformer_b1(num_classes: int) -> SegFormer:
    """SegFormer-B1 (student): MiT-B1, E=256; ~13.7M params."""
    return SegFormer("segformer_b1", mit_encoder("mit_b1"), num_classes, 256)


@MODELS.register("segformer_b4")
def segformer_b4(num_classes: int) -> SegFormer:
    """SegFormer-B4 (teacher): MiT-B4, E=768; ~64.1M params."""
    return SegFormer("segformer_b4", mit_encoder("mit_b4"), num_classes, 768)


@MODELS.register("segformer_tiny")
def segformer_tiny(num_classes: int) -> SegFormer:
    """Demo transformer student: MiT with dims 16-32-64-128, 1 block per stage, E=32; the last
    stage keeps stride 16 (strides 4, 8, 16, 16), so at the demo's 64x128 crop its last stage is
    a 4x8 grid (2x4 at stride 32) for the methods that distil stage features."""
    encoder = mit_encoder(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 4])
    keep_resolution(encoder, (4,))
    return SegFormer("segformer_tiny", encoder, num_classes, 32, stage_strides=(4, 8, 16, 16))


@MODELS.register("segformer_small")
def segformer_small(num_classes: int) -> SegFormer:
    """Demo transformer teacher: MiT-B0 widths (32-64-160-256), blocks 1-1-2-2, E=64.

    E is kept at 64 because the decoder runs at 1/4 resolution: on CPU its fuse conv costs as
    much as the encoder's first stage.
    """
    encoder = mit_encoder(embed_dims=[32, 64, 160, 256], depths=[1, 1, 2, 2], num_heads=[1, 2, 5, 8])
    return SegFormer("segformer_small", encoder, num_classes, 64)
