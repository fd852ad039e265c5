"""Our table beside the published figures (``python -m harness compare TABLE``)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.errors import DataError

NEEDED = ("dataset", "teacher", "student", "method", "miou_mean", "miou_std", "n_seeds",
          "published_miou", "published_source")


def _num(value: float, fmt: str = "{:.2f}") -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def compare_text(table: str | Path) -> str:
    """A plain-text table: ours (mean +- std, n) | published | ours - published | source."""
    path = Path(table)
    if not path.is_file():
        raise DataError(f"table {path} does not exist; build it first (snakemake {path})")
    frame = pd.read_csv(path)
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; pass a results/table_<dataset>.csv")
    rows = []
    for row in frame.itertuples():
        ours = f"{row.miou_mean:.2f}" + (f" +- {row.miou_std:.2f}" if not math.isnan(row.miou_std) else "")
        rows.append({
            "pair": f"{row.teacher} -> {row.student}", "method": row.method,
            "ours": f"{ours} (n={row.n_seeds})", "published": _num(row.published_miou),
            "ours - published": _num(row.miou_mean - row.published_miou, "{:+.2f}"),
            "source": row.published_source if isinstance(row.published_source, str) else "",
        })
    text = pd.DataFrame(rows).to_string(index=False)
    matched = int(frame.published_miou.notna().sum())
    dataset = frame.dataset.iloc[0] if len(frame) else "?"
    footer = (f"{matched} of {len(frame)} rows of {dataset} have a published figure "
              "(results/published/published_results.csv); published numbers are best-on-val single "
              "runs, ours the final checkpoint over seeds.")
    return text + "\n" + footer + "\n"
