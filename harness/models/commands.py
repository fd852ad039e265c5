"""``python -m harness models import FILE --format F --model NAME --dataset D --out DIR``."""
from __future__ import annotations

import argparse
import logging

from harness.models.reference_formats import FORMATS

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="import reference checkpoints")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import", help="convert a CIRKD / NVlabs-mmseg checkpoint into a saved-model folder",
        description="Write DIR/model.safetensors + DIR/config.json from a reference checkpoint; "
                    "DIR then works wherever a trained model does (model.teacher_model, "
                    "teachers.<name>.model, eval --model).",
        epilog="""example (CIRKD's released Cityscapes teacher):
  python -m harness models import deeplabv3_resnet101_citys_best_model.pth --format cirkd \\
      --model deeplabv3_r101 --dataset cityscapes --out teachers/deeplabv3_r101_citys""")
    imp.add_argument("file", help="the reference .pth (or .safetensors) file")
    imp.add_argument("--format", required=True, choices=list(FORMATS),
                     help="cirkd (DeepLabV3/PSPNet/MobileNetV2), cirkd-segformer, mmseg (NVlabs SegFormer)")
    imp.add_argument("--model", required=True, help="harness model name, e.g. deeplabv3_r101")
    imp.add_argument("--dataset", required=True,
                     help="dataset the checkpoint was trained on, e.g. cityscapes")
    imp.add_argument("--out", required=True, help="saved-model folder to write")
    imp.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    from harness.models.importer import import_checkpoint

    config = import_checkpoint(args.file, args.format, args.model, args.dataset, args.out)
    log.info("%s: %s for %s (%d classes), sha256 %s", args.out, config["name"], config["dataset"],
             config["num_classes"], config["source"]["sha256"][:12])
    return 0
