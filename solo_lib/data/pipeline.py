"""The training input pipeline: samples -> augmentation -> targets -> padded batches (notebooks 08-09).

Two sources feed the same pipeline:

* :func:`streaming_source` reads and decodes each image from disk when ``tf.data`` asks for it
  (``tf.data.Dataset.from_generator``), so a dataset larger than memory works;
* :func:`in_memory_source` decodes every sample once and serves them from memory (``cache()``;
  small datasets, like the course's, train faster that way).

:func:`training_dataset` then, in parallel with training (``num_parallel_calls``, ``prefetch``):
groups images by orientation when the two orientations have different canvases (so a batch has
one), resizes each to the model's image scale (or, for multi-scale training, to a short side drawn
per image), augments it (seeded, different
every epoch), pads it to the canvas of its orientation (bottom/right, so coordinates are
unchanged; ``solo_lib.geometry``, the same canvas ``predict`` uses), builds the compact SOLO
targets (``solo_lib.targets.image_targets``) and pads variable instance counts in
``padded_batch``, so the training step never loops in Python. Images stay uint8 0-255: the model
normalises them itself (``solo_lib.model.solov2.normalize_images``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from solo_lib.config import SOLOConfig
from solo_lib.data import augment as aug
from solo_lib.data.augment_config import AugmentConfig
from solo_lib.data.coco import CocoDataset
from solo_lib.errors import ConfigError
from solo_lib.geometry import canvas_size, canvas_size_tensor
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
        total += pixels * (3 + dataset.num_annotations(image_id))
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
    """Samples decoded once and served from memory: :func:`streaming_source` with ``tf.data``'s
    in-memory ``cache()``.

    The first pass decodes each image as the stream asks for it and keeps the tensors; every later
    pass reads them from the cache, without Python. The elements are those of the streaming source,
    so the batches are the same bit for bit (``tests/test_train.py`` compares them). A first pass
    stopped early leaves nothing cached (``tf.data`` logs that it discarded a partial cache), and
    the next iterator decodes again.

    Args:
        dataset: the images.
        memory_budget_mb: refuse (before decoding anything) when :func:`decoded_bytes` exceeds
            this many MiB; None: no limit.

    Raises:
        ConfigError: the decoded dataset would not fit in ``memory_budget_mb``.
    """
    check_memory_budget(dataset, memory_budget_mb)
    return streaming_source(dataset).cache()


def _targets_numpy(masks, labels, iscrowd, config: SOLOConfig):
    t = image_targets(masks.astype(bool), labels, config, iscrowd.astype(bool))
    return (t["category"], t["pos_cells"], t["pos_instances"], t["masks"])


def to_training_example(sample: dict, config: SOLOConfig, canvas):
    """Pads one augmented sample to its canvas and builds its targets.

    Args:
        sample: a sample that fits in ``canvas``.
        config: the model's ``SOLOConfig``.
        canvas: ``(Hc, Wc)``, a pair or a ``(2,)`` int32 tensor, multiples of 32.

    Returns:
        ``(image (Hc, Wc, 3) uint8, targets)`` with ``targets`` = ``category (M,)``,
        ``pos_cells (K,)``, ``pos_instances (K,)``, ``pos_valid (K,)`` uint8 and ``masks (N, Hc/4, Wc/4)``.
    """
    hc, wc = canvas[0], canvas[1]
    image = tf.image.pad_to_bounding_box(sample["image"], 0, 0, hc, wc)
    shape = tf.shape(sample["masks"])
    masks = tf.pad(sample["masks"], [[0, 0], [0, hc - shape[1]], [0, wc - shape[2]]])
    category, cells, instances, mask_targets = tf.numpy_function(
        lambda m, labels, c: _targets_numpy(m, labels, c, config), [masks, sample["labels"], sample["iscrowd"]],
        [tf.int32, tf.int32, tf.int32, tf.uint8], stateful=False)
    stride = config.mask_stride
    static = [v if isinstance(v, int) else None for v in (hc, wc)]
    category.set_shape((config.num_cells,))
    cells.set_shape((None,))
    instances.set_shape((None,))
    mask_targets.set_shape((None, *(None if v is None else v // stride for v in static)))
    image.set_shape((*static, 3))
    targets = {"category": category, "pos_cells": cells, "pos_instances": instances,
               # uint8, not bool: Keras averages a first batch across tf.distribute replicas, and
               # TensorFlow cannot add booleans. The losses cast it to bool.
               "pos_valid": tf.ones_like(cells, tf.uint8), "masks": mask_targets}
    return image, targets


def check_short_sides(short_sides, config: SOLOConfig) -> tuple[int, ...] | None:
    """Validated multi-scale short sides (None: train at the model's image scale).

    Raises:
        ConfigError: the model has no image scale, or a short side is not an integer in
            ``[32, min(image_scale)]`` (larger ones would not fit the canvas).
    """
    if config.image_scale is None:
        raise ConfigError("this model configuration has no image_scale (it was saved before the setting existed); "
                          "training needs one: config.replace(image_scale=(long, short)), e.g. (1333, 800)")
    if short_sides is None:
        return None
    sides = tuple(short_sides)
    top = min(config.image_scale)
    if not sides or not all(isinstance(v, int) and not isinstance(v, bool) and 32 <= v <= top for v in sides):
        raise ConfigError(f"short_sides must be integers in [32, {top}] (the short side of the model's image_scale "
                          f"{config.image_scale}, so every image fits its canvas), got {short_sides!r}")
    return sides


def training_scale(config: SOLOConfig, short_sides, seed):
    """The ``(long, short)`` scale of one training image: the model's ``image_scale``, or with
    ``short_sides`` a short side drawn uniformly from them (the reference's multi-scale training,
    ``Resize(img_scale=[(1333, 800), (1333, 768), ...], multiscale_mode='value')``)."""
    long, short = max(config.image_scale), min(config.image_scale)
    if not short_sides:
        return tf.constant([long, short], tf.int32)
    choice = tf.random.stateless_uniform([], seed, 0, len(short_sides), dtype=tf.int32)
    return tf.stack([tf.constant(long, tf.int32), tf.gather(tf.constant(short_sides, tf.int32), choice)])


def training_dataset(source: tf.data.Dataset, config: SOLOConfig, *, batch_size: int,
                     augment: AugmentConfig | None = None, seed: int = 0, shuffle_buffer: int = 64,
                     start_step: int = 0, max_instances: int | None = None,
                     max_positives: int | None = None, short_sides: tuple[int, ...] | None = None) -> tf.data.Dataset:
    """An endless stream of training batches (use ``steps_per_epoch`` with ``Model.fit``).

    Args:
        source: samples from :func:`streaming_source` or :func:`in_memory_source`.
        config: the model's ``SOLOConfig`` (image scale, grids, scale ranges, mask stride).
        batch_size: images per batch (global batch under a ``tf.distribute`` strategy).
        augment: augmentation after the resize; default ``AugmentConfig.paper()`` (flips). It is
            applied as given: the pipeline never changes it (its ``crop_size`` included). When its
            ``scale_range`` can enlarge an image (``high > 1``), one more step follows it, the
            canvas crop: an image larger than its canvas is cropped to the canvas at a random
            place (its own seed), so every image fits the batch; with ``high <= 1`` the resized
            image always fits and the step is left out.
        seed: seeds the shuffle order, the scales and every augmentation.
        shuffle_buffer: ``tf.data`` shuffle buffer.
        start_step: batches already trained (when resuming): they are skipped before any work,
            so a resumed run sees the same data order it would have seen.
        max_instances: pad every batch's instance masks to exactly this many (with
            ``max_positives``, every batch of an orientation has the same shapes, so the training
            step is traced and XLA-compiled once per orientation instead of once per shape). None:
            pad to the batch maximum.
        max_positives: likewise for the (cell, instance) pairs.
        short_sides: multi-scale training: each image's short side is drawn from these
            (at most the short side of ``config.image_scale``); None: the model's scale.

    Returns:
        ``(images (B, Hc, Wc, 3) uint8, targets)`` batches, one canvas per batch
        (``solo_lib.geometry.canvas_size``); see :func:`to_training_example`, with pairs and masks
        padded per batch (``pos_valid`` is 0 on padding, 1 on real pairs).

    Raises:
        ConfigError: no image scale in ``config``, or bad ``short_sides``.
    """
    short_sides = check_short_sides(short_sides, config)
    augment = augment or AugmentConfig.paper()
    # The augmentation runs as given (its crop_size too). The resize fits an image in its canvas;
    # only a scale factor above 1 can make it overflow, and only then is the canvas crop added.
    may_enlarge = augment.scale_range[1] > 1.0
    base_seed = tf.constant([seed, 0], tf.int64)
    image_scale = config.image_scale
    # A square scale gives both orientations one canvas: a Python constant, so batches have static
    # shapes and need no grouping. Otherwise the canvas is chosen per image, in the graph.
    landscape, portrait = canvas_size(1, 2, image_scale), canvas_size(2, 1, image_scale)
    fixed = landscape if landscape == portrait else None

    def prepare(index, sample):
        scale_seed, augment_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(
            aug.element_seed(base_seed, index), num=3))
        # The canvas of the image's orientation, decided by its original size.
        canvas = fixed or canvas_size_tensor(tf.shape(sample["image"])[:2], image_scale)
        sample = aug.resize_to_scale(sample, training_scale(config, short_sides, scale_seed))
        sample = aug.augment(sample, augment_seed, augment)
        if may_enlarge:
            sample = aug.random_crop(sample, canvas, crop_seed)  # the canvas crop: see the docstring
        return to_training_example(sample, config, canvas)

    def orientation(index, sample):
        shape = tf.shape(sample["image"])
        return tf.cast(shape[1] > shape[0], tf.int64)  # 1: landscape, 0: portrait or square

    ds = source.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate()  # the index seeds the element's scale and augmentation
    if fixed is None:
        # Consecutive runs of batch_size images of one orientation, so each batch has one canvas
        # (the authors' GroupSampler groups by aspect ratio the same way). Grouping happens before
        # any work, so skipping the batches already trained stays cheap and keeps the order.
        ds = ds.group_by_window(orientation, lambda key, window: window, window_size=batch_size)
    ds = ds.skip(start_step * batch_size)
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    padded_shapes = None
    if max_instances is not None or max_positives is not None:
        ds = ds.map(lambda image, t: _check_limits(image, t, max_instances, max_positives))
        k, n = max_positives, max_instances
        hc, wc = fixed or (None, None)
        stride = config.mask_stride
        padded_shapes = ((hc, wc, 3), {
            "category": (config.num_cells,), "pos_cells": (k,), "pos_instances": (k,), "pos_valid": (k,),
            "masks": (n, hc and hc // stride, wc and wc // stride)})
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
