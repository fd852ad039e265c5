"""torchrun / DDP: one process per device, initialised from the environment torchrun sets.

A single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) runs without a process group. Backend:
nccl on CUDA, gloo on CPU (the 2-process CPU smoke test). Only rank 0 writes files.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistContext:
    """Join the process group torchrun described in RANK/WORLD_SIZE/LOCAL_RANK, pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=30))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def sync_batchnorm(ctx: DistContext, enabled: bool, *modules: nn.Module) -> tuple[nn.Module, ...]:
    """The modules with every BatchNorm turned into a SyncBatchNorm when ``enabled`` under CUDA
    DDP (as the references build their students and distillation heads); unchanged
    otherwise (gloo has no SyncBatchNorm kernel). Parameter and buffer names stay the same."""
    if not (enabled and ctx.distributed and ctx.device.type == "cuda"):
        return modules
    return tuple(nn.SyncBatchNorm.convert_sync_batchnorm(module) for module in modules)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_object(ctx: DistContext, obj: object) -> object:
    """Rank 0's ``obj`` on every rank (e.g. an error raised on rank 0 only)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if ``flag`` is True on any rank (one tiny all-reduce)."""
    if not ctx.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
