"""The main table as a paper prints it: one row per pair, one column per method.

Drawn from the long table (``results/table_<dataset>.csv``, one row per pair x method): teacher
rows first (the teacher's mIoU in the "alone" column), then one row per pair with the student's
parameters and GFLOPs, ``mean ± std`` of each method and its paired delta against the student
alone. Written as Markdown (``table_<dataset>.md``) and LaTeX (``table_<dataset>.tex``, booktabs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

KIND_SHORT = {"heterogeneous": "hetero", "homogeneous": "homo"}
SIG = "{:.3g}"  # params and GFLOPs: three significant digits (0.205M and 516 GFLOPs alike)


@dataclass
class Pivot:
    """Header, body rows (cells as text with ``±``) and notes printed under the table."""

    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def _num(value: float, fmt: str = "{:.2f}") -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _cell(row: pd.Series, n_row: int) -> str:
    text = _num(row.miou_mean) + (f" ± {_num(row.miou_std)}" if _num(row.miou_std) else "")
    if row.method != "baseline" and _num(row.delta):
        spread = f" ± {_num(row.delta_std)}" if _num(row.delta_std) else ""
        text += f" ({_num(row.delta, '{:+.2f}')}{spread})"
        if row.get("delta_lo", 0) > 0 or row.get("delta_hi", 0) < 0:  # NaN compares False
            text += "*"
    if int(row.n_seeds) != n_row:
        text += f" [n={int(row.n_seeds)}]"
    if _recorded(row):
        text += " †"
    return text


def _recorded(row: pd.Series) -> bool:
    """The cell's runs come (at least in part) from the recorded runs (its ``source``)."""
    return "recorded@" in str(row.get("source", ""))


def _teacher_rows(frame: pd.DataFrame, width: int) -> list[list[str]]:
    rows = []
    for teacher, rows_of in frame.groupby("teacher", sort=False):
        first = rows_of.iloc[0]
        cells = [f"{teacher} (teacher)", "", _num(first.teacher_params_m, SIG),
                 _num(first.teacher_gflops, SIG),
                 "1" if _num(first.teacher_miou) else "", _num(first.teacher_miou)]
        rows.append(cells + [""] * (width - len(cells)))
    return rows


def build_pivot(frame: pd.DataFrame, labels: dict[str, str] | None = None) -> Pivot:
    """The pivot of a long table; ``labels`` maps method names to printed names."""
    labels = labels or {}
    methods = list(dict.fromkeys(frame.method))
    header = ["teacher -> student", "kind", "params (M)", "GFLOPs", "n",
              *(labels.get(m, m) if m != "baseline" else "alone" for m in methods)]
    rows = _teacher_rows(frame, len(header))
    for (teacher, student), cells in frame.groupby(["teacher", "student"], sort=False):
        by_method = {row.method: row for _, row in cells.iterrows()}
        first = cells.iloc[0]
        n_row = int(by_method.get("baseline", first).n_seeds)
        rows.append([f"{teacher} -> {student}", KIND_SHORT.get(first.kind, first.kind),
                     _num(first.student_params_m, SIG), _num(first.student_gflops, SIG), str(n_row),
                     *(_cell(by_method[m], n_row) if m in by_method else "" for m in methods)])
    return Pivot(header, rows, _notes(frame))


def _notes(frame: pd.DataFrame) -> list[str]:
    first = frame.iloc[0]
    size = first.flops_size if isinstance(first.flops_size, str) and first.flops_size else "?"
    notes = [
        f"mIoU (%) on {first.dataset}, final checkpoint, mean ± std over n seeds; (delta ± std): "
        "the paired difference with the student alone trained with the same seed; *: the 95% "
        "t-interval of the paired deltas excludes 0.",
        f"params and GFLOPs of the whole model (aux head included) for one {size} image, "
        "2 FLOPs per multiply-accumulate.",
    ]
    recorded = sorted({s for s in frame.get("source", pd.Series(dtype=str)).astype(str)
                       if "recorded@" in s})
    if recorded:
        notes.append(f"†: recorded runs ({', '.join(recorded)}; results/recorded/runs/), not "
                     "trained by this run of the workflow; the CSV's source column says which.")
    if str(first.get("scale", "full")) != "full":
        notes.append(f"scale {first.scale}: a few iterations per run, not a result.")
    if bool(frame.get("val_subset", pd.Series([False])).astype(bool).any()):
        notes.append(f"evaluated on the first {int(frame.val_images.min())} val images only.")
    if frame.notes.astype(str).str.contains("random weights").any():
        notes.append("students trained from random weights: the protocol assumes ImageNet-pretrained "
                     "encoders (set `pretrained:` in the workflow config).")
    return notes


def to_markdown(pivot: Pivot) -> str:
    lines = ["| " + " | ".join(pivot.header) + " |", "|" + "---|" * len(pivot.header)]
    lines += ["| " + " | ".join(row) + " |" for row in pivot.rows]
    return "\n".join(lines + [""] + [f"- {note}" for note in pivot.notes]) + "\n"


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                          ("#", r"\#")):
        text = text.replace(char, escaped)
    text = text.replace("±", r"$\pm$").replace("†", r"$^\dagger$")
    return text.replace("->", r"$\rightarrow$").replace("`", "")


def to_latex(pivot: Pivot) -> str:
    """A booktabs tabular; the notes follow as LaTeX comments (a caption draft)."""
    width = len(pivot.header)
    lines = [r"\begin{tabular}{ll" + "r" * (width - 2) + "}", r"\toprule",
             " & ".join(_latex_escape(h) for h in pivot.header) + r" \\", r"\midrule"]
    teacher_rows = [r for r in pivot.rows if r[0].endswith("(teacher)")]
    for row in pivot.rows:
        lines.append(" & ".join(_latex_escape(c) for c in row) + r" \\")
        if teacher_rows and row is teacher_rows[-1]:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    lines += [f"% {_latex_escape(note)}" for note in pivot.notes]
    return "\n".join(lines) + "\n"
