"""``train(config, out_dir)``: the iteration loop.

It knows no distillation method: the distiller is an ``nn.Module`` that maps (student output,
teacher output, labels) to a dict of weighted ``loss_<term>`` s; the loop adds the task loss,
sums, and optimises every trainable parameter of the student and of the distiller.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from tqdm import tqdm

from harness.config import RunConfig, align_corners, to_dict
from harness.engine import provenance
from harness.engine.checkpoint import checkpoint_path, save_checkpoint
from harness.engine.data import build_train_loader
from harness.data import check_dataset
from harness.engine.distributed import (DistContext, barrier, broadcast_object, init_distributed,
                                        shutdown, sync_batchnorm)
from harness.engine.evaluate import evaluate
from harness.engine.optim import build_optimizer, poly_lr, scaled_lr, set_lr, trainable_parameters
from harness.engine.prepare import RunInputs, prepare_run
from harness.engine.seeding import rng_state, seed_everything, set_rng_state, use_deterministic_algorithms
from harness.engine.task_loss import task_losses
from harness.errors import UserError
from harness.io import atomic_write_json, atomic_write_text, ensure_writable_dir

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError):
    """A loss term became NaN or Inf."""


class StudentWithDistiller(nn.Module):
    """Student and distiller as one module, so that DDP all-reduces the gradients of both."""

    def __init__(self, student: nn.Module, distiller: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.distiller = distiller

    def forward(self, images: torch.Tensor, labels: torch.Tensor, out_t: Any) -> tuple[Any, dict]:
        out_s = self.student(images)
        return out_s, self.distiller(out_s, out_t, labels)


def _flag(value: str, device: torch.device) -> bool:
    """'auto' -> on with CUDA, off on CPU; 'bf16'/'on' force it on; 'off' off."""
    return device.type == "cuda" if value == "auto" else value in ("bf16", "on")


def _csv_text(rows: list[dict[str, float]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def train(config: RunConfig, out_dir: str | Path) -> dict:
    """Train ``config`` into ``out_dir`` (resuming from its checkpoint if one exists).

    Returns the metrics dict written to ``out_dir/metrics.json`` (on every rank).
    """
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    owns_group = not torch.distributed.is_initialized()
    ctx = init_distributed()
    try:
        return _train(config, Path(out_dir), ctx)
    finally:
        if owns_group:
            shutdown(ctx)


def _train(config: RunConfig, out_dir: Path, ctx: DistContext) -> dict:
    started = time.perf_counter()
    tc = config.train
    # Seed before building anything: the models' random init follows the seed too.
    seed_everything(config.seed)
    use_deterministic_algorithms(ctx.device)
    if ctx.distributed:
        # Rank 0 checks (and for the built-in dataset, generates) the data alone; the others
        # wait, then raise the same error if there was one, instead of racing or hanging.
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
    inputs: RunInputs = prepare_run(config, out_dir, ctx.world_size)
    resolved = to_dict(config)
    if ctx.is_main:
        ensure_writable_dir(out_dir)
        atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    barrier(ctx)

    device = ctx.device
    amp = _flag(tc.amp, device)
    channels_last = _flag(tc.channels_last, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    student, distiller, teacher = inputs.student, inputs.distiller, inputs.teacher
    student, distiller = sync_batchnorm(ctx, tc.sync_bn, student, distiller)
    align = align_corners(config)
    student.to(device, memory_format=memory_format).train()
    distiller.to(device).train()
    if teacher is not None:
        teacher.to(device, memory_format=memory_format).eval()
        teacher.requires_grad_(False)

    batch_size = config.data.batch_size
    per_rank_batch = batch_size // ctx.world_size
    base_lr = scaled_lr(tc, batch_size)
    params = trainable_parameters(student, distiller)
    optimizer = build_optimizer(tc, params, base_lr)
    student_params = [p for p in student.parameters() if p.requires_grad]
    distiller_params = [p for p in distiller.parameters() if p.requires_grad]
    max_grad_norm = getattr(distiller, "max_grad_norm", None)

    state = inputs.resume_state
    start_iteration, rows, best = 0, [], {"miou": -math.inf, "iteration": None}
    elapsed_before, train_time_before, skipped = 0.0, 0.0, 0
    if state is not None:
        student.load_state_dict(state["student"])
        distiller.load_state_dict(state["distiller"])
        optimizer.load_state_dict(state["optimizer"])
        start_iteration, rows, best = state["iteration"], state["log_rows"], state["best"]
        elapsed_before, train_time_before = state["wall_time_s"], state["train_time_s"]
        skipped = state["skipped_batches"]
        set_rng_state(state["rng"][ctx.rank] if ctx.rank < len(state["rng"]) else state["rng"][0])
        log.info("resuming %s from iteration %d", checkpoint_path(out_dir), start_iteration)

    module: nn.Module = StudentWithDistiller(student, distiller)
    if ctx.distributed:
        # find_unused_parameters: a method may leave some of its modules out of the loss (an
        # ablation switch), and aux_weight=0 leaves the aux head unused.
        module = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)

    loader, sampler = build_train_loader(
        inputs.train_set, batch_size=per_rank_batch, workers=config.data.workers, seed=config.seed,
        rank=ctx.rank, world_size=ctx.world_size, pin_memory=device.type == "cuda")
    batches_per_epoch = sampler.num_samples // per_rank_batch
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if amp \
        else contextlib.nullcontext

    def run_eval() -> dict:
        return evaluate(student, inputs.val_set, num_classes=inputs.num_classes,
                        class_names=inputs.class_names, device=device, amp=amp,
                        channels_last=channels_last, rank=ctx.rank, world_size=ctx.world_size,
                        align_corners=align)

    def checkpoint(iteration: int) -> None:
        rngs = [rng_state()]
        if ctx.distributed:
            rngs = [None] * ctx.world_size
            torch.distributed.all_gather_object(rngs, rng_state())
        if ctx.is_main:
            save_checkpoint(out_dir, {
                "config": resolved, "iteration": iteration,
                "student": student.state_dict(), "distiller": distiller.state_dict(),
                "optimizer": optimizer.state_dict(), "rng": rngs, "best": best,
                "log_rows": rows, "skipped_batches": skipped,
                # The sampler position is a function of the iteration (one batch per
                # iteration, skipped ones included), recorded for readers of the file.
                "sampler": {"epoch": iteration // batches_per_epoch,
                            "batch_in_epoch": iteration % batches_per_epoch},
                "wall_time_s": elapsed_before + time.perf_counter() - started,
                "train_time_s": train_time_before + train_time,
            })
            atomic_write_text(out_dir / "log.csv", _csv_text(rows))
        barrier(ctx)

    show_bar = ctx.is_main and sys.stderr.isatty()
    progress = tqdm(total=tc.iterations, initial=start_iteration, desc=f"train {config.method.name}",
                    unit="it", dynamic_ncols=True, disable=not show_bar)
    train_time = 0.0
    iteration = start_iteration
    tick = time.perf_counter()
    while iteration < tc.iterations:
        epoch, batch_in_epoch = divmod(iteration, batches_per_epoch)
        sampler.set_position(epoch, batch_in_epoch * per_rank_batch)
        for images, labels in loader:
            lr = poly_lr(base_lr, iteration, tc.iterations, tc.poly_power)
            set_lr(optimizer, lr)
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            labels = labels.to(device, non_blocking=True)
            with autocast():
                out_t = None
                if teacher is not None:
                    with torch.no_grad():
                        out_t = teacher(images)
                out_s, method_terms = module(images, labels, out_t)
            terms = task_losses(out_s, labels, tc.aux_weight, align)
            terms.update(method_terms)
            total = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()

            # One host sync per iteration: the loss values for the log and the finiteness check.
            values = torch.stack([t.detach().float() for t in terms.values()] + [total.detach().float()])
            if ctx.distributed:
                torch.distributed.all_reduce(values)
                values /= ctx.world_size
            numbers = values.tolist()
            iteration += 1
            bad = next((name for name, v in zip([*terms, "loss_total"], numbers) if not math.isfinite(v)), None)
            if bad is not None:
                value = numbers[[*terms, "loss_total"].index(bad)]
                if not tc.skip_nonfinite:
                    progress.close()
                    kept = checkpoint_path(out_dir)
                    raise NonFiniteLossError(
                        f"loss term {bad} became {value} at iteration {iteration}; the last good "
                        f"checkpoint {kept if kept.exists() else '(none yet)'} is kept; lower "
                        f"train.lr, set train.grad_clip, or set train.skip_nonfinite=true to skip such batches")
                skipped += 1
                log.warning("skipping iteration %d: loss term %s is %s", iteration, bad, value)
            else:
                if tc.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(student_params, tc.grad_clip)
                if max_grad_norm is not None and distiller_params:
                    torch.nn.utils.clip_grad_norm_(distiller_params, max_grad_norm)
                optimizer.step()

            now = time.perf_counter()
            train_time += now - tick
            row = {"iteration": iteration, "lr": lr, **dict(zip([*terms, "loss_total"], numbers)),
                   "time_s": round(train_time_before + train_time, 4)}
            rows.append(row)
            progress.update(1)
            if iteration % max(tc.log_every, 1) == 0:
                progress.set_postfix(loss=f"{numbers[-1]:.4f}", lr=f"{lr:.2e}")
                # Without a terminal (Snakemake logs, batch jobs) these lines are the progress.
                level = logging.INFO if ctx.is_main and not show_bar else logging.DEBUG
                log.log(level, "iteration %d/%d lr %.3e %s", iteration, tc.iterations, lr,
                        " ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith("loss_")))
            if tc.eval_every and iteration % tc.eval_every == 0 and iteration < tc.iterations:
                scores = run_eval()
                if scores["miou"] > best["miou"]:
                    best = {"miou": scores["miou"], "iteration": iteration}
                log.info("iteration %d: val mIoU %.2f (best %.2f at %s)", iteration, scores["miou"],
                         best["miou"], best["iteration"])
            if tc.checkpoint_every and iteration % tc.checkpoint_every == 0 and iteration < tc.iterations:
                checkpoint(iteration)
            tick = time.perf_counter()
            if iteration >= tc.iterations or iteration % batches_per_epoch == 0:
                break
    progress.close()

    scores = run_eval()
    if scores["miou"] > best["miou"]:
        best = {"miou": scores["miou"], "iteration": iteration}
    if start_iteration < tc.iterations:
        checkpoint(iteration)  # a kill while writing the outputs below resumes straight here
    wall_time = elapsed_before + time.perf_counter() - started
    total_train_time = train_time_before + train_time
    teacher_name = config.model.teacher if teacher is not None else None
    metrics = {
        "miou": scores["miou"],
        "best_miou": best["miou"],
        "best_iteration": best["iteration"],
        "per_class_iou": scores["per_class_iou"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "absent_classes": scores["absent_classes"],
        "val_images": scores["images"],
        "iterations": iteration,
        "skipped_batches": skipped,
        "wall_time_s": wall_time,
        "train_time_s": total_train_time,
        "images_per_s": iteration * batch_size / total_train_time if total_train_time > 0 else None,
        "peak_memory_mb": provenance.peak_memory_mb(device),
        "trainable_params": sum(p.numel() for p in student_params),
        "method_params": sum(p.numel() for p in distiller_params),
        "method": config.method.name,
        "student": config.model.student,
        "teacher": teacher_name,
        "dataset": config.data.name,
        "seed": config.seed,
        "protocol": config.protocol,
        "align_corners": align,
        "lr": base_lr,
        "amp": "bf16" if amp else "off",
        "channels_last": channels_last,
        "world_size": ctx.world_size,
        "resumed_from": start_iteration or None,
        "config": resolved,
        "teacher_checkpoint": inputs.teacher_checkpoint,
        "versions": provenance.versions(),
        "git_commit": provenance.git_commit(),
        "device": provenance.device_description(device),
        "threads": torch.get_num_threads(),
    }
    if ctx.is_main:
        _write_outputs(out_dir, student, metrics, rows, config)
    barrier(ctx)
    log.info("done: mIoU %.2f (best %.2f at iteration %s), %.1f s", metrics["miou"], best["miou"],
             best["iteration"], wall_time)
    return metrics


def _write_outputs(out_dir: Path, student: nn.Module, metrics: dict, rows: list, config: RunConfig) -> None:
    """model/, log.csv, then metrics.json last: its presence marks a finished run."""
    from harness.models import save_model

    metadata = {"dataset": config.data.name, "miou": metrics["miou"], "iterations": metrics["iterations"],
                "seed": config.seed, "method": config.method.name, "protocol": config.protocol,
                "align_corners": metrics["align_corners"]}
    # save_model writes each file atomically; the folder swap makes model/ appear whole.
    final, tmp, old = out_dir / "model", out_dir / ".model.tmp", out_dir / ".model.old"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(student, tmp, metadata)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    atomic_write_text(out_dir / "log.csv", _csv_text(rows))
    atomic_write_json(out_dir / "metrics.json", metrics)
