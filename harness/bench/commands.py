"""``python -m harness bench``: the cost table (and, with ``--pipeline``, the costs around it).

    python -m harness bench --dataset toycity --crop 64 128 --batch 8 --threads 2 \
        --out results/cost_{dataset}.csv
    python -m harness bench --dataset toycity --pipeline --skip-cost   # accumulator/loader/dry run
"""
from __future__ import annotations

import argparse
import logging
import math
import platform
from pathlib import Path

import torch

from harness.bench.cost import COLUMNS, DEFAULT_METHODS, CostConfig, run_cost, split_method
from harness.bench.table import write_tables
from harness.errors import ConfigError, UserError

log = logging.getLogger(__name__)

DEMO_PAIRS = ("deeplabv3_small:segformer_tiny", "segformer_small:deeplabv3_tiny",
              "deeplabv3_small:deeplabv3_tiny")
MARKDOWN_COLUMNS = ("teacher", "student", "method", "preset", "crop", "batch", "teacher_fwd_ms",
                    "student_step_ms", "full_step_ms", "method_ms", "overhead", "method_alone_ms",
                    "overhead_alone", "peak_mem_mb", "limit_peak_mem_mb", "base_mem_mb",
                    "method_params", "method_gflops", "images_per_s")
PIPELINE_COLUMNS = ("dataset", "measure", "value", "unit", "versus", "versus_value", "ratio",
                    "goal", "met", "detail", "device", "threads", "torch")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="measure the cost of each distillation method",
                              description="The cost table of each pair x method (and, with "
                              "--pipeline, the costs around the training step).",
                              epilog="""examples:
  python -m harness bench --dataset toycity --crop 64 128 --batch 8 --threads 2 \\
      --pairs deeplabv3_small:segformer_tiny --methods kd heteroakd:full
  python -m harness bench --dataset toycity --pipeline --skip-cost   # accumulator, loader, dry run""")
    p.add_argument("--dataset", default=None,
                   help="dataset name (default toycity): its class count, the method presets "
                        "named after it, the dataset column and {dataset} in --out")
    p.add_argument("--dataset-classes", type=int, metavar="K",
                   help="the class count, without looking the dataset up; alone, the dataset "
                        "column reads 'k<K>'")
    p.add_argument("--root", default=None,
                   help="dataset root for --pipeline's loader benchmark (default data/<dataset>)")
    p.add_argument("--crop", type=int, nargs=2, default=(64, 128), metavar=("H", "W"),
                   help="synthetic batch size (H W)")
    p.add_argument("--batch", type=int, default=8, help="images per step")
    p.add_argument("--pairs", nargs="+", default=list(DEMO_PAIRS), metavar="TEACHER:STUDENT",
                   help="teacher/student model names")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="NAME[:PRESET]",
                   help="methods; NAME:PRESET picks a preset (default: the dataset's own preset "
                        "where the method has one)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds (medians are reported)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: time.perf_counter; cpu: time.process_time, immune to other jobs "
                        "preempting this one on a shared CPU (use with --threads 1)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                   help="bf16 autocast (auto: on CUDA only)")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                   help="channels_last memory format (auto: on CUDA only)")
    p.add_argument("--isolate", choices=("auto", "process", "none"), default="auto",
                   help="process: each configuration in a fresh process (honest CPU peak RSS); "
                        "auto: process on CPU, none on CUDA")
    p.add_argument("--pipeline", action="store_true",
                   help="also measure the mIoU accumulator, the data loader and the grid dry run")
    p.add_argument("--workers", type=int, nargs="+", default=None,
                   help="loader worker counts for --pipeline (default: 0 and DataConfig's default)")
    p.add_argument("--skip-cost", action="store_true", help="only the --pipeline measurements")
    p.add_argument("--out", default="results/cost_{dataset}.csv",
                   help="cost CSV ('{dataset}' is filled in); a .md table is written beside it, "
                        "--pipeline's results go to pipeline_<dataset>.csv/.md in the same folder")
    p.set_defaults(func=run)


def _parse_pairs(pairs: list[str]) -> list[tuple[str, str]]:
    from harness.models import MODELS

    parsed = []
    for text in pairs:
        teacher, sep, student = text.partition(":")
        if not sep or not teacher or not student:
            raise ConfigError(f"--pairs entry {text!r} must look like teacher:student")
        for name in (teacher, student):
            if name not in MODELS:
                raise ConfigError(f"unknown model {name!r} in --pairs; valid: "
                                  f"{', '.join(sorted(MODELS.names()))}")
        parsed.append((teacher, student))
    return parsed


def _check_methods(methods: list[str]) -> None:
    from harness.methods import METHODS

    for spec in methods:
        name, preset = split_method(spec)
        if name not in METHODS:
            raise ConfigError(f"unknown method {name!r} in --methods; valid: "
                              f"{', '.join(sorted(METHODS.names()))}")
        cls = METHODS.get(name)
        if not cls.needs_teacher:
            raise ConfigError(f"method {name!r} has no teacher, so no distillation cost; drop it from "
                              "--methods")
        if preset is not None and preset not in cls.presets:
            raise ConfigError(f"unknown preset {preset!r} for {name} in --methods; valid: "
                              f"{', '.join(sorted(cls.presets))}")


def _num_classes(args: argparse.Namespace) -> tuple[str, int]:
    if args.dataset_classes is not None:
        if args.dataset_classes < 1:
            raise ConfigError("--dataset-classes must be >= 1")
        return args.dataset or f"k{args.dataset_classes}", args.dataset_classes
    args.dataset = args.dataset or "toycity"
    from harness.data import DATASETS

    if args.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {args.dataset!r}; valid: {', '.join(sorted(DATASETS.names()))} "
                          "(or give --dataset-classes K)")
    return args.dataset, DATASETS.get(args.dataset).num_classes


def run(args: argparse.Namespace) -> int:
    if args.batch < 1 or min(args.crop) < 1 or args.repeats < 1 or args.warmup < 0:
        raise ConfigError("--batch, --crop and --repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads must be >= 1")
    if args.clock == "cpu" and (args.device or "").startswith("cuda"):
        raise ConfigError("--clock cpu does not see GPU time; use --clock wall with --device cuda")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    dataset, num_classes = _num_classes(args)
    pairs = _parse_pairs(args.pairs)
    _check_methods(args.methods)
    out = Path(args.out.format(dataset=dataset))
    if out.suffix != ".csv":
        raise ConfigError(f"--out {out} must end in .csv (the .md table is written beside it)")
    from harness.io import ensure_writable_dir

    ensure_writable_dir(out.parent)
    if args.pipeline and args.dataset is not None:
        from harness.data import check_dataset, dataset_class

        if not dataset_class(args.dataset).generated:  # a missing root fails before any output
            check_dataset(args.dataset, args.root or f"data/{args.dataset}", ["train"])
    if args.threads:
        torch.set_num_threads(args.threads)
    crop = (args.crop[0], args.crop[1])

    if not args.skip_cost:
        isolate = args.isolate == "process" or (args.isolate == "auto" and device == "cpu")
        configs = [CostConfig(dataset=dataset, num_classes=num_classes, teacher=teacher,
                              student=student, method=method, crop=crop, batch=args.batch,
                              warmup=args.warmup, repeats=args.repeats, threads=args.threads,
                              device=device, clock=args.clock, amp=args.amp, channels_last=args.channels_last)
                   for teacher, student in pairs for method in args.methods]
        rows = run_cost(configs, isolate=isolate)
        notes = [f"torch {torch.__version__}, {rows[0]['device']}, {rows[0]['threads']} thread(s), "
                 f"python {platform.python_version()}; medians of {args.repeats} interleaved "
                 f"repeats after {args.warmup} warm-up rounds; clock: {args.clock} "
                 f"({'time.process_time' if args.clock == 'cpu' else 'time.perf_counter'}).",
                 "overhead = full_step / (teacher_fwd + student_step); method_ms = full - teacher "
                 "- student (can be slightly negative from noise when the method is cheap); method_alone_ms: "
                 "the distiller's forward + backward alone on cached outputs, overhead_alone = "
                 "(teacher + student + method_alone) / (teacher + student).",
                 f"memory: {rows[0]['mem_kind']} (peak_mem_mb: full step; limit_peak_mem_mb: teacher "
                 "forward + student step; base_mem_mb: after building, before any step; on CPU "
                 "these include the interpreter and libraries).",
                 "method_gflops: one distiller forward, matmuls and convolutions only "
                 "(torch.utils.flop_counter); inputs: synthetic images and blocky labels."]
        csv_path, md_path = write_tables(rows, COLUMNS, out, MARKDOWN_COLUMNS, notes)
        log.info("wrote %s and %s", csv_path, md_path)

    if args.pipeline:
        rows = pipeline_rows(args, dataset, num_classes, pairs, crop, device)
        csv_path, md_path = write_tables(rows, PIPELINE_COLUMNS, out.parent / f"pipeline_{dataset}.csv")
        log.info("wrote %s and %s", csv_path, md_path)
    return 0


def pipeline_rows(args: argparse.Namespace, dataset: str, num_classes: int,
                  pairs: list[tuple[str, str]], crop: tuple[int, int], device: str) -> list[dict]:
    """Accumulator vs eval throughput per student, loader vs training consumption, dry run."""
    from harness.bench import pipeline
    from harness.models import build_model

    stamp = {"dataset": dataset, "device": device, "threads": torch.get_num_threads(),
             "torch": torch.__version__}
    rows: list[dict] = []
    students = list(dict.fromkeys(student for _, student in pairs))
    accumulator = pipeline.accumulator_throughput(num_classes, crop, device=device,
                                                  repeats=args.repeats)
    consumption = {}
    for student in students:
        model = build_model(student, num_classes)
        model_pixels = pipeline.eval_throughput(model, crop, device=device, repeats=args.repeats)
        ratio = accumulator / model_pixels
        rows.append({**stamp, "measure": "miou_accumulator", "value": round(accumulator),
                     "unit": "pixels/s", "versus": f"{student} eval forward",
                     "versus_value": round(model_pixels), "ratio": round(ratio, 2),
                     "goal": ">= 10", "met": ratio >= 10,
                     "detail": f"{crop[0]}x{crop[1]} image, batch 1 (as evaluate)"})
        consumption[student] = pipeline.training_consumption(
            build_model(student, num_classes), crop, args.batch, device=device,
            repeats=max(3, args.repeats // 2))
    fastest_student, fastest = max(consumption.items(), key=lambda item: item[1])

    if args.dataset is None:
        log.info("no dataset named for the loader benchmark (--dataset-classes): skipped")
    else:
        from harness.config import DataConfig
        from harness.data import build_dataset, dataset_class, prepare_dataset

        root = args.root or f"data/{dataset}"
        if dataset_class(dataset).generated:
            prepare_dataset(dataset, root)
        train_set = build_dataset(dataset, root, "train", train=True, crop=crop)
        for workers in args.workers or sorted({0, DataConfig().workers}):
            images_per_s = pipeline.loader_throughput(train_set, args.batch, workers)
            ratio = images_per_s / fastest
            rows.append({**stamp, "measure": f"loader_workers_{workers}",
                         "value": round(images_per_s, 1), "unit": "images/s",
                         "versus": f"{fastest_student} student-only train step",
                         "versus_value": round(fastest, 1), "ratio": round(ratio, 2),
                         "goal": ">= 1", "met": ratio >= 1,
                         "detail": f"crop {crop[0]}x{crop[1]}, batch {args.batch}"})

    try:
        seconds, jobs = pipeline.dry_run_seconds(".")
        rows.append({**stamp, "measure": "paper_grid_dry_run", "value": round(seconds, 2),
                     "unit": "s", "versus": "", "versus_value": math.nan, "ratio": math.nan,
                     "goal": "<= 5", "met": seconds <= 5,
                     "detail": f"snakemake -n, {'/'.join(pipeline.PAPER_DATASETS)}, "
                               f"check_roots=false, {jobs} jobs"})
    except FileNotFoundError as err:
        log.info("dry run not measured: %s", err)
    except RuntimeError as err:  # a broken workflow is a finding, not a reason to lose the rows
        log.warning("dry run failed: %s", err)
        rows.append({**stamp, "measure": "paper_grid_dry_run", "value": math.nan, "unit": "s",
                     "versus": "", "versus_value": math.nan, "ratio": math.nan, "goal": "<= 5",
                     "met": False, "detail": str(err)})
    return rows
