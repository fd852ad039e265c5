"""Joint train/eval transforms: repeatable from torch's seed, image and mask move together,
padding is 0 (image, after normalisation) and 255 (mask), masks are resized nearest."""
import numpy as np
import torch

from harness.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALIZATION,
    denormalise,
    eval_transform,
    train_transform,
)


def coded_pair(h=16, w=32, seed=0):
    """A label map and an image whose red channel encodes the label (label * 20)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 10, (h, w)).astype(np.uint8)
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = label * 20
    image[..., 1] = np.arange(w, dtype=np.uint8)[None, :] * 7  # breaks left-right symmetry
    return image, label


def red_to_label(image):
    red = denormalise(image)[0] * 255
    return torch.round(red / 20).long()


def test_normalization_constant_recorded():
    assert NORMALIZATION == "imagenet_rgb"
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)


def test_same_torch_seed_same_crop_other_seed_differs():
    image, label = coded_pair()
    transform = train_transform((12, 20), (0.5, 2.0), flip=True)
    results = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        results.append([transform(image, label) for _ in range(4)])
    for (img_a, lab_a), (img_b, lab_b) in zip(results[0], results[1]):
        assert torch.equal(img_a, img_b) and torch.equal(lab_a, lab_b)
    assert any(not torch.equal(a[0], c[0]) for a, c in zip(results[0], results[2]))


def test_numpy_and_python_rng_do_not_affect_crops():
    import random

    image, label = coded_pair()
    transform = train_transform((12, 20))
    torch.manual_seed(0)
    np.random.seed(1)
    random.seed(1)
    first = transform(image, label)
    torch.manual_seed(0)
    np.random.seed(2)
    random.seed(2)
    second = transform(image, label)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_flip_and_crop_keep_image_and_mask_aligned():
    image, label = coded_pair()
    transform = train_transform((10, 14), scale_range=(1.0, 1.0), flip=True)
    flipped = 0
    torch.manual_seed(0)
    for _ in range(20):
        img, lab = transform(image, label)
        assert img.shape == (3, 10, 14) and lab.shape == (10, 14) and lab.dtype == torch.int64
        assert torch.equal(red_to_label(img), lab)
        # green encodes the column: decreasing along x means the crop was flipped
        green = denormalise(img)[1, 0] * 255
        flipped += bool(green[0] > green[-1])
    assert 3 <= flipped <= 17  # p = 0.5 over 20 draws


def test_scale_two_resizes_mask_nearest():
    image, label = coded_pair()
    transform = train_transform((32, 64), scale_range=(2.0, 2.0), flip=False)
    torch.manual_seed(0)
    _, lab = transform(image, label)
    expected = torch.from_numpy(label).long().repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(lab, expected)  # nearest: every value is an original label, 2x2 blocks


def test_pad_fills_image_zero_after_normalisation_and_mask_ignore():
    image, label = coded_pair(h=16, w=32)
    transform = train_transform((24, 40), scale_range=(1.0, 1.0), flip=False)
    torch.manual_seed(0)
    img, lab = transform(image, label)
    assert img.shape == (3, 24, 40)
    # padding goes to the bottom/right, the crop of the padded 24x40 canvas is the whole canvas
    assert torch.equal(lab[:16, :32], torch.from_numpy(label).long())
    assert (lab[16:] == 255).all() and (lab[:, 32:] == 255).all()
    assert (img[:, 16:] == 0).all() and (img[:, :, 32:] == 0).all()
    assert (lab == 255).sum() == 24 * 40 - 16 * 32


def test_eval_transform_is_whole_image():
    image, label = coded_pair(h=13, w=29)
    img, lab = eval_transform()(image, label)
    assert img.shape == (3, 13, 29) and torch.equal(lab, torch.from_numpy(label).long())
    assert torch.allclose(denormalise(img) * 255, torch.from_numpy(image).permute(2, 0, 1).float(), atol=1e-3)


def test_eval_transform_shrinks_to_fit_and_never_enlarges():
    image, label = coded_pair(h=40, w=64)
    img, lab = eval_transform(max_size=(16, 16))(image, label)
    assert img.shape == (3, 10, 16) and lab.shape == (10, 16)  # one factor: 16/64 = 0.25
    assert set(lab.unique().tolist()) <= set(np.unique(label).tolist())  # nearest: no new values
    # a mask value sits where the label had it: the nearest source pixel of (i, j) is (4i+k, 4j+k)
    hits = [(lab[i, j] == torch.from_numpy(label[4 * i:4 * i + 4, 4 * j:4 * j + 4]).long()).any()
            for i in range(10) for j in range(16)]
    assert all(hits)
    small, small_label = eval_transform(max_size=(64, 128))(image, label)
    whole, whole_label = eval_transform()(image, label)
    assert torch.equal(small, whole) and torch.equal(small_label, whole_label)  # fits: untouched
