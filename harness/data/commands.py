"""``python -m harness data prepare NAME --root R`` and ``data check NAME --root R [--split S]``."""
from __future__ import annotations

import argparse
import logging
import sys

from harness.data import DATASETS, check_dataset, dataset_class, prepare_dataset
from harness.data.toycity import ToyCityParams, read_manifest

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare or check a dataset folder",
                                 description="Prepare (toycity: generate) or check a dataset folder.")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    names = DATASETS.names()

    prepare = actions.add_parser(
        "prepare", help="make a dataset ready: generate toycity (seeded), then read and check "
        "every file as `data check` does", epilog="""examples:
  python -m harness data prepare toycity --root data/toycity
  python -m harness data prepare cityscapes --root /data/cityscapes   # checks every file only""")
    prepare.add_argument("name", choices=names, help="dataset name")
    prepare.add_argument("--root", required=True, help="dataset folder")
    defaults = ToyCityParams()
    prepare.add_argument("--seed", type=int, help=f"toycity generator seed (default {defaults.seed})")
    prepare.add_argument("--num-train", type=int, help=f"toycity train images (default {defaults.num_train})")
    prepare.add_argument("--num-val", type=int, help=f"toycity val images (default {defaults.num_val})")
    prepare.add_argument("--height", type=int, help=f"toycity image height (default {defaults.height})")
    prepare.add_argument("--width", type=int, help=f"toycity image width (default {defaults.width})")
    prepare.set_defaults(func=run_prepare)

    check = actions.add_parser(
        "check", help="read and check every file of a split (layout, pairing, decoding, sizes, "
        "label values)", description="Reads every image and label of the splits (on a few threads, "
        "with a progress bar on a terminal); the first bad file is named in one line, exit 2.",
        epilog="""example:
  python -m harness data check cityscapes --root /data/cityscapes --split val""")
    check.add_argument("name", choices=names, help="dataset name")
    check.add_argument("--root", required=True, help="dataset folder")
    check.add_argument("--split", action="append", help="split to check (repeatable; default train and val)")
    check.set_defaults(func=run_check)


def run_prepare(args: argparse.Namespace) -> int:
    options = {key: getattr(args, key) for key in ("seed", "num_train", "num_val", "height", "width")
               if getattr(args, key) is not None}
    root = prepare_dataset(args.name, args.root, read_all=True, progress=sys.stderr.isatty(),
                           **options)
    if dataset_class(args.name).generated:
        log.info("%s ready at %s: %s", args.name, root, read_manifest(root)["params"])
    else:
        log.info("%s ready at %s", args.name, root)
    return 0


def run_check(args: argparse.Namespace) -> int:
    cls = dataset_class(args.name)
    check_dataset(args.name, args.root, args.split, read_all=True, progress=sys.stderr.isatty())
    log.info("%s at %s is fine (%d classes)", args.name, args.root, cls.num_classes)
    return 0
