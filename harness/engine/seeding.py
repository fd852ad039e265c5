"""Seeds and RNG state: every source of randomness in a run follows ``config.seed``.

Data augmentation is seeded *per sample* from (seed, epoch, position) by
:class:`~harness.engine.data.ResumableSampler`, so the data stream does not depend on the number
of workers or on where a run was interrupted. The main process's RNGs (dropout, drop-path, a
method's random sampling) are seeded here once and saved/restored with every checkpoint.
"""
from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


#: Offset of the side stream (:func:`side_stream`) from the run's seed.
SIDE_STREAM_OFFSET = 0x5EED


@contextlib.contextmanager
def side_stream(seed: int) -> Iterator[None]:
    """Run a block on its own RNG stream, seeded from ``seed``, and leave the run's main stream
    (python, numpy, torch CPU) exactly where it was.

    The engine builds the teacher (whose random init its checkpoint overwrites) and the method's
    modules here, so that the student starts from the same weights and the run draws the same
    random numbers after set-up whatever the method: a distilled run and its baseline then
    differ by the method, not by their initialisation, and the table's delta is a paired
    comparison.
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    # CPU generators only: models are built on the CPU, and seeding CUDA here would leave the
    # accelerators on the side stream's seed after the block (fork_rng restores the CPU alone).
    with torch.random.fork_rng(devices=[]):
        random.seed(seed + SIDE_STREAM_OFFSET)
        np.random.seed((seed + SIDE_STREAM_OFFSET) % 2**32)
        torch.default_generator.manual_seed(seed + SIDE_STREAM_OFFSET)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def use_deterministic_algorithms(device: torch.device) -> None:
    """Deterministic kernels where they are cheap.

    On CPU the kernels the models use are deterministic already, so asking for it costs nothing
    and turns a silent regression into a warning. On CUDA, bilinear-upsample backward and
    scatter-add have no cheap deterministic version, so we keep cuDNN's fast autotuned kernels:
    GPU runs repeat to within float rounding, not bitwise (see README "Resuming and repeating runs").
    """
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample, a pure function of (run seed, epoch, position)."""
    state = np.random.SeedSequence([seed, epoch, position]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seed_sample(seed: int) -> None:
    """Seed the RNGs a dataset transform may use (torch CPU, numpy, python) before one sample.

    Only the CPU generator: transforms run on CPU, and ``torch.manual_seed`` (which also seeds
    every accelerator backend) costs ~0.7 ms, per sample.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy and python in a DataLoader worker from torch's per-worker seed.

    torch seeds each worker from the loader's generator; numpy and python would otherwise be
    copies of the parent's state in every worker (the classic duplicated-augmentation bug).
    Samples are re-seeded individually anyway (:func:`seed_sample`); this covers anything a
    dataset does outside ``__getitem__``.
    """
    base = torch.initial_seed() % 2**32
    random.seed(base)
    np.random.seed(base)


def rng_state(cuda: bool = True) -> dict[str, Any]:
    """The process's RNG states (for a checkpoint; ``cuda=False``: CPU-side generators only).

    Every value is a tuple, an int, a float, None or a tensor, so that a checkpoint holding it
    loads with ``torch.load(weights_only=True)`` (numpy's key array is stored as a tensor).
    """
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss),
                  float(cached_gaussian)),
        "torch": torch.get_rng_state(),
    }
    if cuda and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), position,
                         has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
