"""Tests for solo_lib.data.augment: every kept mask must stay on its own label, iscrowd and box.

The synthetic image paints instance k with a colour that encodes (k, label) on a black
background, with gaps of at least 4 px between instances. Bilinear resizing then only ever
mixes one instance colour with black, so a resampled pixel is ``w * colour`` and the ratios
R/B and G/B still decode (k, label): the image itself tells which instance a mask shows,
independently of the code under test.
"""

import numpy as np
import pytest
import tensorflow as tf

from solo_lib.data import augment as aug

H, W = 48, 64
LABELS = np.array([2, 0, 3, 1, 2, 3], np.int32)  # neighbours differ: a shift changes labels
ISCROWD = np.array([False, True, False, False, True, False])  # not all equal, ditto
# (y0, y1, x0, x1) with exclusive ends. Instance 0 alone occupies the columns x < 12.
RECTS = [(2, 12, 2, 10), (2, 20, 14, 34), (4, 16, 40, 62),
         (24, 44, 14, 26), (26, 42, 30, 46), (24, 46, 50, 61)]
ELLIPSE = 4  # this instance is an ellipse inscribed in its rectangle, not a rectangle
BLUE = 200


def colour(k):
    return np.array([40 * k + 20, 60 * LABELS[k] + 30, BLUE], np.uint8)


def numpy_boxes(masks):
    """Obviously-correct tight boxes [x0, y0, x1, y1], exclusive right/bottom."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(ys):
            boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return boxes


def make_sample(keep=range(len(RECTS))):
    keep = list(keep)
    image = np.zeros((H, W, 3), np.uint8)
    masks = np.zeros((len(keep), H, W), np.uint8)
    yy, xx = np.mgrid[:H, :W]
    for i, k in enumerate(keep):
        y0, y1, x0, x1 = RECTS[k]
        inside = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
        if k == ELLIPSE:
            cy, cx, ry, rx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
            inside &= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        masks[i] = inside
        image[inside] = colour(k)
    return {"image": image, "masks": masks, "labels": LABELS[keep], "iscrowd": ISCROWD[keep],
            "boxes": numpy_boxes(masks), "image_id": np.int64(17)}


def to_numpy(sample):
    return {key: np.asarray(value) for key, value in sample.items()}


def assert_same(a, b):
    a, b = to_numpy(a), to_numpy(b)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def decode(image):
    """Per pixel: (k, label) from the colour ratios, and whether the pixel is mostly instance."""
    rgb = image.astype(np.float64)
    blue = np.maximum(rgb[..., 2], 1.0)
    k = np.rint((rgb[..., 0] * BLUE / blue - 20) / 40).astype(int)
    label = np.rint((rgb[..., 1] * BLUE / blue - 30) / 60).astype(int)
    return k, label, rgb[..., 2]


def check_alignment(out, min_pixels):
    """Asserts that each kept mask shows its own instance. Returns the original indices kept."""
    out = to_numpy(out)
    image, masks = out["image"], out["masks"].astype(bool)
    n = len(masks)
    assert masks.shape == (n,) + image.shape[:2]
    assert out["labels"].shape == out["iscrowd"].shape == (n,)
    np.testing.assert_array_equal(out["boxes"], numpy_boxes(masks))
    k_map, label_map, blue = decode(image)
    origins = []
    for i in range(n):
        assert masks[i].sum() >= min_pixels
        # Every mask pixel has instance weight >= 0.5 (blue >= 100) and decodes to one instance.
        assert blue[masks[i]].min() >= 99, f"mask {i} covers background"
        ks, labels = np.unique(k_map[masks[i]]), np.unique(label_map[masks[i]])
        assert len(ks) == 1 and len(labels) == 1, f"mask {i} covers several instances"
        k = int(ks[0])
        assert labels[0] == LABELS[k], "image colour disagrees with the painted label"
        assert out["labels"][i] == LABELS[k], f"mask {i} shows instance {k}, wrong label"
        assert out["iscrowd"][i] == ISCROWD[k], f"mask {i} shows instance {k}, wrong iscrowd"
        origins.append(k)
    assert origins == sorted(set(origins)), "instances reordered or duplicated"
    # Conversely: a pixel that is mostly instance k (blue > 100) lies in k's kept mask, and an
    # instance was dropped only if fewer than min_pixels such pixels remain.
    strong = blue > 100
    for k in range(len(RECTS)):
        pixels = strong & (k_map == k)
        if k in origins:
            assert not np.any(pixels & ~masks[origins.index(k)])
        else:
            assert pixels.sum() < min_pixels, f"instance {k} dropped but still visible"
    return origins


# 1. Alignment under random flip + scale + crop.
ALIGN_CONFIG = aug.AugmentConfig(flip_prob=0.5, brightness_delta=0.0, scale_range=(0.8, 1.25),
                                 crop_size=(30, 40), min_mask_pixels=12)


def test_augment_keeps_instances_aligned_eager():
    sample = make_sample()
    for seed in range(12):
        check_alignment(aug.augment(sample, [seed, 3], ALIGN_CONFIG), 12)


def test_augment_keeps_instances_aligned_in_dataset():
    ds = tf.data.Dataset.from_tensors(make_sample()).repeat(60)
    kept_counts, flipped = [], 0
    for out in aug.augment_dataset(ds, [5, 6], ALIGN_CONFIG):
        origins = check_alignment(out, 12)
        kept_counts.append(len(origins))
        boxes = out["boxes"].numpy()
        if 0 in origins and 1 in origins:  # instance 0 starts left of instance 1 unless flipped
            flipped += boxes[origins.index(0), 0] > boxes[origins.index(1), 0]
    # The seeds exercised what the test is about: drops, partial keeps and flips.
    assert min(kept_counts) < 4 and max(kept_counts) >= 4 and flipped > 0


# 2. Crops that remove instances.
@pytest.mark.parametrize("window", [(0, 12, 48, 52), (0, 0, 48, 40), (21, 5, 27, 50),
                                    (10, 20, 8, 8)])
def test_crop_drops_instances_together(window):
    top, left, height, width = window
    sample = make_sample()
    cropped = sample["masks"][:, top:top + height, left:left + width]
    kept = [k for k in range(len(RECTS)) if cropped[k].any()]  # independent of the code
    assert len(kept) < len(RECTS)
    out = to_numpy(aug.crop(sample, top, left, height, width))
    np.testing.assert_array_equal(out["image"], sample["image"][top:top + height,
                                                                 left:left + width])
    np.testing.assert_array_equal(out["masks"], cropped[kept])
    np.testing.assert_array_equal(out["labels"], LABELS[kept])
    np.testing.assert_array_equal(out["iscrowd"], ISCROWD[kept])
    np.testing.assert_array_equal(out["boxes"], numpy_boxes(cropped[kept]))
    assert out["image_id"] == 17
    assert check_alignment(out, 1) == kept


def test_crop_removing_first_instance_shifts_labels():
    out = to_numpy(aug.crop(make_sample(), 0, 12, H, W - 12))
    assert len(out["masks"]) == len(RECTS) - 1
    np.testing.assert_array_equal(out["labels"], [0, 3, 1, 2, 3])
    np.testing.assert_array_equal(out["iscrowd"], [True, False, False, True, False])
    np.testing.assert_array_equal(out["boxes"], numpy_boxes(out["masks"]))


def test_drop_small_instances_uses_one_keep_vector():
    masks = np.zeros((4, 6, 7), np.uint8)
    masks[0, :1, :5] = 1  # 5 px
    masks[2, 1:3, 1:2] = 1  # 2 px; instance 1 is empty
    masks[3, 2:6, 3:7] = 1  # 16 px
    sample = {"image": np.zeros((6, 7, 3), np.uint8), "masks": masks,
              "labels": np.array([4, 5, 6, 7]), "iscrowd": np.array([True, False, True, False]),
              "boxes": np.full((4, 4), -1.0, np.float32), "image_id": "abc"}
    out = to_numpy(aug.drop_small_instances(sample, 3))
    np.testing.assert_array_equal(out["masks"], masks[[0, 3]])
    np.testing.assert_array_equal(out["labels"], [4, 7])
    np.testing.assert_array_equal(out["iscrowd"], [True, False])
    np.testing.assert_array_equal(out["boxes"], [[0, 0, 5, 1], [3, 2, 7, 6]])
    assert out["image_id"] == "abc"


# 3. Boxes.
def test_boxes_from_masks_matches_numpy_loop():
    rng = np.random.default_rng(0)
    density = rng.uniform(0.0, 0.05, size=(20, 1, 1))
    masks = (rng.random((20, 13, 17)) < density).astype(np.uint8)
    masks[0] = 0  # empty
    masks[1] = 1  # full
    masks[2] = 0
    masks[2, 12, 16] = 1  # single pixel in the bottom-right corner
    masks[3] = 0
    masks[3, 0, 0] = 1
    got = aug.boxes_from_masks(masks)
    assert got.dtype == tf.float32
    np.testing.assert_array_equal(got.numpy(), numpy_boxes(masks))
    np.testing.assert_array_equal(got.numpy()[:4], [[0, 0, 0, 0], [0, 0, 17, 13],
                                                    [16, 12, 17, 13], [0, 0, 1, 1]])
    np.testing.assert_array_equal(aug.boxes_from_masks(masks.astype(bool)).numpy(),
                                  numpy_boxes(masks))
    assert aug.boxes_from_masks(np.zeros((0, 5, 6), np.uint8)).shape == (0, 4)


# 4. Deterministic transforms.
def test_horizontal_flip_mirrors_boxes_and_twice_is_identity():
    sample = make_sample()
    once = to_numpy(aug.horizontal_flip(sample))
    np.testing.assert_array_equal(once["image"], sample["image"][:, ::-1])
    x0, y0, x1, y1 = sample["boxes"].T
    np.testing.assert_array_equal(once["boxes"], np.stack([W - x1, y0, W - x0, y1], axis=1))
    assert_same(aug.horizontal_flip(once), sample)


def test_adjust_brightness_changes_only_the_image_and_clips():
    sample = make_sample()
    sample["image"][0, 0] = [250, 3, 128]
    for shift in (10, -10):
        out = to_numpy(aug.adjust_brightness(sample, shift / 255))
        expected = np.clip(sample["image"].astype(int) + shift, 0, 255)
        np.testing.assert_array_equal(out["image"], expected)
        for key in ("masks", "labels", "iscrowd", "boxes", "image_id"):
            np.testing.assert_array_equal(out[key], sample[key])
    # A tiny image too: TF's float->uint8 cast saturates on some code paths and wraps on others.
    tiny = {"image": np.array([[[250, 5, 128]]], np.uint8), "masks": np.zeros((0, 1, 1)),
            "labels": [], "iscrowd": []}
    for shift, expected in ((10, [255, 15, 138]), (-10, [240, 0, 118])):
        brighter = aug.adjust_brightness(tiny, shift / 255)["image"]
        np.testing.assert_array_equal(brighter, [[expected]])
    assert np.all(aug.adjust_brightness(sample, 1.0)["image"].numpy() == 255)
    assert np.all(aug.adjust_brightness(sample, -1.0)["image"].numpy() == 0)
    with pytest.raises(ValueError, match="brightness"):
        aug.adjust_brightness(sample, 1.5)


def test_rescale():
    sample = make_sample()
    assert_same(aug.rescale(sample, 1.0), sample)
    double = to_numpy(aug.rescale(sample, 2.0))
    assert double["image"].shape == (2 * H, 2 * W, 3) and double["masks"].shape == (6, 2 * H, 2 * W)
    assert set(np.unique(double["masks"])) <= {0, 1}
    # Bilinear with half-pixel centres and a 0.5 threshold maps a pixel edge e to 2e exactly.
    np.testing.assert_array_equal(double["boxes"], 2 * sample["boxes"])
    np.testing.assert_array_equal(double["labels"], LABELS)
    assert aug.rescale(sample, 0.7)["image"].shape == (round(H * 0.7), round(W * 0.7), 3)
    assert aug.rescale(sample, 1e-3)["masks"].shape == (6, 1, 1)
    with pytest.raises(ValueError, match="factor"):
        aug.rescale(sample, 0.0)


TRANSFORMS = {
    "flip": aug.horizontal_flip,
    "brightness": lambda s: aug.adjust_brightness(s, 0.1),
    "rescale": lambda s: aug.rescale(s, 0.7),
    "crop": lambda s: aug.crop(s, 3, 4, 20, 25),
    "drop": lambda s: aug.drop_small_instances(s, 1),
    "augment": lambda s: aug.augment(s, [1, 2], aug.AugmentConfig(crop_size=(20, 25))),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_no_instances(name):
    out = to_numpy(TRANSFORMS[name](make_sample(keep=[])))
    h, w = out["image"].shape[:2]
    assert out["masks"].shape == (0, h, w) and out["masks"].dtype == np.uint8
    assert out["labels"].shape == (0,) and out["labels"].dtype == np.int32
    assert out["iscrowd"].shape == (0,) and out["iscrowd"].dtype == bool
    assert out["boxes"].shape == (0, 4) and out["boxes"].dtype == np.float32


def test_config_none_changes_nothing():
    sample = make_sample()
    for seed in range(3):
        assert_same(aug.augment(sample, [seed, 0], aug.AugmentConfig.none()), sample)


def test_augment_flip_prob_one_and_crop_larger_than_image():
    sample = make_sample()
    config = aug.AugmentConfig(flip_prob=1.0, brightness_delta=0.0, scale_range=(1.0, 1.0),
                               crop_size=(100, 20))
    out = to_numpy(aug.augment(sample, [4, 4], config))
    assert out["image"].shape == (H, 20, 3)  # the height is not cropped
    # The offset is random: the result must be some 20-px-wide window of the mirrored sample.
    mirrored = {k: sample[k][..., ::-1, :] if k == "image" else sample[k] for k in sample}
    mirrored["masks"] = sample["masks"][:, :, ::-1]
    windows = [mirrored["image"][:, x:x + 20] for x in range(W - 20 + 1)]
    x = next(x for x, win in enumerate(windows) if np.array_equal(win, out["image"]))
    window_masks = mirrored["masks"][:, :, x:x + 20]
    kept = [k for k in range(len(RECTS)) if window_masks[k].any()]
    np.testing.assert_array_equal(out["masks"], window_masks[kept])
    np.testing.assert_array_equal(out["labels"], LABELS[kept])


def test_augment_scale_and_brightness_are_drawn_within_range():
    sample = make_sample()
    scale_only = aug.AugmentConfig(flip_prob=0.0, brightness_delta=0.0, scale_range=(0.8, 1.25))
    shapes = set()
    for seed in range(6):
        out = to_numpy(aug.augment(sample, [seed, 1], scale_only))
        h, w = out["image"].shape[:2]
        shapes.add((h, w))
        factor = h / H  # the same factor must explain the width and every box, +-1 px
        assert 0.8 * H - 1 <= h <= 1.25 * H + 1 and abs(w - factor * W) <= 1.5
        # Pixels, not float rounding: the size is rounded to whole pixels (so factor is off by up to
        # 0.5 / H) and a box edge is that of the resampled mask (+-1 px); a wrong factor is off by tens.
        np.testing.assert_allclose(out["boxes"], factor * sample["boxes"], atol=1.5)
        check_alignment(out, 1)
    assert len(shapes) > 1

    # Grey pixels near both clipping ends; they break the colour decoding, so only from here on.
    sample["image"][0, :3] = [[250, 250, 250], [5, 5, 5], [100, 100, 100]]
    bright_only = aug.AugmentConfig(flip_prob=0.0, brightness_delta=0.15, scale_range=(1.0, 1.0))
    shifts = set()
    for seed in range(6):
        out = to_numpy(aug.augment(sample, [seed, 1], bright_only))
        shift = int(out["image"][0, 2, 0]) - 100  # a pixel far from both clipping ends
        assert abs(shift) <= round(0.15 * 255)
        np.testing.assert_array_equal(out["image"],
                                      np.clip(sample["image"].astype(int) + shift, 0, 255))
        assert_same({k: out[k] for k in aug.INSTANCE_KEYS},
                    {k: sample[k] for k in aug.INSTANCE_KEYS})
        shifts.add(shift)
    assert len(shifts) > 1


# 5. Determinism, eager and graph.
CONFIG = aug.AugmentConfig(crop_size=(36, 44), min_mask_pixels=4)


def test_same_seed_same_result_different_seed_different_result():
    sample = make_sample()
    first = aug.augment(sample, [7, 8], CONFIG)
    assert_same(aug.augment(sample, [7, 8], CONFIG), first)
    others = [to_numpy(aug.augment(sample, [seed, 8], CONFIG)) for seed in range(4)]
    assert any(o["image"].shape != first["image"].shape
               or not np.array_equal(o["image"], first["image"]) for o in others)


def test_dataset_map_matches_eager():
    sample = make_sample()
    seed = tf.constant([3, 9], tf.int64)
    ds = tf.data.Dataset.from_tensors(sample).map(lambda s: aug.augment(s, seed, CONFIG))
    assert_same(next(iter(ds)), aug.augment(sample, seed, CONFIG))


def test_augment_dataset_uses_per_element_seeds_and_matches_eager():
    samples = [make_sample(), make_sample(keep=[1, 3, 4]), make_sample(keep=[])]
    ds = tf.data.Dataset.from_tensors(samples[0])
    for s in samples[1:]:
        ds = ds.concatenate(tf.data.Dataset.from_tensors(s))
    ds = ds.concatenate(tf.data.Dataset.from_tensors(samples[0]))
    outs = list(aug.augment_dataset(ds, [11, 12], CONFIG))
    assert len(outs) == 4
    for index, (sample, out) in enumerate(zip(samples + samples[:1], outs)):
        # The index must be int64 like Dataset.enumerate's: stateless_fold_in returns a seed of
        # the dtype of its data argument, and a Python int would give a different int32 seed.
        element_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([11, 12], tf.int64), tf.constant(index, tf.int64))
        assert_same(out, aug.augment(sample, element_seed, CONFIG))
        assert out["image_id"] == 17
    for first, second in zip(outs, aug.augment_dataset(ds, [11, 12], CONFIG)):
        assert_same(first, second)
    # Elements 0 and 3 are the same sample but got different seeds.
    assert (outs[0]["image"].shape != outs[3]["image"].shape
            or not np.array_equal(outs[0]["image"], outs[3]["image"]))


# 6. Config validation.
@pytest.mark.parametrize("kwargs", [
    {"flip_prob": 1.5}, {"flip_prob": -0.1}, {"brightness_delta": 2.0},
    {"scale_range": (0, 1)}, {"scale_range": (1.2, 0.8)}, {"scale_range": (1.0,)},
    {"scale_range": (1.0, float("inf"))}, {"crop_size": (0, 10)}, {"crop_size": (10,)},
    {"crop_size": (10.5, 10)}, {"min_mask_pixels": 0}, {"min_mask_pixels": 2.5},
])
def test_config_rejects_bad_values(kwargs):
    field = next(iter(kwargs))
    with pytest.raises(ValueError, match=field):
        aug.AugmentConfig(**kwargs)


def test_config_normalises_sequences():
    config = aug.AugmentConfig(scale_range=[1, 2], crop_size=[np.int64(8), 9])
    assert config.scale_range == (1.0, 2.0) and config.crop_size == (8, 9)
    hash(config)  # frozen and hashable
