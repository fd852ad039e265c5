"""Costs around the training step: is anything but the model the bottleneck?

- :func:`accumulator_throughput`: pixels/s of the engine's confusion-matrix accumulation alone
  (``harness.engine.evaluate.confusion_matrix``) beside :func:`eval_throughput`, the student's
  evaluation forward (logits upsampled to the label size + argmax, as ``evaluate`` does) in
  pixels/s. Goal: accumulation >= 10x the model.
- :func:`loader_throughput`: images/s of the engine's training DataLoader on a dataset, beside
  :func:`training_consumption`, the images/s a student-only training step consumes (the fastest
  step, so the most demanding consumer). Goal: the loader keeps up.
- :func:`dry_run_seconds`: wall time of ``snakemake -n`` over the paper grid with root checks
  off. Goal: <= 5 s.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import torch

from harness.bench.step import build_optimizer
from harness.bench.timing import median_seconds
from harness.engine.step import Precision, StepParts, StudentWithDistiller, train_step

#: the real datasets of the paper grid (docs/protocol.md §The paper grid)
PAPER_DATASETS = ("cityscapes", "voc", "ade20k")


def accumulator_throughput(num_classes: int, size: tuple[int, int], batch: int = 1,
                           warmup: int = 2, repeats: int = 10,
                           device: torch.device | str = "cpu") -> float:
    """Pixels/s of ``confusion_matrix`` on (batch, H, W) predictions and labels (5% ignored)."""
    from harness.engine.evaluate import confusion_matrix

    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    pred = torch.randint(0, num_classes, (batch, *size), generator=generator).to(device)
    labels = torch.randint(0, num_classes, (batch, *size), generator=generator)
    labels[torch.rand(labels.shape, generator=generator) < 0.05] = 255
    labels = labels.to(device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def accumulate() -> None:
        confusion.add_(confusion_matrix(pred, labels, num_classes))

    return batch * size[0] * size[1] / median_seconds(accumulate, device, warmup, repeats)


def eval_throughput(model: torch.nn.Module, size: tuple[int, int], batch: int = 1,
                    warmup: int = 2, repeats: int = 10, device: torch.device | str = "cpu",
                    precision: Precision | None = None) -> float:
    """Pixels/s of the model's evaluation forward at ``size`` (as ``evaluate``: eval mode,
    no_grad, logits bilinearly upsampled to the label size, argmax)."""
    from harness.engine.evaluate import predict_logits

    device = torch.device(device)
    precision = precision or Precision.resolve("auto", "auto", device)
    model = precision.prepare(model.to(device)).eval()
    images = precision.images(torch.randn(batch, 3, *size).to(device))

    @torch.no_grad()
    def forward() -> None:
        with precision.autocast(device):
            predict_logits(model, images, size).argmax(1)

    return batch * size[0] * size[1] / median_seconds(forward, device, warmup, repeats)


def training_consumption(model: torch.nn.Module, crop: tuple[int, int], batch: int,
                         warmup: int = 1, repeats: int = 5, device: torch.device | str = "cpu",
                         precision: Precision | None = None, optimizer: str = "auto") -> float:
    """Images/s the training step of the student alone (method ``baseline``) consumes."""
    from harness.methods import build_distiller

    device = torch.device(device)
    precision = precision or Precision.resolve("auto", "auto", device)
    model = precision.prepare(model.to(device)).train()
    kind = optimizer if optimizer != "auto" else (
        "adamw" if model.info.family == "transformer" else "sgd")
    opt = build_optimizer(model, torch.nn.Module(), kind, 2e-4 if kind == "adamw" else 0.01)
    parts = StepParts(StudentWithDistiller(model, build_distiller("baseline", model.info, None)),
                      None, opt, precision)
    num_classes = model.info.num_classes
    images = precision.images(torch.randn(batch, 3, *crop).to(device))
    labels = torch.randint(0, num_classes, (batch, *crop)).to(device)
    seconds = median_seconds(lambda: train_step(parts, images, labels), device, warmup, repeats)
    return batch / seconds


def loader_throughput(dataset: torch.utils.data.Dataset, batch: int, workers: int,
                      batches: int = 20) -> float:
    """Images/s of the engine's training loader over ``batches`` batches, after the first one
    (worker start-up is a one-off cost, not throughput)."""
    from harness.engine.data import build_train_loader

    loader, _ = build_train_loader(dataset, batch_size=batch, workers=workers, seed=0, rank=0,
                                   world_size=1, pin_memory=False)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        try:
            images, _labels = next(iterator)
        except StopIteration:  # a tiny dataset: start another epoch
            iterator = iter(loader)
            images, _labels = next(iterator)
        count += images.shape[0]
    seconds = time.perf_counter() - start
    del iterator, loader  # stop persistent workers
    return count / seconds


def dry_run_seconds(repo: str | Path = ".", datasets: tuple[str, ...] = PAPER_DATASETS,
                    timeout: float = 300.0) -> tuple[float, int]:
    """Wall seconds of ``snakemake -n`` over ``datasets``' whole grid (tables, ablation,
    sensitivity, every seed) with root checks off, and the number of jobs it planned.

    Raises FileNotFoundError when there is no Snakefile or no snakemake, RuntimeError when the
    dry run fails (its last stderr line in the message).
    """
    repo = Path(repo)
    snakemake = shutil.which("snakemake")
    if not (repo / "Snakefile").is_file() or snakemake is None:
        raise FileNotFoundError(f"no Snakefile in {repo} or no snakemake on PATH")
    command = [snakemake, "-n", "--cores", "1", "--config", "check_roots=false",
               f"default_datasets=[{','.join(datasets)}]"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"snakemake -n failed (exit {done.returncode}): {tail}")
    jobs = 0
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "total" and parts[1].isdigit():
            jobs = int(parts[1])
    return seconds, jobs
