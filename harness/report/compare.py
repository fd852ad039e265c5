"""Our table beside the published figures (``python -m harness compare TABLE``).

Per pair, the methods ranked by mean mIoU; each row: ours (mean ± std, n seeds), our gain over
the student alone (paired delta ± its std, and its 95% t-interval over seeds), where the row came
from (``ours``: trained by this workflow run; ``recorded@<commit>``: a recorded run, README
"Compare a new method against recorded runs"), the published figure and the published gain
(method minus the published baseline of the same pair), and what our runs were (scale,
iterations, val images) so that a smoke-scale or few-image number is never read as a result
beside a published one.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.errors import DataError
from harness.report.tables import delta_cell

NEEDED = ("dataset", "teacher", "student", "method", "miou_mean", "miou_std", "n_seeds",
          "published_miou", "published_source")


def _num(value: float, fmt: str = "{:.2f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _pm(value: float, spread: float, fmt: str = "{:.2f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value) + ("" if spread is None or math.isnan(spread) else f" ± {spread:.2f}")


def _subset(row: pd.Series) -> bool:
    return str(row.get("val_subset", False)).lower() == "true"


def _comparable(row: pd.Series) -> bool:
    """Full scale and the whole evaluation split (what published figures are)."""
    return str(row.get("scale", "full")) == "full" and not _subset(row)


def _row(row: pd.Series, rank: int, with_published: bool) -> dict[str, str]:
    baseline = row.method == "baseline"
    mark = "" if _comparable(row) else " !"
    delta, lo, hi = (row.get(k, math.nan) for k in ("delta", "delta_lo", "delta_hi"))
    out = {
        "pair": f"{row.teacher} -> {row.student}", "rank": str(rank), "method": row.method,
        "ours": f"{_pm(row.miou_mean, row.miou_std)} (n={int(row.n_seeds)}){mark}",
        "our gain": "" if baseline else _pm(delta, row.get("delta_std", math.nan), "{:+.2f}"),
        "95% CI": "" if baseline or pd.isna(lo) else delta_cell(delta, lo, hi).split(" ", 1)[1],
        "from": row.get("source", "ours") if isinstance(row.get("source"), str) else "ours",
    }
    if with_published:
        out["published"] = _num(row.published_miou)
        out["published gain"] = "" if baseline else _num(row.get("published_delta", math.nan), "{:+.2f}")
        out["ours - published"] = _num(row.miou_mean - row.published_miou, "{:+.2f}")
    out["scale"] = str(row.get("scale", "-"))
    out["iters"] = _num(row.get("iterations", math.nan), "{:.0f}")
    images = _num(row.get("val_images", math.nan), "{:.0f}")
    out["val imgs"] = images + (" (subset)" if _subset(row) else "")
    if with_published:
        out["source"] = row.published_source if isinstance(row.published_source, str) else ""
    return out


def ranked(frame: pd.DataFrame, with_published: bool) -> list[dict[str, str]]:
    """The rows of the comparison: per pair (table order), methods by mean mIoU, best first."""
    rows = []
    for _, cell in frame.groupby(["teacher", "student"], sort=False):
        order = cell.sort_values("miou_mean", ascending=False, kind="stable")
        rows += [_row(row, rank, with_published) for rank, (_, row) in enumerate(order.iterrows(), 1)]
    return rows


def compare_text(table: str | Path) -> str:
    """A plain-text table of ours beside the published figures, then what the marks mean."""
    path = Path(table)
    if not path.is_file():
        raise DataError(f"table {path} does not exist; build it first (snakemake {path})")
    frame = pd.read_csv(path)
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; pass a results/table_<dataset>.csv")
    if frame.empty:
        raise DataError(f"{path} has no rows; rebuild it (snakemake {path})")
    matched = int(frame.published_miou.notna().sum())
    text = pd.DataFrame(ranked(frame, matched > 0)).to_string(index=False)
    dataset = frame.dataset.iloc[0]
    lines = [text, ""]
    if matched:
        lines.append(f"{matched} of {len(frame)} rows of {dataset} have a published figure "
                     "(results/published/published_results.csv); published numbers are best-on-val "
                     "single runs, ours the final checkpoint over seeds; gains are against the "
                     "student alone of the same source.")
    else:
        lines.append(f"no published figures for {dataset} in results/published/published_results.csv: "
                     "ours only.")
    origins = frame.source.fillna("ours") if "source" in frame else pd.Series(["ours"] * len(frame))
    counts = sorted(origins.value_counts().items())
    lines.append("rows by origin: " + ", ".join(f"{n} {name}" for name, n in counts)
                 + " (ours: trained here; recorded@<commit>: a recorded run, results/recorded/runs/); "
                 "95% CI: the t-interval of the paired per-seed gains (* where it excludes 0).")
    if not all(_comparable(row) for _, row in frame.iterrows()):
        lines.append("! smoke scale or a subset of the val images: a check that the pipeline runs, "
                     "not a result to set beside a published figure.")
    return "\n".join(lines) + "\n"
