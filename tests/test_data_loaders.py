"""Real-dataset loaders on tiny fixtures in their exact layouts: label maps, splits, shapes."""
import numpy as np
import pytest
import torch
from fixtures_data import (
    ADE_TRAIN,
    CAMVID_TRAIN,
    CITYSCAPES_TRAIN,
    VOC_VALUES,
    H,
    W,
    column_cycle,
    write_ade20k,
    write_camvid,
    write_cityscapes,
    write_voc,
)
from PIL import Image

from harness.data import DATASETS, build_dataset, check_dataset
from harness.data.cityscapes import label_ids_table


def eval_item(name, root, split, index=0):
    dataset = build_dataset(name, root, split, train=False)
    return dataset, *dataset[index]


def test_registry_names_and_class_counts():
    expected = {"toycity": 10, "cityscapes": 19, "voc": 21, "ade20k": 150, "camvid": 11}
    assert DATASETS.names() == sorted(expected)
    for name, k in expected.items():
        cls = DATASETS.get(name)
        assert cls.num_classes == k == len(cls.class_names) == len(set(cls.class_names))


def test_cityscapes_official_mapping_table():
    lut = label_ids_table()
    train_ids = {i: int(lut[i]) for i in range(34) if lut[i] != 255}
    # the 19 evaluated classes, in train-id order
    assert train_ids == {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                         24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    assert lut[255] == 255 and lut[34] == -1 and lut[200] == -1


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    write_cityscapes(tmp_path, n=2, cities=("aachen", "bremen"))
    dataset, image, label = eval_item("cityscapes", tmp_path, "train")
    assert len(dataset) == 4 and len(build_dataset("cityscapes", tmp_path, "val", train=False)) == 4
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert label.shape == (H, W) and label.dtype == torch.int64
    assert torch.equal(label, torch.from_numpy(column_cycle(CITYSCAPES_TRAIN)).long())
    assert dataset.pairs[0][1].name.endswith("_gtFine_labelIds.png")


def test_cityscapes_prefers_label_train_ids(tmp_path):
    write_cityscapes(tmp_path, train_ids=True)
    dataset, _, label = eval_item("cityscapes", tmp_path, "val")
    assert dataset.pairs[0][1].name.endswith("_gtFine_labelTrainIds.png")
    assert torch.equal(label, torch.from_numpy(column_cycle(CITYSCAPES_TRAIN)).long())


def test_voc_train_aug_and_palette_val(tmp_path):
    write_voc(tmp_path, n_train=3, n_val=2)
    train = build_dataset("voc", tmp_path, "train_aug", train=False)
    val, image, label = eval_item("voc", tmp_path, "val")
    assert (len(train), len(val)) == (3, 2)
    assert image.shape == (3, H, W)
    # palette indices (not RGB), 255 boundary kept as ignore
    assert Image.open(val.pairs[0][1]).mode == "P"
    expected = torch.from_numpy(column_cycle(VOC_VALUES)).long()
    assert torch.equal(label, expected)
    assert torch.equal(train[2][1], expected)
    assert sorted(label.unique().tolist()) == [0, 1, 15, 20, 255]
    check_dataset("voc", tmp_path)  # default splits: train_aug, val


def test_ade20k_zero_ignored_others_minus_one(tmp_path):
    write_ade20k(tmp_path, n=2)
    dataset, image, label = eval_item("ade20k", tmp_path, "val")
    assert len(dataset) == 2 and image.shape == (3, H, W)
    assert dataset.pairs[0][0].parent.name == "validation"
    assert torch.equal(label, torch.from_numpy(column_cycle(ADE_TRAIN)).long())


def test_camvid_void_ignored_and_three_splits(tmp_path):
    write_camvid(tmp_path, {"train": 3, "val": 2, "test": 1})
    sizes = [len(build_dataset("camvid", tmp_path, s, train=False)) for s in ("train", "val", "test")]
    assert sizes == [3, 2, 1]
    _, _, label = eval_item("camvid", tmp_path, "test")
    assert torch.equal(label, torch.from_numpy(column_cycle(CAMVID_TRAIN)).long())


def test_train_items_are_crops_with_valid_labels(tmp_path):
    write_cityscapes(tmp_path)
    dataset = build_dataset("cityscapes", tmp_path, "train", train=True, crop=(24, 40),
                            scale_range=(0.5, 2.0))
    torch.manual_seed(0)
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.shape == (3, 24, 40) and label.shape == (24, 40)
        assert set(label.unique().tolist()) <= {0, 1, 2, 13, 18, 255}


def test_max_images_takes_the_first_sorted(tmp_path):
    write_camvid(tmp_path, {"train": 3, "val": 2})
    dataset = build_dataset("camvid", tmp_path, "train", train=False, max_images=2)
    assert [p[0].name for p in dataset.pairs] == ["0001TP_000000.png", "0001TP_000001.png"]


def test_eval_image_is_imagenet_normalised(tmp_path):
    write_camvid(tmp_path, {"train": 1, "val": 1})
    dataset, image, _ = eval_item("camvid", tmp_path, "val")
    raw = np.asarray(Image.open(dataset.pairs[0][0])).astype(np.float64) / 255
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = torch.from_numpy(((raw - mean) / std).transpose(2, 0, 1)).float()
    assert torch.allclose(image, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["cityscapes", "voc", "ade20k", "camvid"])
def test_unknown_split_lists_valid_ones(tmp_path, name):
    from harness.errors import DataError

    with pytest.raises(DataError, match="valid splits"):
        build_dataset(name, tmp_path, "nosuchsplit", train=False)


def test_a_small_split_is_decoded_once_and_its_items_stay_as_read(toy_root, monkeypatch):
    """toycity fits the cache: a second read of a pair opens no file, and neither training
    transforms nor callers change what the cache holds; a split over the limit is never kept."""
    from harness.data import build_dataset, files

    data = build_dataset("toycity", toy_root, "train", train=True, crop=(16, 32))
    reads = []
    real = files.PairedDataset.load_pair.__func__

    def counted(cls, image_path, label_path):
        reads.append(image_path)
        return real(cls, image_path, label_path)

    monkeypatch.setattr(files.PairedDataset, "load_pair", classmethod(counted))
    torch.manual_seed(0)
    for _ in range(5):
        for index in range(len(data)):
            image, label = data[index]
            image.mul_(0)  # a caller writing into an item must not reach the cache
            label.fill_(0)
    assert len(reads) == 16
    for index, (image_path, label_path) in enumerate(data.pairs):
        cached_image, cached_label = data.decoded(index)
        fresh_image, fresh_label = real(type(data), image_path, label_path)
        assert np.array_equal(cached_image, fresh_image) and np.array_equal(cached_label, fresh_label)
    monkeypatch.setattr(files, "CACHE_BYTES", 10)
    big = build_dataset("toycity", toy_root, "train", train=True, crop=(16, 32))
    reads.clear()
    big[0], big[0]
    assert len(reads) == 2
