"""GPU slots: which devices a workflow job may use, so that concurrent jobs never share one.

The Snakefile resolves the device pool once (:func:`resolve_devices`) from the ``gpus`` key of
the workflow config and the machine (:func:`detect_devices`), and tells Snakemake that
``gpu = len(pool)`` (:func:`scheduler_limit`); every GPU rule asks for ``gpu = k`` (its devices),
so the scheduler never starts more GPU jobs than fit. Each GPU job runs its command under
``python -m harness gpu run --devices 0,1,2 --count k -- CMD``, which takes ``k`` free devices
here (:func:`acquire`), sets ``CUDA_VISIBLE_DEVICES`` to them, runs ``CMD`` and exits with its
status.

A device is held by an exclusive ``fcntl.flock`` on ``<lock_dir>/<device>.lock``. The kernel
drops such a lock when the last process holding the file closes it, so a job that dies in any
way (SIGKILL included) frees its devices with nothing to clean up. The lock file descriptors are
passed on to ``CMD``: a wrapper killed while its command still runs leaves the devices held until
the command ends too. Each acquire and release is one JSON line in ``<lock_dir>/journal.jsonl``
(time, devices, pids, label, exit status): the record of which job had which device when.

``HARNESS_FAKE_GPUS=N`` makes :func:`detect_devices` report ``N`` devices without looking at
the machine. Only this module reads it; it exists so that the slot logic and a concurrent
workflow run are tested on a machine without GPUs.
"""
from __future__ import annotations

import fcntl
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

FAKE_ENV = "HARNESS_FAKE_GPUS"
#: where the lock files live, relative to the workflow's working directory (one folder per host)
DEFAULT_LOCK_ROOT = Path(".snakemake") / "gpu-slots"
# Device ids as CUDA_VISIBLE_DEVICES takes them: indices, or GPU-/MIG- UUIDs.
_DEVICE_ID = re.compile(r"^(\d+|(GPU|MIG)-[0-9A-Za-z\-/]+)$")


def default_lock_dir() -> Path:
    """``.snakemake/gpu-slots/<host>``: a checkout shared by several machines keeps their
    devices apart."""
    return DEFAULT_LOCK_ROOT / socket.gethostname()


# ------------------------------------------------------------------ which devices
def _parse_visible(value: str) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` as CUDA reads it: ids up to the first invalid one
    (``""`` and ``"-1"`` hide every device)."""
    devices = []
    for item in value.split(","):
        item = item.strip()
        if not _DEVICE_ID.match(item):
            break
        devices.append(item)
    return devices


def _nvidia_smi_count() -> int:
    """Full GPUs ``nvidia-smi -L`` lists (0 when the tool is absent or fails)."""
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return 0
    if result.returncode != 0:
        return 0
    return sum(line.startswith("GPU ") for line in result.stdout.splitlines())


def detect_devices() -> list[str]:
    """The GPUs this machine offers a job, as ``CUDA_VISIBLE_DEVICES`` ids.

    ``HARNESS_FAKE_GPUS`` first (tests), then ``CUDA_VISIBLE_DEVICES`` when the user set it,
    else ``nvidia-smi -L`` (no torch import: the Snakefile calls this while parsing).
    """
    fake = os.environ.get(FAKE_ENV)
    if fake is not None:
        if not fake.strip().isdigit():
            raise ConfigError(f"{FAKE_ENV}={fake!r} must be a device count (0, 1, 2, ...)")
        return [str(i) for i in range(int(fake))]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return _parse_visible(visible)
    return [str(i) for i in range(_nvidia_smi_count())]


def resolve_devices(spec: Any, available: Sequence[str] | None = None) -> list[str] | None:
    """The device pool of the config key ``gpus``; ``None`` when a cluster assigns devices.

    ``auto``: every device of the machine; an integer ``N``: at most the first ``N`` of them
    (0 disables slots); a list (``[0, 2, 3]``, from the command line ``gpus=[0,2,3]``): exactly
    those, each of which the machine must show; ``cluster``: no local slots (SLURM hands each
    job its devices).
    """
    if spec == "cluster":
        return None
    machine = list(detect_devices() if available is None else available)
    if spec == "auto":
        return machine
    if isinstance(spec, bool):
        raise ConfigError(f"config key 'gpus' is {spec!r}; "
                          "use auto, cluster, a count or a list of device ids")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return machine[: int(spec)]
    if isinstance(spec, (list, tuple)):
        wanted = [str(item).strip() for item in spec]
        unknown = [d for d in wanted if d not in machine]
        if unknown:
            raise ConfigError(
                f"config gpus={list(spec)} names device(s) {unknown} that this machine does not "
                f"show (it has {machine or 'none'}); list only those, or use gpus=auto"
            )
        if len(set(wanted)) != len(wanted):
            raise ConfigError(f"config gpus={list(spec)} lists a device twice; list each once")
        return wanted
    raise ConfigError(f"config key 'gpus' is {spec!r}; use auto, cluster, a count or a list of device ids")


def scheduler_limit(pool: list[str] | None) -> int | None:
    """The Snakemake ``gpu`` resource the pool allows at once: one unit per device; ``None`` (no
    limit from devices) on a CPU box, where ``--cores`` and each job's ``threads`` decide how many
    run at once, and when a cluster assigns devices."""
    if not pool:
        return None
    return len(pool)


def check_job_size(pool: list[str] | None, per_job: int) -> None:
    """Refuse a ``gpus_per_job`` that no set of free devices in the pool could ever satisfy."""
    if pool and per_job > len(pool):
        raise ConfigError(
            f"gpus_per_job={per_job} needs {per_job} devices per job but the GPU slots are "
            f"{pool}; lower gpus_per_job or widen gpus"
        )


# ---------------------------------------------------------------- taking devices
@dataclass
class Allocation:
    """Devices held by this process (the open, locked files)."""

    devices: list[str]
    lock_dir: Path
    files: list[Any] = field(default_factory=list)

    @property
    def fds(self) -> tuple[int, ...]:
        return tuple(f.fileno() for f in self.files)

    def release(self) -> None:
        for f in self.files:
            f.close()  # closing the last descriptor drops the flock
        self.files = []


def _try_lock(path: Path):
    """The open file, exclusively locked, or None when another process holds it."""
    handle = open(path, "a+")  # noqa: SIM115 - kept open while the device is held
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    os.set_inheritable(handle.fileno(), True)
    return handle


def _take(pool: Sequence[str], count: int, lock_dir: Path) -> Allocation | None:
    """``count`` devices of ``pool`` (lowest free ids first), or None (and nothing held)."""
    held = Allocation([], lock_dir)
    for device in pool:
        handle = _try_lock(lock_dir / f"{device.replace('/', '_')}.lock")
        if handle is not None:
            held.devices.append(device)
            held.files.append(handle)
            if len(held.devices) == count:
                return held
    held.release()
    return None


def acquire(pool: Sequence[str], count: int, lock_dir: Path, *, timeout_s: float | None = None,
            poll_s: float = 0.5, on_wait: Callable[[], None] | None = None) -> Allocation:
    """Hold ``count`` devices of ``pool``, waiting (polling) while fewer are free.

    All or nothing: a partial set is let go before waiting, so two jobs each needing two
    devices never sit on one each. ``timeout_s`` (None: wait for ever) raises TimeoutError.
    """
    if not 1 <= count <= len(pool):
        raise ConfigError(f"cannot take {count} device(s) from the GPU slots {list(pool)}; "
                          f"ask for 1 to {len(pool)}")
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    waited = False
    while True:
        held = _take(pool, count, lock_dir)
        if held is not None:
            return held
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"no {count} free device(s) among {list(pool)} within {timeout_s} s")
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(poll_s * (0.5 + random.random()))  # jitter: competing jobs do not lockstep


def held_devices(pool: Sequence[str], lock_dir: Path) -> list[str]:
    """Devices of ``pool`` that some process holds now (probing each lock without keeping it)."""
    busy = []
    for device in pool:
        path = lock_dir / f"{device.replace('/', '_')}.lock"
        if not path.exists():
            continue
        handle = _try_lock(path)
        if handle is None:
            busy.append(device)
        else:
            handle.close()
    return busy


# ----------------------------------------------------------------- the journal
def journal_path(lock_dir: Path) -> Path:
    return lock_dir / "journal.jsonl"


def record(lock_dir: Path, event: str, **fields: Any) -> None:
    """Append one event line (a single ``write`` in append mode: lines never interleave)."""
    line = json.dumps({"event": event, "time": time.time(), **fields}, sort_keys=True) + "\n"
    fd = os.open(journal_path(lock_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_journal(lock_dir: Path) -> list[dict]:
    path = journal_path(lock_dir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------- running
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_on_devices(command: Sequence[str], pool: Sequence[str], count: int, lock_dir: Path,
                   label: str = "") -> int:
    """Run ``command`` with ``CUDA_VISIBLE_DEVICES`` set to ``count`` devices of ``pool`` held
    for its whole life; the command's exit status (128 + signal when a signal ended it)."""
    allocation = acquire(pool, count, lock_dir, on_wait=lambda: print(
        f"gpu run: waiting for {count} free device(s) among {list(pool)}", file=sys.stderr, flush=True))
    devices = ",".join(allocation.devices)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": devices}
    try:
        child = subprocess.Popen(list(command), env=env, pass_fds=allocation.fds)
    except OSError as err:
        allocation.release()
        raise ConfigError(f"gpu run: cannot start {command[0]!r} ({err.strerror}); "
                          "check the command") from None
    record(lock_dir, "acquire", devices=allocation.devices, pid=os.getpid(), child=child.pid,
           label=label)
    previous = {sig: signal.signal(sig, lambda s, _f: child.send_signal(s)) for sig in _FORWARDED}
    try:
        returncode = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    record(lock_dir, "release", devices=allocation.devices, pid=os.getpid(), child=child.pid,
           label=label, returncode=returncode)
    allocation.release()
    return 128 - returncode if returncode < 0 else returncode
