"""A copy of the workflow in a temporary folder, for tests that run Snakemake for real (outputs,
locks and .snakemake/ then stay out of the checkout)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def copy_workflow(dest: Path) -> Path:
    """Snakefile, workflow/, profiles/ and the published figures under ``dest``; returns ``dest``."""
    for item in ("Snakefile", "workflow", "profiles"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    shutil.copytree(ROOT / "results/published", dest / "results/published")
    return dest
