"""The README's promises that code can check: its worked example of a new method registers and
trains, and the two commands it gives exist in the Makefile and in .ci/run."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_two_commands_exist_and_ci_runs_the_test_command() -> None:
    commands = section("The two commands")
    assert "make demo" in commands and "make test" in commands
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: ", makefile, re.M) and re.search(r"^test: ", makefile, re.M)
    assert "make test" in (ROOT / ".ci/run").read_text()


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
