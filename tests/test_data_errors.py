"""Each bad input is a one-line DataError naming the file/folder (and the layout where it helps):
up front in check_dataset / at construction, and per item in __getitem__."""
import re

import numpy as np
import pytest
from fixtures_data import H, W, write_ade20k, write_camvid, write_cityscapes, write_voc
from PIL import Image

from harness.cli import main as cli_main
from harness.data import build_dataset, check_dataset
from harness.errors import DataError


def raises_data_error(fn, *patterns):
    with pytest.raises(DataError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for pattern in patterns:
        assert pattern in message, (pattern, message)
    return message


@pytest.mark.parametrize("name", ["cityscapes", "voc", "ade20k", "camvid"])
def test_missing_root(tmp_path, name):
    root = tmp_path / "absent"
    raises_data_error(lambda: check_dataset(name, root), str(root), "does not exist", "expected layout")


def test_wrong_layout_names_missing_folder_and_layout(tmp_path):
    (tmp_path / "images").mkdir()  # e.g. an ADE20K folder given as Cityscapes
    raises_data_error(lambda: check_dataset("cityscapes", tmp_path), str(tmp_path / "leftImg8bit" / "train"),
                      "leftImg8bit/{train,val}/<city>/*_leftImg8bit.png")
    write_ade20k(tmp_path / "ade")
    raises_data_error(lambda: check_dataset("camvid", tmp_path / "ade"), str(tmp_path / "ade" / "train"),
                      "{train,val,test}annot")


def test_voc_missing_split_list(tmp_path):
    write_voc(tmp_path)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").unlink()
    raises_data_error(lambda: check_dataset("voc", tmp_path), "val.txt", "is missing")


def test_empty_split(tmp_path):
    write_camvid(tmp_path, {"train": 0, "val": 0})
    raises_data_error(lambda: check_dataset("camvid", tmp_path, ["train"]), "no images found", str(tmp_path))


def test_image_without_label_found_up_front(tmp_path):
    write_cityscapes(tmp_path, n=3)
    # the last pair: check_dataset opens only the first files, but lists every pair
    label = tmp_path / "gtFine/val/aachen/aachen_000002_000019_gtFine_labelIds.png"
    label.unlink()
    image = tmp_path / "leftImg8bit/val/aachen/aachen_000002_000019_leftImg8bit.png"
    raises_data_error(lambda: check_dataset("cityscapes", tmp_path), str(image), "has no label", str(label))
    raises_data_error(lambda: build_dataset("cityscapes", tmp_path, "val", train=False), str(image))


def test_corrupt_image_up_front_and_per_item(tmp_path):
    write_camvid(tmp_path, {"train": 3, "val": 1})
    bad = tmp_path / "train" / "0001TP_000000.png"
    bad.write_bytes(b"not a png at all")
    raises_data_error(lambda: check_dataset("camvid", tmp_path), "cannot read image", str(bad))
    dataset = build_dataset("camvid", tmp_path, "train", train=True, crop=(8, 8))  # listing only
    raises_data_error(lambda: dataset[0], "cannot read image", str(bad))
    assert dataset[1][0].shape == (3, 8, 8)


def test_truncated_image_is_reported(tmp_path):
    write_ade20k(tmp_path)
    bad = tmp_path / "images" / "training" / "ADE_train_00000001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    dataset = build_dataset("ade20k", tmp_path, "train", train=False)
    raises_data_error(lambda: dataset[1], str(bad))


def test_label_value_out_of_range(tmp_path):
    write_camvid(tmp_path, {"train": 2, "val": 1})
    bad = tmp_path / "trainannot" / "0001TP_000000.png"
    label = np.zeros((H, W), np.uint8)
    label[0, 0] = 12  # 11 classes + void 11; 12 is neither
    Image.fromarray(label).save(bad)
    message = raises_data_error(lambda: check_dataset("camvid", tmp_path), str(bad), "[12]",
                                "0..10, 11 (void) or 255")
    assert re.search(r"outside the class range", message)


def test_cityscapes_label_id_out_of_range_per_item(tmp_path):
    write_cityscapes(tmp_path, n=4)
    bad = tmp_path / "gtFine/train/aachen/aachen_000003_000019_gtFine_labelIds.png"
    Image.fromarray(np.full((H, W), 40, np.uint8)).save(bad)
    check_dataset("cityscapes", tmp_path)  # only the first files are opened up front
    dataset = build_dataset("cityscapes", tmp_path, "train", train=False)
    raises_data_error(lambda: dataset[3], str(bad), "[40]", "labelIds 0..33 or 255")


def test_voc_rgb_label_refused(tmp_path):
    write_voc(tmp_path)
    bad = tmp_path / "SegmentationClass" / "2008_000000.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(bad)
    raises_data_error(lambda: check_dataset("voc", tmp_path, ["val"]), str(bad), "mode RGB", "palette")


def test_size_mismatch(tmp_path):
    write_ade20k(tmp_path)
    bad = tmp_path / "annotations" / "validation" / "ADE_valid_00000000.png"
    Image.fromarray(np.zeros((H, W - 2), np.uint8)).save(bad)
    raises_data_error(lambda: check_dataset("ade20k", tmp_path, ["val"]), str(bad), "32x16", "30x16",
                      "same size")


def test_unknown_dataset_lists_names(tmp_path):
    raises_data_error(lambda: check_dataset("kitti", tmp_path), "kitti", "cityscapes", "toycity")


def test_cli_check_exit_codes(tmp_path, capsys):
    write_camvid(tmp_path, {"train": 1, "val": 1})
    assert cli_main(["data", "check", "camvid", "--root", str(tmp_path)]) == 0
    assert cli_main(["data", "check", "camvid", "--root", str(tmp_path), "--split", "test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(tmp_path / "test") in err[0]
    assert cli_main(["data", "prepare", "camvid", "--root", str(tmp_path / "nope")]) == 2
