"""``train(config, out_dir)``: set up, resume, loop, finish.

It knows no distillation method: the distiller is an ``nn.Module`` that maps (student output,
teacher output, labels) to a dict of weighted ``loss_<term>`` s; one step
(:func:`harness.engine.step.train_step`) adds the task loss, sums, and optimises every trainable
parameter of the student and of the distiller.
"""
from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from harness.config import RunConfig, align_corners, to_dict
from harness.data import check_dataset
from harness.engine import provenance
from harness.engine.checkpoint import checkpoint_path, retire_checkpoint, save_checkpoint
from harness.engine.data import ResumableSampler, build_train_loader
from harness.engine.distributed import (
    DistContext,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown,
    sync_batchnorm,
)
from harness.engine.evaluate import evaluate
from harness.engine.optim import build_optimizer, poly_lr, scaled_lr, set_lr, trainable_parameters
from harness.engine.prepare import RunInputs, prepare_run
from harness.engine.run_folder import FolderPlan, plan_run_folder
from harness.engine.seeding import rng_state, seed_everything, set_rng_state, use_deterministic_algorithms
from harness.engine.step import TOTAL, Precision, StepParts, StudentWithDistiller, first_nonfinite, train_step
from harness.engine.watch import RunMonitor, csv_text
from harness.errors import DataError, RunInterrupted, UserError
from harness.io import atomic_write_json, atomic_write_text, ensure_writable_dir

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError):
    """A loss term became NaN or Inf."""


@dataclass
class _Run:
    """What :func:`_setup` builds for one run: inputs, models on the device, optimiser, data."""

    config: RunConfig
    out_dir: Path
    ctx: DistContext
    inputs: RunInputs
    resolved: dict[str, Any]  # the config as written to config.yaml
    precision: Precision
    align_corners: bool  # of the logits resize for the task loss and evaluation
    student: nn.Module  # student and distiller: SyncBN-converted under DDP on CUDA
    distiller: nn.Module
    optimizer: torch.optim.Optimizer
    base_lr: float
    loader: DataLoader
    sampler: ResumableSampler
    started: float  # perf_counter() at the start of this process's part of the run
    monitor: RunMonitor | None = None  # set once the progress is known (:func:`_train`)

    @property
    def per_rank_batch(self) -> int:
        return self.config.data.batch_size // self.ctx.world_size

    @property
    def batches_per_epoch(self) -> int:
        return self.sampler.num_samples // self.per_rank_batch


@dataclass
class _Progress:
    """What a checkpoint saves and a resume restores, plus this process's training time."""

    iteration: int = 0
    rows: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"miou": -math.inf, "iteration": None})
    skipped: int = 0
    start_iteration: int = 0
    elapsed_before: float = 0.0  # wall / training seconds of the interrupted part(s) of the run
    train_time_before: float = 0.0
    train_time: float = 0.0
    checkpointed: int | None = None  # the iteration of checkpoints/last.pt, if any

    @property
    def total_train_time(self) -> float:
        return self.train_time_before + self.train_time


def train(config: RunConfig, out_dir: str | Path, existing: str = "keep") -> dict:
    """Train ``config`` into ``out_dir``: from scratch, resuming the unfinished run of this
    config and code it holds, or nothing when it holds this config's finished run; a run of
    another config is refused unless ``existing`` is "overwrite" or "move-stale" (the rule:
    :mod:`harness.engine.run_folder`).

    Returns the metrics dict of ``out_dir/metrics.json`` (on every rank).
    """
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    owns_group = not torch.distributed.is_initialized()
    ctx = init_distributed()
    try:
        return _train(config, Path(out_dir), ctx, existing)
    finally:
        if owns_group:
            shutdown(ctx)


def _train(config: RunConfig, out_dir: Path, ctx: DistContext, existing: str) -> dict:
    folder = plan_run_folder(to_dict(config), out_dir, existing)
    barrier(ctx)  # every process has read the folder before the main one changes it
    if folder.action == "done":
        log.info("%s", folder.message)
        return folder.metrics
    run = _setup(config, out_dir, ctx, folder)
    progress = _resume(run)
    run.monitor = _monitor(run, progress)
    try:
        _loop(run, _step_parts(run), progress)
        return _finish(run, progress)
    except KeyboardInterrupt:
        raise RunInterrupted(f"at iteration {progress.iteration}; "
                             f"{_where_it_resumes(run, progress)}") from None
    except DataError as err:  # a bad file met in the loop or the final evaluation
        raise DataError(f"{err}; then {_where_it_resumes(run, progress)}") from None
    finally:
        run.monitor.close()


def _where_it_resumes(run: _Run, progress: _Progress) -> str:
    if progress.checkpointed is None or not checkpoint_path(run.out_dir).is_file():
        return "no checkpoint is there yet: the same command starts the run again"
    return (f"{checkpoint_path(run.out_dir)} (iteration {progress.checkpointed}) is kept: the "
            f"same command resumes from it")


def _monitor(run: _Run, progress: _Progress) -> RunMonitor:
    """log.csv, TensorBoard events and progress lines (written by rank 0). With a progress bar on
    a terminal the lines go to the debug log; without one (Snakemake logs, batch jobs) they are
    the progress."""
    tc = run.config.train
    level = logging.DEBUG if run.ctx.is_main and sys.stderr.isatty() else logging.INFO
    return RunMonitor(run.out_dir, iterations=tc.iterations, batch_size=run.config.data.batch_size,
                      rows=progress.rows, log_every=tc.log_every, active=run.ctx.is_main,
                      progress_level=level)


def _check_data_on_main(config: RunConfig, ctx: DistContext) -> None:
    """Under DDP, rank 0 checks (and for a generated dataset, generates) the data alone; the
    others wait, then raise the same error if there was one, instead of racing or hanging."""
    problem = None
    if ctx.is_main:
        try:
            check_dataset(config.data.name, config.data.root,
                          splits=[config.data.train_split, config.data.val_split])
        except UserError as err:
            problem = err
    problem = broadcast_object(ctx, problem)
    if problem is not None:
        raise problem


def _setup(config: RunConfig, out_dir: Path, ctx: DistContext, folder: FolderPlan) -> _Run:
    """Seed, check every input, clear what ``folder`` discards, write config.yaml, put the
    models on the device, build the optimiser and the data stream."""
    started = time.perf_counter()
    tc = config.train
    # Seed before building anything: the models' random init follows the seed too.
    seed_everything(config.seed)
    use_deterministic_algorithms(ctx.device)
    if ctx.distributed:
        _check_data_on_main(config, ctx)
    inputs = prepare_run(config, out_dir, ctx.world_size, folder.resume_state)
    resolved = to_dict(config)
    if ctx.is_main:
        folder.apply()
        if folder.action == "fresh":
            log.info("%s", folder.message)
        ensure_writable_dir(out_dir)
        atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    barrier(ctx)

    device = ctx.device
    precision = Precision.resolve(tc.amp, tc.channels_last, device)
    student, distiller = sync_batchnorm(ctx, tc.sync_bn, inputs.student, inputs.distiller)
    precision.prepare(student.to(device)).train()
    distiller.to(device).train()
    if inputs.teacher is not None:
        precision.prepare(inputs.teacher.to(device)).eval()
        inputs.teacher.requires_grad_(False)

    base_lr = scaled_lr(tc, config.data.batch_size)
    optimizer = build_optimizer(tc, trainable_parameters(student, distiller), base_lr)
    loader, sampler = build_train_loader(
        inputs.train_set, batch_size=config.data.batch_size // ctx.world_size,
        workers=config.data.workers, seed=config.seed, rank=ctx.rank, world_size=ctx.world_size,
        pin_memory=device.type == "cuda")
    return _Run(config, out_dir, ctx, inputs, resolved, precision, align_corners(config), student,
                distiller, optimizer, base_lr, loader, sampler, started)


def _resume(run: _Run) -> _Progress:
    """The progress of the run's checkpoint (models, optimiser and RNG restored), or a fresh one."""
    state = run.inputs.resume_state
    if state is None:
        return _Progress()
    run.student.load_state_dict(state["student"])
    run.distiller.load_state_dict(state["distiller"])
    run.optimizer.load_state_dict(state["optimizer"])
    rank = run.ctx.rank
    set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
    log.info("resuming %s from iteration %d", checkpoint_path(run.out_dir), state["iteration"])
    return _Progress(iteration=state["iteration"], rows=state["log_rows"], best=state["best"],
                     skipped=state["skipped_batches"], start_iteration=state["iteration"],
                     checkpointed=state["iteration"],
                     elapsed_before=state["wall_time_s"], train_time_before=state["train_time_s"])


def _step_parts(run: _Run) -> StepParts:
    """Student + distiller as one module (DDP-wrapped under torchrun) and the step's settings."""
    pair = StudentWithDistiller(run.student, run.distiller)
    module: nn.Module = pair
    device = run.ctx.device
    if run.ctx.distributed:
        # find_unused_parameters: a method may leave some of its modules out of the loss (an
        # ablation switch), and aux_weight=0 leaves the aux head unused.
        module = nn.parallel.DistributedDataParallel(
            pair, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)
    tc = run.config.train
    return StepParts(pair, run.inputs.teacher, run.optimizer, run.precision,
                     aux_weight=tc.aux_weight, grad_clip=tc.grad_clip,
                     align_corners=run.align_corners, module=module,
                     average_over_ranks=run.ctx.distributed)


def _loop(run: _Run, parts: StepParts, progress: _Progress) -> None:
    """Iterations from ``progress.iteration`` to ``train.iterations``: one step each, with the
    periodic log line, evaluation and checkpoint."""
    tc = run.config.train
    show_bar = run.ctx.is_main and sys.stderr.isatty()
    bar = tqdm(total=tc.iterations, initial=progress.iteration, desc=f"train {run.config.method.name}",
               unit="it", dynamic_ncols=True, disable=not show_bar)
    device = run.ctx.device
    try:
        tick = time.perf_counter()
        while progress.iteration < tc.iterations:
            epoch, batch_in_epoch = divmod(progress.iteration, run.batches_per_epoch)
            run.sampler.set_position(epoch, batch_in_epoch * run.per_rank_batch)
            for images, labels in run.loader:
                lr = poly_lr(run.base_lr, progress.iteration, tc.iterations, tc.poly_power,
                             tc.warmup_iterations)
                set_lr(run.optimizer, lr)
                terms = train_step(parts, images.to(device, non_blocking=True),
                                   labels.to(device, non_blocking=True))
                progress.iteration += 1
                _check_finite(run, progress, terms)
                step_seconds = time.perf_counter() - tick
                progress.train_time += step_seconds
                row = {"iteration": progress.iteration, "lr": lr, **terms,
                       "time_s": round(progress.total_train_time, 4)}
                progress.rows.append(row)
                bar.update(1)
                if progress.iteration % max(tc.log_every, 1) == 0:
                    bar.set_postfix(loss=f"{row[TOTAL]:.4f}", lr=f"{row['lr']:.2e}")
                run.monitor.step(row, step_seconds)
                _periodic(run, progress)
                tick = time.perf_counter()
                if progress.iteration >= tc.iterations or progress.iteration % run.batches_per_epoch == 0:
                    break
    finally:
        bar.close()


def _check_finite(run: _Run, progress: _Progress, terms: dict[str, float]) -> None:
    """A NaN/Inf loss stops the run (the last good checkpoint is kept) or, with
    ``train.skip_nonfinite``, counts the batch as skipped (the step left the parameters alone)."""
    bad = first_nonfinite(terms)
    if bad is None:
        return
    if not run.config.train.skip_nonfinite:
        kept = checkpoint_path(run.out_dir)
        raise NonFiniteLossError(
            f"loss term {bad} became {terms[bad]} at iteration {progress.iteration}; the last good "
            f"checkpoint {kept if kept.exists() else '(none yet)'} is kept; lower "
            f"train.lr, set train.grad_clip, or set train.skip_nonfinite=true to skip such batches")
    progress.skipped += 1
    log.warning("skipping iteration %d: loss term %s is %s", progress.iteration, bad, terms[bad])


def _periodic(run: _Run, progress: _Progress) -> None:
    """Evaluation every ``train.eval_interval`` and checkpoint every ``train.checkpoint_every``
    iterations (the last iteration's are :func:`_finish`'s)."""
    tc, iteration = run.config.train, progress.iteration
    if tc.eval_interval and iteration % tc.eval_interval == 0 and iteration < tc.iterations:
        scores = _evaluate(run)
        _update_best(progress, scores)
        run.monitor.evaluated(iteration, scores["miou"])
        log.info("iteration %d: val mIoU %.2f (best %.2f at %s)", iteration, scores["miou"],
                 progress.best["miou"], progress.best["iteration"])
    if tc.checkpoint_every and iteration % tc.checkpoint_every == 0 and iteration < tc.iterations:
        _save_checkpoint(run, progress)


def _evaluate(run: _Run) -> dict:
    inputs, ctx = run.inputs, run.ctx
    return evaluate(run.student, inputs.val_set, num_classes=inputs.num_classes,
                    class_names=inputs.class_names, device=ctx.device, precision=run.precision,
                    rank=ctx.rank, world_size=ctx.world_size, align_corners=run.align_corners,
                    batch_size=run.config.data.val_batch_size)


def _update_best(progress: _Progress, scores: dict) -> None:
    if scores["miou"] > progress.best["miou"]:
        progress.best = {"miou": scores["miou"], "iteration": progress.iteration}


def _save_checkpoint(run: _Run, progress: _Progress) -> None:
    """The resume state (every rank's RNG gathered) and log.csv, written by rank 0."""
    ctx, iteration = run.ctx, progress.iteration
    rngs = [rng_state()]
    if ctx.distributed:
        rngs = [None] * ctx.world_size
        torch.distributed.all_gather_object(rngs, rng_state())
    with _interrupt_after():
        if ctx.is_main:
            with _writing(run, progress):
                _write_checkpoint(run, progress, rngs)
        progress.checkpointed = iteration
    barrier(ctx)


@contextlib.contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C that arrives during the block until it ends: the checkpoint is then
    written whole and recorded, so the interrupted run's one line names it correctly."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


def _write_checkpoint(run: _Run, progress: _Progress, rngs: list) -> None:
    iteration = progress.iteration
    save_checkpoint(run.out_dir, {
        "config": run.resolved, "iteration": iteration, "code": provenance.code_hash(),
        "student": run.student.state_dict(), "distiller": run.distiller.state_dict(),
        "optimizer": run.optimizer.state_dict(), "rng": rngs, "best": progress.best,
        "log_rows": progress.rows, "skipped_batches": progress.skipped,
        # The sampler position is a function of the iteration (one batch per iteration,
        # skipped ones included), recorded for readers of the file.
        "sampler": {"epoch": iteration // run.batches_per_epoch,
                    "batch_in_epoch": iteration % run.batches_per_epoch},
        "wall_time_s": progress.elapsed_before + time.perf_counter() - run.started,
        "train_time_s": progress.total_train_time,
    })
    run.monitor.write_all()  # log.csv as the checkpoint holds it


@contextlib.contextmanager
def _writing(run: _Run, progress: _Progress) -> Iterator[None]:
    """A write that fails (disk full, a folder made read-only mid-run) is one line saying where
    the run resumes from."""
    try:
        yield
    except OSError as err:
        raise UserError(f"cannot write {err.filename or run.out_dir} ({err.strerror or err}); free "
                        f"space or fix its permissions, then {_where_it_resumes(run, progress)}") from None


def _finish(run: _Run, progress: _Progress) -> dict:
    """Last checkpoint, final evaluation, then model/, log.csv and metrics.json (rank 0).

    The checkpoint comes first: a run that fails in the evaluation (a bad val file) or is killed
    while writing its outputs resumes at the last iteration instead of training again.
    """
    if progress.start_iteration < run.config.train.iterations:
        _save_checkpoint(run, progress)
    scores = _evaluate(run)
    _update_best(progress, scores)
    run.monitor.evaluated(progress.iteration, scores["miou"])
    metrics = _metrics(run, progress, scores)
    if run.ctx.is_main:
        with _writing(run, progress):
            _write_outputs(run.out_dir, run.student, metrics, progress.rows, run.config)
    barrier(run.ctx)
    log.info("done: mIoU %.2f (best %.2f at iteration %s), %.1f s", metrics["miou"],
             progress.best["miou"], progress.best["iteration"], metrics["wall_time_s"])
    return metrics


def _metrics(run: _Run, progress: _Progress, scores: dict) -> dict:
    """The contents of metrics.json: scores, run statistics, settings and provenance."""
    config, device = run.config, run.ctx.device
    train_time = progress.total_train_time
    teacher = run.inputs.teacher
    return {
        "miou": scores["miou"],
        "best_miou": progress.best["miou"],
        "best_iteration": progress.best["iteration"],
        "per_class_iou": scores["per_class_iou"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "absent_classes": scores["absent_classes"],
        "val_images": scores["images"],
        "iterations": progress.iteration,
        "skipped_batches": progress.skipped,
        "wall_time_s": progress.elapsed_before + time.perf_counter() - run.started,
        "train_time_s": train_time,
        "images_per_s": progress.iteration * config.data.batch_size / train_time if train_time > 0 else None,
        "peak_memory_mb": provenance.peak_memory_mb(device),
        "trainable_params": sum(p.numel() for p in run.student.parameters() if p.requires_grad),
        "method_params": sum(p.numel() for p in run.distiller.parameters() if p.requires_grad),
        "method": config.method.name,
        "student": config.model.student,
        "teacher": config.model.teacher if teacher is not None else None,
        "dataset": config.data.name,
        "seed": config.seed,
        "protocol": config.protocol,
        "align_corners": run.align_corners,
        "lr": run.base_lr,
        "amp": "bf16" if run.precision.amp else "off",
        "channels_last": run.precision.channels_last,
        "world_size": run.ctx.world_size,
        "resumed_from": progress.start_iteration or None,
        "config": run.resolved,
        "teacher_model": run.inputs.teacher_model,
        "versions": provenance.versions(),
        "git_commit": provenance.git_commit(),
        "code": provenance.code_hash(),
        "device": provenance.device_description(device),
        "threads": torch.get_num_threads(),
    }


def _write_outputs(out_dir: Path, student: nn.Module, metrics: dict, rows: list, config: RunConfig) -> None:
    """model/, log.csv, the checkpoint renamed to final.pt (a finished run keeps no resume
    state), then metrics.json last: its presence marks a finished run."""
    from harness.models import save_model

    metadata = {"dataset": config.data.name, "miou": metrics["miou"], "iterations": metrics["iterations"],
                "seed": config.seed, "method": config.method.name, "protocol": config.protocol,
                "align_corners": metrics["align_corners"]}
    save_model(student, out_dir / "model", metadata)  # the folder appears whole
    atomic_write_text(out_dir / "log.csv", csv_text(rows))
    retire_checkpoint(out_dir)
    atomic_write_json(out_dir / "metrics.json", metrics)
