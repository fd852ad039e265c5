"""CLI: ``python -m harness report table|ablation|sensitivity|readings|claims|cka|qualitative``,
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


def _cmd_table(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from harness.report import published, tables
    from harness.report.runs import load_runs

    out = _out_csv(args.out)
    pairs = [tables.PairSpec.parse(t) for t in args.pairs]
    teacher_miou = {}
    for token in args.teacher_eval:
        name, sep, path = token.partition("=")
        if not sep:
            raise ConfigError(f"--teacher-eval {token!r} must look like TEACHER=eval.json")
        try:
            teacher_miou[name] = float(json.loads(Path(path).read_text())["miou"])
        except (OSError, KeyError, ValueError) as err:
            raise DataError(f"teacher evaluation {path} is unreadable or has no 'miou' ({err}); rerun "
                            "eval_teacher") from None
    figures = published.load_published(args.published) if args.published else None
    cost = None
    if args.cost and Path(args.cost).is_file():
        cost = pd.read_csv(args.cost)
        if not {"teacher", "student", "method", "overhead"} <= set(cost.columns):
            raise DataError(f"cost table {args.cost} lacks teacher/student/method/overhead columns; rebuild "
                            "it with python -m harness bench")
    frame = tables.build_table(load_runs(args.runs), pairs, _csv_list(args.methods),
                               teacher_miou=teacher_miou, split=args.split, published=figures, cost=cost)
    if args.dataset and (frame.dataset != args.dataset).any():
        raise DataError(f"the runs are of dataset {frame.dataset.iloc[0]}, not --dataset {args.dataset}")
    tables.write_frame(frame, out, md=tables.table_markdown(frame))
    log.info("wrote %s and %s (%d rows)", out, out.with_suffix(".md"), len(frame))
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    from harness.report import plots, tables
    from harness.report.runs import load_runs

    out = _out_csv(args.out)
    frame = tables.build_ablation(load_runs(args.runs), [tables.PairSpec.parse(t) for t in args.pairs],
                                  args.method, _csv_list(args.presets))
    tables.write_frame(frame, out)
    plots.ablation_figure(frame, out.with_suffix(".png"))
    log.info("wrote %s and %s", out, out.with_suffix(".png"))
    return 0


def _cmd_sensitivity(args: argparse.Namespace) -> int:
    from harness.report import plots, tables
    from harness.report.runs import load_runs

    out = _out_csv(args.out)
    axes = _csv_list(args.axes)
    if len(axes) != 2:
        raise ConfigError(f"--axes must name two options, e.g. lambda1,lambda2; got {args.axes!r}")
    frame = tables.build_sensitivity(load_runs(args.runs), tables.PairSpec.parse(args.pair),
                                     args.method, (axes[0], axes[1]))
    tables.write_frame(frame, out)
    plots.sensitivity_figure(frame, out.with_suffix(".png"))
    log.info("wrote %s and %s", out, out.with_suffix(".png"))
    return 0


def _cmd_readings(args: argparse.Namespace) -> int:
    from harness.report import plots, readings, tables
    from harness.report.runs import load_runs

    out = _out_csv(args.out)
    base_options = readings.parse_reading(args.options)
    frame = readings.build_readings(
        load_runs(args.runs), [tables.PairSpec.parse(t) for t in args.pairs], args.method,
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


def _cmd_cka(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.report import plots, tables
    from harness.report.cka import pair_cka

    png = Path(args.out)
    if png.suffix != ".png":
        raise ConfigError(f"--out {png} must end in .png (the CSV is written beside it)")
    _out_csv(str(png.with_suffix(".csv")))
    rows = []
    for tokens in args.pair:
        if len(tokens) not in (3, 4) or (len(tokens) == 4 and not tokens[3].isdigit()):
            raise ConfigError(f"--pair {' '.join(tokens)} must be KIND TEACHER_MODEL "
                              "STUDENT_MODEL [SEED] (SEED: the student's seed, default 0)")
        kind, teacher, student = tokens[:3]
        seed = int(tokens[3]) if len(tokens) == 4 else 0
        name_t, name_s, matrix = pair_cka(teacher, student, args.dataset, args.root, args.split, args.images)
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


def _cmd_qualitative(args: argparse.Namespace) -> int:
    from harness.report import plots
    from harness.report import samples as S

    png = Path(args.out)
    if png.suffix != ".png":
        raise ConfigError(f"--out {png} must end in .png")
    models = {}
    for token in args.model:
        label, sep, folder = token.partition("=")
        if not sep:
            raise ConfigError(f"--model {token!r} must look like LABEL=MODEL_FOLDER")
        models[label] = S.load(folder, args.dataset)
    chosen = S.load_samples(args.dataset, args.root, args.split, args.images)
    if not chosen:
        raise DataError(f"split {args.split} of {args.root} has no images")
    num_classes = next(iter(models.values())).info.num_classes
    predictions = {label: [S.predict(m, s).numpy() for s in chosen] for label, m in models.items()}
    names = {label: m.info.name for label, m in models.items()}
    plots.qualitative_figure([plots.display_image(s.image.numpy()) for s in chosen],
                             [s.label.numpy() for s in chosen],
                             {f"{label}\n({names[label]})": p for label, p in predictions.items()},
                             num_classes, png, title=f"{args.dataset} {args.split}")
    log.info("wrote %s", png)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from harness.report.compare import compare_text

    sys.stdout.write(compare_text(args.table))
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from harness.io import check_writable_dir
    from harness.report import recorded_runs as R

    out = Path(args.out)
    new = R.collect(args.runs)
    dataset = new.rows[0]["dataset"]
    if out.name != dataset:
        raise ConfigError(f"--out {out} must be the store of the runs' dataset, a folder named "
                          f"{dataset} (results/recorded/runs/{dataset}/)")
    check_writable_dir(out)
    store = R.merged(R.load_store(out), new)
    R.write_store(store, out)
    log.info("recorded %d runs into %s (%d rows, %d fingerprints)", len(new.rows), out,
             len(store.rows), len(store.fingerprints))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser("report", help="tables and figures from finished runs")
    sub = report.add_subparsers(dest="report_command", metavar="WHAT", required=True)
    _register_tables(sub)
    _register_readings(sub)
    _register_figures(sub)

    compare = subparsers.add_parser("compare", help="our table beside the published figures")
    compare.add_argument("table", help="results/table_<dataset>.csv")
    compare.set_defaults(func=_cmd_compare)

    record = subparsers.add_parser("record", help="finished runs into the recorded-runs store")
    record.add_argument("--runs", required=True, help="the runs of one dataset (runs/<dataset>)")
    record.add_argument("--out", required=True, help="its store, results/recorded/runs/<dataset>/")
    record.set_defaults(func=_cmd_record)


def _register_tables(sub: argparse._SubParsersAction) -> None:
    table = sub.add_parser("table", help="mIoU per pair x method (mean, std, delta, published)")
    table.add_argument("runs", nargs="+", help="run folders or their metrics.json")
    table.add_argument("--pairs", nargs="+", required=True, metavar="TEACHER:STUDENT[:KIND]")
    table.add_argument("--methods", required=True, help="comma-separated, in row order; include baseline")
    table.add_argument("--teacher-eval", nargs="*", default=[], metavar="TEACHER=EVAL_JSON")
    table.add_argument("--dataset", default=None, help="refuse runs of another dataset")
    table.add_argument("--split", default="val", help="split the published figures must match")
    table.add_argument("--published", "--recorded", dest="published",
                       default="results/published/published_results.csv",
                       help="the published figures (CSV; --recorded is the old spelling)")
    table.add_argument("--cost", default=None,
                       help="cost CSV of `python -m harness bench` (used if it exists)")
    table.add_argument("--out", required=True, help="CSV path; a .md twin is written beside it")
    table.set_defaults(func=_cmd_table)

    ablation = sub.add_parser("ablation", help="a method's presets per pair (+ bar chart)")
    ablation.add_argument("runs", nargs="+", help="run folders or metrics.json (baseline runs included)")
    ablation.add_argument("--pairs", nargs="+", required=True, metavar="TEACHER:STUDENT[:KIND]")
    ablation.add_argument("--method", default="heteroakd")
    ablation.add_argument("--presets", default="full,no_kmm,no_kem,no_both,kd_only")
    ablation.add_argument("--out", required=True, help="CSV path; the PNG is written beside it")
    ablation.set_defaults(func=_cmd_ablation)

    sens = sub.add_parser("sensitivity", help="mIoU over two options of a method (+ figure)")
    sens.add_argument("runs", nargs="+", help="run folders or metrics.json (baseline runs included)")
    sens.add_argument("--pair", required=True, metavar="TEACHER:STUDENT[:KIND]")
    sens.add_argument("--method", default="heteroakd")
    sens.add_argument("--axes", default="lambda1,lambda2")
    sens.add_argument("--out", required=True, help="CSV path; the PNG is written beside it")
    sens.set_defaults(func=_cmd_sensitivity)


def _register_readings(sub: argparse._SubParsersAction) -> None:
    read = sub.add_parser("readings", help="a method's readings vs the student alone and KD")
    read.add_argument("runs", nargs="+", help="run folders or metrics.json (baseline and "
                      "reference runs included)")
    read.add_argument("--pairs", nargs="+", required=True, metavar="TEACHER:STUDENT[:KIND]")
    read.add_argument("--method", default="heteroakd")
    read.add_argument("--preset", default=None, help="the method's main-table preset")
    read.add_argument("--options", default="{}", metavar="YAML_MAPPING",
                      help="its main-table options, e.g. '{lambda2: 2.0}'")
    read.add_argument("--reading", action="append", required=True, metavar="YAML_MAPPING",
                      help="option overrides of one reading, e.g. '{kem_form: pixel}'; "
                      "'{}' is the main setting (repeat, in row order)")
    read.add_argument("--reference", default="kd", help="the method each reading is also "
                      "compared to (its runs on each pair)")
    read.add_argument("--out", required=True, help="CSV path; .md and .png beside it")
    read.set_defaults(func=_cmd_readings)

    claims = sub.add_parser("claims", help="the seed paper's claims checked against the tables")
    claims.add_argument("--table", required=True, help="results/table_<dataset>.csv")
    claims.add_argument("--ablation", default=None, help="results/ablation_<dataset>.csv")
    claims.add_argument("--sensitivity", default=None, help="results/sensitivity_<dataset>.csv")
    claims.add_argument("--cka", default=None, help="results/cka_<dataset>.csv")
    claims.add_argument("--claims", default="results/published/published_claims.csv")
    claims.add_argument("--out", required=True, help="CSV path; a .md twin is written beside it")
    claims.set_defaults(func=_cmd_claims)


def _register_figures(sub: argparse._SubParsersAction) -> None:
    cka = sub.add_parser("cka", help="linear CKA of teacher/student features by stage (+ figure)")
    cka.add_argument("--pair", nargs="+", action="append", required=True,
                     metavar="KIND TEACHER_MODEL STUDENT_MODEL [SEED]",
                     help="repeat per pair (and per student seed)")
    cka.add_argument("--dataset", required=True)
    cka.add_argument("--root", required=True)
    cka.add_argument("--split", default="val")
    cka.add_argument("--images", type=int, default=8)
    cka.add_argument("--out", required=True, help="PNG path; the CSV is written beside it")
    cka.set_defaults(func=_cmd_cka)

    qual = sub.add_parser("qualitative", help="predictions of several models on a few images")
    qual.add_argument("--model", action="append", required=True, metavar="LABEL=MODEL_FOLDER")
    qual.add_argument("--dataset", required=True)
    qual.add_argument("--root", required=True)
    qual.add_argument("--split", default="val")
    qual.add_argument("--images", type=int, default=4)
    qual.add_argument("--out", required=True, help="PNG path")
    qual.set_defaults(func=_cmd_qualitative)
