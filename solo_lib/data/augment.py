"""Augmentation that keeps an image and its instance masks aligned (notebook 03).

A *sample* is a dict of tensors (numpy arrays are accepted and converted):

- ``image``: (H, W, 3) uint8
- ``masks``: (N, H, W) uint8 in {0, 1}
- ``labels``: (N,) int32 contiguous class labels
- ``iscrowd``: (N,) bool
- ``boxes``: (N, 4) float32 ``[x0, y0, x1, y1]``, the tight box of each mask with exclusive
  right/bottom edges (``x1 = max_x + 1``); an empty mask has the box ``[0, 0, 0, 0]``.
- any other key (``image_id``, ...) is passed through unchanged.

N may be 0. Every transform is written in TensorFlow ops, so the same code runs eagerly (the
notebook widget) and inside ``tf.data.Dataset.map`` (training). Random choices come from
stateless RNG ops driven by a ``(2,)`` integer ``seed``: the same seed gives the same result on
every run, whatever the order in which ``tf.data`` workers process the elements.

:func:`augment` applies the augmentations registered in :mod:`solo_lib.data.augment_registry`;
the four built-in ones (flip, brightness, scale, crop) are registered at the end of this module,
and a new one is one function plus one ``register_augmentation`` call.

Why alignment is the whole point: row ``i`` of ``masks``, ``labels``, ``iscrowd`` and ``boxes``
describes the same instance. A known TensorFlow implementation of this design dropped the
annotation of an instance that a crop removed but kept its mask, so every later mask silently
moved onto the previous instance's class. Here an instance is dropped with ONE keep vector that
is applied to every per-instance array (see :func:`drop_small_instances`).

Why one module past ~300 lines: every function here transforms the same sample format (one
preparation, one keep vector, boxes recomputed from the masks), and notebook 03 teaches them side
by side from this one namespace (``aug.*``), the resize to the image scale that training,
inference and export share (:func:`rescale_size` to :func:`resize_to_scale`) included. The
registry, which is not a transform, is its own module.
"""

import math
from fractions import Fraction

import numpy as np
import tensorflow as tf

from solo_lib.data.augment_config import AugmentConfig, is_int, is_real
from solo_lib.data.augment_registry import check_extra, register_augmentation, registered_augmentations

# The keys whose row i belongs to instance i. They are always filtered together.
INSTANCE_KEYS = ("masks", "labels", "iscrowd", "boxes")
_REQUIRED_KEYS = ("image", "masks", "labels", "iscrowd")


def rescale_size(height, width, scale):
    """The size of an image resized, keeping its aspect ratio, to fit ``scale``.

    ``scale`` is ``(long, short)`` in either order (the larger number bounds the long side, the
    smaller the short side, as mmcv reads its ``img_scale``): the factor is the largest that
    satisfies both, ``f = min(long / max(h, w), short / min(h, w))``, so small images are enlarged
    and large ones shrunk. Sizes are rounded half up, ``floor(x * f + 1/2)``, the rule of
    ``mmcv.imrescale`` (``rescale_size``/``_scale_size`` in ``mmcv/image/geometric.py``), which the
    authors' pipeline uses in training and at test (``Resize(img_scale=(1333, 800),
    keep_ratio=True)``, SOLOv2 §4).

    Where this differs from mmcv: mmcv evaluates the rule in float64, and at an exact tie
    (``x * f`` = k + 1/2, e.g. 298 x 596 at (1333, 800): 666.5) the rounding of ``f`` sometimes
    gives k instead of k + 1 (about 1 size in 10,000). Here the rule is evaluated exactly, in
    rational arithmetic: ties always round up. That makes it computable with integers alone, so
    the same sizes come out of :func:`rescale_size_tensor` in any runtime, including those with
    no float64 (LiteRT, ``solo_lib.export``), and training, ``predict`` and an exported model
    always agree.

    Args:
        height, width: the image's size, positive integers.
        scale: ``(long, short)`` positive numbers, e.g. the paper's ``(1333, 800)``.

    Returns:
        ``(new_height, new_width)``, each at least 1.

    Raises:
        ValueError: a size or scale that is not positive.
    """
    if not (is_int(height) and is_int(width) and height > 0 and width > 0):
        raise ValueError(f"image size must be two positive integers, got {(height, width)}")
    if not (len(scale) == 2 and all(is_real(v) and v > 0 for v in scale)):
        raise ValueError(f"scale must be (long, short), two positive numbers, got {scale!r}")
    long, short = Fraction(max(scale)), Fraction(min(scale))  # exact, also for a float scale
    factor = min(long / max(height, width), short / min(height, width))
    return max(1, math.floor(height * factor + Fraction(1, 2))), max(1, math.floor(width * factor + Fraction(1, 2)))


def rescale_size_tensor(size, scale):
    """:func:`rescale_size` in TensorFlow integer ops, for sizes and scales known only in the graph.

    With ``f = n / d`` (``long / max(h, w)`` or ``short / min(h, w)``, whichever is smaller:
    compared as ``long * min(h, w) <= short * max(h, w)``), ``floor(x * n / d + 1/2)`` is the
    integer division ``(2 x n + d) // (2 d)``: exact, and the same as :func:`rescale_size`
    (``tests/test_geometry.py`` compares them). int32 holds ``2 x n`` for sides up to about
    800,000 pixels at the paper's scale.

    Args:
        size: ``(2,)`` integer tensor ``(height, width)``.
        scale: ``(2,)`` integer tensor or pair ``(long, short)``.

    Returns:
        ``(2,)`` int32 ``(new_height, new_width)``.
    """
    size = tf.cast(size, tf.int32)
    scale = tf.cast(tf.convert_to_tensor(scale), tf.int32)
    long, short = tf.reduce_max(scale), tf.reduce_min(scale)
    big, small = tf.reduce_max(size), tf.reduce_min(size)
    long_binds = long * small <= short * big  # long / big <= short / small
    num, den = tf.where(long_binds, long, short), tf.where(long_binds, big, small)
    return tf.maximum((2 * size * num + den) // (2 * den), 1)


def boxes_from_masks(masks):
    """Tight boxes of binary masks.

    Args:
        masks: (N, H, W) masks; any non-zero pixel belongs to the instance.

    Returns:
        (N, 4) float32 ``[x0, y0, x1, y1]`` with exclusive right/bottom edges
        (``x1 = max_x + 1``); ``[0, 0, 0, 0]`` for an empty mask.
    """
    present = tf.cast(tf.convert_to_tensor(masks), tf.bool)  # (N, H, W)
    rows = tf.reduce_any(present, axis=2)  # (N, H): does row y hold a mask pixel?
    cols = tf.reduce_any(present, axis=1)  # (N, W)

    def first_and_end(lines):
        # (N, L) bool -> first True index and (last True index + 1), per instance.
        index = tf.range(tf.shape(lines)[1])[None, :]
        first = tf.reduce_min(tf.where(lines, index, tf.shape(lines)[1]), axis=1)
        end = tf.reduce_max(tf.where(lines, index + 1, 0), axis=1)
        return first, end

    x0, x1 = first_and_end(cols)
    y0, y1 = first_and_end(rows)
    boxes = tf.cast(tf.stack([x0, y0, x1, y1], axis=1), tf.float32)  # (N, 4)
    nonempty = tf.reduce_any(rows, axis=1)[:, None]  # (N, 1)
    return tf.where(nonempty, boxes, tf.zeros_like(boxes))


def _prepare(sample):
    """Returns a shallow copy of ``sample`` with its arrays as tensors of the documented dtypes."""
    missing = [key for key in _REQUIRED_KEYS if key not in sample]
    if missing:
        raise ValueError(f"sample is missing {missing}; a sample needs the keys {_REQUIRED_KEYS}")
    out = dict(sample)
    image = tf.convert_to_tensor(sample["image"])
    if image.dtype != tf.uint8 or image.shape.rank not in (None, 3):
        raise ValueError(
            f"sample['image'] must be (H, W, 3) uint8, got {image.shape} {image.dtype.name}")
    out["image"] = image
    out["masks"] = tf.cast(tf.convert_to_tensor(sample["masks"]) != 0, tf.uint8)
    out["labels"] = tf.cast(tf.convert_to_tensor(sample["labels"]), tf.int32)
    out["iscrowd"] = tf.cast(tf.convert_to_tensor(sample["iscrowd"]), tf.bool)
    return out


def _replace(sample, image, masks):
    """Returns ``sample`` with a new image and masks, and boxes recomputed from the masks."""
    out = dict(sample)
    out["image"] = image
    out["masks"] = masks
    out["boxes"] = boxes_from_masks(masks)
    return out


def drop_small_instances(sample, min_pixels):
    """Drops the instances whose mask has fewer than ``min_pixels`` pixels.

    One keep vector filters masks, labels and iscrowd together, and the boxes are recomputed from
    the kept masks, so row i of every per-instance array still describes the same instance.

    Args:
        sample: A sample dict with N instances.
        min_pixels: Smallest mask area (in pixels) that is kept.

    Returns:
        A new sample with K <= N instances, in their original order.
    """
    sample = _prepare(sample)
    area = tf.reduce_sum(tf.cast(sample["masks"], tf.int32), axis=[1, 2])  # (N,)
    keep = area >= min_pixels  # (N,) the ONE keep vector
    out = dict(sample)
    for key in ("masks", "labels", "iscrowd"):
        out[key] = tf.boolean_mask(sample[key], keep)
    out["boxes"] = boxes_from_masks(out["masks"])  # == the kept rows of the old boxes
    return out


def horizontal_flip(sample):
    """Mirrors the image and every mask left-right.

    Args:
        sample: A sample dict; image (H, W, 3), masks (N, H, W).

    Returns:
        A new sample of the same shapes with recomputed boxes.
    """
    sample = _prepare(sample)
    # tf.reverse, not a [:, ::-1] slice: the same values, but the strided slice runs as a generic
    # element-by-element gather, several times slower on a paper-scale image.
    return _replace(sample, tf.reverse(sample["image"], [1]), tf.reverse(sample["masks"], [2]))


def adjust_brightness(sample, delta):
    """Adds ``delta * 255`` to every channel of the image, clipped to [0, 255].

    Args:
        sample: A sample dict.
        delta: Scalar shift as a fraction of 255, in [-1, 1]. May be a tensor.

    Returns:
        A new sample; only the image changes.

    Raises:
        ValueError: If ``delta`` is a Python number outside [-1, 1].
    """
    if is_real(delta) and not -1.0 <= delta <= 1.0:
        raise ValueError(f"brightness delta must be in [-1, 1] (a fraction of 255), got {delta}")
    sample = _prepare(sample)
    shifted = tf.cast(sample["image"], tf.float32) + tf.cast(delta, tf.float32) * 255.0
    image = tf.cast(tf.clip_by_value(tf.round(shifted), 0.0, 255.0), tf.uint8)
    return _replace(sample, image, sample["masks"])


def rescale(sample, factor):
    """Resizes the image and masks by ``factor``.

    The output size is ``(round(H * factor), round(W * factor))``, at least 1 pixel each way.
    The image is resized bilinearly without antialiasing; each mask is resized bilinearly and
    thresholded at 0.5. A mask may become empty when shrinking; :func:`augment` drops it.

    Args:
        sample: A sample dict; image (H, W, 3), masks (N, H, W).
        factor: Positive scalar resize factor. May be a tensor.

    Returns:
        A new sample with image (H', W', 3), masks (N, H', W') and recomputed boxes.

    Raises:
        ValueError: If ``factor`` is a Python number <= 0.
    """
    if is_real(factor) and not factor > 0:
        raise ValueError(f"rescale factor must be > 0, got {factor}")
    sample = _prepare(sample)
    old_size = tf.cast(tf.shape(sample["image"])[:2], tf.float64)
    size = tf.maximum(tf.cast(tf.round(old_size * tf.cast(factor, tf.float64)), tf.int32), 1)
    return resize(sample, size)


def resize_image(image, size):
    """An ``(H, W, 3)`` uint8 image resized bilinearly (no antialiasing) to ``size``, rounded back
    to uint8. Training (:func:`resize`) and inference (``solo_lib.inference.preprocess``) both
    resize images with this one function, so a model sees the same pixels in both."""
    resized = tf.image.resize(image, size, method="bilinear", antialias=False)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def resize(sample, size):
    """Resizes the image and masks to ``size`` = ``(height, width)`` (a pair or a ``(2,)`` tensor).

    The image as :func:`resize_image`; each mask bilinearly, thresholded at 0.5 (mmcv resizes
    masks with nearest-neighbour sampling; the threshold keeps thin parts more evenly). A mask may
    become empty when shrinking; :func:`augment` and the training pipeline drop it.

    Returns:
        A new sample with recomputed boxes.
    """
    sample = _prepare(sample)
    image = resize_image(sample["image"], size)
    # The N masks are resized as a batch of N one-channel images: (N, H, W, 1).
    masks = tf.cast(sample["masks"], tf.float32)[..., None]
    masks = tf.image.resize(masks, size, method="bilinear", antialias=False)[..., 0]
    return _replace(sample, image, tf.cast(masks >= 0.5, tf.uint8))


def resize_to_scale(sample, scale):
    """Resizes a sample, keeping its aspect ratio, to fit ``scale`` = ``(long, short)``
    (:func:`rescale_size`; ``scale`` may be a ``(2,)`` tensor)."""
    sample = _prepare(sample)
    return resize(sample, rescale_size_tensor(tf.shape(sample["image"])[:2], scale))


def random_crop(sample, window, seed):
    """Cuts a random window of at most ``window`` = ``(height, width)`` out of a sample.

    A dimension smaller than the window is kept whole. The offset is drawn uniformly among the
    valid ones from the stateless ``seed``.

    Args:
        sample: A sample dict.
        window: ``(2,)`` int32 tensor or pair.
        seed: ``(2,)`` integer stateless seed.

    Returns:
        A new sample of size ``min(size, window)``; instances left empty are dropped.
    """
    sample = _prepare(sample)
    size = tf.shape(sample["image"])[:2]  # (2,) = (H, W)
    window = tf.minimum(tf.cast(window, tf.int32), size)
    # size - window + 1 valid offsets per axis; floor(u * count) picks one uniformly.
    count = tf.cast(size - window + 1, tf.float32)
    offset = tf.cast(tf.floor(tf.random.stateless_uniform([2], seed) * count), tf.int32)
    offset = tf.minimum(offset, size - window)  # guard against float rounding up to count
    return crop(sample, offset[0], offset[1], window[0], window[1])


def crop(sample, top, left, height, width):
    """Cuts the window ``[top, top + height) x [left, left + width)`` out of the sample.

    The window is clipped to the image. Instances left with an empty mask are dropped (together
    with their labels, iscrowd and boxes) and the boxes are recomputed.

    Args:
        sample: A sample dict; image (H, W, 3), masks (N, H, W).
        top, left: Offsets of the window's top-left corner, >= 0. May be tensors.
        height, width: Size of the window, >= 1. May be tensors.

    Returns:
        A new sample with image (h, w, 3), masks (K, h, w), K <= N.

    Raises:
        ValueError: If one of the window values is a Python number out of range.
    """
    for name, value, low in (("top", top, 0), ("left", left, 0), ("height", height, 1),
                             ("width", width, 1)):
        if is_real(value) and value < low:
            raise ValueError(f"crop {name} must be >= {low}, got {value}")
    sample = _prepare(sample)
    image = sample["image"][top:top + height, left:left + width, :]
    masks = sample["masks"][:, top:top + height, left:left + width]
    return drop_small_instances(_replace(sample, image, masks), 1)


def _as_seed(seed):
    seed = tf.convert_to_tensor(seed)
    if not seed.shape.is_compatible_with([2]):
        raise ValueError(f"seed must have shape (2,), got {seed.shape}")
    return seed if seed.dtype in (tf.int32, tf.int64) else tf.cast(seed, tf.int64)


def element_seed(seed, index):
    """The seed of element ``index`` of a dataset whose base seed is ``seed``:
    ``tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), index)``.

    The one per-element seeding rule, used by :func:`augment_dataset` and the training pipeline
    (``solo_lib.data.pipeline``): element ``i`` gets the same seed whatever the order in which
    parallel ``tf.data`` calls run. The seed's dtype follows ``index``'s (the int64 index of
    ``Dataset.enumerate``; a Python int gives a different, int32 seed).
    """
    return tf.random.experimental.stateless_fold_in(tf.cast(_as_seed(seed), tf.int64), index)


# The built-in augmentations, registered in the order augment() applies them. Each draws from its
# own seed, split from augment()'s (see solo_lib.data.augment_registry); the order, the slots and the
# draws are those of the fixed sequence they replace, so results are bit-identical to it.

def _random_flip(sample, seed, params):
    do_flip = tf.random.stateless_uniform([], seed) < params["flip_prob"]
    return tf.cond(do_flip, lambda: horizontal_flip(sample), lambda: dict(sample))


def _random_brightness(sample, seed, params):
    max_delta = params["brightness_delta"]
    return adjust_brightness(sample, tf.random.stateless_uniform([], seed, -max_delta, max_delta))


def _random_scale(sample, seed, params):
    # Log-uniform, so zooming in by 1.25 is as likely as zooming out by 0.8.
    low, high = (math.log(v) for v in params["scale_range"])
    return rescale(sample, tf.exp(tf.random.stateless_uniform([], seed, low, high, dtype=tf.float64)))


def _random_window(sample, seed, params):
    return random_crop(sample, params["crop_size"], seed)


def _preview_crop(sample, amount, seed):
    # A window of 1 - 0.7 * amount of each side, at an offset drawn from a numpy generator.
    h, w = sample["image"].shape[:2]
    ch, cw = max(1, round(h * (1 - 0.7 * amount))), max(1, round(w * (1 - 0.7 * amount)))
    rng = np.random.default_rng(seed)
    return crop(sample, int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw)


# A step whose range is empty changes nothing (no flip, a shift of 0, a factor of exactly 1), so it
# is inactive: left out of the graph, the same result without a pass over the image and masks.
register_augmentation("flip", _random_flip, fields=("flip_prob",), active=lambda p: p["flip_prob"] > 0,
                      preview=lambda sample, amount, seed: horizontal_flip(sample))
register_augmentation("brightness", _random_brightness, fields=("brightness_delta",),
                      active=lambda p: p["brightness_delta"] > 0,
                      preview=lambda sample, amount, seed: adjust_brightness(sample, 2.0 * amount - 1.0))
register_augmentation("scale", _random_scale, fields=("scale_range",), active=lambda p: p["scale_range"] != (1.0, 1.0),
                      preview=lambda sample, amount, seed: rescale(sample, 0.5 + amount))
register_augmentation("crop", _random_window, fields=("crop_size",), active=lambda p: p["crop_size"] is not None,
                      preview=_preview_crop)


def augment(sample, seed, config=AugmentConfig()):
    """Applies the registered augmentations (by default flip -> brightness -> scale -> crop), keeping
    instances aligned.

    Each registered augmentation (:mod:`solo_lib.data.augment_registry`) that is active for
    ``config`` runs in registration order with its own seed split from ``seed``; then instances
    smaller than ``config.min_mask_pixels`` are dropped and the boxes recomputed. Every random draw
    comes from ``seed``, so the same seed always gives the same result; the function traces inside
    ``tf.data`` (the flip is a ``tf.cond``, every other choice is arithmetic on drawn tensors).

    Args:
        sample: A sample dict with N instances (N may be 0).
        seed: (2,) int32 or int64 tensor or array, the stateless RNG seed.
        config: An :class:`AugmentConfig`.

    Returns:
        A new sample with K <= N instances; keys other than the image and the per-instance
        arrays are passed through unchanged.

    Raises:
        ValueError: ``config.extra`` names an augmentation that is not registered, or a parameter
            it does not declare.
    """
    check_extra(config)
    steps = [(a, a.params(config)) for a in registered_augmentations()]
    steps = [(a, params) for a, params in steps if a.active(params)]
    prepared = _prepare(sample)
    # Only tensors go through tf.cond; other keys (strings, Python ints) are re-attached at the end.
    core = {key: prepared[key] for key in _REQUIRED_KEYS}
    core["boxes"] = boxes_from_masks(core["masks"])
    if steps:
        # Row k of the split is the same for any num (module docstring of augment_registry).
        seeds = tf.random.experimental.stateless_split(_as_seed(seed), num=1 + max(a.slot for a, _ in steps))
        for augmentation, params in steps:
            core = augmentation.op(core, seeds[augmentation.slot], params)
    core = drop_small_instances(core, config.min_mask_pixels)
    out = dict(sample)
    out.update(core)
    return out


def augment_dataset(ds, seed, config=AugmentConfig()):
    """Maps :func:`augment` over a dataset of samples with one seed per element.

    Element ``i`` is augmented with :func:`element_seed` ``(seed, i)`` for the int64 index ``i``
    of ``Dataset.enumerate``. The result does not depend on how many parallel calls ran.

    Args:
        ds: A ``tf.data.Dataset`` whose elements are sample dicts.
        seed: (2,) integer base seed.
        config: An :class:`AugmentConfig`.

    Returns:
        A ``tf.data.Dataset`` of augmented samples, in the input order.
    """
    base_seed = tf.cast(_as_seed(seed), tf.int64)
    return ds.enumerate().map(lambda index, sample: augment(sample, element_seed(base_seed, index), config),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
