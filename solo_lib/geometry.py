"""Where the grids lie: the image scale and the canvas, one rule for training and inference
(notebooks 04 and 09).

SOLO's S x S grids divide the network's input, the *canvas* (SOLO §3.1): cell ``(i, j)`` covers
rows ``[i, i + 1) * Hc / S`` and columns ``[j, j + 1) * Wc / S``. What a cell means therefore
depends on where the image lies in the canvas, and it must be the same in training (where the
targets are built) and at inference (where a cell's kernel is read), or the model is trained on
one geometry and tested on another.

The rule here, for an image of size ``(H, W)`` and a model's ``image_scale = (long, short)``:

1. resize the image, keeping its aspect ratio, to fit the scale
   (:func:`solo_lib.data.augment.rescale_size`, ``mmcv.imrescale``'s rule; the paper's scale is
   (1333, 800): short side 800, long side at most 1333);
2. put it at the top-left of the canvas of its orientation, :func:`canvas_size`: for a landscape
   image (``W > H``) ``(short, long)`` rounded up to multiples of 32, for a portrait or square one
   ``(long, short)`` rounded up; the resized image always fits.

Training batches hold images of one orientation (the pipeline groups them, as the authors'
``GroupSampler`` groups by aspect ratio), so a batch has one canvas, and ``predict`` pads its
image to the same canvas. Every image of an orientation shares one canvas shape: two shapes in
all (one for a square scale), so the training step is traced (or XLA-compiled) at most twice.

Where this differs from the reference: the authors pad each training batch to its largest image
and each test image to a multiple of 32 (``Pad(size_divisor=32)``), so their grid spans roughly
the image, but not exactly the same part of it in training and at test. Here the grid spans the
fixed canvas of the orientation: exactly the same in both, at the price of some padding for images
whose aspect ratio is not ``long / short`` (a 4:3 photo at (1333, 800) is 1067 x 800 on a
1344 x 800 canvas). Multi-scale training (``TrainConfig.short_sides``) draws smaller short sides
inside the same canvas, so a grid cell keeps its size in pixels while objects change size.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from solo_lib.data.augment import rescale_size

SIZE_DIVISOR = 32  # the canvas is a multiple of the coarsest stride (P5, 32), as the reference pads


def round_up(value: int, multiple: int = SIZE_DIVISOR) -> int:
    """``value`` rounded up to a multiple of ``multiple``."""
    return -(-int(value) // multiple) * multiple


def canvas_size(height: int, width: int, image_scale) -> tuple[int, int]:
    """The canvas ``(Hc, Wc)`` of an image of the original size ``(height, width)``.

    Args:
        height, width: the image's size before resizing (its orientation decides the canvas).
        image_scale: ``(long, short)`` (either order), or None: the image is not resized and its
            canvas is its own size rounded up to 32 (models saved before the image scale existed).

    Returns:
        ``(Hc, Wc)``, multiples of 32, large enough for the image resized to ``image_scale``.
    """
    if image_scale is None:
        return round_up(height), round_up(width)
    long, short = round_up(max(image_scale)), round_up(min(image_scale))
    return (short, long) if width > height else (long, short)


def canvas_size_tensor(size, image_scale):
    """:func:`canvas_size` in TensorFlow ops: ``size`` a ``(2,)`` integer tensor ``(H, W)`` of the
    original image; returns a ``(2,)`` int32 tensor. ``image_scale`` must not be None."""
    long, short = round_up(max(image_scale)), round_up(min(image_scale))
    landscape = size[1] > size[0]
    return tf.where(landscape, tf.constant([short, long], tf.int32), tf.constant([long, short], tf.int32))


def input_geometry(height: int, width: int, image_scale) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(resized, canvas)``: the size the image is resized to and the canvas it is padded to.

    ``resized`` is ``(height, width)`` itself when ``image_scale`` is None.
    """
    resized = (int(height), int(width)) if image_scale is None else rescale_size(int(height), int(width), image_scale)
    return resized, canvas_size(height, width, image_scale)


def grid_cell(y: float, x: float, canvas: tuple[int, int], grid: int) -> tuple[int, int]:
    """The cell ``(row, column)`` of an S x S grid over ``canvas`` that holds the canvas point
    ``(y, x)`` (as ``solo_lib.targets`` assigns a centre of mass: ``floor(v / size * S)``,
    clipped to the grid)."""
    row = min(max(int(y / canvas[0] * grid), 0), grid - 1)
    col = min(max(int(x / canvas[1] * grid), 0), grid - 1)
    return row, col


def on_canvas(sample, config):
    """A sample as the network sees it: resized to ``config.image_scale`` and padded to its canvas.

    The same transforms as the training pipeline without augmentation (``solo_lib.data.pipeline``):
    :func:`solo_lib.data.augment.resize_to_scale`, then zero padding at the bottom and right.
    Instances that the resize leaves empty are dropped, as in training.

    Args:
        sample: a ``solo_lib.data.coco.Sample`` or a sample dict (``image``, ``masks``,
            ``labels``, optional ``iscrowd``).
        config: a ``SOLOConfig``.

    Returns:
        The same kind of object with numpy arrays: ``image`` ``(Hc, Wc, 3)`` uint8, ``masks``
        ``(N, Hc, Wc)`` uint8, ``boxes`` on the canvas, and the per-instance arrays of the kept
        instances. The image's region is ``input_geometry(H, W, config.image_scale)[0]``.
    """
    import dataclasses

    from solo_lib.data import augment as aug

    is_dict = isinstance(sample, dict)
    s = sample if is_dict else vars(sample)
    image, masks = np.asarray(s["image"]), np.asarray(s["masks"])
    height, width = image.shape[:2]
    resized, (hc, wc) = input_geometry(height, width, config.image_scale)
    core = {"image": image, "masks": masks, "labels": np.asarray(s["labels"]),
            "iscrowd": np.asarray(s.get("iscrowd", np.zeros(len(masks), bool)))}
    out = aug.resize(core, resized) if resized != (height, width) else aug.drop_small_instances(core, 0)
    keep = np.asarray(tf.reduce_any(out["masks"] != 0, axis=[1, 2]))  # (N,) the ONE keep vector
    placed = {"image": tf.image.pad_to_bounding_box(out["image"], 0, 0, hc, wc).numpy(),
              "masks": np.pad(np.asarray(out["masks"])[keep], [(0, 0), (0, hc - resized[0]), (0, wc - resized[1])]),
              "labels": np.asarray(out["labels"])[keep], "iscrowd": np.asarray(out["iscrowd"])[keep]}
    placed["boxes"] = aug.boxes_from_masks(placed["masks"]).numpy()
    for key in ("annotation_ids",):
        if key in s:
            placed[key] = np.asarray(s[key])[keep]
    if is_dict:
        return {**sample, **placed}
    return dataclasses.replace(sample, **placed)
