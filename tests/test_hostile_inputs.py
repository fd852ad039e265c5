"""Hostile and unlucky inputs (issue 12): each is refused in one line with exit status 2, and
leaves every file as it was (listings before and after), or is handled as documented in the
README's "Resuming and repeating runs"."""
from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import write_cityscapes
from fixtures_files import listing, refused
from PIL import Image

from harness.io import atomic_write_json, atomic_write_text
from harness.models import build_model, save_model

TINY = ["model.student=deeplabv3_tiny", "data.crop=[32, 32]", "data.batch_size=4",
        "data.workers=0", "train.iterations=4", "train.checkpoint_every=2", "train.eval_every=0",
        "train.threads=1"]


def train_args(root, out, *overrides):
    args = ["train", "--out", str(out)]
    for setting in [f"data.root={root}", *TINY, *overrides]:
        args += ["--set", setting]
    return args


class RunsACommand:
    """Unpickling this runs ``touch MARKER`` (what a hostile checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---- 1. no code from a checkpoint ----------------------------------------------------------------

@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_crafted_resume_checkpoint_is_refused_and_its_command_never_runs(toy_root, tmp_path, capsys,
                                                                         writer):
    marker = tmp_path / "command-ran"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    payload = {"config": {}, "iteration": 2, "student": RunsACommand(marker)}
    if writer == "torch.save":
        torch.save(payload, run / "checkpoints" / "last.pt")
    else:
        (run / "checkpoints" / "last.pt").write_bytes(pickle.dumps(payload))
    before = listing(tmp_path)
    refused(train_args(toy_root, run), capsys, str(run / "checkpoints" / "last.pt"),
            "objects other than tensors", "not loaded")
    assert not marker.exists()  # the command in the file never ran
    assert listing(tmp_path) == before


def test_crafted_pretrained_file_is_refused_and_its_command_never_runs(toy_root, tmp_path, capsys):
    marker = tmp_path / "command-ran"
    weights = tmp_path / "resnet.pth"
    torch.save({"state_dict": RunsACommand(marker)}, weights)
    before = listing(tmp_path)
    refused(train_args(toy_root, tmp_path / "run", f"model.pretrained={weights}"), capsys,
            str(weights), "objects other than tensors")
    assert not marker.exists()
    assert listing(tmp_path) == before


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    import random

    from harness.engine.seeding import rng_state, seed_everything, set_rng_state

    seed_everything(3)
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    torch.save({"rng": [rng_state()]}, tmp_path / "state.pt")
    expected = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist())
    seed_everything(99)
    set_rng_state(torch.load(tmp_path / "state.pt", weights_only=True)["rng"][0])
    assert (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3).tolist()) == expected


# ---- 4. every file of a split checked ------------------------------------------------------------

def test_data_check_reads_every_file_and_training_checks_every_header(tmp_path, capsys):
    root = write_cityscapes(tmp_path / "cs", n=4)
    last = "aachen_000003_000019"
    bad_values = root / f"gtFine/train/aachen/{last}_gtFine_labelIds.png"
    Image.fromarray(np.full((16, 32), 40, np.uint8)).save(bad_values)  # label id 40 > 33
    before = listing(tmp_path)
    refused(["data", "check", "cityscapes", "--root", str(root)], capsys, str(bad_values), "[40]")
    # training does not decode every file up front; an empty file is caught by its header
    empty = root / f"leftImg8bit/val/aachen/{last}_leftImg8bit.png"
    empty.write_bytes(b"")
    before = listing(tmp_path)
    run = tmp_path / "run"
    refused(train_args(root, run, "data.name=cityscapes", "model.student=deeplabv3_tiny"), capsys,
            str(empty), "empty (0 bytes)")
    refused(["data", "check", "cityscapes", "--root", str(root), "--split", "val"], capsys, str(empty))
    assert listing(tmp_path) == before


def test_corrupt_file_met_by_a_loader_worker_is_one_line(toy_root, tmp_path, capsys):
    import shutil

    root = tmp_path / "toycity"
    shutil.copytree(toy_root, root)
    target = sorted((root / "images" / "train").glob("*.png"))[-1]
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    run = tmp_path / "run"
    line = refused(train_args(root, run, "data.workers=1", "train.iterations=8"), capsys,
                   str(target), "replace or remove the file")
    assert "worker" not in line


# ---- 5. a line where a traceback was ---------------------------------------------------------------

def test_batch_of_one_with_a_pooled_batchnorm_is_refused(toy_root, tmp_path, capsys):
    run = tmp_path / "run"
    refused(train_args(toy_root, run, "data.batch_size=1"), capsys, "deeplabv3_tiny",
            "head.aspp.image_pool", "data.batch_size to at least 2")
    assert not run.exists()


@pytest.mark.parametrize("content, fragments", [
    (b"seed: 1\ntrain: {lr: 0.1\n", ["not valid YAML", "line 3", "fix its syntax"]),
    (b"seed: !!python/object/apply:os.system ['touch {marker}']\n",
     ["!!python/object/apply:os.system", "tags are not allowed"]),
    (b"seed: 1\nmodel: {student: deeplabv3_t\xefny}\n", ["not UTF-8", "byte 36"]),
])
def test_bad_config_files_are_one_line(toy_root, tmp_path, capsys, content, fragments):
    marker = tmp_path / "command-ran"
    config = tmp_path / "run.yaml"
    config.write_bytes(content.replace(b"{marker}", str(marker).encode()))
    before = listing(tmp_path)
    refused(["train", "--config", str(config), "--out", str(tmp_path / "run")], capsys,
            str(config), *fragments)
    assert not marker.exists() and listing(tmp_path) == before


def test_invalid_yaml_in_set_is_one_line(toy_root, tmp_path, capsys):
    refused(train_args(toy_root, tmp_path / "run", "data.crop=[32, 32"), capsys,
            "--set 'data.crop=[32, 32'", "not valid YAML", "close every bracket")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, fragment", [
    ('{"name": ["deeplabv3_tiny"], "num_classes": 10, "dataset": "toycity"}', "'name' must be"),
    ('{"name": "deeplabv3_tiny", "num_classes": "10", "dataset": "toycity"}', "'num_classes' must"),
    ('["deeplabv3_tiny", 10]', "not a mapping"),
])
def test_model_config_json_of_the_wrong_shape_is_one_line(toy_root, tmp_path, capsys, content,
                                                          fragment):
    folder = tmp_path / "model"
    save_model(build_model("deeplabv3_tiny", 10), folder, {"dataset": "toycity"})
    (folder / "config.json").write_text(content)
    before = listing(tmp_path)
    refused(["eval", "--model", str(folder), "--dataset", "toycity", "--root", str(toy_root),
             "--out", str(tmp_path / "eval.json")], capsys, str(folder / "config.json"), fragment)
    assert listing(tmp_path) == before


def write_finished_run(folder: Path, method: str, seed: int, miou: float) -> Path:
    folder.mkdir(parents=True)
    metrics = {"miou": miou, "best_miou": miou, "method": method, "student": "segformer_tiny",
               "teacher": None if method == "baseline" else "deeplabv3_small", "seed": seed,
               "dataset": "toycity", "protocol": "reference",
               "config": {"method": {"name": method, "preset": None, "options": {}}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.mark.parametrize("row, fragment", [
    ("cityscapes,val,a,b,kd,70,a paper, with a comma,", "line 3: 9 fields, expected 8"),
    ('cityscapes,val,a,b,kd,70,"a paper,\n', "line 4"),
    ("cityscapes,val,a,b,kd,70,caf\xe9 paper,", "not UTF-8"),
])
def test_malformed_published_row_is_one_line_and_keeps_the_table(tmp_path, capsys, row, fragment):
    runs = [write_finished_run(tmp_path / f"{m}{s}", m, s, 50.0 + s) for m in ("baseline", "kd")
            for s in (0, 1)]
    published = tmp_path / "published.csv"
    header = "dataset,split,teacher,student,method,miou,source,note\n"
    good = "cityscapes,val,a,b,kd,71,a paper,\n"
    published.write_bytes((header + good + row + "\n").encode("latin-1"))
    table = tmp_path / "table.csv"
    table.write_text("the previous table\n")
    before = listing(tmp_path)
    refused(["report", "table", *map(str, runs), "--pairs", "deeplabv3_small:segformer_tiny",
             "--methods", "baseline,kd", "--published", str(published), "--out", str(table)],
            capsys, str(published), fragment)
    assert listing(tmp_path) == before


@pytest.fixture
def read_only():
    """Make folders read-only for this process (``chattr +i`` when root ignores the mode bits);
    undone after the test."""
    made = []

    def make(folder: Path) -> None:
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
                pytest.skip("as root, a folder is read-only only with chattr +i, which failed here")
        else:
            folder.chmod(0o555)
        made.append(folder)

    yield make
    for folder in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_read_only_checkpoints_folder_is_refused_up_front(toy_root, tmp_path, capsys, read_only):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    read_only(run / "checkpoints")
    before = listing(tmp_path)
    refused(train_args(toy_root, run), capsys, str(run / "checkpoints"), "cannot be written",
            "chmod u+w")
    assert listing(tmp_path) == before


# ---- 6. results readable as any file the user writes -------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "table.csv", "a,b\n")
        atomic_write_json(tmp_path / "metrics.json", {"miou": 1.0})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "table.csv").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == mode


def test_atomic_rewrite_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old\n")
    path.chmod(0o640)
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o640


# ---- 3. every variant's options checked before any job ------------------------------------------

def workflow_config(tmp_path: Path, edit) -> Path:
    import yaml

    from harness.workflow.grid import DEFAULT_CONFIG

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    edit(config["datasets"]["toycity"])
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def set_option(method, name, value):
    return lambda toy: toy["methods"][method].setdefault("options", {}).__setitem__(name, value)


@pytest.mark.parametrize("edit, fragments", [
    (set_option("heteroakd", "lambda1", "0.1a"),
     ["datasets.toycity.methods.heteroakd.options.lambda1", "must be a number, got '0.1a'"]),
    (set_option("kd", "temperature", float("inf")),
     ["datasets.toycity.methods.kd.options.temperature", "finite number"]),
    (set_option("heteroakd", "lamda1", 0.5),
     ["unknown option(s) ['lamda1']", "lambda1", "datasets.toycity.methods.heteroakd.options"]),
    (lambda toy: toy["sensitivity"].__setitem__("options", {"lambda1": [0.1], "lamda2": [2.0]}),
     ["unknown option(s) ['lamda2']", "datasets.toycity.sensitivity.options"]),
    (lambda toy: toy["ablation"].__setitem__("presets", ["full", "no_kmn"]),
     ["no preset 'no_kmn'", "no_kmm"]),
])
def test_grid_check_validates_every_variants_options(tmp_path, capsys, edit, fragments):
    config = workflow_config(tmp_path, edit)
    before = listing(tmp_path)
    refused(["grid", "check", "--config", str(config), "--datasets", "toycity"], capsys, *fragments)
    assert listing(tmp_path) == before


# ---- 7. the published figures checked before Snakemake removes a table -----------------------------

def test_grid_check_validates_the_published_figures(tmp_path, capsys):
    published = tmp_path / "published.csv"
    published.write_text("dataset,split,teacher,student,method,miou,source,note\n"
                         "toycity,val,a,b,kd,70,a paper, with a comma,\n")
    config = workflow_config(tmp_path, lambda toy: None)
    text = config.read_text().replace("results/published/published_results.csv", str(published))
    config.write_text(text)
    before = listing(tmp_path)
    refused(["grid", "check", "--config", str(config), "--datasets", "toycity"], capsys,
            str(published), "line 2: 9 fields")
    assert listing(tmp_path) == before
