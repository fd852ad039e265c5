"""Wall-clock medians and peak memory, measured the same way for every benchmark.

Timing uses ``time.perf_counter`` around each call (``clock="wall"``), with
``torch.cuda.synchronize`` before and after on CUDA so queued kernels are counted in the call that
launched them. On a CPU shared with other jobs, ``clock="cpu"`` uses ``time.process_time`` (CPU
seconds of all this process's threads): time spent preempted by other processes is not counted,
so ratios stay stable under load. Single-threaded and unloaded, the two clocks agree; with
several threads the CPU clock sums them (use it with ``threads=1``). Several callables are
timed *interleaved* (A, B, C, A, B, C, ...), so a load change on a shared machine hits all of them
alike and their ratio stays meaningful; each one's median over the repeats is reported.
"""
from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def time_call(fn: Callable[[], object], device: torch.device, clock: str = "wall") -> float:
    """Seconds one ``fn()`` takes on ``clock`` (wall | cpu), synchronised on CUDA."""
    now = CLOCKS[clock]
    synchronize(device)
    start = now()
    fn()
    synchronize(device)
    return now() - start


def interleaved_medians(calls: dict[str, Callable[[], object]], device: torch.device,
                        warmup: int, repeats: int, clock: str = "wall") -> dict[str, float]:
    """Median seconds per call name over ``repeats`` rounds after ``warmup`` untimed rounds.

    Each round runs every call once, in the given order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    if clock == "cpu" and device.type == "cuda":
        raise ValueError("the cpu clock does not see GPU time; use clock='wall' on CUDA")
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            samples[name].append(time_call(fn, device, clock))
    return {name: statistics.median(values) for name, values in samples.items()}


def median_seconds(fn: Callable[[], object], device: torch.device, warmup: int,
                   repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` timed calls after ``warmup`` untimed ones."""
    return interleaved_medians({"fn": fn}, device, warmup, repeats)["fn"]


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports ru_maxrss in KiB).

    It never decreases: a phase's own peak is only honest in a process that ran nothing bigger
    before it (the cost benchmark runs each configuration in a fresh process for that reason).
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA peak (CPU RSS peaks cannot be reset; see :func:`peak_rss_mb`)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA max allocated since the last reset, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()
