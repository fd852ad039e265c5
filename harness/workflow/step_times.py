"""Seconds per training step for the plan's step configurations: measured here or read from a file.

Measuring runs the engine's training step (:func:`harness.engine.step.train_step`, the one the
training loop calls) on the real models with synthetic batches (``bench.cost.synthetic_batch``),
timed as the cost benchmark times its steps (``bench.timing.interleaved_medians``: medians of
interleaved repeats after warm-up). The models of one teacher/student pair are built once and
every method of that pair is timed in the same rounds.

On a GPU the step runs at the configuration's own crop and batch (halving the batch when it does
not fit, then scaling back). On a CPU the real crops would take minutes per step, so the step
runs at a reduced crop and batch and is scaled to the real ones by ``pixels x batch``: an
assumption (fixed costs make small crops relatively slower, pairwise terms such as CIRKD's grow
faster than the pixel count), reported as source ``scaled``.

``grid plan --record FILE`` writes the step times a plan used, one row per configuration
(:data:`COLUMNS`); ``--step-times FILE`` reads them back, and reads the cost table of
``python -m harness bench`` too (its ``full_step_ms`` and ``student_step_ms``).
"""
from __future__ import annotations

import contextlib
import logging
import math
import resource
import statistics
from collections import defaultdict
from pathlib import Path

import pandas as pd

from harness.errors import DataError, UserError
from harness.workflow.plan import StepConfig, StepTime

log = logging.getLogger(__name__)

COLUMNS = ("dataset", "student", "teacher", "method", "preset", "crop", "batch", "seconds",
           "how", "device", "measured_crop", "measured_batch")
COST_TABLE_COLUMNS = {"dataset", "teacher", "student", "method", "preset", "crop", "batch",
                      "full_step_ms", "student_step_ms", "device"}


def _crop(text: str) -> tuple[int, int]:
    h, _, w = str(text).partition("x")
    return int(h), int(w)


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _own_rows(frame: pd.DataFrame, file: str) -> dict[StepConfig, StepTime]:
    times = {}
    for row in frame.itertuples(index=False):
        config = StepConfig(row.dataset, row.student, _text(row.teacher), row.method,
                            _text(row.preset), _crop(row.crop), int(row.batch))
        times[config] = StepTime(float(row.seconds), row.how, row.device,
                                 _crop(row.measured_crop), int(row.measured_batch), file)
    return times


def _cost_table_rows(frame: pd.DataFrame, file: str) -> dict[StepConfig, StepTime]:
    """A ``harness bench`` cost table: each row prices its distillation step (``full_step_ms``);
    a student alone is the median ``student_step_ms`` of its rows."""
    times: dict[StepConfig, StepTime] = {}
    alone: dict[StepConfig, list[float]] = defaultdict(list)
    for row in frame.itertuples(index=False):
        crop, batch = _crop(row.crop), int(row.batch)
        config = StepConfig(row.dataset, row.student, row.teacher, row.method, _text(row.preset),
                            crop, batch)
        times[config] = StepTime(row.full_step_ms / 1e3, "measured", row.device, crop, batch, file)
        key = StepConfig(row.dataset, row.student, "", "baseline", "", crop, batch)
        alone[key].append(row.student_step_ms / 1e3)
    for key, values in alone.items():
        times[key] = StepTime(statistics.median(values), "measured", str(frame.device.iloc[0]),
                              key.crop, key.batch, file)
    return times


def read_step_times(path: str | Path) -> dict[StepConfig, StepTime]:
    """Step times from a file written by ``grid plan --record`` or a ``harness bench`` cost table."""
    file = Path(path)
    try:
        frame = pd.read_csv(file, dtype={"teacher": str, "preset": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"step-time file {file} is unreadable ({err}); pass a CSV written by "
                        f"`grid plan --record` or `harness bench`") from None
    if set(COLUMNS) <= set(frame.columns):
        return _own_rows(frame, str(file))
    if COST_TABLE_COLUMNS <= set(frame.columns):
        return _cost_table_rows(frame, str(file))
    raise DataError(f"step-time file {file} has neither the columns of `grid plan --record` "
                    f"({', '.join(COLUMNS)}) nor those of a `harness bench` cost table")


def write_step_times(path: str | Path, times: dict[StepConfig, StepTime]) -> None:
    """Every step time the plan used, one row per configuration (atomically)."""
    from harness.io import atomic_write_with

    rows = [{"dataset": c.dataset, "student": c.student, "teacher": c.teacher,
             "method": c.method, "preset": c.preset, "crop": f"{c.crop[0]}x{c.crop[1]}",
             "batch": c.batch, "seconds": t.seconds, "how": t.how, "device": t.device,
             "measured_crop": f"{t.measured_crop[0]}x{t.measured_crop[1]}",
             "measured_batch": t.measured_batch} for c, t in times.items()]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    atomic_write_with(path, lambda tmp: frame.to_csv(tmp, index=False))


# ------------------------------------------------------------------ measuring
def reduced(crop: tuple[int, int], batch: int, max_side: int, max_batch: int) -> tuple[tuple[int, int], int]:
    """A crop whose longer side is at most ``max_side`` (aspect kept, multiples of 32, at least
    32) and a batch of at most ``max_batch``: what a CPU can step in seconds."""
    scale = min(1.0, max_side / max(crop))
    small = tuple(max(32, round(side * scale) // 32 * 32) for side in crop)
    return (small[0], small[1]), min(batch, max_batch)


def _device_label(device, clock: str) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    seconds = "; CPU time, not wall time" if clock == "cpu" else ""
    return f"cpu ({platform.machine()}, {threads} thread{'s' * (threads != 1)}{seconds})"


def _too_big(err: BaseException) -> bool:
    """An allocation the device (or the CPU memory cap) refused."""
    return isinstance(err, MemoryError) or "can't allocate memory" in str(err)


def _step_calls(group: list[StepConfig], crop: tuple[int, int], batch: int, device) -> dict:
    """One training-step callable per configuration of one teacher/student pair (or one model
    alone), on one synthetic batch, the models built once; a distiller too big to build is
    left out (logged)."""
    import torch

    from harness.bench.cost import synthetic_batch
    from harness.bench.step import build_optimizer
    from harness.data import DATASETS
    from harness.engine.step import Precision, StepParts, StudentWithDistiller, train_step
    from harness.methods import build_distiller
    from harness.models import build_model

    first = group[0]
    classes = DATASETS.get(first.dataset).num_classes
    torch.manual_seed(0)
    precision = Precision.resolve("auto", "auto", device)
    student = precision.prepare(build_model(first.student, classes).to(device)).train()
    teacher = None
    if first.teacher:
        teacher = precision.prepare(build_model(first.teacher, classes).to(device)).eval()
        teacher.requires_grad_(False)
    images, labels = synthetic_batch(batch, crop, classes, torch.Generator().manual_seed(0))
    images, labels = images.to(device), labels.to(device)
    kind = "adamw" if student.info.family == "transformer" else "sgd"
    calls = {}
    for config in group:
        try:
            distiller = build_distiller(config.method, student.info, teacher.info if teacher else None,
                                        preset=config.preset or None).to(device).train()
        except (MemoryError, RuntimeError) as err:
            if not _too_big(err):
                raise
            log.warning("%s: not measurable here (%s)", config.label, str(err).splitlines()[0][:160])
            continue
        parts = StepParts(StudentWithDistiller(student, distiller), teacher,
                          build_optimizer(student, distiller, kind, 1e-4), precision)
        calls[config] = lambda parts=parts: train_step(parts, images, labels)
    return calls


def _measure_group(group: list[StepConfig], device, reduce_to: tuple[int, int] | None,
                   warmup: int, repeats: int, clock: str) -> dict[StepConfig, StepTime]:
    """Step times of one group, scaled to the real crop and batch; on a GPU that runs out of
    memory the batch is halved. A configuration too big to build here is priced at the slowest
    measured one of its group (``how="assumed"``)."""
    import torch

    from harness.bench.timing import interleaved_medians

    first = group[0]
    crop, batch = first.crop, first.batch
    if reduce_to is not None:
        crop, batch = reduced(crop, batch, *reduce_to)
    while True:
        try:
            seconds = interleaved_medians(_step_calls(group, crop, batch, device), device, warmup,
                                          repeats, clock)
            break
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            log.info("out of memory at batch %d; measuring at batch %d", batch, batch // 2)
            batch //= 2
            torch.cuda.empty_cache()
    factor = (first.crop[0] * first.crop[1] * first.batch) / (crop[0] * crop[1] * batch)
    how = "measured" if factor == 1 else "scaled"
    label = _device_label(device, clock)
    times = {c: StepTime(s * factor, how, label, crop, batch) for c, s in seconds.items()}
    if not times:
        raise UserError(f"no configuration of {first.label.rsplit(' ', 3)[0]} could be built on "
                        f"{label} (memory); measure it elsewhere and pass --step-times")
    slowest = max(times.values(), key=lambda t: t.seconds)
    return {c: times.get(c, StepTime(slowest.seconds, "assumed", label, crop, batch)) for c in group}


@contextlib.contextmanager
def memory_cap(gigabytes: float | None):
    """Cap this process's address space ``gigabytes`` above its size now (CPU only), so that a
    configuration too big for a shared machine fails to allocate instead of summoning the
    kernel's out-of-memory killer."""
    if gigabytes is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + int(gigabytes * 2**30), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def measure_step_times(configs: list[StepConfig], *, device: str, reduce_to: tuple[int, int] | None,
                       warmup: int, repeats: int, clock: str = "wall",
                       cpu_memory_gb: float | None = None) -> dict[StepConfig, StepTime]:
    """Step times of ``configs`` on ``device``; ``reduce_to = (max_side, max_batch)`` measures
    at a reduced crop and batch and scales (see :func:`reduced`), None at the real ones.
    ``clock="cpu"`` counts the process's CPU seconds (``bench.timing``): on a CPU shared with
    other jobs, the time the step needs rather than the time it waited. ``cpu_memory_gb`` caps
    the memory the measurement may add on a CPU (:func:`memory_cap`)."""
    import torch

    groups: dict[tuple, list[StepConfig]] = defaultdict(list)
    for config in configs:
        groups[(config.dataset, config.teacher, config.student, config.crop, config.batch)].append(config)
    times: dict[StepConfig, StepTime] = {}
    cap = cpu_memory_gb if device == "cpu" else None
    for index, group in enumerate(groups.values(), 1):
        first = group[0]
        log.info("[%d/%d] %s: %d method(s)", index, len(groups), first.label.rsplit(" ", 3)[0], len(group))
        with memory_cap(cap):
            times.update(_measure_group(group, torch.device(device), reduce_to, warmup, repeats, clock))
    return times
