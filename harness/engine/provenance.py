"""Where a result came from: library versions, git commit, training-code hash, device, file
hashes, peak memory."""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import resource
import subprocess
from pathlib import Path

import torch

import harness
from harness.io import sha256_of  # noqa: F401  (re-exported: provenance records file hashes)


def versions() -> dict[str, str]:
    """python, torch, timm, smp (and the harness) versions."""
    def version_of(dist_name: str) -> str:
        try:
            return importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": version_of("timm"),
        "smp": version_of("segmentation-models-pytorch"),
        "harness": harness.__version__,
    }


def git_commit() -> str:
    """The commit of the harness checkout (``-dirty`` if it has uncommitted changes), or 'unknown'."""
    source = Path(harness.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "") if commit else "unknown"


#: the parts of the package a training run's result depends on (reports, benchmark and CLI not)
TRAINING_CODE = ("config.py", "registry.py", "io.py", "data", "models", "methods", "engine")


@functools.cache
def code_hash() -> str:
    """A short hash of the training code's source files (:data:`TRAINING_CODE`), committed or
    not: a run resumes only under the code that started it."""
    root = Path(harness.__file__).resolve().parent
    files = sorted(p for part in TRAINING_CODE
                   for p in ([root / part] if (root / part).is_file() else (root / part).rglob("*.py")))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def device_description(device: torch.device) -> str:
    """E.g. 'cpu (x86_64, 2 threads)' or 'cuda:0 (NVIDIA H100 80GB HBM3)'; with
    ``CUDA_VISIBLE_DEVICES`` set (a workflow job on its GPU slots) its value is appended, so a run
    records the physical devices it was given: 'cuda:0 (NVIDIA H100 80GB HBM3; CUDA_VISIBLE_DEVICES=3)'."""
    if device.type == "cuda":
        text = f"{device} ({torch.cuda.get_device_name(device)}"
    else:
        text = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return text + (f"; CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ")")


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on CUDA; on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
