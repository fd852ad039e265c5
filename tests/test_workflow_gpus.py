"""GPU slots (harness/workflow/gpus.py): which devices the machine offers, what the `gpus` config
key makes of them, and the lock-file allocator under concurrent and killed holders."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.workflow import gpus

# A process that takes devices and reports them, then waits to be killed.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.workflow import gpus
    held = gpus.acquire(sys.argv[1].split(","), int(sys.argv[2]), Path(sys.argv[3]))
    print(",".join(held.devices), flush=True)
    time.sleep(300)
""")


def _holder(pool: str, count: int, lock_dir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, pool, str(count), str(lock_dir)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


@pytest.fixture
def no_machine_env(monkeypatch, tmp_path):
    """No fake count, no CUDA_VISIBLE_DEVICES, no nvidia-smi on PATH."""
    monkeypatch.delenv(gpus.FAKE_ENV, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_detect_devices_fake_count_then_visible_then_nvidia_smi(no_machine_env, monkeypatch, tmp_path):
    assert gpus.detect_devices() == []  # no nvidia-smi: a CPU box
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-a)'\n"
                   "echo '  MIG 1g.10gb Device 0: (UUID: MIG-b)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-c)'\n")
    smi.chmod(0o755)
    assert gpus.detect_devices() == ["0", "1"]  # full GPUs only
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert gpus.detect_devices() == ["2", "3"]  # the user's restriction wins over the machine
    for value, expected in [("", []), ("-1", []), ("0,-1,2", ["0"]), (" 1 , GPU-abc-1", ["1", "GPU-abc-1"])]:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        assert gpus.detect_devices() == expected, value
    monkeypatch.setenv(gpus.FAKE_ENV, "3")
    assert gpus.detect_devices() == ["0", "1", "2"]  # the fake count wins over everything
    monkeypatch.setenv(gpus.FAKE_ENV, "two")
    with pytest.raises(ConfigError, match="HARNESS_FAKE_GPUS"):
        gpus.detect_devices()


@pytest.mark.parametrize("spec, expected", [
    ("auto", ["0", "1", "2", "3"]),
    (2, ["0", "1"]),
    ("2", ["0", "1"]),       # --config gpus=2 arrives as an int, a profile may quote it
    (8, ["0", "1", "2", "3"]),  # a cap, not a demand
    (0, []),
    ([0, 2, 3], ["0", "2", "3"]),
    (["3", "1"], ["3", "1"]),  # --config gpus=[3,1] arrives as strings, order kept
    ("cluster", None),
])
def test_gpus_key_resolves_against_the_machine(spec, expected) -> None:
    assert gpus.resolve_devices(spec, ["0", "1", "2", "3"]) == expected


@pytest.mark.parametrize("spec, message", [
    ([0, 5], r"device\(s\) \['5'\]"),
    ([1, 1], "twice"),
    (True, "auto, cluster"),
    ("all", "auto, cluster"),
])
def test_bad_gpus_key_is_one_error_naming_it(spec, message) -> None:
    with pytest.raises(ConfigError, match=message):
        gpus.resolve_devices(spec, ["0", "1", "2", "3"])


def test_scheduler_limit_and_job_size() -> None:
    assert gpus.scheduler_limit(["0", "1", "2"]) == 3
    assert gpus.scheduler_limit([]) == 1  # a CPU box: one GPU-sized job at a time, as before slots
    assert gpus.scheduler_limit(None) is None
    gpus.check_job_size(["0", "1"], 2)
    gpus.check_job_size([], 4)  # no slots: nothing to check
    with pytest.raises(ConfigError, match="gpus_per_job=4"):
        gpus.check_job_size(["0", "1"], 4)


def test_acquire_hands_out_disjoint_sets_and_waits_when_full(tmp_path) -> None:
    pool = ["0", "1", "2", "3", "4"]
    first = gpus.acquire(pool, 2, tmp_path)
    second = gpus.acquire(pool, 2, tmp_path)
    third = gpus.acquire(pool, 1, tmp_path)
    assert (first.devices, second.devices, third.devices) == (["0", "1"], ["2", "3"], ["4"])
    assert gpus.held_devices(pool, tmp_path) == pool
    with pytest.raises(TimeoutError):
        gpus.acquire(pool, 1, tmp_path, timeout_s=0.3, poll_s=0.05)
    second.release()
    assert gpus.held_devices(pool, tmp_path) == ["0", "1", "4"]
    # two free devices: a job of two takes both; a job of three keeps waiting and holds nothing
    with pytest.raises(TimeoutError):
        gpus.acquire(pool, 3, tmp_path, timeout_s=0.3, poll_s=0.05)
    assert gpus.held_devices(pool, tmp_path) == ["0", "1", "4"]
    assert gpus.acquire(pool, 2, tmp_path).devices == ["2", "3"]
    with pytest.raises(ConfigError, match="ask for 1 to 5"):
        gpus.acquire(pool, 6, tmp_path)


def test_a_killed_holder_frees_its_devices(tmp_path) -> None:
    proc, taken = _holder("0,1", 1, tmp_path)
    try:
        assert taken == "0"
        assert gpus.acquire(["0", "1"], 1, tmp_path).devices == ["1"]
        with pytest.raises(TimeoutError):
            gpus.acquire(["0"], 1, tmp_path, timeout_s=0.3, poll_s=0.05)
    finally:
        proc.kill()
        proc.wait()
    assert gpus.acquire(["0"], 1, tmp_path, timeout_s=5).devices == ["0"]  # reused at once


def test_concurrent_processes_never_share_a_device(tmp_path) -> None:
    pool = "0,1,2,3,4,5"
    holders = [_holder(pool, 2, tmp_path) for _ in range(3)]
    try:
        sets = [set(taken.split(",")) for _, taken in holders]
        assert set.union(*sets) == set(pool.split(",")) and sum(map(len, sets)) == 6
    finally:
        for proc, _ in holders:
            proc.kill()
            proc.wait()


def _gpu_run(lock_dir: Path, *command: str, count: int = 1, pool: str = "0,1") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from harness.workflow import gpus; from pathlib import Path;"
         "sys.exit(gpus.run_on_devices(sys.argv[3:], sys.argv[1].split(','), 1, Path(sys.argv[2]), 'test'))",
         pool, str(lock_dir), *command], env=env, stdout=subprocess.PIPE, text=True)


def test_run_on_devices_pins_the_command_and_journals_it(tmp_path) -> None:
    proc = _gpu_run(tmp_path, sys.executable, "-c",
                    "import os; print(os.environ['CUDA_VISIBLE_DEVICES']); raise SystemExit(3)")
    out, _ = proc.communicate(timeout=60)
    assert out.strip() == "0" and proc.returncode == 3
    events = gpus.read_journal(tmp_path)
    assert [e["event"] for e in events] == ["acquire", "release"]
    assert events[1]["devices"] == ["0"] and events[1]["returncode"] == 3
    assert events[0]["time"] <= events[1]["time"] and events[0]["label"] == "test"
    assert gpus.held_devices(["0", "1"], tmp_path) == []


def test_command_outliving_its_killed_wrapper_keeps_the_device(tmp_path) -> None:
    proc = _gpu_run(tmp_path, sys.executable, "-c", "import time; print('up', flush=True); time.sleep(300)")
    try:
        assert proc.stdout.readline().strip() == "up"
        child = gpus.read_journal(tmp_path)[0]["child"]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert gpus.held_devices(["0", "1"], tmp_path) == ["0"]  # the command still runs on it
        os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while gpus.held_devices(["0", "1"], tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gpus.held_devices(["0", "1"], tmp_path) == []
    finally:
        proc.kill()


def test_wrapper_reports_the_signal_that_ended_its_command(tmp_path) -> None:
    proc = _gpu_run(tmp_path, sys.executable, "-c",
                    "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL
    assert gpus.read_journal(tmp_path)[-1]["returncode"] == -signal.SIGKILL
