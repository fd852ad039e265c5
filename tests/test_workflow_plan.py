"""`python -m harness grid plan`: the training jobs it prices (the same as the workflow's), the
hours it computes from step times (by hand), its schedule, and its step-time files."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fixtures_workflow import ROOT

from harness.errors import DataError
from harness.workflow import grid, plan, rules, step_times

CONFIG = yaml.safe_load((ROOT / "workflow/config/config.yaml").read_text())


def _jobs(name: str, **overrides) -> list[plan.TrainingJob]:
    return plan.training_jobs(grid.check_config({**copy.deepcopy(CONFIG), **overrides})[name])


def test_training_jobs_are_the_workflows_with_their_settings() -> None:
    jobs = _jobs("cityscapes")
    counts = rules.job_counts(copy.deepcopy(CONFIG), ["cityscapes"])
    for rule in plan.TRAINING_RULES:
        assert sum(j.rule == rule for j in jobs) == counts[rule], rule
    teachers = [j for j in jobs if j.rule == "train_teacher"]
    assert {(j.step.student, j.iterations, j.step.batch) for j in teachers} == {
        ("deeplabv3_r101", 80000, 8), ("segformer_b4", 80000, 8)}
    distill = [j for j in jobs if j.rule == "distill"]
    assert all(j.iterations == 40000 and j.step.crop == (512, 1024) and j.step.batch == 16 for j in distill)
    assert all(j.after == f"runs/cityscapes/teachers/{j.step.teacher}/seed0" for j in distill)
    # the sensitivity grid's 4 x 4 lambda points set options; each has 3 seeds
    assert sum(j.has_options for j in jobs) == 16 * 3
    # every job has its own run folder; configurations repeat over seeds and lambdas
    assert len({j.run for j in jobs}) == len(jobs)
    assert len({j.step for j in distill}) == 5 * 5 + 3 * 4
    smoke = _jobs("toycity", scale="smoke")
    assert {j.iterations for j in smoke} == {4} and {j.step.batch for j in smoke} == {2}


def _job(run: str, after: str | None = None) -> plan.TrainingJob:
    step = plan.StepConfig("toycity", "m", "", "baseline", "", (8, 8), 1)
    return plan.TrainingJob("train_student", run, 1, step, False, after)


def test_makespan_is_a_longest_first_schedule_that_waits_for_teachers() -> None:
    jobs = [_job("A"), _job("B", after="A"), _job("C"), _job("D")]
    wall = {"A": 10.0, "B": 5.0, "C": 3.0, "D": 3.0}
    # 2 slots: A and C at 0, D at 3 (ends 6), B once A ends at 10 -> 15
    assert plan.makespan_hours(jobs, wall, 2) == 15.0
    assert plan.makespan_hours(jobs, wall, 1) == 21.0  # one slot: the sum
    assert plan.makespan_hours(jobs, wall, 8) == 15.0  # the chain A -> B bounds it
    with pytest.raises(ValueError, match="not in the plan"):
        plan.makespan_hours([_job("B", after="X")], {"B": 1.0}, 2)


def _write_times(path: Path, jobs: list[plan.TrainingJob], seconds: float) -> None:
    times = {j.step: plan.StepTime(seconds, "measured", "cpu (test)", j.step.crop, j.step.batch)
             for j in jobs}
    step_times.write_step_times(path, times)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "grid", "plan", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_plan_from_a_step_time_file_prices_toycity_by_hand(tmp_path) -> None:
    jobs = _jobs("toycity")
    _write_times(tmp_path / "steps.csv", jobs, 0.1)
    result = _cli("--datasets", "toycity", "--gpus", "2", "--step-times", str(tmp_path / "steps.csv"),
                  "--no-measure", "--record", str(tmp_path / "used.csv"))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("toycity ")}
    # teachers: 2 x 1500 x 0.1 s; students 2 x 500 x 0.1 s; 31 distill runs x 500 x 0.1 s (1 seed:
    # 15 main, 8 ablation, 4 sensitivity, 2 readings x 2 pairs)
    assert rows["train_teacher"][2:5] == ["2", "1,500", "0.1"] and rows["train_teacher"][6] == "0.1"
    assert rows["train_student"][2] == "2" and rows["distill"][2] == "31"
    assert rows["distill"][5] == "file+preset"  # the sensitivity points are priced at their preset
    assert rows["cka"][5:] == ["not", "priced", "-", "-"]
    total_h = (2 * 1500 + 2 * 500 + 31 * 500) * 0.1 / 3600
    assert f"total: {total_h:,.1f} GPU-hours in 35 training jobs" in out
    # 2 slots: each teacher 150 s, then the 31 + 2 jobs of 50 s (students start beside the teachers)
    wall = plan.makespan_hours(jobs, {j.run: j.iterations * 0.1 / 3600 for j in jobs}, 2)
    assert f"wall time on 2 GPU(s): {plan.duration(wall)}" in out
    n_configs = len({j.step for j in jobs})  # 2 teachers, 2 students, 15 main + 8 ablation variants
    assert n_configs == 27
    source = f"  {n_configs} read from {tmp_path / 'steps.csv'}, measured on cpu (test) at their own"
    assert f"{source} crop and batch" in out
    used = pd.read_csv(tmp_path / "used.csv")
    assert len(used) == len({j.step for j in jobs}) and set(used.seconds) == {0.1}


def test_missing_step_times_without_measuring_is_one_error(tmp_path) -> None:
    _write_times(tmp_path / "steps.csv", _jobs("toycity")[:2], 0.1)
    result = _cli("--datasets", "toycity", "--step-times", str(tmp_path / "steps.csv"), "--no-measure")
    assert result.returncode == 2 and "not in --step-times" in result.stderr
    assert "drop --no-measure" in result.stderr


def test_a_bench_cost_table_is_read_as_step_times(tmp_path) -> None:
    frame = pd.DataFrame([
        {"dataset": "toycity", "teacher": "deeplabv3_small", "student": "segformer_tiny", "method": "kd",
         "preset": None, "crop": "64x128", "batch": 8, "full_step_ms": 120.0, "student_step_ms": 50.0,
         "device": "cpu"},
        {"dataset": "toycity", "teacher": "deeplabv3_small", "student": "segformer_tiny", "method": "cwd",
         "preset": "cirkd", "crop": "64x128", "batch": 8, "full_step_ms": 130.0, "student_step_ms": 70.0,
         "device": "cpu"}])
    frame.to_csv(tmp_path / "cost.csv", index=False)
    times = step_times.read_step_times(tmp_path / "cost.csv")
    key = plan.StepConfig("toycity", "segformer_tiny", "deeplabv3_small", "cwd", "cirkd", (64, 128), 8)
    assert times[key].seconds == pytest.approx(0.13) and times[key].source == "file"
    alone = plan.StepConfig("toycity", "segformer_tiny", "", "baseline", "", (64, 128), 8)
    assert times[alone].seconds == pytest.approx(0.06)  # the median of 50 and 70 ms
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="neither the columns"):
        step_times.read_step_times(tmp_path / "bad.csv")


def test_step_time_file_round_trip(tmp_path) -> None:
    jobs = _jobs("cityscapes")
    configs = dict.fromkeys(j.step for j in jobs)
    times = {c: plan.StepTime(0.25 + i / 1000, "scaled", "cpu (x86_64, 2 threads)", (64, 128), 2)
             for i, c in enumerate(configs)}
    step_times.write_step_times(tmp_path / "t.csv", times)
    back = step_times.read_step_times(tmp_path / "t.csv")
    assert {k: (v.seconds, v.how, v.device, v.measured_crop, v.measured_batch) for k, v in back.items()} == \
        {k: (v.seconds, v.how, v.device, v.measured_crop, v.measured_batch) for k, v in times.items()}
    assert {v.file for v in back.values()} == {str(tmp_path / "t.csv")}


@pytest.mark.parametrize("crop, batch, expected", [
    ((512, 1024), 16, ((64, 128), 2)),
    ((512, 512), 16, ((128, 128), 2)),
    ((360, 360), 16, ((128, 128), 2)),
    ((64, 128), 8, ((64, 128), 2)),
    ((40, 40), 1, ((32, 32), 1)),
])
def test_reduced_crop_and_batch(crop, batch, expected) -> None:
    assert step_times.reduced(crop, batch, 128, 2) == expected


def test_measured_steps_are_scaled_from_a_reduced_crop_and_batch(monkeypatch) -> None:
    import torch

    from harness.bench import timing

    seen = []

    def fake_calls(group, crop, batch, device):
        seen.append((crop, batch))
        if batch > 4:
            raise torch.OutOfMemoryError("fake")
        return {c: None for c in group if c.method != "cirkd"}  # CIRKD too big to build

    monkeypatch.setattr(step_times, "_step_calls", fake_calls)
    monkeypatch.setattr(timing, "interleaved_medians",
                        lambda calls, *a: {c: 0.5 + 0.1 * (c.method == "kd") for c in calls})
    config = plan.StepConfig("cityscapes", "deeplabv3_r18", "", "baseline", "", (512, 1024), 16)
    cpu = torch.device("cpu")
    (small,) = step_times._measure_group([config], cpu, (128, 2), 0, 1, "cpu").values()
    assert seen[-1] == ((64, 128), 2) and small.how == "scaled"
    assert small.seconds == 0.5 * (512 * 1024 * 16) / (64 * 128 * 2)  # pixels x batch
    assert small.device.endswith("; CPU time, not wall time)")
    (halved,) = step_times._measure_group([config], cpu, None, 0, 1, "wall").values()
    assert seen[-3:] == [((512, 1024), 16), ((512, 1024), 8), ((512, 1024), 4)]  # out of memory twice
    assert halved.seconds == 0.5 * 4 and halved.how == "scaled" and halved.measured_batch == 4
    same = plan.StepConfig("toycity", "deeplabv3_tiny", "", "baseline", "", (64, 128), 2)
    (real,) = step_times._measure_group([same], cpu, (128, 2), 0, 1, "wall").values()
    assert real.seconds == 0.5 and real.how == "measured"  # already within the reduced size
    pair = [plan.StepConfig("toycity", "deeplabv3_tiny", "deeplabv3_small", m, "", (64, 128), 2)
            for m in ("kd", "cwd", "cirkd")]
    times = step_times._measure_group(pair, cpu, None, 0, 1, "wall")
    assert times[pair[2]].how == "assumed" and times[pair[2]].seconds == pytest.approx(0.6)  # as kd


def test_memory_cap_turns_a_huge_allocation_into_an_error() -> None:
    import torch

    with step_times.memory_cap(0.5):
        with pytest.raises(RuntimeError, match="can't allocate memory"):
            torch.empty(2**31, dtype=torch.float32)  # 8 GiB
    torch.empty(2**20)  # the cap is lifted afterwards


def test_measuring_times_the_training_step_of_each_method() -> None:
    kd = plan.StepConfig("toycity", "deeplabv3_tiny", "deeplabv3_small", "kd", "", (64, 128), 8)
    cwd = plan.StepConfig("toycity", "deeplabv3_tiny", "deeplabv3_small", "cwd", "cirkd", (64, 128), 8)
    alone = plan.StepConfig("toycity", "deeplabv3_tiny", "", "baseline", "", (64, 128), 8)
    times = step_times.measure_step_times([kd, cwd, alone], device="cpu", reduce_to=(64, 2),
                                          warmup=1, repeats=1, clock="cpu", cpu_memory_gb=4)
    assert set(times) == {kd, cwd, alone}
    for t in times.values():
        assert t.how == "scaled" and t.measured_crop == (32, 64) and t.measured_batch == 2
        assert 0 < t.seconds < 600 and t.file == ""  # 16 x a 32x64 step of batch 2
