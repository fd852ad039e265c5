"""CLI: ``python -m harness report table|ablation|sensitivity|readings|claims|cka|qualitative|curves``,
``python -m harness compare TABLE`` and ``python -m harness record --runs DIR --out DIR``.

The workflow's report rules call these; each also runs by hand on any set of run folders.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from harness.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _csv_list(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _out_csv(path: str) -> Path:
    out = Path(path)
    if out.suffix != ".csv":
        raise ConfigError(f"--out {out} must end in .csv (the figure/markdown is written beside it)")
    from harness.io import check_writable_dir

    check_writable_dir(out.parent)
    return out


def _teacher_miou(tokens: list[str]) -> dict[str, float]:
    import json

    teacher_miou = {}
    for token in tokens:
        name, sep, path = token.partition("=")
        if not sep:
            raise ConfigError(f"--teacher-eval {token!r} must look like TEACHER=eval.json")
        try:
            teacher_miou[name] = float(json.loads(Path(path).read_text())["miou"])
        except (OSError, KeyError, ValueError) as err:
            raise DataError(f"teacher evaluation {path} is unreadable or has no 'miou' ({err}); rerun "
                            "eval_teacher") from None
    return teacher_miou


def _read_cost(path: str | None):
    import pandas as pd

    if not path or not Path(path).is_file():
        return None
    cost = pd.read_csv(path)
    if not {"teacher", "student", "method", "overhead"} <= set(cost.columns):
        raise DataError(f"cost table {path} lacks teacher/student/method/overhead columns; rebuild "
                        "it with python -m harness bench")
    return cost


def _complexity(runs: list, dataset: str):
    """model name -> parameters and GFLOPs at the runs' training crop (None without a crop)."""
    from harness.data import dataset_class
    from harness.models.complexity import model_complexity

    num_classes = dataset_class(dataset).num_classes
    crop = next((r.crop for r in runs if r.crop), None)
    return lambda name: model_complexity(name, num_classes, tuple(crop)) if crop else None


def method_labels(methods: list[str]) -> dict[str, str]:
    """The printed name of each registered method (its ``label``)."""
    from harness.methods import METHODS

    return {m: METHODS.get(m).label or m for m in methods if m in METHODS}


def _runs(args: argparse.Namespace) -> list:
    """The runs a report reads: the run folders given, then the recorded runs ``--reuse`` names
    (from the store ``--recorded-runs``), as if they had just been run."""
    from harness.report.runs import load_recorded, load_runs

    if args.reuse and not args.recorded_runs:
        raise ConfigError("--reuse names recorded runs; pass their store with --recorded-runs "
                          "results/recorded/runs/<dataset>")
    runs = load_runs(args.runs)
    if args.reuse:
        runs += load_recorded(args.recorded_runs, args.reuse)
    if not runs:
        raise ConfigError("no runs given; pass run folders or --reuse recorded runs")
    return runs


def _recorded_notes(args: argparse.Namespace, frame) -> list[str]:
    """The pivot's note on the recorded runs (none when no store was given)."""
    if not args.recorded_runs:
        return []
    from harness.report.recorded_runs import load_store

    if not load_store(args.recorded_runs).rows:
        return [f"recorded runs: {args.recorded_runs} holds none yet, so every row was trained "
                "here (README: Compare a new method against recorded runs)."]
    reused = int(frame.source.str.contains("recorded@").sum())
    return [f"recorded runs: {reused} of {len(frame)} rows take runs recorded in "
            f"{args.recorded_runs} (source recorded@<commit>); the others were trained here."]


def _cmd_table(args: argparse.Namespace) -> int:
    from harness.data import dataset_class
    from harness.io import atomic_write_text
    from harness.report import pivot, published, tables

    out = _out_csv(args.out)
    pairs = [tables.PairSpec.parse(t) for t in args.pairs]
    runs = _runs(args)
    dataset = runs[0].dataset if runs else ""
    if args.dataset and any(r.dataset != args.dataset for r in runs):
        raise DataError(f"the runs are of dataset {dataset}, not --dataset {args.dataset}")
    figures = published.load_published(args.published) if args.published else None
    frame = tables.build_table(
        runs, pairs, _csv_list(args.methods), teacher_miou=_teacher_miou(args.teacher_eval),
        split=args.split, published=figures, cost=_read_cost(args.cost),
        complexity=_complexity(runs, dataset) if runs else None, scale=args.scale,
        pretrained_expected=bool(runs) and dataset_class(dataset).pretrained_expected)
    table = pivot.build_pivot(frame, method_labels(list(frame.method.unique())))
    table.notes += _recorded_notes(args, frame)
    tables.write_frame(frame, out)
    atomic_write_text(out.with_suffix(".md"), pivot.to_markdown(table))
    atomic_write_text(out.with_suffix(".tex"), pivot.to_latex(table))
    log.info("wrote %s (%d rows) and its pivot %s, %s", out, len(frame), out.with_suffix(".md"),
             out.with_suffix(".tex"))
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    from harness.report import plots, tables

    out = _out_csv(args.out)
    from harness.methods import METHODS

    labels = METHODS.get(args.method).preset_labels if args.method in METHODS else {}
    frame = tables.build_ablation(_runs(args), [tables.PairSpec.parse(t) for t in args.pairs],
                                  args.method, _csv_list(args.presets), labels)
    tables.write_frame(frame, out)
    plots.ablation_figure(frame, out.with_suffix(".png"), method_labels([args.method]).get(args.method))
    log.info("wrote %s and %s", out, out.with_suffix(".png"))
    return 0


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from harness.report import plots, tables

    out = _out_csv(args.out)
    axes = _csv_list(args.axes)
    if len(axes) != 2:
        raise ConfigError(f"--axes must name two options, e.g. lambda1,lambda2; got {args.axes!r}")
    frame = tables.build_sensitivity(_runs(args), tables.PairSpec.parse(args.pair),
                                     args.method, (axes[0], axes[1]))
    tables.write_frame(frame, out)
    plots.sensitivity_figure(frame, out.with_suffix(".png"), method_labels([args.method]).get(args.method))
    log.info("wrote %s and %s", out, out.with_suffix(".png"))
    return 0


def _cmd_readings(args: argparse.Namespace) -> int:
    from harness.report import plots, readings, tables

    out = _out_csv(args.out)
    base_options = readings.parse_reading(args.options)
    frame = readings.build_readings(
        _runs(args), [tables.PairSpec.parse(t) for t in args.pairs], args.method,
        [readings.parse_reading(r) for r in args.reading], preset=args.preset or None,
        options=base_options, reference=args.reference)
    tables.write_frame(frame, out, md=readings.readings_markdown(frame))
    plots.readings_figure(frame, out.with_suffix(".png"))
    log.info("wrote %s, %s and %s", out, out.with_suffix(".md"), out.with_suffix(".png"))
    return 0


def _read_result(path: str | None, needed: tuple[str, ...], what: str):
    """A result CSV the claims read (None when not given); refuses one without ``needed``."""
    import pandas as pd

    if path is None:
        return None
    if not Path(path).is_file():
        raise DataError(f"{what} {path} does not exist; build it first (snakemake {path})")
    frame = pd.read_csv(path, dtype={"seeds": str, "mious": str})
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{what} {path} lacks columns {missing}; rebuild it with this version "
                        f"(snakemake --forcerun {path})")
    return frame


def _cmd_claims(args: argparse.Namespace) -> int:
    from harness.report import claims as C
    from harness.report import tables

    out = _out_csv(args.out)
    spec = C.load_claims(args.claims)
    seeded = ("teacher", "student", "seeds", "mious")
    results = C.Results(
        table=_read_result(args.table, (*seeded, "kind", "method", "teacher_miou", "dataset"),
                           "table"),
        ablation=_read_result(args.ablation, (*seeded, "kind", "variant"), "ablation table"),
        sensitivity=_read_result(args.sensitivity, (*seeded, "axis1", "value1", "axis2",
                                                    "value2"), "sensitivity table"),
        cka=_read_result(args.cka, ("seed", "kind", "teacher_stage", "student_stage", "cka"),
                         "CKA table"),
    )
    frame = C.build_claims(results, spec)
    tables.write_frame(frame, out, md=C.claims_markdown(frame))
    for claim, rows in frame.groupby("claim", sort=False):
        log.info("%s: %s", claim, rows.claim_verdict.iloc[0])
    return 0


def _model_seed(folder: str) -> int:
    """The seed a saved model (or a run folder's model) was trained with; 0 when not recorded."""
    from harness.models.saved import CONFIG_FILE, model_folder, read_model_config

    seed = read_model_config(model_folder(folder) / CONFIG_FILE).get("seed", 0)
    return seed if isinstance(seed, int) else 0


def _cmd_cka(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.report import plots, tables
    from harness.report.cka import pair_cka

    png = Path(args.out)
    if png.suffix != ".png":
        raise ConfigError(f"--out {png} must end in .png (the CSV is written beside it)")
    _out_csv(str(png.with_suffix(".csv")))
    rows = []
    for token in args.pair:
        spec = tables.PairSpec.parse(token)
        name_t, name_s, kind, matrix = pair_cka(spec.teacher, spec.student, args.dataset, args.root,
                                                args.split, args.images, args.max_size)
        kind, seed = spec.kind or kind, _model_seed(spec.student)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                rows.append({"dataset": args.dataset, "teacher": name_t, "student": name_s, "kind": kind,
                             "seed": seed, "teacher_stage": i, "student_stage": j, "cka": value,
                             "images": args.images})
        log.info("%s -> %s (%s): matched-stage CKA %s", name_t, name_s, kind,
                 " ".join(f"{matrix[i][i]:.3f}" for i in range(min(len(matrix), len(matrix[0])))))
    frame = pd.DataFrame(rows)
    tables.write_frame(frame, png.with_suffix(".csv"))
    plots.cka_figure(frame, png)
    return 0


def _default_label(folder: str) -> str:
    """A run folder's method, preset and seed (from its metrics.json), else the folder's name."""
    from harness.report.runs import load_run

    if (Path(folder) / "metrics.json").is_file():
        run = load_run(folder)
        return " ".join(filter(None, (run.method, run.preset, f"seed {run.seed}")))
    return Path(folder.rstrip("/")).name


def _model_tokens(tokens: list[str]) -> dict[str, str]:
    """``[LABEL=]FOLDER`` -> {label: folder}; the label defaults to :func:`_default_label`."""
    models = {}
    for token in tokens:
        label, sep, folder = token.partition("=")
        if not sep:
            label, folder = _default_label(token), token
        if not label or not folder:
            raise ConfigError(f"--model {token!r} must look like [LABEL=]FOLDER (a run or saved-model "
                              "folder)")
        models[label] = folder
    return models


def _cmd_qualitative(args: argparse.Namespace) -> int:
    from harness.data import dataset_class
    from harness.report import plots
    from harness.report import samples as S

    png = Path(args.out)
    if png.suffix != ".png":
        raise ConfigError(f"--out {png} must end in .png")
    cls = dataset_class(args.dataset)
    models = {label: S.load(folder, args.dataset) for label, folder in _model_tokens(args.model).items()}
    chosen = S.load_samples(args.dataset, args.root, args.split, args.images, args.max_size)
    if not chosen:
        raise DataError(f"split {args.split} of {args.root} has no images")
    predictions = {f"{label}\n({m.info.name})": [S.predict(m, s).numpy() for s in chosen]
                   for label, m in models.items()}
    plots.qualitative_figure([plots.display_image(s.image.numpy()) for s in chosen],
                             [s.label.numpy() for s in chosen], predictions, cls.class_names,
                             cls.palette, png, title=f"{args.dataset} {args.split}",
                             ignore_colour=cls.ignore_colour)
    log.info("wrote %s", png)
    return 0


def _cmd_curves(args: argparse.Namespace) -> int:
    from harness.report import plots, tables
    from harness.report.curves import build_curves
    from harness.report.runs import load_runs

    out = _out_csv(args.out)
    methods = _csv_list(args.methods)
    frame = build_curves(load_runs(args.runs), [tables.PairSpec.parse(t) for t in args.pairs], methods,
                         bins=args.bins)
    tables.write_frame(frame, out)
    plots.curves_figure(frame, out.with_suffix(".png"), method_labels(methods))
    log.info("wrote %s and %s", out, out.with_suffix(".png"))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from harness.report.compare import compare_text

    sys.stdout.write(compare_text(args.table))
    return 0


def _record_inputs(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """(metrics files, teacher run folders whose models go into the store) of ``record``."""
    if bool(args.runs) == bool(args.run):
        raise ConfigError("pass either --runs runs/<dataset> or the run folders (metrics.json) to record")
    if args.runs:
        files = sorted(Path(args.runs).rglob("metrics.json")) if Path(args.runs).is_dir() else []
    else:
        files = [p if p.name == "metrics.json" else p / "metrics.json" for p in map(Path, args.run)]
    from harness.report.recorded_runs import run_variant

    teachers = [f.parent for f in files if run_variant(f.parent) == "teacher"]
    return files, teachers if args.teacher_models else []


def _cmd_record(args: argparse.Namespace) -> int:
    from harness.io import check_writable_dir
    from harness.report import recorded_runs as R

    out = Path(args.out)
    files, teachers = _record_inputs(args)
    new = R.collect(args.runs) if args.runs else R.collect_runs(files, "the runs given")
    dataset = new.rows[0]["dataset"]
    if out.name != dataset:
        raise ConfigError(f"--out {out} must be the store of the runs' dataset, a folder named "
                          f"{dataset} (results/recorded/runs/{dataset}/)")
    for run in teachers:
        R.teacher_model_files(run)  # refused before anything is written
    check_writable_dir(out)
    store = R.merged(R.load_store(out), new)
    R.write_store(store, out)
    for run in teachers:
        R.write_teacher_model(run, out)
    log.info("recorded %d runs into %s (%d rows, %d fingerprints, %d teacher models)",
             len(new.rows), out, len(store.rows), len(store.fingerprints), len(teachers))
    return 0


PAIR = "TEACHER:STUDENT[:KIND]"
EXAMPLES = {
    "table": """example:
  python -m harness report table runs/toycity/students/*/seed*/metrics.json \\
      runs/toycity/deeplabv3_small__segformer_tiny/*/seed*/metrics.json \\
      --pairs deeplabv3_small:segformer_tiny:heterogeneous --methods baseline,kd,heteroakd \\
      --teacher-eval deeplabv3_small=runs/toycity/teachers/deeplabv3_small/eval.json \\
      --out results/table_toycity.csv""",
    "ablation": """example:
  python -m harness report ablation runs/toycity/students/segformer_tiny/seed0 \\
      runs/toycity/deeplabv3_small__segformer_tiny/heteroakd*/seed0 \\
      --pairs deeplabv3_small:segformer_tiny --out results/ablation_toycity.csv""",
    "sensitivity": """example:
  python -m harness report sensitivity runs/toycity/students/segformer_tiny/seed0 \\
      runs/toycity/deeplabv3_small__segformer_tiny/heteroakd*/seed0 \\
      --pair deeplabv3_small:segformer_tiny --out results/sensitivity_toycity.csv""",
    "readings": """example:
  python -m harness report readings runs/toycity/students/segformer_tiny/seed* \\
      runs/toycity/deeplabv3_small__segformer_tiny/*/seed* --pairs deeplabv3_small:segformer_tiny \\
      --reading '{}' --reading '{kem_form: pixel}' --out results/readings_toycity.csv""",
    "claims": """example:
  python -m harness report claims --table results/table_toycity.csv \\
      --ablation results/ablation_toycity.csv --cka results/cka_toycity.csv \\
      --out results/claims_toycity.csv""",
    "cka": """example (a run folder or its model/ folder on each side of the colon):
  python -m harness report cka --dataset toycity --root data/toycity \\
      --pair runs/toycity/teachers/deeplabv3_small/seed0:runs/toycity/students/segformer_tiny/seed0 \\
      --out results/cka_toycity.png""",
    "qualitative": """example:
  python -m harness report qualitative --dataset toycity --root data/toycity \\
      --model teacher=runs/toycity/teachers/deeplabv3_small/seed0 \\
      --model runs/toycity/deeplabv3_small__segformer_tiny/kd/seed0 --out results/qualitative.png""",
    "curves": """example:
  python -m harness report curves runs/toycity/students/segformer_tiny/seed* \\
      runs/toycity/deeplabv3_small__segformer_tiny/{kd,heteroakd}/seed* \\
      --pairs deeplabv3_small:segformer_tiny --methods baseline,kd,heteroakd \\
      --out results/curves_toycity.csv""",
    "compare": "example:\n  python -m harness compare results/table_cityscapes.csv",
    "record": "example:\n  python -m harness record --runs runs/toycity --out results/recorded/runs/toycity",
}


def _recorded_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recorded-runs", default=None, metavar="STORE",
                        help="the recorded-runs store of the dataset (results/recorded/runs/<dataset>)")
    parser.add_argument("--reuse", nargs="*", default=[], metavar="KEY",
                        help="recorded runs taken as if just run: TEACHER:STUDENT:VARIANT:SEED:"
                        "FINGERPRINT (TEACHER _ for none), as the workflow plans them")


def _register_tables(sub: argparse._SubParsersAction) -> None:
    table = sub.add_parser("table", help="mIoU per pair x method: the long CSV, its pivot (.md, .tex)",
                           description="mIoU per pair x method (mean, std, paired delta, published "
                           "figures, params, GFLOPs) as a CSV, with the paper-style pivot beside it "
                           "as Markdown and LaTeX.", epilog=EXAMPLES["table"])
    table.add_argument("runs", nargs="*", help="run folders or their metrics.json")
    table.add_argument("--pairs", nargs="+", required=True, metavar=PAIR,
                       help="the table's pairs, in row order")
    table.add_argument("--methods", required=True, help="comma-separated, in column order; include baseline")
    table.add_argument("--teacher-eval", nargs="*", default=[], metavar="TEACHER=EVAL_JSON",
                       help="each teacher's `python -m harness eval` output (the teacher rows)")
    table.add_argument("--dataset", default=None, help="refuse runs of another dataset")
    table.add_argument("--split", default="val", help="split the published figures must match")
    table.add_argument("--published", "--recorded", dest="published",
                       default="results/published/published_results.csv",
                       help="the published figures shown beside ours (CSV; --recorded is the old spelling)")
    table.add_argument("--cost", default=None,
                       help="cost CSV of `python -m harness bench` (used if it exists)")
    table.add_argument("--scale", choices=("full", "smoke"), default="full",
                       help="what the runs are (recorded in the table; compare prints it)")
    table.add_argument("--out", required=True, help="CSV path; the .md and .tex pivots are written beside it")
    _recorded_arguments(table)
    table.set_defaults(func=_cmd_table)

    ablation = sub.add_parser("ablation", help="a method's presets per pair (+ bar chart of deltas)",
                              epilog=EXAMPLES["ablation"])
    ablation.add_argument("runs", nargs="*", help="run folders or metrics.json (baseline runs included)")
    ablation.add_argument("--pairs", nargs="+", required=True, metavar=PAIR, help="pairs, in figure order")
    ablation.add_argument("--method", default="heteroakd", help="the method whose presets are compared")
    ablation.add_argument("--presets", default="full,no_kmm,no_kem,no_both,kd_only", help="comma-separated")
    ablation.add_argument("--out", required=True, help="CSV path; the PNG is written beside it")
    _recorded_arguments(ablation)
    ablation.set_defaults(func=_cmd_ablation)

    sens = sub.add_parser("sensitivity", help="mIoU over two options of a method (+ figure)",
                          epilog=EXAMPLES["sensitivity"])
    sens.add_argument("runs", nargs="*", help="run folders or metrics.json (baseline runs included)")
    sens.add_argument("--pair", required=True, metavar=PAIR, help="the pair the grid was run on")
    sens.add_argument("--method", default="heteroakd", help="the method whose options vary")
    sens.add_argument("--axes", default="lambda1,lambda2", help="the two options, comma-separated")
    sens.add_argument("--out", required=True, help="CSV path; the PNG is written beside it")
    _recorded_arguments(sens)
    sens.set_defaults(func=_cmd_sensitivity)


def _register_readings(sub: argparse._SubParsersAction) -> None:
    read = sub.add_parser("readings", help="a method's readings vs the student alone and KD",
                          epilog=EXAMPLES["readings"])
    read.add_argument("runs", nargs="*", help="run folders or metrics.json (baseline and "
                      "reference runs included)")
    read.add_argument("--pairs", nargs="+", required=True, metavar=PAIR, help="pairs, in panel order")
    read.add_argument("--method", default="heteroakd", help="the method whose options are read")
    read.add_argument("--preset", default=None, help="the method's main-table preset")
    read.add_argument("--options", default="{}", metavar="YAML_MAPPING",
                      help="its main-table options, e.g. '{lambda2: 2.0}'")
    read.add_argument("--reading", action="append", required=True, metavar="YAML_MAPPING",
                      help="option overrides of one reading, e.g. '{kem_form: pixel}'; "
                      "'{}' is the main setting (repeat, in row order)")
    read.add_argument("--reference", default="kd", help="the method each reading is also "
                      "compared to (its runs on each pair)")
    read.add_argument("--out", required=True, help="CSV path; .md and .png beside it")
    _recorded_arguments(read)
    read.set_defaults(func=_cmd_readings)

    claims = sub.add_parser("claims", help="the seed paper's claims checked against the tables",
                            epilog=EXAMPLES["claims"])
    claims.add_argument("--table", required=True, help="results/table_<dataset>.csv")
    claims.add_argument("--ablation", default=None, help="results/ablation_<dataset>.csv")
    claims.add_argument("--sensitivity", default=None, help="results/sensitivity_<dataset>.csv")
    claims.add_argument("--cka", default=None, help="results/cka_<dataset>.csv")
    claims.add_argument("--claims", default="results/published/published_claims.csv",
                        help="the claims and how each is checked")
    claims.add_argument("--out", required=True, help="CSV path; a .md twin is written beside it")
    claims.set_defaults(func=_cmd_claims)


def _image_arguments(parser: argparse.ArgumentParser, dataset_help: str, images: int) -> None:
    """The dataset, root, split and image count of a figure drawn on a split's first images."""
    parser.add_argument("--dataset", required=True, help=dataset_help)
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", default="val", help="split the images come from")
    parser.add_argument("--images", type=int, default=images, help="the first N images of the split")
    parser.add_argument("--max-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="shrink the images to fit H x W first (smoke runs; default: whole)")


def _register_figures(sub: argparse._SubParsersAction) -> None:
    cka = sub.add_parser("cka", help="linear CKA of teacher/student features, stage x stage (+ figure)",
                         epilog=EXAMPLES["cka"])
    cka.add_argument("--pair", action="append", required=True, metavar="TEACHER_MODEL:STUDENT_MODEL[:KIND]",
                     help="two run or saved-model folders (repeatable); KIND defaults to heterogeneous "
                     "when the families differ, else homogeneous")
    _image_arguments(cka, "dataset name, e.g. toycity", images=8)
    cka.add_argument("--out", required=True, help="PNG path; the CSV is written beside it")
    cka.set_defaults(func=_cmd_cka)

    qual = sub.add_parser("qualitative", help="predictions of several models on a few images",
                          epilog=EXAMPLES["qualitative"])
    qual.add_argument("--model", action="append", required=True, metavar="[LABEL=]FOLDER",
                      help="a run or saved-model folder (repeatable, in column order); LABEL "
                      "defaults to a run's method and seed, or the folder's name")
    _image_arguments(qual, "dataset name (its palette and class names)", images=4)
    qual.add_argument("--out", required=True, help="PNG path")
    qual.set_defaults(func=_cmd_qualitative)

    curves = sub.add_parser("curves", help="training loss terms and val mIoU against iteration",
                            epilog=EXAMPLES["curves"])
    curves.add_argument("runs", nargs="+", help="run folders or metrics.json (with their log.csv)")
    curves.add_argument("--pairs", nargs="+", required=True, metavar=PAIR, help="one row of panels each")
    curves.add_argument("--methods", required=True, help="comma-separated; include baseline")
    curves.add_argument("--bins", type=int, default=200, help="loss points per run (iteration bins)")
    curves.add_argument("--out", required=True, help="CSV path; the PNG is written beside it")
    curves.set_defaults(func=_cmd_curves)


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser("report", help="tables and figures from finished runs",
                                   description="Tables and figures from finished runs; each WHAT "
                                   "has its own --help with an example.")
    sub = report.add_subparsers(dest="report_command", metavar="WHAT", required=True)
    _register_tables(sub)
    _register_readings(sub)
    _register_figures(sub)

    compare = subparsers.add_parser("compare", help="our table beside the published figures",
                                    epilog=EXAMPLES["compare"])
    compare.add_argument("table", help="results/table_<dataset>.csv")
    compare.set_defaults(func=_cmd_compare)

    record = subparsers.add_parser("record", help="finished runs into the recorded-runs store",
                                   epilog=EXAMPLES["record"])
    record.add_argument("run", nargs="*", help="run folders or their metrics.json (or --runs)")
    record.add_argument("--runs", default=None, help="every run under a folder (runs/<dataset>)")
    record.add_argument("--teacher-models", action="store_true",
                        help="also copy each recorded teacher's saved model into the store, so "
                        "reuse_recorded can use it instead of training the teacher")
    record.add_argument("--out", required=True, help="its store, results/recorded/runs/<dataset>/")
    record.set_defaults(func=_cmd_record)
