"""Atomic file writes: a temp file in the same folder, fsync, then rename.

A run killed while writing never leaves a truncated file that a later step reads. The renamed
file gets the mode a plain ``open()`` would give it (the umask decides), so results on a shared
file system are as readable as any other file the user writes.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process's umask (read from /proc where it exists: setting it to read it is racy)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_open_mode(target: Path) -> int:
    """The mode ``open(target, "w")`` would leave: the existing file's, else 0o666 minus the
    umask. ``mkstemp`` creates 0o600 files, which would hide results from a shared group."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _plain_open_mode(target))
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` (e.g. ``torch.save``, ``df.to_csv``) then rename into place."""
    with atomic_path(path) as tmp:
        writer(tmp)


def check_writable_dir(path: str | os.PathLike) -> None:
    """Raise a UserError unless ``path`` can be created or written; creates nothing.

    The nearest existing folder on the way to ``path`` must be a folder this process may write.
    """
    from harness.errors import UserError

    folder = Path(path)
    probe = folder.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"output folder {folder} cannot be written ({probe} is not a writable "
                        f"folder); choose another --out")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check it can be written, else raise a UserError."""
    from harness.errors import UserError

    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe.", delete=True)
        probe.close()
    except OSError as err:
        raise UserError(
            f"output folder {folder} cannot be written ({err.strerror}); choose another --out"
        ) from None
    return folder


__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "atomic_write_with",
           "check_writable_dir", "ensure_writable_dir", "sha256_of", "IO"]
