"""From SOLOv2 outputs to instance masks (SOLOv2 §3.3 "Inference", notebook 10).

The steps follow the authors' code, WXinlong/SOLO ``SOLOv2Head.get_seg_single`` (and
``points_nms`` in ``mmdet/models/anchor_heads/solov2_head.py``), which mmdetection's
``SOLOV2Head._predict_by_feat_single`` repeats:

1. category scores = sigmoid(logits); **point NMS** keeps a score only where it is the maximum of
   its 2x2 neighbourhood (the cell, the one above, the one to the left and the one above-left);
2. keep the (cell, class) pairs with score > ``score_thr``;
3. dynamic convolution for those cells only (:mod:`solo_lib.model.dynamic`), sigmoid: mask
   probabilities at stride 4;
4. binarise at ``mask_thr``; drop masks with no more pixels *on the stride-4 map* than the stride
   of their level (``config.level_strides``: 8, 8, 16, 32, 32). The reference compares this pixel
   count with the level's stride (``keep = sum_masks > strides``); it is a heuristic threshold,
   not an area in image pixels;
5. maskness = mean probability inside the binary mask; score *= maskness;
6. Matrix NMS (:mod:`solo_lib.nms`) on the top ``nms_pre``, keep scores >= ``update_thr``, and the
   top ``max_per_img``;
7. upsample the kept probabilities x4 to the canvas (bilinear), crop the image region (the canvas
   is padded at the bottom and right), resize to the original size, binarise at ``mask_thr``.

Before the network, :func:`preprocess` resizes the image to the model's ``image_scale`` and pads
it to the canvas of its orientation, exactly as the training pipeline does
(``solo_lib.geometry``), so every grid cell covers the same part of the image as in training.

Steps 1-7 are :func:`instances`: tensor code without Python branching on values (an image with no
detection flows through as zero-size tensors), so it runs inside ``tf.function`` and is what
``solo_lib.export`` puts in the exported graph. :func:`postprocess` is its eager front: it checks the
canvas against the network outputs, runs :func:`instances` and returns numpy arrays, always;
:func:`predict` is the whole of inference for one image.
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from solo_lib.config import SOLOConfig
from solo_lib.data.augment import resize_image
from solo_lib.geometry import input_geometry
from solo_lib.model.dynamic import dynamic_conv_matmul, gather_kernels
from solo_lib.model.solov2 import split_levels
from solo_lib.nms import matrix_nms


def point_nms(scores):
    """Keeps a score only where it is the maximum of its 2x2 neighbourhood, else 0.

    The reference's ``points_nms``: ``max_pool2d(kernel 2, stride 1, padding 1)`` then crop
    ``[:-1, :-1]``, so cell (i, j) is compared with (i-1, j-1), (i-1, j), (i, j-1) and itself;
    cells on the top row or left column have fewer neighbours (the padding is -inf). Ties keep
    every tied cell.

    Args:
        scores: ``(B, S, S, C)`` category probabilities of one level.

    Returns:
        ``(B, S, S, C)``: ``scores`` where it equals that local maximum, else 0.
    """
    padded = tf.pad(scores, [[0, 0], [1, 0], [1, 0], [0, 0]], constant_values=float("-inf"))
    local_max = tf.nn.max_pool2d(padded, ksize=2, strides=1, padding="VALID")  # (B, S, S, C)
    return tf.where(local_max == scores, scores, tf.zeros_like(scores))


def category_scores(category_logits, grid_sizes):
    """Sigmoid and point NMS on each level's grid.

    Args:
        category_logits: ``(B, M, C)`` flat category logits, M = sum of S^2 over levels.
        grid_sizes: S of each level.

    Returns:
        ``(B, M, C)`` scores in the same flat layout, zero where point NMS suppressed them.
    """
    levels = split_levels(tf.sigmoid(tf.cast(category_logits, tf.float32)), grid_sizes)
    num_classes = tf.shape(category_logits)[-1]
    flat = [tf.reshape(point_nms(level), (tf.shape(level)[0], s * s, num_classes))
            for level, s in zip(levels, grid_sizes)]
    return tf.concat(flat, axis=1)


def cell_strides(config: SOLOConfig) -> np.ndarray:
    """``(M,)`` float32: the small-mask threshold of every flat grid cell: its level's stride
    (``config.level_strides``) times ``config.mask_area_scale`` (1.0 in the reference)."""
    sizes = [s * s for s in config.grid_sizes]
    return np.repeat(np.asarray(config.level_strides, np.float32) * config.mask_area_scale, sizes)


def postprocess(outputs, config: SOLOConfig, image_size, canvas_size, *, index=0, original_size=None) -> dict:
    """Turns the network outputs of one image into scored instance masks.

    Args:
        outputs: the model's output dict for a batch: ``category`` ``(B, M, C)`` logits,
            ``kernel`` ``(B, M, E)`` and ``mask_feature`` ``(B, Hc/4, Wc/4, E)``.
        config: the model's ``SOLOConfig`` (grids, strides and the inference thresholds
            ``score_thr``, ``mask_thr``, ``nms_pre``, ``update_thr``, ``max_per_img``,
            ``nms_kernel``, ``nms_sigma``).
        image_size: ``(h, w)`` of the image region at the top-left of the canvas.
        canvas_size: ``(Hc, Wc)`` of the padded model input; must be ``mask_stride`` times the
            mask feature size (true for canvases padded to a multiple of 32).
        index: which image of the batch to post-process (default: the first).
        original_size: ``(H0, W0)`` to resize the masks to, if the image was resized before the
            model; default ``image_size``.

    Returns:
        dict of numpy arrays, sorted by score (highest first): ``masks`` ``(K, H0, W0)`` uint8 in
        {0, 1}, ``labels`` ``(K,)`` int32, ``scores`` ``(K,)`` float32; K = 0 if nothing passes.

    Raises:
        ValueError: the canvas does not match the mask feature or the image does not fit it.
        RuntimeError: called inside ``tf.function``, where there are no numpy arrays to return:
            call :func:`instances` there, as ``solo_lib.export`` does.
    """
    if not tf.executing_eagerly():
        raise RuntimeError("postprocess returns numpy arrays and runs eagerly; inside tf.function call "
                           "solo_lib.inference.instances(category, kernel, mask_feature, config, image_size), "
                           "which returns the same dict as tensors")
    c = config
    image_size = tuple(int(v) for v in image_size)
    original_size = image_size if original_size is None else tuple(int(v) for v in original_size)
    feature = outputs["mask_feature"][index:index + 1]  # (1, h4, w4, E)
    feature_h, feature_w = int(feature.shape[1]), int(feature.shape[2])
    upsampled = (feature_h * c.mask_stride, feature_w * c.mask_stride)
    fits = 0 < image_size[0] <= upsampled[0] and 0 < image_size[1] <= upsampled[1]
    if tuple(int(v) for v in canvas_size) != upsampled or not fits:
        raise ValueError(f"canvas {tuple(canvas_size)} must be {c.mask_stride} x the mask feature size "
                         f"({upsampled}) and contain the image {image_size}; prepare the image with "
                         "solo_lib.inference.preprocess(image, config) before the model")

    result = instances(outputs["category"][index:index + 1], outputs["kernel"][index:index + 1], feature, c,
                       image_size, original_size if original_size != image_size else None)
    return {k: v.numpy() for k, v in result.items()}


def instances(category, kernel, feature, config: SOLOConfig, image_size, original_size=None) -> dict:
    """Steps 1-7 of the module docstring for one image, in TensorFlow ops only, eager or inside
    ``tf.function``: what :func:`postprocess` runs after its checks, and what ``solo_lib.export``
    puts in the exported graph, where the sizes are known only when an image arrives.

    Args:
        category: ``(1, M, C)`` category logits; kernel: ``(1, M, E)``; feature: ``(1, h4, w4, E)``.
        config: the model's ``SOLOConfig``.
        image_size: ``(h, w)`` of the image region at the top-left of the canvas (ints or a ``(2,)``
            int32 tensor); the canvas is ``mask_stride`` times the feature's size.
        original_size: ``(H0, W0)`` to resize the masks to, or None to keep ``image_size``.

    Returns:
        dict of tensors, highest score first: ``masks`` ``(K, H0, W0)`` uint8, ``labels`` ``(K,)``
        int32, ``scores`` ``(K,)`` float32.
    """
    c = config
    # 1-2. Point NMS, then (cell, class) pairs above score_thr; tf.where lists them row-major.
    scores = category_scores(category, c.grid_sizes)[0]  # (M, C)
    candidates = tf.where(scores > c.score_thr)  # (K, 2) [cell, class]
    cells, labels = tf.cast(candidates[:, 0], tf.int32), tf.cast(candidates[:, 1], tf.int32)
    scores = tf.gather_nd(scores, candidates)  # (K,)

    # 3. Dynamic convolution for the candidate cells only.
    kernels = gather_kernels(kernel, cells[None])  # (1, K, E)
    probs = tf.sigmoid(tf.cast(dynamic_conv_matmul(feature, kernels)[0], tf.float32))  # (K, h4, w4)

    # 4. Binary masks; drop those with no more stride-4 pixels than their level's stride
    #    (get_seg_single: ``keep = sum_masks > strides``, counted on the stride-4 map).
    masks = probs > c.mask_thr
    area = tf.reduce_sum(tf.cast(masks, tf.float32), axis=[1, 2])  # (K,)
    big = area > tf.gather(cell_strides(c), cells)
    probs, masks, area, scores, labels = (tf.boolean_mask(t, big) for t in (probs, masks, area, scores, labels))

    # 5. Maskness: the mean foreground probability scales the category score.
    scores = scores * tf.reduce_sum(probs * tf.cast(masks, tf.float32), axis=[1, 2]) / area

    # 6. Matrix NMS; update_thr is its filter_thr, max_per_img its max_num (as mmdetection passes them).
    scores, labels, _, keep = matrix_nms(masks, labels, scores, kernel=c.nms_kernel, sigma=c.nms_sigma,
                                         filter_thr=c.update_thr, nms_pre=c.nms_pre, max_num=c.max_per_img,
                                         mask_area=area)

    # 7. Kept probabilities: x4 to the canvas, crop the image, resize to the original size.
    probs = tf.expand_dims(tf.gather(probs, keep), -1)  # (K, h4, w4, 1)
    upsampled = tf.shape(feature)[1:3] * c.mask_stride
    probs = tf.image.resize(probs, upsampled, method="bilinear")[:, :image_size[0], :image_size[1]]
    if original_size is not None:
        probs = tf.image.resize(probs, original_size, method="bilinear")
    return {"masks": tf.cast(probs[..., 0] > c.mask_thr, tf.uint8), "labels": labels, "scores": scores}


def preprocess(image, config: SOLOConfig):
    """One image as the network's input, the way training prepares it.

    Resizes to ``config.image_scale`` (:func:`solo_lib.data.augment.rescale_size`, with the
    training pipeline's :func:`~solo_lib.data.augment.resize_image`) and pads at the bottom and
    right to the canvas of the image's orientation (:func:`solo_lib.geometry.canvas_size`).

    Args:
        image: ``(H, W, 3)`` RGB image, 0-255 (uint8, or float rounded to uint8 as training's
            images are).
        config: the model's ``SOLOConfig``.

    Returns:
        ``(canvas, resized)``: ``canvas`` a ``(1, Hc, Wc, 3)`` float32 tensor and ``resized`` the
        ``(h, w)`` of the image region at its top-left.

    Raises:
        ValueError: ``image`` is not ``(H, W, 3)``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
        raise ValueError(f"predict needs one (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    resized, (hc, wc) = input_geometry(image.shape[0], image.shape[1], config.image_scale)
    pixels = tf.convert_to_tensor(image)
    if resized != image.shape[:2]:
        pixels = resize_image(pixels, resized)
    canvas = tf.image.pad_to_bounding_box(pixels, 0, 0, hc, wc)
    return tf.cast(canvas, tf.float32)[None], resized


def predict(model, image, config: SOLOConfig | None = None) -> dict:
    """Instance masks of one image of any size, at its original size.

    Args:
        model: a ``SOLOv2`` model (``solo_lib.model.solov2``).
        image: ``(H, W, 3)`` RGB image, 0-255 (uint8 or float).
        config: its ``SOLOConfig``; default ``model.config``. Use
            ``config.replace(score_thr=...)`` to change inference thresholds.

    Returns:
        dict of numpy arrays, highest score first: ``masks`` ``(K, H, W)`` uint8, ``labels``
        ``(K,)`` int32, ``scores`` ``(K,)`` float32 (see :func:`postprocess`).

    Raises:
        ValueError: ``image`` is not ``(H, W, 3)``.
    """
    config = model.config if config is None else config
    canvas, resized = preprocess(image, config)  # (1, Hc, Wc, 3)
    outputs = compiled_forward(model)(canvas)
    return postprocess(outputs, config, resized, tuple(canvas.shape[1:3]), original_size=np.shape(image)[:2])


_FORWARD = weakref.WeakKeyDictionary()  # model -> its inference forward pass as a tf.function


def compiled_forward(model):
    """``model(images, training=False)`` as a ``tf.function`` traced once for one image of any
    size (about 1 s), then about 15x faster than calling the model eagerly on the tiny preset. It
    reads the model's variables, so it stays right while the model trains (``MaskAPCurve``)."""
    if model not in _FORWARD:
        ref = weakref.ref(model)  # a strong reference here would keep the model (the dict's key) alive

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
        def forward(images):
            return ref()(images, training=False)

        _FORWARD[model] = forward
    return _FORWARD[model]
