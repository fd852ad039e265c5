"""CLI: ``python -m harness train`` and ``python -m harness eval``."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from harness.errors import UserError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train a student (optionally distilled from a teacher) and evaluate it",
        description="Train one run into OUT. Restarting the same command resumes an unfinished run "
        "of the same config and code from OUT/checkpoints/last.pt; a finished run of the same "
        "config is nothing to do; a run of another config in OUT is refused unless "
        "--overwrite or --move-stale says what to do with it.",
        epilog="""examples:
  python -m harness train --out runs/t --set model.student=deeplabv3_small --set train.iterations=1200
  python -m harness train --out runs/s --set model.student=segformer_tiny \\
      --set model.teacher=deeplabv3_small --set model.teacher_checkpoint=runs/t \\
      --set method.name=METHOD --set method.preset=PRESET --set method.options.NAME=VALUE
METHOD, PRESET and option NAMEs: README, "Methods and their options". Every key of the run
config (harness/config.py) takes --set KEY=VALUE (a YAML value).""")
    train.add_argument("--config", help="YAML run config (defaults if omitted)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set train.iterations=200 (repeatable)")
    train.add_argument("--out", required=True, help="run folder (metrics.json, log.csv, model/, ...)")
    existing = train.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", dest="existing", action="store_const", const="overwrite",
                          default="keep", help="remove the run OUT holds, finished or not, and "
                          "train from scratch")
    existing.add_argument("--move-stale", dest="existing", action="store_const", const="move-stale",
                          help="move a run of another config or code to OUT.stale-N and train "
                          "from scratch (an unfinished run of this config and code still "
                          "resumes; the workflow passes this)")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser("eval", help="evaluate a saved model on a dataset split",
                                     epilog="""example:
  python -m harness eval --model runs/s --dataset toycity --root data/toycity --out eval.json""")
    evaluate.add_argument("--model", required=True,
                          help="saved model folder (or a run folder holding model/)")
    evaluate.add_argument("--dataset", required=True, help="dataset name, e.g. toycity")
    evaluate.add_argument("--root", required=True, help="dataset root folder")
    evaluate.add_argument("--split", default="val", help="split to evaluate")
    evaluate.add_argument("--max-images", type=int, default=None, help="evaluate the first N images")
    evaluate.add_argument("--max-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                          help="shrink images and labels to fit H x W first (smoke runs; "
                          "default: whole images)")
    evaluate.add_argument("--batch", type=int, default=1,
                          help="images per forward; consecutive images of one size are stacked "
                          "(the scores of batch 1 up to float rounding)")
    evaluate.add_argument("--out", required=True, help="JSON file for the scores")
    evaluate.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from harness.config import load_config
    from harness.engine.loop import train

    config = load_config(args.config, args.overrides)
    metrics = train(config, Path(args.out), existing=args.existing)
    log.info("mIoU %.2f (best %.2f at iteration %s) -> %s", metrics["miou"], metrics["best_miou"],
             metrics["best_iteration"], Path(args.out) / "metrics.json")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from harness.config import PROTOCOLS, RunConfig, current_value
    from harness.data import DATASETS, build_dataset, check_dataset
    from harness.engine import provenance
    from harness.engine.evaluate import evaluate
    from harness.engine.prepare import resolve_teacher_folder
    from harness.engine.step import Precision
    from harness.errors import ConfigError
    from harness.io import atomic_write_json, check_writable_dir
    from harness.models import load_model
    from harness.registry import UnknownNameError

    out = Path(args.out)
    check_writable_dir(out.parent)
    if args.max_images is not None and args.max_images < 1:
        raise UserError(f"--max-images must be >= 1, got {args.max_images}")
    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    if args.max_size is not None and min(args.max_size) < 1:
        raise UserError(f"--max-size must be two positive integers, got {args.max_size}")
    try:
        dataset_cls = DATASETS.get(args.dataset)
    except UnknownNameError as err:
        raise ConfigError(f"{err}; fix --dataset") from None
    check_dataset(args.dataset, args.root, splits=[args.split])
    folder = resolve_teacher_folder(args.model)
    model, meta = load_model(folder, expect_num_classes=dataset_cls.num_classes,
                             expect_dataset=args.dataset)
    dataset = build_dataset(args.dataset, args.root, args.split, train=False, max_images=args.max_images,
                            max_size=args.max_size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = Precision.resolve("auto", "auto", device)  # the training defaults
    # the model's own protocol (a run's model folder records it), else the default protocol
    align = meta.get("align_corners")
    if align is None:
        protocol = current_value("protocol", meta.get("protocol"))
        align = PROTOCOLS.get(protocol, PROTOCOLS[RunConfig.protocol])["align_corners"]
    scores = evaluate(precision.prepare(model.to(device)), dataset, device=device,
                      precision=precision, align_corners=align, batch_size=args.batch)
    result = {
        **scores,
        "model": meta["name"], "model_path": str(folder),
        "model_sha256": provenance.sha256_of(folder / "model.safetensors"),
        "trained_on": meta.get("dataset"), "dataset": args.dataset, "root": str(args.root),
        "split": args.split, "align_corners": align, "versions": provenance.versions(),
        "git_commit": provenance.git_commit(),
        "device": provenance.device_description(device),
    }
    atomic_write_json(out, result)
    log.info("%s on %s/%s: mIoU %.2f, pixel accuracy %.2f -> %s", meta["name"], args.dataset,
             args.split, scores["miou"], scores["pixel_accuracy"], out)
    return 0
