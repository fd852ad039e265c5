"""What training does with the folder it is told to write (README "Resuming and repeating runs").

A run folder holds at most one run. What it holds decides what ``train`` does:

================================================  ======================  ==========================
the folder holds                                  of this config (+code)  of another config or code
================================================  ======================  ==========================
no run file                                       train from scratch      -
an unfinished run (``checkpoints/last.pt``)       resume                  refused (1)
a finished run (``metrics.json``)                 nothing to do (2)       refused (1)
leftovers (``config.yaml``, ``log.csv``, ``model/``,  removed, from scratch  refused (1)
``checkpoints/final.pt``; no ``metrics.json``)
================================================  ======================  ==========================

(1) unless told otherwise: ``overwrite`` (``--overwrite``) removes the run's files and trains
from scratch; ``move-stale`` (``--move-stale``, what the workflow passes) moves the folder aside
to ``<out>.stale-<n>`` and trains from scratch. (2) ``overwrite`` trains it again. "Code" is
:func:`~harness.engine.provenance.code_hash`; it matters for resuming only: a finished
run is not retrained because the code changed. A finished run keeps its last state as
``checkpoints/final.pt``, which is never resumed from, so a job that Snakemake forces, or
whose ``metrics.json`` was removed, trains from scratch.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.engine.checkpoint import CHECKPOINT, config_differences, load_checkpoint
from harness.engine.provenance import code_hash
from harness.errors import CheckpointError

log = logging.getLogger(__name__)

#: what to do with a run that training neither resumes nor leaves as finished
POLICIES = ("keep", "overwrite", "move-stale")
#: every file or folder a run writes into its folder
RUN_FILES = ("metrics.json", "config.yaml", "log.csv", "model", "checkpoints")


@dataclass
class Found:
    """The run a folder holds: ``state`` finished / unfinished / leftovers, its config (None when
    no file says it) and, for an unfinished run, the loaded resume state."""

    state: str
    files: list[Path]
    config: dict[str, Any] | None
    metrics: dict[str, Any] | None = None
    resume_state: dict[str, Any] | None = None


@dataclass
class FolderPlan:
    """The decision for one run folder: ``action`` is "fresh", "resume" or "done" (a finished
    run of this config: ``metrics`` are its results). :meth:`apply` moves or removes what the
    decision discards; call it after every other input check, on one process."""

    out_dir: Path
    action: str
    message: str
    resume_state: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    move_to: Path | None = None
    remove: list[Path] = field(default_factory=list)

    def apply(self) -> None:
        if self.move_to is not None:
            self.out_dir.rename(self.move_to)
        for path in self.remove:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _has_files(path: Path) -> bool:
    """A file, or a folder holding a file somewhere (Snakemake creates empty output folders)."""
    if path.is_dir() and not path.is_symlink():
        return any(p.is_file() for p in path.rglob("*"))
    return path.exists() or path.is_symlink()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} cannot be read ({err.__class__.__name__}); delete it, or "
                              f"pass --overwrite to train the run again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a run's metrics; delete it, or pass --overwrite")
    return data


def _read_config_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None  # a run that never got further than writing it: its config is unknown
    return data if isinstance(data, dict) else None


def inspect(out_dir: Path, read: bool = True) -> Found | None:
    """The run ``out_dir`` holds, or None when it holds no run file; ``read=False``: its state
    from the file names alone (nothing opened, no config)."""
    files = [out_dir / name for name in RUN_FILES if _has_files(out_dir / name)]
    if not files:
        return None
    if not read:
        state = ("finished" if (out_dir / "metrics.json").is_file() else
                 "unfinished" if (out_dir / CHECKPOINT).is_file() else "leftovers")
        return Found(state, files, None)
    if (out_dir / "metrics.json").is_file():
        metrics = _read_json(out_dir / "metrics.json")
        return Found("finished", files, metrics.get("config"), metrics=metrics)
    if (out_dir / CHECKPOINT).is_file():
        state = load_checkpoint(out_dir)
        return Found("unfinished", files, state["config"], resume_state=state)
    return Found("leftovers", files, _read_config_yaml(out_dir / "config.yaml"))


def _stale_name(out_dir: Path) -> Path:
    n = 1
    while (target := out_dir.with_name(f"{out_dir.name}.stale-{n}")).exists():
        n += 1
    return target


def _mismatch(found: Found, config: dict[str, Any]) -> str | None:
    """Why the found run is not this run ("another config (differs in: ...)", "other code"),
    or None."""
    if found.config is None:
        return "an unknown config (no readable config.yaml)"
    differing = config_differences(found.config, config)
    if differing:
        return f"another config (differs in: {', '.join(differing)})"
    if found.state == "unfinished" and found.resume_state.get("code") != code_hash():
        return (f"other training code (code {found.resume_state.get('code') or 'unrecorded'}, "
                f"now {code_hash()})")
    return None


def plan_run_folder(config: dict[str, Any], out_dir: Path, policy: str = "keep") -> FolderPlan:
    """Decide what training does with ``out_dir`` for the resolved ``config`` (see the module
    docstring); a run of another config or code is refused (CheckpointError naming the folder)
    under the ``keep`` policy. Nothing is changed on disk here."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}; valid: {POLICIES}")
    found = inspect(out_dir, read=policy != "overwrite")  # overwrite: not even a bad file stops it
    if found is None:
        return FolderPlan(out_dir, "fresh", f"starting {out_dir} from scratch")
    if policy == "overwrite":
        return FolderPlan(out_dir, "fresh", f"starting {out_dir} from scratch (--overwrite "
                          f"removed the {found.state} run there)", remove=found.files)
    why = _mismatch(found, config)
    if why is None:
        return _same_run(out_dir, found)
    what = {"finished": "a finished run", "unfinished": "an unfinished run",
            "leftovers": "files of a run"}[found.state]
    if policy == "move-stale":
        target = _stale_name(out_dir)
        if not os.access(out_dir.parent, os.W_OK | os.X_OK):
            raise CheckpointError(f"{out_dir} holds {what} of {why}, and {out_dir.parent} cannot "
                                  f"be written to move it aside; move or delete it yourself")
        return FolderPlan(out_dir, "fresh", f"moved {what} of {why} from {out_dir} to {target}; "
                          f"starting {out_dir} from scratch", move_to=target)
    raise CheckpointError(f"{out_dir} holds {what} of {why}; choose another --out, or pass "
                          f"--overwrite to replace it (--move-stale keeps it aside)")


def _same_run(out_dir: Path, found: Found) -> FolderPlan:
    """The folder holds this run: nothing to do, resume, or remove the leftovers."""
    if found.state == "finished":
        miou = found.metrics.get("miou")
        return FolderPlan(out_dir, "done", f"{out_dir} holds a finished run of this config (mIoU "
                          f"{miou}); nothing to do (--overwrite trains it again)", metrics=found.metrics)
    if found.state == "unfinished":
        state = found.resume_state
        return FolderPlan(out_dir, "resume", f"resuming {out_dir / CHECKPOINT} from iteration "
                          f"{state['iteration']}", resume_state=state)
    names = ", ".join(str(p.relative_to(out_dir)) for p in found.files)
    return FolderPlan(out_dir, "fresh", f"starting {out_dir} from scratch (removed what an "
                      f"earlier run of this config left there: {names})", remove=found.files)
