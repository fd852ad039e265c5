"""Benchmark rows -> a CSV and a Markdown table beside it, both written atomically."""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from harness.io import atomic_write_text


def _cell(value: object) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def to_markdown(rows: Sequence[dict], columns: Sequence[str], notes: Sequence[str] = ()) -> str:
    """A GitHub Markdown table of ``columns`` (floats to 4 significant digits), then notes."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[dict], columns: Sequence[str], csv_path: str | Path,
                 markdown_columns: Sequence[str] | None = None,
                 notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``rows`` to ``csv_path`` (all ``columns``) and ``csv_path`` with ``.md``
    (``markdown_columns``, default all). Returns both paths."""
    csv_path = Path(csv_path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    md_path = csv_path.with_suffix(".md")
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(md_path, to_markdown(rows, markdown_columns or columns, notes))
    return csv_path, md_path
