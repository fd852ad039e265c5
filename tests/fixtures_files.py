"""Helpers for the tests of refused inputs: a listing of files to compare before and after, and
a CLI call that must be refused in one line."""
from __future__ import annotations

import stat
from pathlib import Path

from harness.cli import main as cli_main


def listing(*folders: Path) -> dict[str, tuple]:
    """Every file and folder under ``folders`` with its size, mtime and mode (absent: nothing)."""
    entries = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")] if folder.exists() else []:
            info = path.lstat()
            entries[str(path)] = (info.st_size if path.is_file() else None, info.st_mtime_ns,
                                  stat.S_IMODE(info.st_mode))
    return entries


def refused(args: list[str], capsys, *fragments: str) -> str:
    """Run the CLI; assert exit status 2 and one ``error:`` line holding ``fragments``."""
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]
