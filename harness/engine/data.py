"""The training data stream: a resumable, seeded, distributed sampler and its DataLoader.

Why not a plain ``DataLoader(shuffle=True)``: an interrupted run must continue with exactly the
batches the uninterrupted run would have seen. The sampler is therefore a pure function of
(seed, epoch, start position), and every sample's augmentation is seeded from
(seed, epoch, position), independent of worker count and of the workers' RNG state.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from harness.engine.seeding import rng_state, sample_seed, seed_sample, set_rng_state, worker_init_fn
from harness.errors import UserError


class SeededSamples(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` seeds the RNGs, then returns ``dataset[index]``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        if get_worker_info() is not None:  # a worker process: its RNG state is its own
            seed_sample(seed)
            return self.dataset[index]
        # With workers=0 this runs in the training process: keep its RNG stream (dropout, a
        # method's sampling) independent of the data by restoring it afterwards.
        saved = rng_state(cuda=False)
        try:
            seed_sample(seed)
            return self.dataset[index]
        finally:
            set_rng_state(saved)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch from ``seed + epoch``, sharded by rank) that yields
    ``(index, sample_seed)`` pairs and can start an epoch part-way (``start``, in samples of this
    rank) so that a resumed run skips what it has already consumed."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        # drop_last: every rank sees the same number of samples without padding duplicates.
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())
        for position in range(self.start, len(indices)):
            global_position = position * self.num_replicas + self.rank
            yield indices[position], sample_seed(self.seed, self.epoch, global_position)

    def __len__(self) -> int:
        return self.num_samples - self.start


def worker_error(err: UserError) -> UserError:
    """The user's one line out of an error a DataLoader worker raised.

    torch re-raises a worker's exception in the main process as the same class, its message
    replaced by "Caught X in DataLoader worker process N" and the worker's traceback; the
    traceback's last line holds the original message (e.g. the bad file's name).
    """
    lines = [line for line in str(err).splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].startswith("Caught "):
        return err
    prefix = f"{type(err).__module__}.{type(err).__qualname__}: "
    message = lines[-1][len(prefix):] if lines[-1].startswith(prefix) else lines[-1]
    return type(err)(message)


class OneLineErrorLoader(DataLoader):
    """A DataLoader whose workers' :class:`UserError` s (a corrupt file met mid-training) reach
    the user as their one line, not as a worker traceback."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        batches = super().__iter__()
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except UserError as err:
                raise worker_error(err) from None
            yield batch


def build_train_loader(dataset: Dataset, *, batch_size: int, workers: int, seed: int, rank: int,
                       world_size: int, pin_memory: bool) -> tuple[OneLineErrorLoader, ResumableSampler]:
    """A DataLoader of per-rank batches (``batch_size`` is per rank) and its sampler.

    Batches are full (drop_last) so that BatchNorm never sees a batch of one. Workers persist
    across epochs (no re-spawn cost per epoch); pinned memory only helps a CUDA copy.
    """
    sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, seed=seed)
    loader = OneLineErrorLoader(
        SeededSamples(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=workers > 0,
        worker_init_fn=worker_init_fn if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler
