"""GPU slots (harness/workflow/gpus.py): which devices the machine offers, what the `gpus` config
key makes of them, and the lock-file allocator under concurrent and killed holders."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from fixtures_workflow import ROOT, SNAKEMAKE, copy_workflow

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
    assert gpus.scheduler_limit([]) is None  # a CPU box: --cores / threads decide
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


# ------------------------------------------------------------------ the workflow on fake GPUs
STUDENT = "runs/toycity/students/deeplabv3_tiny/seed0/metrics.json"


def _dry_run(*config: str, fake: str | None, target: str = STUDENT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (gpus.FAKE_ENV, "CUDA_VISIBLE_DEVICES")}
    if fake is not None:
        env[gpus.FAKE_ENV] = fake
    return subprocess.run([SNAKEMAKE, "-n", "-p", "--forceall", target, "--config", *config],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_dry_runs_pin_jobs_to_slots_and_leave_a_cpu_box_as_it_was() -> None:
    cpu = _dry_run("threads=2", fake=None)  # this machine has no nvidia-smi: no slots
    assert cpu.returncode == 0, cpu.stderr[-2000:]
    assert "harness gpu run" not in cpu.stdout
    assert "Shell command: python -m harness train --move-stale --set seed=0" in cpu.stdout
    four = _dry_run("threads=2", fake="4")
    assert ("Shell command: python -m harness gpu run --devices 0,1,2,3 --count 1 -- python -m harness train "
            "--move-stale --set seed=0") in four.stdout
    # the command after the prefix is the CPU box's, byte for byte
    assert four.stdout.split("-- python -m harness train", 1)[1].split("\n")[0] == \
        cpu.stdout.split("Shell command: python -m harness train", 1)[1].split("\n")[0]
    listed = _dry_run("gpus=[3,1]", "gpus_per_job=2", fake="4")
    assert "gpu run --devices 3,1 --count 2 -- torchrun --standalone --nproc_per_node=2" in listed.stdout
    capped = _dry_run("gpus=2", fake="4", target="runs/toycity/teachers/segformer_small/eval.json")
    assert "gpu run --devices 0,1 --count 1 -- python -m harness eval" in capped.stdout
    cluster = _dry_run("gpus=cluster", fake="4")
    assert cluster.returncode == 0 and "harness gpu run" not in cluster.stdout


@pytest.mark.parametrize("config, message", [
    (("gpus=[0,5]",), "device(s) ['5']"),
    (("gpus=2", "gpus_per_job=4"), "gpus_per_job=4"),
    (("gpus=many",), "gpus"),
])
def test_bad_slots_are_refused_before_any_job(config, message) -> None:
    result = _dry_run(*config, fake="4")
    assert result.returncode != 0 and message in result.stdout + result.stderr
# Two teachers and two students: three start on the three slots, one is killed, the fourth
# must take the freed device.
SMOKE_RUNS = ["teachers/deeplabv3_small/seed0", "teachers/segformer_small/seed0",
              "students/deeplabv3_tiny/seed0", "students/segformer_tiny/seed0"]


def _jobs(events: list[dict]) -> list[dict]:
    """One entry per wrapper process: devices, [start, end], exit status, label."""
    jobs: dict[int, dict] = {}
    for e in events:
        job = jobs.setdefault(e["pid"], {"devices": e["devices"], "label": e["label"], "end": None})
        if e["event"] == "acquire":
            job.update(start=e["time"], child=e["child"])
        else:
            job.update(end=e["time"], returncode=e["returncode"])
    return list(jobs.values())


def _active(lock_dir: Path) -> list[dict]:
    return [j for j in _jobs(gpus.read_journal(lock_dir)) if j["end"] is None]


@pytest.mark.slow
def test_smoke_grid_on_three_fake_gpus_pins_jobs_and_reuses_a_killed_slot(tmp_path) -> None:
    copy_workflow(tmp_path)
    config = yaml.safe_load((ROOT / "workflow/config/config.yaml").read_text())
    config.update(scale="smoke", threads=1)
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, gpus.FAKE_ENV: "3", "OMP_NUM_THREADS": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    lock_dir = tmp_path / gpus.default_lock_dir()
    targets = [f"runs/smoke/toycity/{run}/metrics.json" for run in SMOKE_RUNS]
    # 4 cores, 3 slots: the `gpu` limit, not the cores, keeps the fourth job waiting
    run = subprocess.Popen([SNAKEMAKE, *targets, "--cores", "4", "--keep-going", "--configfile",
                            "smoke.yaml"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while len(_active(lock_dir)) < 3 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    active = _active(lock_dir)
    assert len(active) == 3, run.communicate()[0][-3000:] if run.poll() is not None else active
    victim = active[0]
    os.kill(victim["child"], signal.SIGKILL)
    output = run.communicate(timeout=1500)[0]
    assert run.returncode != 0, output[-3000:]  # the killed job failed; --keep-going ran the rest
    limit = next(line for line in output.splitlines() if line.startswith("Provided resources:"))
    assert "gpu" in limit and "3" in limit, limit

    jobs = _jobs(gpus.read_journal(lock_dir))
    assert len(jobs) == 4 and all(j["end"] is not None for j in jobs)
    for i, a in enumerate(jobs):
        assert len(a["devices"]) == 1 and a["devices"][0] in {"0", "1", "2"}
        for b in jobs[i + 1:]:
            if a["start"] < b["end"] and b["start"] < a["end"]:  # ran at the same time
                assert not set(a["devices"]) & set(b["devices"]), (a, b)
    killed = next(j for j in jobs if j["child"] == victim["child"])
    assert killed["returncode"] == -signal.SIGKILL
    (last,) = [j for j in jobs if j["start"] > killed["end"]]
    assert last["devices"] == killed["devices"]  # the fourth job took the freed slot
    logs = list((tmp_path / "logs").rglob("*_seed0.log"))
    assert len(logs) == 4 and not any("waiting for" in log.read_text() for log in logs)
    for job in jobs:  # each run records the device it was given
        out = job["label"].split("--out ", 1)[1].split()[0]
        if job is not killed:
            device = json.loads((tmp_path / out / "metrics.json").read_text())["device"]
            assert device.endswith(f"; CUDA_VISIBLE_DEVICES={job['devices'][0]})"), device


def test_gpu_cli_status_and_a_run_without_a_command(tmp_path) -> None:
    env = {**os.environ, gpus.FAKE_ENV: "3"}
    held = gpus.acquire(["0", "1", "2"], 1, tmp_path)
    status = subprocess.run([sys.executable, "-m", "harness", "gpu", "status", "--gpus", "[2,0]",
                             "--lock-dir", str(tmp_path)], env=env, capture_output=True, text=True)
    held.release()
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        "machine: 3 GPU(s) ['0', '1', '2']",
        "gpus=[2,0]: 2 slot(s) ['2', '0']; Snakemake runs GPU jobs while their devices fit in gpu=2",
        f"held now ({tmp_path}): ['0']"]
    empty = subprocess.run([sys.executable, "-m", "harness", "gpu", "run", "--devices", "0", "--"],
                           env=env, capture_output=True, text=True)
    assert empty.returncode == 2 and "needs a command" in empty.stderr
