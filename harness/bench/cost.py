"""The cost table: for each teacher/student pair x method, the step-time breakdown, memory,
extra parameters and FLOPs, measured after warm-up as medians of interleaved repeats.

Columns (one row per pair x method; ratios are within one process, never across runs):
``teacher_fwd_ms``, ``student_step_ms`` (the limit's two parts), ``full_step_ms``,
``method_ms = full - teacher - student``, ``overhead = full / (teacher + student)``,
``method_alone_ms`` (the distiller's forward + backward alone on cached outputs, timed in the
same rounds: the method's cost without the noise of a difference of two large numbers) and
``overhead_alone = (teacher + student + method_alone) / (teacher + student)``,
``peak_mem_mb`` (full step), ``limit_peak_mem_mb`` (teacher forward + student step) and
``base_mem_mb`` (models, optimiser and batch built, before any step) with ``mem_kind`` saying
what they are, ``method_params``, ``method_gflops`` (one distiller forward),
``images_per_s = batch / full step``, and the settings ``device, threads, torch, amp,
channels_last, crop, batch``.

Memory on CPU is the peak RSS, which a process can only raise: with ``isolate=True`` (the
default on CPU) every configuration runs in a fresh spawned process, which first runs one
teacher forward + student step (-> ``limit_peak_mem_mb``), then one full step
(-> ``peak_mem_mb``), then the timing; ``mem_kind = rss_fresh_process`` (the process's peak,
interpreter and torch included). In-process on CPU the peaks accumulate over configurations
(``mem_kind = rss_cumulative``). On CUDA: ``cuda_max_allocated`` reset before each phase.
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import multiprocessing
from dataclasses import asdict, dataclass, field

import torch

from harness.bench.step import DistillStep, build_optimizer
from harness.bench.timing import interleaved_medians, peak_memory_mb, reset_peak_memory
from harness.engine.step import Precision

log = logging.getLogger(__name__)

COLUMNS = ("dataset", "teacher", "student", "method", "preset", "crop", "batch",
           "teacher_fwd_ms", "student_step_ms", "full_step_ms", "method_ms", "overhead",
           "method_alone_ms", "overhead_alone", "peak_mem_mb", "limit_peak_mem_mb", "base_mem_mb",
           "mem_kind", "method_params", "method_gflops", "images_per_s", "clock", "device",
           "threads", "torch", "amp", "channels_last", "warmup", "repeats")

#: every method x variant the table covers by default (HeteroAKD's ablation presets included)
DEFAULT_METHODS = ("kd", "cwd", "cirkd", "afdcd", "heteroakd:full", "heteroakd:no_kmm",
                   "heteroakd:no_kem", "heteroakd:no_both", "heteroakd:kd_only")


@dataclass(frozen=True)
class CostConfig:
    """One measured configuration. ``method`` is ``name`` or ``name:preset``."""

    dataset: str
    num_classes: int
    teacher: str
    student: str
    method: str
    crop: tuple[int, int]
    batch: int
    warmup: int = 2
    repeats: int = 7
    threads: int | None = None
    device: str = "cpu"
    amp: str = "auto"
    channels_last: str = "auto"
    clock: str = "wall"  # wall (perf_counter) | cpu (process_time; for a loaded CPU, threads=1)
    # auto: AdamW for transformers, SGD for CNNs (docs/protocol.md §Reference protocol)
    optimizer: str = "auto"
    seed: int = 0
    options: dict = field(default_factory=dict)


def split_method(spec: str) -> tuple[str, str | None]:
    """``"heteroakd:no_kmm"`` -> ("heteroakd", "no_kmm"); ``"kd"`` -> ("kd", None)."""
    name, _, preset = spec.partition(":")
    return name, preset or None


def resolve_preset(name: str, preset: str | None, dataset: str) -> str | None:
    """The preset the training grid would use: the explicit one, else the dataset's own preset
    when the method defines one (CIRKD / Af-DCD carry per-dataset weights and queue sizes)."""
    if preset is not None:
        return preset
    from harness.methods import METHODS

    return dataset if dataset in METHODS.get(name).presets else None


def synthetic_batch(batch: int, crop: tuple[int, int], num_classes: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, H, W) ~ N(0, 1) and blocky labels (B, H, W): random classes on an 8x8-pixel
    grid, nearest-upsampled (segments, not per-pixel noise, so per-class work is realistic),
    with ~5% of cells ignored (255)."""
    h, w = crop
    images = torch.randn(batch, 3, h, w, generator=generator)
    cells = torch.randint(0, num_classes, (batch, 1, max(1, h // 8), max(1, w // 8)),
                          generator=generator)
    ignore = torch.rand(cells.shape, generator=generator) < 0.05
    cells[ignore] = 255
    labels = torch.nn.functional.interpolate(cells.float(), size=(h, w), mode="nearest")
    return images, labels[:, 0].long()


def _finite_or_nan(value: float) -> float:
    return value if math.isfinite(value) else float("nan")


def measure(config: CostConfig, *, fresh_process: bool = False) -> dict:
    """Build the pair and the distiller, measure memory then time; return one table row."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    step, name, preset = _build(config, device)
    memory = _memory(step, device, fresh_process)
    try:
        gflops = step.method_forward_gflops()
    except Exception as err:  # a counter gap must not lose the timing row; say so
        log.warning("FLOPs of %s not measurable (%s)", config.method, err)
        gflops = float("nan")
    step.prepare_method_alone()
    seconds = interleaved_medians(
        {"teacher": step.teacher_forward, "student": step.student_step, "full": step.full_step,
         "method": step.method_alone},
        device, config.warmup, config.repeats, config.clock)
    nonfinite = [k for k, v in step.last_terms.items() if not math.isfinite(v)]
    if nonfinite:
        log.warning("%s %s->%s: non-finite loss terms %s during the benchmark", config.method,
                    config.teacher, config.student, nonfinite)
    return {
        "dataset": config.dataset, "teacher": config.teacher, "student": config.student,
        "method": name, "preset": preset or "", "crop": f"{config.crop[0]}x{config.crop[1]}",
        "batch": config.batch, **_timing_columns(seconds, config.batch), **memory,
        "method_params": step.distiller.extra_parameters(),
        "method_gflops": round(_finite_or_nan(gflops), 4),
        "clock": config.clock, "device": _device_name(device), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "amp": "bf16" if step.precision.amp else "off",
        "channels_last": step.precision.channels_last, "warmup": config.warmup,
        "repeats": config.repeats,
    }


def _build(config: CostConfig, device: torch.device) -> tuple[DistillStep, str, str | None]:
    """The timed steps over freshly built models (seeded) and a synthetic batch; the method's
    name and resolved preset."""
    from harness.methods import build_distiller
    from harness.models import build_model

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    name, preset = split_method(config.method)
    preset = resolve_preset(name, preset, config.dataset)
    student = build_model(config.student, config.num_classes).to(device)
    teacher = build_model(config.teacher, config.num_classes).to(device)
    distiller = build_distiller(name, student.info, teacher.info, preset=preset,
                                options=dict(config.options)).to(device)
    optimizer_kind = config.optimizer
    if optimizer_kind == "auto":
        optimizer_kind = "adamw" if student.info.family == "transformer" else "sgd"
    lr = 2e-4 if optimizer_kind == "adamw" else 0.01
    optimizer = build_optimizer(student, distiller, optimizer_kind, lr)
    images, labels = synthetic_batch(config.batch, config.crop, config.num_classes, generator)
    precision = Precision.resolve(config.amp, config.channels_last, device)
    step = DistillStep(student, teacher, distiller, images.to(device), labels.to(device),
                       precision, optimizer)
    return step, name, preset


def _memory(step: DistillStep, device: torch.device, fresh_process: bool) -> dict:
    """Peak memory of the built pair, of the limit's two steps and of the full step (in this
    order, smallest phase first, so a monotonic peak still separates the phases)."""
    base_peak = peak_memory_mb(device)  # models, optimiser and batch built, no step yet
    reset_peak_memory(device)
    step.teacher_forward()
    step.student_step()
    limit_peak = peak_memory_mb(device)
    reset_peak_memory(device)
    step.full_step()
    full_peak = peak_memory_mb(device)
    if device.type == "cuda":
        mem_kind = "cuda_max_allocated"
    else:
        mem_kind = "rss_fresh_process" if fresh_process else "rss_cumulative"
    return {"peak_mem_mb": round(full_peak, 1), "limit_peak_mem_mb": round(limit_peak, 1),
            "base_mem_mb": round(base_peak, 1), "mem_kind": mem_kind}


def _timing_columns(seconds: dict[str, float], batch: int) -> dict:
    teacher_ms, student_ms = seconds["teacher"] * 1e3, seconds["student"] * 1e3
    full_ms, alone_ms = seconds["full"] * 1e3, seconds["method"] * 1e3
    limit_ms = teacher_ms + student_ms
    return {
        "teacher_fwd_ms": round(teacher_ms, 3), "student_step_ms": round(student_ms, 3),
        "full_step_ms": round(full_ms, 3), "method_ms": round(full_ms - limit_ms, 3),
        "overhead": round(full_ms / limit_ms, 4), "method_alone_ms": round(alone_ms, 3),
        "overhead_alone": round((limit_ms + alone_ms) / limit_ms, 4),
        "images_per_s": round(batch / (full_ms / 1e3), 2),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def _measure_fresh(config_dict: dict) -> dict:
    """Entry point of a spawned worker (plain dict in, row out, so it pickles)."""
    config_dict["crop"] = tuple(config_dict["crop"])
    return measure(CostConfig(**config_dict), fresh_process=True)


def run_cost(configs: list[CostConfig], isolate: bool) -> list[dict]:
    """Measure every configuration in order, each in a fresh process when ``isolate``."""
    rows = []
    for index, config in enumerate(configs, 1):
        log.info("[%d/%d] %s -> %s, %s, %dx%d, batch %d", index, len(configs), config.teacher,
                 config.student, config.method, *config.crop, config.batch)
        if isolate:
            # One process per configuration: a fresh peak RSS, and no allocator state carried over.
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                row = pool.submit(_measure_fresh, asdict(config)).result()
        else:
            row = measure(config)
        log.info("    overhead %.3f (full %.1f ms = teacher %.1f + student %.1f + method %.1f)",
                 row["overhead"], row["full_step_ms"], row["teacher_fwd_ms"],
                 row["student_step_ms"], row["method_ms"])
        rows.append(row)
    return rows
