"""The recorded-runs store: fingerprints, `harness record`, exact round trips, refusals."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.data import dataset_fingerprint
from harness.errors import DataError
from harness.report import recorded_runs as R
from harness.report.compare import compare_text
from harness.report.runs import reuse_key

TRAIN = {"aux_weight": 0.4, "iterations": 300, "lr": 0.05, "optimizer": "sgd", "momentum": 0.9,
         "threads": 1, "log_every": 10, "amp": "auto"}


def toycity_root(tmp_path: Path, seed: int = 0) -> Path:
    root = tmp_path / f"toycity_s{seed}"
    root.mkdir()
    params = {"seed": seed, "num_train": 400, "num_val": 100, "height": 128, "width": 256}
    (root / "manifest.json").write_text(json.dumps({"name": "toycity", "version": 1, "params": params}))
    return root


def write_run(folder: Path, root: Path, *, method: str, seed: int, miou: float,
              teacher: str | None = None, crop: tuple[int, int] = (64, 128), threads: int = 1) -> Path:
    """A run folder as `harness train` leaves it, with the fields the store reads."""
    folder.mkdir(parents=True)
    metrics = {
        "miou": miou, "best_miou": miou + 0.125, "per_class_iou": {"sky": 76.65605529992462, "car": None},
        "iterations": 300, "method": method, "student": "deeplabv3_tiny", "teacher": teacher,
        "dataset": "toycity", "seed": seed, "protocol": "cirkd", "align_corners": False, "lr": 0.025,
        "teacher_model": None if teacher is None else
        {"path": "/x/model", "sha256": "ab" * 32, "dataset": "toycity", "miou": 52.3},
        "versions": {"torch": "2.14.1", "python": "3.11.7"}, "git_commit": "1efea38",
        "config": {"protocol": "cirkd",
                   "data": {"name": "toycity", "root": str(root), "crop": list(crop), "batch_size": 8,
                            "train_split": "train", "val_split": "val", "workers": 0},
                   "method": {"name": method, "preset": None, "options": {"t": 4.0} if teacher else {}},
                   "train": {**TRAIN, "threads": threads}},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture()
def grid(tmp_path: Path) -> Path:
    """runs/toycity with a student alone and a KD run for seeds 0 and 1."""
    root, runs = toycity_root(tmp_path), tmp_path / "runs" / "toycity"
    for seed in (0, 1):
        write_run(runs / "students" / "deeplabv3_tiny" / f"seed{seed}", root, method="baseline",
                  seed=seed, miou=35.82473140751033 + seed, threads=1 + seed)
        write_run(runs / "segformer_small__deeplabv3_tiny" / "kd" / f"seed{seed}", root, method="kd",
                  seed=seed, miou=40.1 + seed, teacher="segformer_small")
    return runs


def test_dataset_fingerprints_toycity_and_a_file_list_hash(tmp_path: Path) -> None:
    assert dataset_fingerprint("toycity", toycity_root(tmp_path, seed=3), ["train", "val"]) == {
        "name": "toycity", "generator_version": 1,
        "params": {"seed": 3, "num_train": 400, "num_val": 100, "height": 128, "width": 256}}
    root = tmp_path / "camvid"
    for split in ("train", "val"):
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True)
            (root / folder / "a.png").write_bytes(b"")
    expected = {s: hashlib.sha256(f"{s}/a.png\t{s}annot/a.png\n".encode()).hexdigest()
                for s in ("train", "val")}
    assert dataset_fingerprint("camvid", root, ["train", "val"]) == {"name": "camvid", **expected}


def test_fingerprint_keeps_the_schedule_and_leaves_out_mechanics(grid: Path) -> None:
    store = R.collect(grid)
    # threads differ between the two baseline seeds: one fingerprint; the KD runs' teacher: another
    assert len({r["fingerprint"] for r in store.rows if r["method"] == "baseline"}) == 1
    assert len(store.fingerprints) == 2
    kd = next(p for p in store.fingerprints.values() if p["teacher"] is not None)
    assert kd["teacher"] == {"name": "segformer_small", "sha256": "ab" * 32, "miou": 52.3}
    assert kd["schedule"] == {"aux_weight": 0.4, "iterations": 300, "lr": 0.05, "optimizer": "sgd",
                              "momentum": 0.9}
    assert kd["data"] == {"crop": [64, 128], "batch_size": 8, "train_split": "train", "val_split": "val"}
    assert kd["dataset"]["params"]["seed"] == 0


def test_record_round_trips_exactly(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "recorded" / "runs" / "toycity"
    assert main(["record", "--runs", str(grid), "--out", str(out)]) == 0
    store = R.load_store(out)
    assert len(store.rows) == 4
    by_key = {(r["variant"], int(r["seed"])): r for r in store.rows}
    kd1 = by_key[("kd", 1)]
    metrics = json.loads((grid / "segformer_small__deeplabv3_tiny/kd/seed1/metrics.json").read_text())
    assert float(kd1["miou"]) == metrics["miou"] and float(kd1["best_miou"]) == metrics["best_miou"]
    assert json.loads(kd1["per_class_iou"]) == metrics["per_class_iou"]
    assert json.loads(kd1["options"]) == {"preset": None, "options": {"t": 4.0}}
    assert (kd1["teacher"], kd1["student"], kd1["method"], kd1["protocol"]) == \
        ("segformer_small", "deeplabv3_tiny", "kd", "cirkd")
    assert (kd1["commit"], kd1["versions"]) == ("1efea38", "python=3.11.7;torch=2.14.1")
    assert by_key[("baseline", 0)]["teacher"] == "" and by_key[("baseline", 0)]["miou"] == "35.82473140751033"
    # the written text is what the loaded store writes again, byte for byte
    runs_text, prints_text = R.store_text(store)
    assert (out / R.RUNS_FILE).read_text() == runs_text
    assert (out / R.FINGERPRINTS_FILE).read_text() == prints_text
    # recording again is idempotent; a new seed adds one row and keeps the others
    assert main(["record", "--runs", str(grid), "--out", str(out)]) == 0
    assert (out / R.RUNS_FILE).read_text() == runs_text
    write_run(grid / "students" / "deeplabv3_tiny" / "seed2", tmp_path / "toycity_s0",
              method="baseline", seed=2, miou=30.0)
    assert main(["record", "--runs", str(grid), "--out", str(out)]) == 0
    assert len(R.load_store(out).rows) == 5


def test_record_refuses_bad_input_before_writing(grid: Path, tmp_path: Path, capsys) -> None:
    wrong = tmp_path / "store" / "cityscapes"
    assert main(["record", "--runs", str(grid), "--out", str(wrong)]) == 2
    assert "named toycity" in capsys.readouterr().err and not wrong.exists()
    out = tmp_path / "store" / "toycity"
    (grid / "broken" / "seed0").mkdir(parents=True)
    (grid / "broken" / "seed0" / "metrics.json").write_text('{"miou": 5')
    assert main(["record", "--runs", str(grid), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid JSON" in err and not out.exists()


def _store(tmp_path: Path, grid: Path) -> Path:
    out = tmp_path / "s" / "toycity"
    R.write_store(R.collect(grid), out)
    return out


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("35.82473140751033", "135.8"), "outside [0, 100]"),
    (lambda t: t.replace(",cirkd,", ",,", 1), "empty protocol"),
    (lambda t: t.replace(",300,", ",3x0,", 1), "iterations '3x0' is not a whole number"),
    (lambda t: t.replace('""sky"":76.65605529992462', '""sky"":""x""', 1), "per_class_iou sky 'x'"),
    (lambda t: t + t.splitlines()[-1] + "\n", "the same run as line"),
    (lambda t: t.replace("toycity,", "voc,", 1), "move the row to results/recorded/runs/voc/"),
])
def test_load_store_refuses_bad_rows(grid: Path, tmp_path: Path, edit, message: str) -> None:
    out = _store(tmp_path, grid)
    runs = out / R.RUNS_FILE
    runs.write_text(edit(runs.read_text()))
    with pytest.raises(DataError, match="line [0-9]+") as err:
        R.load_store(out)
    assert message in str(err.value)


def test_load_store_refuses_edited_fingerprints_and_missing_ids(grid: Path, tmp_path: Path) -> None:
    out = _store(tmp_path, grid)
    prints = out / R.FINGERPRINTS_FILE
    text = prints.read_text()
    prints.write_text(text.replace('"iterations": 300', '"iterations": 3000', 1))
    with pytest.raises(DataError, match="does not hash to its id"):
        R.load_store(out)
    prints.write_text("{}")
    with pytest.raises(DataError, match="is not in fingerprints.json"):
        R.load_store(out)
    assert R.load_store(tmp_path / "empty" / "cityscapes") == R.Store([], {})


def test_differences_name_each_differing_field() -> None:
    a = {"data": {"crop": [64, 128], "batch_size": 8}, "teacher": {"sha256": "ab", "miou": 52.3}}
    b = {"data": {"crop": [96, 192], "batch_size": 8}, "teacher": None}
    assert R.differences(a, a) == []
    assert R.differences(a, b) == [("data.crop", [64, 128], [96, 192]),
                                   ("teacher", {"sha256": "ab", "miou": 52.3}, None)]
    assert R.differences({"x": 1}, {"x": 1, "y": 2}) == [("y", None, 2)]


def test_reusable_matches_the_fingerprint_and_refuses_a_mismatch_in_strict(grid: Path) -> None:
    from harness.errors import ConfigError

    store = R.collect(grid)
    kd = {"teacher": "segformer_small", "student": "deeplabv3_tiny", "variant": "kd", "seed": 1}
    wanted = dict(next(p for p in store.fingerprints.values() if p["teacher"] is not None))
    row, reason = R.reusable(store, kd, wanted, "true")
    assert (row["variant"], row["seed"], row["miou"], reason) == ("kd", "1", "41.1", None)
    assert R.reusable(store, kd, wanted, "false") == (None, None)
    assert R.reusable(store, {**kd, "seed": 2}, wanted, "strict") == (None, None)  # not recorded
    other = {**wanted, "data": {**wanted["data"], "crop": [96, 192]}}
    row, reason = R.reusable(store, kd, other, "true")
    assert row is None and "differs in data.crop (recorded [64, 128], this run [96, 192])" in reason
    with pytest.raises(ConfigError, match="differs in data.crop .*reuse_recorded=strict") as err:
        R.reusable(store, kd, other, "strict")
    assert "\n" not in str(err.value)
    teacher = {**wanted, "teacher": {**wanted["teacher"], "sha256": "cd" * 32}}
    with pytest.raises(ConfigError, match="differs in teacher.sha256"):
        R.reusable(store, kd, teacher, "strict")
    with pytest.raises(ConfigError, match="reuse_recorded 'maybe' is not one of"):
        R.reusable(store, kd, wanted, "maybe")


def test_a_table_takes_recorded_runs_as_if_just_run(grid: Path, tmp_path: Path, capsys) -> None:
    """Recorded baseline runs (store) beside our KD runs (folders): the table's rows carry the
    stored mIoU exactly, the source of each row, and the KD delta paired by seed."""
    store_dir = tmp_path / "store" / "toycity"
    store = R.collect(grid)
    R.write_store(R.Store([r for r in store.rows if r["method"] == "baseline"], store.fingerprints),
                  store_dir)
    keys = [reuse_key(r) for r in R.load_store(store_dir).rows]
    assert keys[0].startswith("_:deeplabv3_tiny:baseline:0:")
    out = tmp_path / "table.csv"
    kd = [str(grid / "segformer_small__deeplabv3_tiny" / "kd" / f"seed{s}") for s in (0, 1)]
    assert main(["report", "table", *kd, "--pairs", "segformer_small:deeplabv3_tiny:heterogeneous",
                 "--methods", "baseline,kd", "--published", "", "--recorded-runs", str(store_dir),
                 "--reuse", *keys, "--out", str(out)]) == 0
    table = pd.read_csv(out, dtype={"mious": str})
    assert list(table.source) == ["recorded@1efea38", "ours"]
    assert table.mious[0] == "35.8247 36.8247"  # the stored values, seed 0 and 1
    assert table.miou_mean[0] == pytest.approx(35.82473140751033 + 0.5, abs=1e-4)
    assert table.delta[1] == pytest.approx((40.1 + 41.1) / 2 - (35.82473140751033 + 0.5), abs=1e-4)
    pivot = out.with_suffix(".md").read_text()
    assert "- recorded runs: 1 of 2 rows take runs recorded in" in pivot
    assert "36.32 ± 0.71 †" in pivot and "- †: recorded runs (recorded@1efea38;" in pivot
    text = compare_text(out)
    assert "rows by origin: 1 ours, 1 recorded@1efea38" in text
    lines = text.splitlines()  # ranked: KD (40.6) above the student alone (36.3)
    assert lines[1].split()[3:5] == ["1", "kd"] and lines[2].split()[3:5] == ["2", "baseline"]
    assert "ours" in lines[1].split() and "recorded@1efea38" in lines[2].split()
    assert main(["report", "table", *kd, "--pairs", "segformer_small:deeplabv3_tiny",
                 "--methods", "baseline,kd", "--published", "", "--recorded-runs", str(store_dir),
                 "--reuse", keys[0].replace(":0:", ":7:"), "--out", str(out)]) == 2
    assert f"{store_dir} lack {keys[0].replace(':0:', ':7:')};" in capsys.readouterr().err


def test_an_empty_store_says_so_in_the_table(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.csv"
    runs = [str(p.parent) for p in sorted(grid.rglob("metrics.json"))]
    assert main(["report", "table", *runs, "--pairs", "segformer_small:deeplabv3_tiny",
                 "--methods", "baseline,kd", "--published", "",
                 "--recorded-runs", str(tmp_path / "empty" / "toycity"), "--out", str(out)]) == 0
    assert "holds none yet, so every row was trained here" in out.with_suffix(".md").read_text()
    assert "†" not in out.with_suffix(".md").read_text()
    assert set(pd.read_csv(out).source) == {"ours"}
