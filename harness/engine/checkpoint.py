"""The resume state of a run: ``<out>/checkpoints/last.pt``, written atomically.

It holds everything the next iteration depends on: student and distiller state (the distiller's
buffers, e.g. memory queues, included), optimiser, iteration (the poly schedule is a function of
it), the main process's RNG states, the data sampler position, best-on-val so far and the log
rows, so that a resumed run on CPU reproduces the uninterrupted one exactly.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from harness.config import upgrade
from harness.errors import CheckpointError
from harness.io import atomic_write_with

CHECKPOINT = Path("checkpoints") / "last.pt"
#: the state of a finished run (see :func:`retire_checkpoint`); never resumed from
FINAL_CHECKPOINT = Path("checkpoints") / "final.pt"
#: config keys that may differ between the interrupted and the resuming run: they do not change
#: the result (thread count, loader workers) or only the reporting.
RESUME_MAY_DIFFER = ("train.threads", "data.workers", "train.log_every")


#: what :func:`load_checkpoint` needs in a file before the engine reads it
RESUME_KEYS = frozenset({"config", "iteration", "student", "distiller", "optimizer", "rng", "best",
                         "log_rows", "skipped_batches", "wall_time_s", "train_time_s"})


def checkpoint_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINT


def save_checkpoint(out_dir: str | Path, state: dict[str, Any]) -> None:
    atomic_write_with(checkpoint_path(out_dir), lambda tmp: torch.save(state, tmp))


def load_checkpoint(out_dir: str | Path) -> dict[str, Any] | None:
    """The saved state, or None when the run has none yet.

    Read with ``weights_only=True``: the file holds tensors and plain values only (see
    :func:`~harness.engine.seeding.rng_state`), and a file that asks the unpickler for anything
    else (a class, a function call) is refused without running it. Run folders are shared and
    copied between people; nothing in one may execute code.
    """
    path = checkpoint_path(out_dir)
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():  # torch warns about pickles it will refuse anyway
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"resume checkpoint {path} holds objects other than tensors and "
                              f"plain values, which this version never writes, so it was not "
                              f"loaded; delete it (or pass --overwrite) to start the run from "
                              f"scratch") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(f"resume checkpoint {path} cannot be read ({err.__class__.__name__});"
                              f" delete it (or pass --overwrite) to start the run from scratch") from None
    missing = sorted(RESUME_KEYS - set(state)) if isinstance(state, dict) else sorted(RESUME_KEYS)
    if missing:
        raise CheckpointError(f"resume checkpoint {path} is not a run state of this harness (it "
                              f"lacks {', '.join(missing)}); delete it (or pass --overwrite) to "
                              f"start the run from scratch")
    return state


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "options":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved_config: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The config keys (dotted) whose values differ, ignoring :data:`RESUME_MAY_DIFFER`: a run
    resumed or reused under another config would be neither run's."""
    old, new = _flatten(upgrade(saved_config, warn=False)), _flatten(config)
    return sorted(k for k in set(old) | set(new)
                  if k not in RESUME_MAY_DIFFER and old.get(k) != new.get(k))


def retire_checkpoint(out_dir: str | Path) -> None:
    """Rename ``last.pt`` to ``final.pt`` once the run's outputs are written: a finished run
    holds no resume state, so a rerun (Snakemake forcing it, or its outputs deleted) trains
    from scratch instead of resuming at the last iteration and rewriting the old result."""
    path = checkpoint_path(out_dir)
    if path.is_file():
        path.replace(Path(out_dir) / FINAL_CHECKPOINT)
