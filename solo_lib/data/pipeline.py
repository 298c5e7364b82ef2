"""The training input pipeline: samples -> augmentation -> targets -> padded batches (notebooks 08-09).

Two sources feed the same pipeline:

* :func:`streaming_source` reads and decodes each image from disk when ``tf.data`` asks for it
  (``tf.data.Dataset.from_generator``), so a dataset larger than memory works;
* :func:`in_memory_source` decodes every sample once and serves them from memory (small datasets,
  like the course's, train faster that way).

:func:`training_dataset` then, in parallel with training (``num_parallel_calls``, ``prefetch``):
shrinks images larger than the canvas, augments them (seeded, different every epoch), pads each
to the fixed batch canvas (bottom/right, so coordinates are unchanged), builds the compact SOLO
targets (``solo_lib.targets.image_targets``) and pads variable instance counts in
``padded_batch``, so the training step never loops in Python. Images stay uint8 0-255: the model
normalises them itself (``solo_lib.model.solov2.normalize_images``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from solo_lib.config import SOLOConfig
from solo_lib.data import augment as aug
from solo_lib.data.coco import CocoDataset
from solo_lib.errors import ConfigError
from solo_lib.targets import image_targets

SAMPLE_SIGNATURE = {
    "image": tf.TensorSpec((None, None, 3), tf.uint8),
    "masks": tf.TensorSpec((None, None, None), tf.uint8),
    "labels": tf.TensorSpec((None,), tf.int32),
    "boxes": tf.TensorSpec((None, 4), tf.float32),
    "iscrowd": tf.TensorSpec((None,), tf.bool),
    "image_id": tf.TensorSpec((), tf.int64),
}


def streaming_source(dataset: CocoDataset) -> tf.data.Dataset:
    """Samples decoded from disk on demand, in the dataset's order."""
    return tf.data.Dataset.from_generator(lambda: (s.to_dict() for s in dataset), output_signature=SAMPLE_SIGNATURE)


def decoded_bytes(dataset: CocoDataset) -> int:
    """Bytes that decoding the whole dataset into memory takes, from its records alone (nothing is
    read): per image ``height * width * 3`` (RGB) plus ``height * width`` per instance mask, uint8."""
    total = 0
    for image_id in dataset.image_ids:
        info = dataset.image_info(image_id)
        pixels = int(info["height"]) * int(info["width"])
        total += pixels * (3 + len(dataset.annotations(image_id)))
    return total


def check_memory_budget(dataset: CocoDataset, memory_budget_mb: float | None) -> None:
    """Fails, before anything is decoded, when :func:`decoded_bytes` exceeds ``memory_budget_mb``
    MiB (None: no limit).

    Raises:
        ConfigError: over budget; the message gives the estimate and says to stream instead.
    """
    if memory_budget_mb is None:
        return
    need_mb = decoded_bytes(dataset) / 2**20
    if need_mb > memory_budget_mb:
        raise ConfigError(
            f"{dataset.annotation_file}: decoding its {len(dataset)} images into memory would take about "
            f"{need_mb:,.0f} MB (RGB images plus one mask per instance, uint8), above the memory budget of "
            f"{memory_budget_mb:,.0f} MB; stream the images from disk instead (train --stream, or "
            f"TrainConfig(in_memory=False)), or raise the budget (--memory-budget-mb, TrainConfig.memory_budget_mb)")


def in_memory_source(dataset: CocoDataset, *, memory_budget_mb: float | None = None) -> tf.data.Dataset:
    """Samples decoded once, now, and served from memory.

    Args:
        dataset: the images.
        memory_budget_mb: refuse (before decoding anything) when :func:`decoded_bytes` exceeds
            this many MiB; None: no limit.

    Raises:
        ConfigError: the decoded dataset would not fit in ``memory_budget_mb``.
    """
    check_memory_budget(dataset, memory_budget_mb)
    samples = [s.to_dict() for s in dataset]
    return tf.data.Dataset.from_generator(lambda: iter(samples), output_signature=SAMPLE_SIGNATURE)


def fit_to_canvas(sample: dict, canvas: tuple[int, int]) -> dict:
    """Shrinks a sample (keeping its aspect ratio) so that it fits in ``canvas``; never enlarges."""
    shape = tf.cast(tf.shape(sample["image"])[:2], tf.float32)
    factor = tf.minimum(1.0, tf.reduce_min(tf.constant(canvas, tf.float32) / shape))
    # rescale recomputes the boxes; an unscaled sample keeps the ones it came with.
    return tf.cond(factor < 1.0, lambda: aug.rescale(sample, factor), lambda: dict(sample))


def _targets_numpy(masks, labels, iscrowd, config: SOLOConfig):
    t = image_targets(masks.astype(bool), labels, config, iscrowd.astype(bool))
    return (t["category"], t["pos_cells"], t["pos_instances"], t["masks"])


def to_training_example(sample: dict, config: SOLOConfig, canvas: tuple[int, int]):
    """Pads one augmented sample to the canvas and builds its targets.

    Returns:
        ``(image (Hc, Wc, 3) uint8, targets)`` with ``targets`` = ``category (M,)``,
        ``pos_cells (K,)``, ``pos_instances (K,)``, ``pos_valid (K,)`` uint8 and ``masks (N, Hc/4, Wc/4)``.
    """
    hc, wc = canvas
    image = tf.image.pad_to_bounding_box(sample["image"], 0, 0, hc, wc)
    shape = tf.shape(sample["masks"])
    masks = tf.pad(sample["masks"], [[0, 0], [0, hc - shape[1]], [0, wc - shape[2]]])
    category, cells, instances, mask_targets = tf.numpy_function(
        lambda m, l, c: _targets_numpy(m, l, c, config), [masks, sample["labels"], sample["iscrowd"]],
        [tf.int32, tf.int32, tf.int32, tf.uint8], stateful=False)
    stride = config.mask_stride
    category.set_shape((config.num_cells,))
    cells.set_shape((None,))
    instances.set_shape((None,))
    mask_targets.set_shape((None, hc // stride, wc // stride))
    image.set_shape((hc, wc, 3))
    targets = {"category": category, "pos_cells": cells, "pos_instances": instances,
               # uint8, not bool: Keras averages a first batch across tf.distribute replicas, and
               # TensorFlow cannot add booleans. The losses cast it to bool.
               "pos_valid": tf.ones_like(cells, tf.uint8), "masks": mask_targets}
    return image, targets


def training_dataset(source: tf.data.Dataset, config: SOLOConfig, *, canvas: tuple[int, int], batch_size: int,
                     augment: aug.AugmentConfig | None = None, seed: int = 0, shuffle_buffer: int = 64,
                     start_step: int = 0, max_instances: int | None = None,
                     max_positives: int | None = None) -> tf.data.Dataset:
    """An endless stream of training batches (use ``steps_per_epoch`` with ``Model.fit``).

    Args:
        source: samples from :func:`streaming_source` or :func:`in_memory_source`.
        config: the model's ``SOLOConfig`` (grids, scale ranges, mask stride).
        canvas: ``(height, width)`` of the batch canvas, multiples of 32.
        batch_size: images per batch (global batch under a ``tf.distribute`` strategy).
        augment: augmentation; default ``AugmentConfig(crop_size=canvas)``.
        seed: seeds the shuffle order and every augmentation.
        shuffle_buffer: ``tf.data`` shuffle buffer.
        start_step: batches already trained (when resuming): they are skipped before any work,
            so a resumed run sees the same data order it would have seen.
        max_instances: pad every batch's instance masks to exactly this many (with
            ``max_positives``, every batch has the same shapes, so the training step is traced
            and XLA-compiled once instead of once per shape). None: pad to the batch maximum.
        max_positives: likewise for the (cell, instance) pairs.

    Returns:
        ``(images (B, Hc, Wc, 3) uint8, targets)`` batches; see :func:`to_training_example`, with
        pairs and masks padded per batch (``pos_valid`` is 0 on padding, 1 on real pairs).
    """
    if canvas[0] % 32 or canvas[1] % 32:
        raise ConfigError(f"canvas {canvas} must be a multiple of 32 in both dimensions")
    augment = augment or aug.AugmentConfig(crop_size=canvas)
    if augment.crop_size is None or augment.crop_size[0] > canvas[0] or augment.crop_size[1] > canvas[1]:
        augment = aug.AugmentConfig(**{**augment.__dict__, "crop_size": canvas})
    base_seed = tf.constant([seed, 0], tf.int64)

    def prepare(index, sample):
        sample = fit_to_canvas(sample, canvas)
        sample = aug.augment(sample, tf.random.experimental.stateless_fold_in(base_seed, index), augment)
        return to_training_example(sample, config, canvas)

    ds = source.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate().skip(start_step * batch_size)  # the index seeds the element's augmentation
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    padded_shapes = None
    if max_instances is not None or max_positives is not None:
        ds = ds.map(lambda image, t: _check_limits(image, t, max_instances, max_positives))
        k, n, stride = max_positives, max_instances, config.mask_stride
        padded_shapes = ((canvas[0], canvas[1], 3), {
            "category": (config.num_cells,), "pos_cells": (k,), "pos_instances": (k,), "pos_valid": (k,),
            "masks": (n, canvas[0] // stride, canvas[1] // stride)})
    return ds.padded_batch(batch_size, padded_shapes=padded_shapes, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _check_limits(image, targets, max_instances, max_positives):
    """Fails with a clear message when an image has more instances or pairs than the fixed padding."""
    checks = []
    if max_instances is not None:
        checks.append(tf.debugging.assert_less_equal(
            tf.shape(targets["masks"])[0], max_instances,
            message=f"an image has more instances than max_instances={max_instances}; raise it"))
    if max_positives is not None:
        checks.append(tf.debugging.assert_less_equal(
            tf.shape(targets["pos_cells"])[0], max_positives,
            message=f"an image has more positive (cell, instance) pairs than max_positives={max_positives}; raise it"))
    with tf.control_dependencies(checks):
        return tf.identity(image), targets


def steps_per_epoch(dataset: CocoDataset, batch_size: int) -> int:
    """Batches per pass over the dataset (at least 1)."""
    return max(1, len(dataset) // batch_size)


def first_batch(ds: tf.data.Dataset):
    """The first batch as numpy (for notebooks and tests)."""
    images, targets = next(iter(ds))
    return np.asarray(images), {k: np.asarray(v) for k, v in targets.items()}
