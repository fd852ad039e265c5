"""The README's promises that code can check: every command of its ``bash`` blocks runs (a dry
run where data or hours are needed), its worked example of a new method registers and trains,
its measurements name the commit they were measured at, and its demo numbers have the form
``make readme-numbers`` compares with a demo run at HEAD."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fixtures_data import write_cityscapes
from fixtures_workflow import ROOT, SNAKEMAKE, copy_workflow

sys.path.insert(0, str(Path(__file__).parent))
import readme_numbers  # noqa: E402

README = (ROOT / "README.md").read_text()

# How each kind of README command runs here. Appended options win (argparse and --set keep the
# last value), so a command runs as written, only smaller.
SHRINK = {
    "train": ["--set", "train.iterations=2", "--set", "data.crop=[32, 64]", "--set", "data.batch_size=2",
              "--set", "data.workers=0", "--set", "data.max_val_images=2", "--set", "train.threads=1"],
    "bench": ["--methods", "kd", "--warmup", "0", "--repeats", "1", "--isolate", "none", "--crop", "32",
              "64", "--batch", "2", "--threads", "1"],
    "bench --pipeline": ["--threads", "1", "--workers", "0"],
    "grid plan": ["--max-side", "32", "--warmup", "0", "--repeats", "1", "--threads", "1"],
}
FIXTURE_ROOTS = {"/data/cityscapes": "fixtures/cityscapes"}


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def bash_commands(text: str) -> list[list[str]]:
    """Every command of the ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


COMMANDS = bash_commands(README)


def test_readme_commands_are_all_known_kinds() -> None:
    kinds = {argv[0] if argv[0] != "python" else " ".join(argv[:3]) for argv in COMMANDS}
    assert kinds <= {"make", "snakemake", "python -m harness", "tensorboard"}, kinds
    assert len(COMMANDS) >= 15


def _runnable(argv: list[str], venv: Path) -> tuple[list[str], str]:
    """The argv to run for a README command and the text its output must contain."""
    argv = [FIXTURE_ROOTS.get(a, a) for a in argv]
    argv = [re.sub(r"root: /data/cityscapes", f"root: {FIXTURE_ROOTS['/data/cityscapes']}", a) for a in argv]
    if argv[0] == "make":
        return ["make", "-n", *argv[1:], f"VENV={venv}"], "snakemake --cores" if "demo" in argv else "pytest"
    if argv[0] == "snakemake":
        if "--report" in argv:  # needs finished results: run by tests/test_workflow_e2e.py
            return [], ""
        return [SNAKEMAKE, *argv[1:], *(["-n"] if "-n" not in argv else [])], ""
    if argv[0] == "tensorboard":
        return [str(venv / "bin" / "tensorboard"), "--inspect", *argv[1:]], "val/miou"
    command = argv[3]
    if command == "models":  # needs the published checkpoint file: parsed by the import test below
        return [], ""
    if command == "grid":
        command = " ".join(argv[3:5])
    extra = SHRINK.get("bench --pipeline" if "--pipeline" in argv else command, [])
    return [sys.executable, *argv[1:], *extra], ""


def test_every_readme_command_runs(tmp_path: Path) -> None:
    """In README order, in a copy of the workflow with a small toycity and a Cityscapes-layout
    fixture; snakemake and make as dry runs, training and benchmarks shrunk."""
    from harness.data import prepare_dataset

    work = copy_workflow(tmp_path)
    prepare_dataset("toycity", work / "data/toycity", num_train=8, num_val=2, height=32, width=64)
    write_cityscapes(work / FIXTURE_ROOTS["/data/cityscapes"], n=2)
    _fake_cityscapes_table(work)
    venv = Path(sys.executable).parent.parent
    # as on the README's GPU box (8 GPUs): the slot commands dry-run on a CPU machine too
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_FAKE_GPUS": "8"}
    for argv in COMMANDS:
        runnable, expected = _runnable(argv, venv)
        if not runnable:
            continue
        cwd = ROOT if argv[0] == "make" else work
        result = subprocess.run(runnable, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        shown = shlex.join(argv)
        assert result.returncode == 0, \
            f"README command failed: {shown}\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        assert expected in result.stdout + result.stderr, f"{shown}: no {expected!r} in its output"


def test_the_report_command_is_run_by_the_end_to_end_test() -> None:
    assert ["snakemake", "--report", "report.html"] in COMMANDS
    assert '"--report", "report.html"' in (ROOT / "tests/test_workflow_e2e.py").read_text()


def _fake_cityscapes_table(work: Path) -> None:
    """results/table_cityscapes.csv from two finished-run records, for the README's compare."""
    import json

    from harness.report import published, tables
    from harness.report.runs import load_runs

    folders = []
    for method, miou in (("baseline", 70.0), ("heteroakd", 71.5)):
        folder = work / "fake_runs" / method
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({
            "miou": miou, "method": method, "student": "deeplabv3_mbv2", "seed": 0, "dataset": "cityscapes",
            "teacher": None if method == "baseline" else "segformer_b4", "protocol": "cirkd",
            "config": {"method": {"name": method, "preset": None, "options": {}}}}))
        folders.append(folder)
    pair = tables.PairSpec("segformer_b4", "deeplabv3_mbv2", "heterogeneous")
    figures = published.load_published(work / "results/published/published_results.csv")
    frame = tables.build_table(load_runs(folders), [pair], ["baseline", "heteroakd"], teacher_miou={},
                               published=figures)
    tables.write_frame(frame, work / "results/table_cityscapes.csv")


def test_two_commands_exist_and_ci_runs_the_test_command() -> None:
    commands = section("The two commands")
    assert "make demo" in commands and "make test" in commands
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    assert re.search(r"^readme-numbers: ", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_measurements_name_their_commit() -> None:
    """Every paragraph that reports a measurement names the commit it was measured at."""
    prose = re.sub(r"```.*?```", "", README, flags=re.S)  # a command's output is named by its prose
    paragraphs = [p for p in re.split(r"\n\s*\n", prose) if re.search(r"\b[Mm]easured\b", p)]
    assert len(paragraphs) >= 3
    for paragraph in paragraphs:
        if "unmeasured" in paragraph or "not measured" in paragraph:
            continue
        assert re.search(r"commit\s+`[0-9a-f]{7,40}`|commit=[0-9a-f]{7,40}", paragraph), paragraph[:300]
    if (ROOT / ".git").exists():
        for commit in set(re.findall(r"commit(?:\s+`|=)([0-9a-f]{7,40})", README)):
            known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT)
            assert known.returncode == 0, f"README names commit {commit}, which this repository lacks"


def test_demo_numbers_block_and_its_check() -> None:
    match = readme_numbers.BLOCK.search(README)
    assert match, "README lacks the <!-- demo-seed0 commit=... --> block"
    rows = readme_numbers.table_rows(match["table"])
    assert "deeplabv3_small (teacher)" in rows and "segformer_small (teacher)" in rows
    measured = match["table"]
    assert readme_numbers.differences(match["table"], measured, 0.05) == []
    drifted = measured.replace(rows["segformer_small (teacher)"][4], "62.63")
    problems = readme_numbers.differences(match["table"], drifted, 0.05)
    documented = rows["segformer_small (teacher)"][4]
    assert problems == [f"segformer_small (teacher) / alone: README {documented!r}, HEAD '62.63'"]
    updated = readme_numbers.updated_readme(README, drifted, "abcdef1")
    assert "<!-- demo-seed0 commit=abcdef1 -->" in updated and "62.63" in updated


def test_worked_example_of_a_new_method_registers_and_trains(tmp_path: Path) -> None:
    example = section("Adding a method")
    code = re.search(r"```python\n(.*?)```", example, re.S).group(1)
    name = re.search(r'@METHODS\.register\("(\w+)"\)', code).group(1)
    module = tmp_path / f"{name}.py"
    module.write_text(code)
    # In a fresh interpreter: registering the example must not leak into the other tests.
    check = textwrap.dedent(f"""
        import importlib.util, math, torch
        from harness.methods import METHODS, build_distiller
        from harness.models import build_model
        spec = importlib.util.spec_from_file_location("{name}", {str(module)!r})
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        assert "{name}" in METHODS.names()
        torch.manual_seed(0)
        student, teacher = build_model("segformer_tiny", 10), build_model("deeplabv3_small", 10)
        for preset in (None, *METHODS.get("{name}").presets):
            distiller = build_distiller("{name}", student.info, teacher.info, preset=preset)
            images, labels = torch.randn(2, 3, 64, 64), torch.randint(0, 10, (2, 64, 64))
            with torch.no_grad():
                out_t = teacher.eval()(images)
            terms = distiller(student(images), out_t, labels)
            assert terms and all(k.startswith("loss_") and math.isfinite(v.item())
                                 for k, v in terms.items()), terms
            student.zero_grad()
            sum(terms.values()).backward()
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
        print("ok", sorted(terms))
    """)
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def test_real_data_import_commands_parse() -> None:
    """The README's import commands name the CIRKD release file and are valid invocations."""
    import shlex

    from harness.cli import build_parser

    text = section("Running the paper grid on real data")
    commands = re.findall(r"^python -m harness models import .*$", text.replace("\\\n", ""), re.M)
    assert len(commands) == 2 and "deeplabv3_resnet101_citys_best_model.pth" in commands[0]
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[3:])
        assert args.func.__name__ == "run_import" and args.dataset == "cityscapes"


@pytest.mark.parametrize("argv, expected", [
    (["snakemake", "--cores", "8", "results/table_cityscapes.csv", "--config",
      "datasets={cityscapes: {root: /data/cityscapes}}"],
     [SNAKEMAKE, "--cores", "8", "results/table_cityscapes.csv", "--config",
      "datasets={cityscapes: {root: fixtures/cityscapes}}", "-n"]),
    (["python", "-m", "harness", "train", "--out", "runs/t"],
     [sys.executable, "-m", "harness", "train", "--out", "runs/t", *SHRINK["train"]]),
])
def test_commands_are_run_as_written_only_smaller(argv, expected) -> None:
    assert _runnable(argv, Path("/venv"))[0] == expected
