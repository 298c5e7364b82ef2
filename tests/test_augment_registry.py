"""The augmentation registry (solo_lib.data.augment_registry): the built-ins give the results of the
fixed sequence they replaced, bit for bit, and a toy augmentation registered from outside runs through
augment(), the training pipeline and notebook 03's explorer, then is removed.

The reference for bit-identity is a frozen copy of augment() as it was before the registry (flip ->
brightness -> scale -> crop, seeds split four ways), kept below; it calls the same public transforms,
so the two differ only in how the sequence is put together and seeded.
"""

import dataclasses
import json
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from solo_lib import viz  # noqa: E402
from solo_lib.config import SOLOConfig  # noqa: E402
from solo_lib.data import augment as aug  # noqa: E402
from solo_lib.data import pipeline  # noqa: E402
from solo_lib.data.augment_config import AugmentConfig  # noqa: E402
from solo_lib.data.augment_registry import (  # noqa: E402
    register_augmentation,
    registered_augmentations,
    unregister_augmentation,
)

CONFIGS = {
    "default": AugmentConfig(),
    "none": AugmentConfig.none(),
    "paper": AugmentConfig.paper(),
    "strong": AugmentConfig(flip_prob=1.0, brightness_delta=0.3, scale_range=(0.5, 2.0), crop_size=(30, 40),
                            min_mask_pixels=20),
    "mild": AugmentConfig(flip_prob=0.3, brightness_delta=0.0, scale_range=(0.9, 1.1)),
    "bright_crop": AugmentConfig(flip_prob=0.0, brightness_delta=0.5, scale_range=(1.0, 1.0), crop_size=(20, 24)),
}
SEEDS = [[0, 0], np.array([3, 0], np.int64), [7, 11], tf.constant([5, 9], tf.int32), [2, 0], [1, 4]]
BUILTINS = ("flip", "brightness", "scale", "crop")


def old_augment(sample, seed, config):
    """augment() before the registry, frozen (the reference for bit-identity)."""
    prepared = aug._prepare(sample)
    core = {key: prepared[key] for key in aug._REQUIRED_KEYS}
    core["boxes"] = aug.boxes_from_masks(core["masks"])
    flip_seed, brightness_seed, scale_seed, crop_seed = tf.unstack(
        tf.random.experimental.stateless_split(aug._as_seed(seed), num=4))
    do_flip = tf.random.stateless_uniform([], flip_seed) < config.flip_prob
    core = tf.cond(do_flip, lambda: aug.horizontal_flip(core), lambda: dict(core))
    if config.brightness_delta > 0:
        max_delta = config.brightness_delta
        core = aug.adjust_brightness(core, tf.random.stateless_uniform([], brightness_seed, -max_delta, max_delta))
    if config.scale_range != (1.0, 1.0):
        low, high = (math.log(v) for v in config.scale_range)
        core = aug.rescale(core, tf.exp(tf.random.stateless_uniform([], scale_seed, low, high, dtype=tf.float64)))
    if config.crop_size is not None:
        core = aug.random_crop(core, config.crop_size, crop_seed)
    core = aug.drop_small_instances(core, config.min_mask_pixels)
    return {**sample, **core}


def random_sample(height, width, count, seed, image_id=17):
    """Random rectangles (some overlapping, some a few pixels) on a random image."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    masks = np.zeros((count, height, width), np.uint8)
    for k in range(count):
        y0, x0 = rng.integers(0, height - 2), rng.integers(0, width - 2)
        y1, x1 = rng.integers(y0 + 1, min(height, y0 + 30) + 1), rng.integers(x0 + 1, min(width, x0 + 30) + 1)
        masks[k, y0:y1, x0:x1] = 1
    return {"image": image, "masks": masks, "labels": rng.integers(0, 4, count).astype(np.int32),
            "iscrowd": rng.random(count) < 0.3, "boxes": np.zeros((count, 4), np.float32),
            "image_id": np.int64(image_id)}


def assert_same(a, b):
    a, b = ({k: np.asarray(v) for k, v in s.items()} for s in (a, b))
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def numpy_vertical_flip(sample):
    """The toy augmentation, written independently in numpy: rows reversed, boxes mirrored."""
    out = {k: np.asarray(v) for k, v in sample.items()}
    height = out["image"].shape[0]
    out["image"], out["masks"] = out["image"][::-1], out["masks"][:, ::-1]
    boxes = out["boxes"].copy()
    nonempty = out["masks"].any(axis=(1, 2))
    boxes[nonempty, 1], boxes[nonempty, 3] = height - out["boxes"][nonempty, 3], height - out["boxes"][nonempty, 1]
    out["boxes"] = boxes
    return out


def _vertical_flip(sample):
    # Rows reversed in the image and every mask; boxes recomputed: instance rows stay aligned.
    masks = tf.reverse(sample["masks"], [1])
    return {**sample, "image": tf.reverse(sample["image"], [0]), "masks": masks, "boxes": aug.boxes_from_masks(masks)}


def _random_vertical_flip(sample, seed, params):
    do_flip = tf.random.stateless_uniform([], seed) < params["prob"]
    return tf.cond(do_flip, lambda: _vertical_flip(sample), lambda: dict(sample))


@pytest.fixture
def vertical_flip():
    """A toy augmentation registered for one test, the way a contributor would add one."""
    record = register_augmentation("vertical_flip", _random_vertical_flip, defaults={"prob": 0.0},
                                   active=lambda p: p["prob"] > 0,
                                   preview=lambda sample, amount, seed: _vertical_flip(sample))
    try:
        yield record
    finally:
        unregister_augmentation("vertical_flip")


@pytest.mark.parametrize("name", CONFIGS)
def test_builtins_give_the_old_fixed_sequence_bit_for_bit(name):
    sample = random_sample(40, 56, 6, seed=1)
    results = []
    for seed in SEEDS:
        new, old = aug.augment(sample, seed, CONFIGS[name]), old_augment(sample, seed, CONFIGS[name])
        assert_same(new, old)
        results.append(np.asarray(new["image"]))
    if name not in ("none", "paper"):  # the seeds matter: not every result is the same
        assert any(not np.array_equal(results[0], r) for r in results[1:])


def test_augment_dataset_keeps_the_old_per_element_seeds():
    samples = [random_sample(h, w, n, seed=i, image_id=i) for i, (h, w, n) in enumerate([(40, 56, 5), (56, 40, 3),
                                                                                           (32, 32, 0)])]
    ds = tf.data.Dataset.from_generator(lambda: iter(samples), output_signature=pipeline.SAMPLE_SIGNATURE)
    config = CONFIGS["strong"]
    new = list(aug.augment_dataset(ds, [4, 2], config).as_numpy_iterator())
    base = tf.constant([4, 2], tf.int64)  # the old rule, written out: fold the int64 index into the seed
    old = [old_augment(s, tf.random.experimental.stateless_fold_in(base, tf.constant(i, tf.int64)), config)
           for i, s in enumerate(samples)]
    for a, b in zip(new, old):
        assert_same(a, b)


def test_pipeline_uses_the_same_element_seed_rule():
    base = tf.constant([9, 0], tf.int64)
    for index in (0, 1, 57):
        i = tf.constant(index, tf.int64)
        np.testing.assert_array_equal(aug.element_seed([9, 0], i), tf.random.experimental.stateless_fold_in(base, i))
        np.testing.assert_array_equal(aug.element_seed(base, i), aug.element_seed(np.array([9, 0]), i))


def test_builtins_are_registered_in_the_old_order_with_their_seed_rows():
    builtins = [a for a in registered_augmentations() if a.name in BUILTINS]
    assert [(a.name, a.slot) for a in builtins] == [(name, k) for k, name in enumerate(BUILTINS)]
    assert [a.fields for a in builtins] == [("flip_prob",), ("brightness_delta",), ("scale_range",), ("crop_size",)]
    active = {a.name for a in builtins if a.active(a.params(AugmentConfig.paper()))}
    assert active == {"flip"}  # the paper's augmentation: the flip alone, the rest left out of the graph


def test_a_registered_augmentation_runs_after_the_builtins_without_moving_their_draws(vertical_flip):
    assert registered_augmentations()[-1] is vertical_flip and vertical_flip.slot == len(BUILTINS)
    sample = random_sample(40, 56, 6, seed=1)
    for name in ("default", "strong", "bright_crop"):
        base = CONFIGS[name]
        for seed in SEEDS[:3]:
            # Registered but inactive (prob 0, its default): nothing changes.
            assert_same(aug.augment(sample, seed, base), old_augment(sample, seed, base))
            # Active: the built-ins draw exactly as before, then every result is flipped vertically.
            flipped = aug.augment(sample, seed, dataclasses.replace(base, extra={"vertical_flip": {"prob": 1.0}}))
            assert_same(flipped, numpy_vertical_flip(old_augment(sample, seed, base)))


def test_a_registered_augmentation_runs_in_the_training_pipeline(vertical_flip):
    # Square images at the square canvas: the resize and the padding change nothing, so the batch
    # with the toy augmentation is the batch without it, upside down.
    samples = [random_sample(96, 96, 3, seed=20 + i, image_id=i) for i in range(4)]
    source = tf.data.Dataset.from_generator(lambda: iter(samples), output_signature=pipeline.SAMPLE_SIGNATURE)
    config = SOLOConfig.tiny(4, image_scale=(96, 96))
    with_toy = dataclasses.replace(AugmentConfig.none(), extra={"vertical_flip": {"prob": 1.0}})
    plain, toy = (pipeline.first_batch(pipeline.training_dataset(source, config, batch_size=2, augment=a, seed=5))
                  for a in (AugmentConfig.none(), with_toy))
    assert plain[0].shape == (2, 96, 96, 3)
    np.testing.assert_array_equal(toy[0], plain[0][:, ::-1])
    assert not np.array_equal(toy[0], plain[0])


def test_a_registered_augmentation_is_drawn_by_the_explorer(vertical_flip):
    assert viz.augmentation_choices() == ("none", *BUILTINS, "vertical_flip", "random")
    sample = random_sample(40, 56, 4, seed=3)
    sample["boxes"] = np.asarray(aug.boxes_from_masks(sample["masks"]))
    fig, out = viz.augmentation_view(sample, list("abcd"), "vertical_flip", amount=0.3, seed=1)
    assert_same(out, numpy_vertical_flip(sample))
    after = fig.axes[1]
    assert after.get_title().startswith("after vertical_flip: 4 instances")
    np.testing.assert_array_equal(after.images[0].get_array()[::-1], fig.axes[0].images[0].get_array())
    plt.close(fig)


def test_unregistering_removes_it_everywhere():
    register_augmentation("vertical_flip", _random_vertical_flip, defaults={"prob": 0.0})
    unregister_augmentation("vertical_flip")
    assert "vertical_flip" not in viz.augmentation_choices()
    assert [a.name for a in registered_augmentations()] == list(BUILTINS)
    with pytest.raises(ValueError, match=r"names \['vertical_flip'\], which no augmentation is registered"):
        aug.augment(random_sample(20, 20, 1, seed=0), [0, 0], AugmentConfig(extra={"vertical_flip": {"prob": 1}}))
    with pytest.raises(KeyError, match="no augmentation named 'vertical_flip'"):
        unregister_augmentation("vertical_flip")


def test_registration_mistakes_are_refused(vertical_flip):
    with pytest.raises(ValueError, match="already registered"):
        register_augmentation("vertical_flip", _random_vertical_flip)
    with pytest.raises(ValueError, match=r"AugmentConfig has no field \['prob'\]"):
        register_augmentation("other", _random_vertical_flip, fields=("prob",))
    with pytest.raises(ValueError, match="identifier"):
        register_augmentation("vertical flip", _random_vertical_flip)
    sample = random_sample(20, 20, 1, seed=0)
    with pytest.raises(ValueError, match=r"sets \['probability'\], which the augmentation 'vertical_flip' does not"):
        aug.augment(sample, [0, 0], AugmentConfig(extra={"vertical_flip": {"probability": 1.0}}))
    assert [a.name for a in registered_augmentations()] == [*BUILTINS, "vertical_flip"]


def test_extra_keeps_the_config_frozen_hashable_and_json_round_trips():
    config = AugmentConfig(extra={"b": {"y": [1, 2], "x": 0.5}, "a": {}})
    assert config.extra == (("a", ()), ("b", (("x", 0.5), ("y", (1, 2)))))
    assert config.params_for("b") == {"x": 0.5, "y": (1, 2)} and config.params_for("c") == {}
    assert hash(config) == hash(AugmentConfig(extra={"a": {}, "b": {"x": 0.5, "y": (1, 2)}}))
    assert AugmentConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.extra = ()
    for bad in ({"a": 3}, {"a": {"x": object()}}, {1: {}}):
        with pytest.raises(ValueError, match="AugmentConfig.extra"):
            AugmentConfig(extra=bad)
