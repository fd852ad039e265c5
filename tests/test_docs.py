"""The specification in docs/ is what the code cites: every citation resolves to a heading."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"(?<![\w/])(docs/)?(methods|protocol|deviations)\.md(?: §([^)`\"\n,;:]+))?")


def _headings(doc: Path) -> set[str]:
    """The level-2 headings, each cited by its text up to a colon ("cirkd: the ..." -> "cirkd")."""
    return {line.lstrip("#").split(":")[0].strip() for line in doc.read_text().splitlines()
            if line.startswith("## ")}


def _citations() -> list[tuple[str, int, str, str | None, str | None]]:
    found = []
    for path in sorted((ROOT / "harness").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for match in CITATION.finditer(line):
                found.append((str(path.relative_to(ROOT)), number, match.group(2),
                              match.group(1), match.group(3)))
    return found


def test_every_spec_citation_in_the_package_points_under_docs():
    citations = _citations()
    assert len(citations) > 20  # the methods and the engine cite the spec
    outside = [(f, n) for f, n, _, prefix, _ in citations if prefix != "docs/"]
    assert outside == []


def test_every_cited_section_is_a_heading_of_its_document():
    headings = {name: _headings(ROOT / "docs" / f"{name}.md")
                for name in ("methods", "protocol", "deviations")}
    missing = []
    for file, number, name, _, section in _citations():
        if section is None:
            continue
        # "§HeteroAKD step 2" and "§HeteroAKD. The paper's..." cite the heading "HeteroAKD"
        if not any(section.startswith(h) and not section[len(h):][:1].isalnum()
                   for h in headings[name]):
            missing.append((file, number, section))
    assert missing == []
