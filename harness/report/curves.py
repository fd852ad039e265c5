"""Training curves of a table's runs: the long table behind ``results/curves_<dataset>.png``.

From each run's ``log.csv`` (one row per iteration, ``val_miou`` on the rows where the run
evaluated): the task loss, the method's own weighted terms (``loss_total - loss_task -
loss_aux``) and the val mIoU. Losses are averaged over at most ``bins`` equal iteration bins per
run (a 40k-iteration run stays a few hundred points); evaluations are kept as logged.
"""
from __future__ import annotations

import math

import pandas as pd

from harness.errors import DataError
from harness.report.runs import RunResult
from harness.report.tables import PairSpec, select

CURVE_COLUMNS = ["dataset", "teacher", "student", "method", "seed", "term", "iteration", "value"]


def run_curves(run: RunResult, bins: int = 200) -> pd.DataFrame:
    """(term, iteration, value) rows of one run; a run without log.csv is a DataError."""
    log_csv = run.folder / "log.csv"
    if not log_csv.is_file():
        raise DataError(f"{log_csv} does not exist; the curves need the runs' logs (rerun the training)")
    log = pd.read_csv(log_csv)
    if "loss_task" not in log or "loss_total" not in log:
        raise DataError(f"{log_csv} has no loss_task/loss_total columns; it was not written by "
                        "`python -m harness train`")
    aux = log["loss_aux"].fillna(0.0) if "loss_aux" in log else 0.0
    losses = pd.DataFrame({"iteration": log.iteration, "loss_task": log.loss_task,
                           "loss_distill": log.loss_total - log.loss_task - aux})
    width = max(1, math.ceil(int(log.iteration.max()) / bins))
    # each bin is labelled with its last iteration, so the last point is the final iteration
    losses["bin"] = ((losses.iteration - 1) // width + 1) * width
    binned = losses.groupby("bin")[["loss_task", "loss_distill"]].mean().reset_index()
    binned["bin"] = binned["bin"].clip(upper=int(log.iteration.max()))
    terms = ["loss_task"] + (["loss_distill"] if run.method != "baseline" else [])
    parts = [pd.DataFrame({"term": term, "iteration": binned["bin"], "value": binned[term]})
             for term in terms]
    if "val_miou" in log:
        evaluated = log.dropna(subset=["val_miou"])
        parts.append(pd.DataFrame({"term": "val_miou", "iteration": evaluated.iteration,
                                   "value": evaluated.val_miou}))
    return pd.concat(parts, ignore_index=True)


def build_curves(runs: list[RunResult], pairs: list[PairSpec], methods: list[str],
                 bins: int = 200) -> pd.DataFrame:
    """The curves of every pair x method x seed (the baseline repeated under each pair)."""
    frames = []
    for pair in pairs:
        for method in methods:
            cell = select(runs, student=pair.student, method=method, teacher=pair.teacher)
            if not cell:
                raise DataError(f"no runs of {method} for {pair.teacher} -> {pair.student} among the inputs")
            for run in cell:
                curves = run_curves(run, bins)
                curves.insert(0, "seed", run.seed)
                curves.insert(0, "method", method)
                curves.insert(0, "student", pair.student)
                curves.insert(0, "teacher", pair.teacher)
                curves.insert(0, "dataset", run.dataset)
                frames.append(curves)
    return pd.concat(frames, ignore_index=True)[CURVE_COLUMNS]
