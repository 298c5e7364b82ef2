"""solo_lib.data.pipeline: the in-memory source decodes once, and the augmentation reaches the
pipeline as given, with the canvas crop only when the augmentation can enlarge an image."""

import dataclasses

import numpy as np
import tensorflow as tf

from solo_lib.config import SOLOConfig
from solo_lib.data import augment as aug
from solo_lib.data import pipeline
from solo_lib.data.augment_config import AugmentConfig


def _sample(height, width, seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((2, height, width), np.uint8)
    masks[0, 5:30, 4:40], masks[1, height // 2:, width // 2:] = 1, 1
    return {"image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "masks": masks,
            "labels": np.array([0, 1], np.int32), "iscrowd": np.zeros(2, bool), "boxes": np.zeros((2, 4), np.float32),
            "image_id": np.int64(seed)}


class _Sample:
    def __init__(self, d):
        self.d = d

    def to_dict(self):
        return self.d


class CountingDataset:
    """Stands in for a CocoDataset (the sources iterate it and call ``to_dict``): counts the
    samples decoded."""

    def __init__(self, samples):
        self.samples, self.decoded = samples, 0

    def __iter__(self):
        for s in self.samples:
            self.decoded += 1
            yield _Sample(s)


def test_in_memory_source_decodes_once_and_serves_the_streaming_elements():
    samples = [_sample(48, 64, i) for i in range(3)]
    data = CountingDataset(samples)
    source = pipeline.in_memory_source(data)
    first = list(source.as_numpy_iterator())
    second = list(source.as_numpy_iterator())  # a new iterator: served from the cache
    assert data.decoded == 3
    streamed = list(pipeline.streaming_source(CountingDataset(samples)).as_numpy_iterator())
    for a, b, c in zip(first, second, streamed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
            np.testing.assert_array_equal(a[key], c[key])


def _batch(augment, size=(96, 96)):
    source = tf.data.Dataset.from_tensors(_sample(*size, 1))
    config = SOLOConfig.tiny(2, image_scale=(96, 96))
    return pipeline.first_batch(pipeline.training_dataset(source, config, batch_size=1, augment=augment, seed=2))


def test_the_augmentation_is_applied_as_given():
    plain, _ = _batch(AugmentConfig.none())
    # A crop window larger than the canvas is kept (and crops nothing), not replaced by the canvas.
    large, _ = _batch(dataclasses.replace(AugmentConfig.none(), crop_size=(500, 500)))
    np.testing.assert_array_equal(large, plain)
    # A smaller window crops: the rest of the canvas is padding.
    small, _ = _batch(dataclasses.replace(AugmentConfig.none(), crop_size=(40, 50)))
    assert small[0, :40, :50].any() and not small[0, 40:].any() and not small[0, :, 50:].any()


def test_an_enlarged_image_is_cropped_to_its_canvas():
    images, targets = _batch(AugmentConfig(flip_prob=0.0, brightness_delta=0.0, scale_range=(2.0, 2.0)))
    assert images.shape == (1, 96, 96, 3)  # the 192 x 192 enlargement, cut to the canvas
    big = np.asarray(aug.rescale(_sample(96, 96, 1), 2.0)["image"])  # (192, 192, 3)
    windows = [(top, left) for top in range(97) for left in range(97)
               if np.array_equal(big[top:top + 96, left:left + 96], images[0])]
    assert len(windows) == 1  # a window of the enlarged image, at one (random) place
    assert targets["category"].shape == (1, SOLOConfig.tiny(2).num_cells)
