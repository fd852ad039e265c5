"""CIRKD's queues after one step, for the 2-process gloo test in test_engine_ddp.py.

``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_cirkd_queue.py OUT``: every rank
takes its half of one fixed batch, runs the method once, and writes its queues to
``OUT/rank<r>.safetensors``. :func:`step` without a process group is the one-process reference.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from harness.methods.cirkd import CIRKD
from harness.models.base import ModelInfo, SegOutput

BATCH = 4


def _info(name: str, decoder: int) -> ModelInfo:
    return ModelInfo(name=name, family="cnn", num_classes=3, stage_channels=(8, 16),
                     stage_strides=(4, 8), decoder_channels=decoder, logits_stride=8)


def step(images: slice = slice(0, BATCH)) -> dict[str, torch.Tensor]:
    """Build the method and one fixed batch from seed 0, run the ``images`` of it once from
    seed 1, and return the queues and pointers."""
    torch.manual_seed(0)
    method = CIRKD(_info("s", 6), _info("t", 10),
                   CIRKD.make_options(pixel_queue_size=50, region_queue_size=7))
    gen = torch.Generator().manual_seed(0)
    out_s = SegOutput(torch.randn(BATCH, 3, 6, 8, generator=gen), [],
                      torch.randn(BATCH, 6, 6, 8, generator=gen))
    out_t = SegOutput(torch.randn(BATCH, 3, 6, 8, generator=gen), [],
                      torch.randn(BATCH, 10, 6, 8, generator=gen))
    labels = torch.randint(0, 3, (BATCH, 48, 64), generator=gen)
    labels[:, :8] = 255
    torch.manual_seed(1)
    method(SegOutput(out_s.logits[images], [], out_s.decoder_feature[images]),
           SegOutput(out_t.logits[images], [], out_t.decoder_feature[images]), labels[images])
    return {name: buffer.clone() for name, buffer in method.named_buffers()
            if name.startswith(("pixel_", "region_"))}


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    share = BATCH // world
    save_file(step(slice(rank * share, (rank + 1) * share)), str(out / f"rank{rank}.safetensors"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
