"""Small training batches that several test files build the same way."""

import numpy as np
import tensorflow as tf

from solo_lib.targets import collate_targets, image_targets


def two_rectangles(config, size=64):
    """One ``size`` x ``size`` image of noise with two overlapping rectangles (classes 0 and 1), and
    its targets as the pipeline would give them (``solo_lib.targets``): ``(images, targets)``."""
    masks = np.zeros((2, size, size), np.uint8)
    masks[0, 10:40, 8:30] = 1
    masks[1, 30:60, 20:60] = 1
    targets = collate_targets([image_targets(masks, np.array([0, 1]), config)])
    images = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    return tf.constant(images), {key: tf.constant(value) for key, value in targets.items()}
