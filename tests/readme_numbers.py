"""The README's demo numbers against the demo at HEAD (``make readme-numbers``).

The README holds the 1-seed demo table (what ``make demo`` writes to ``results/table_toycity.md``)
between ``<!-- demo-seed0 ... -->`` and ``<!-- /demo-seed0 -->``, with the commit it was measured
at. This script compares every number of that block with the same cell of the table the demo
wrote at HEAD and exits 1 naming each cell that differs by more than ``--tolerance`` mIoU points
(CPU runs repeat exactly on one machine; another CPU may round differently). ``--update``
rewrites the block with HEAD's table and commit instead.

It needs a full demo run (about 20 minutes on 2 CPU cores), so it is a make target, not part of
``make test``; ``tests/test_readme.py`` checks the block's form and this comparison on made-up
tables.

    python tests/readme_numbers.py results/table_toycity.md [--update] [--tolerance 0.05]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- demo-seed0 commit=(?P<commit>[0-9a-f]{7,40}) -->\n"
                   r"(?P<table>.*?)<!-- /demo-seed0 -->",
                   re.S)
NUMBER = re.compile(r"[-+]?\d+\.\d+")


def table_rows(markdown: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for every body row of the first Markdown table in the text."""
    rows = {}
    for line in markdown.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def differences(documented: str, measured: str, tolerance: float) -> list[str]:
    """One line per cell whose numbers differ (or whose row/number count differs)."""
    want, got = table_rows(documented), table_rows(measured)
    problems = [f"row {name!r} is in the README but not in the demo's table"
                for name in want if name not in got]
    problems += [f"row {name!r} is in the demo's table but not in the README"
                 for name in got if name not in want]
    header = want.get("teacher -> student", [])
    for name in (n for n in want if n in got):
        for column, (old, new) in enumerate(zip(want[name], got[name])):
            old_numbers, new_numbers = NUMBER.findall(old), NUMBER.findall(new)
            label = header[column] if column < len(header) else str(column)
            if len(old_numbers) != len(new_numbers) or any(
                    abs(float(a) - float(b)) > tolerance for a, b in zip(old_numbers, new_numbers)):
                problems.append(f"{name} / {label}: README {old!r}, HEAD {new!r}")
    return problems


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()


def updated_readme(readme: str, measured: str, commit: str) -> str:
    table = "\n".join(line for line in measured.splitlines() if line.startswith("|")) + "\n"
    return BLOCK.sub(lambda _: f"<!-- demo-seed0 commit={commit} -->\n{table}<!-- /demo-seed0 -->", readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="the demo's results/table_toycity.md at HEAD")
    parser.add_argument("--tolerance", type=float, default=0.05, help="mIoU points")
    parser.add_argument("--update", action="store_true", help="rewrite the README block instead")
    args = parser.parse_args(argv)
    readme = README.read_text()
    match = BLOCK.search(readme)
    if match is None:
        print("README.md has no <!-- demo-seed0 commit=... --> block", file=sys.stderr)
        return 2
    measured = args.table.read_text()
    if args.update:
        README.write_text(updated_readme(readme, measured, head_commit()))
        print(f"README.md: demo numbers of commit {head_commit()}")
        return 0
    problems = differences(match["table"], measured, args.tolerance)
    for line in problems:
        print(line)
    print(f"{len(problems)} difference(s) between the README (commit {match['commit']}) and HEAD "
          f"({head_commit()})"
          + ("; run `make readme-numbers UPDATE=1` after checking them" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
