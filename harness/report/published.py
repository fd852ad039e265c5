"""The published figures in ``results/published/``: loaded and validated before any use."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pandas as pd

from harness.errors import DataError

COLUMNS = ("dataset", "split", "teacher", "student", "method", "miou", "source", "note")
SPLITS = ("train", "val", "test")


def read_rows(path: Path, columns: tuple[str, ...] = COLUMNS,
              what: str = "published results") -> list[tuple[int, list[str]]]:
    """The data rows of a file of ``results/published/``: UTF-8, the header exactly ``columns``,
    every row with that many fields (a stray comma or an unclosed quote is named by its line).
    Returns (line number, fields) per data row."""
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist; restore it from the "
                        "repository's results/published/")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as err:
        raise DataError(f"{path} line {reader.line_num}: {err}; fix the quoting of that row") from None
    if not rows or tuple(rows[0][1]) != columns:
        header = rows[0][1] if rows else []
        raise DataError(f"{path} has columns {header}; expected exactly {list(columns)}")
    for line, row in rows[1:]:
        if len(row) != len(columns):
            raise DataError(f"{path} line {line}: {len(row)} fields, expected {len(columns)} "
                            f"({', '.join(columns)}); quote a value that holds a comma")
    return rows[1:]


def load_published(path: str | Path) -> pd.DataFrame:
    """Published results as a DataFrame (``teacher`` "" when none); refuses a malformed file.

    Checks: the exact columns, a source on every row, mIoU a number in [0, 100], a known split,
    dataset/student/method present, no duplicate (dataset, split, teacher, student, method).
    """
    path = Path(path)
    numbered = read_rows(path)
    frame = pd.DataFrame([row for _, row in numbered], columns=list(COLUMNS), dtype=str)
    for (line, _), (_, row) in zip(numbered, frame.iterrows()):
        for key in ("dataset", "student", "method", "source"):
            if not row[key].strip():
                raise DataError(f"{path} line {line}: empty {key}; every published figure needs one")
        if row["split"] not in SPLITS:
            raise DataError(f"{path} line {line}: split {row['split']!r} is not one of {SPLITS}")
        try:
            miou = float(row["miou"])
        except ValueError:
            raise DataError(f"{path} line {line}: miou {row['miou']!r} is not a number") from None
        if not math.isfinite(miou) or not 0 <= miou <= 100:
            raise DataError(f"{path} line {line}: miou {miou} is outside [0, 100] (a percentage)")
    key = ["dataset", "split", "teacher", "student", "method"]
    dupes = frame[frame.duplicated(key, keep=False)]
    if len(dupes):
        first = dupes.iloc[0]
        raise DataError(f"{path}: more than one figure for {dict(first[key])}; keep one")
    frame["miou"] = frame["miou"].astype(float)
    return frame


def lookup(frame: pd.DataFrame, dataset: str, split: str, teacher: str, student: str,
              method: str) -> tuple[float, str, str] | None:
    """(mIoU, source, note) for one row of our table, or None."""
    rows = frame[(frame.dataset == dataset) & (frame.split == split) & (frame.teacher == teacher)
                 & (frame.student == student) & (frame.method == method)]
    if rows.empty and method == "baseline":
        # a student trained alone is the same whatever teacher it is listed under
        rows = frame[(frame.dataset == dataset) & (frame.split == split)
                     & (frame.student == student) & (frame.method == method)]
    if rows.empty:
        return None
    row = rows.iloc[0]
    return float(row.miou), row.source, row.note


def lookup_teacher(frame: pd.DataFrame, dataset: str, split: str, teacher: str) -> float | None:
    rows = frame[(frame.dataset == dataset) & (frame.split == split) & (frame.student == teacher)
                 & (frame.method == "teacher")]
    return None if rows.empty else float(rows.iloc[0].miou)
