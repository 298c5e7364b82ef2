"""Matrix NMS (SOLOv2 §3.3, Eq. 4 and the "Matrix NMS" pseudo-code figure), in TensorFlow.

Classic NMS visits masks one by one and deletes those that overlap a kept one too much. Matrix NMS
instead *decays* every mask's score in parallel: for a mask j and every higher-scored mask i of
the same class,

    decay_j = min_i  f(iou_ij) / f(comp_i),     comp_i = max_k iou_ki  (k scored above i)

where ``comp_i`` (the "compensate IoU") measures how strongly i is itself suppressed: a mask that
is already a near duplicate of a better one should not suppress others much. With the gaussian
kernel ``f(iou) = exp(-sigma * iou^2)``; with the linear kernel ``f(iou) = 1 - iou``. All IoUs come
from one matrix product, so the whole step is a handful of tensor ops.

Sigma convention: the paper writes the gaussian kernel as ``exp(-iou^2 / sigma)`` with
sigma = 0.5; the authors' code (WXinlong/SOLO ``mmdet/core/post_processing/matrix_nms.py``) and
mmdetection's ``mask_matrix_nms`` multiply by sigma instead, with sigma = 2.0. The two are the same
kernel; this module follows the code: **paper sigma 0.5 == sigma 2.0 here**.

The interface is mmdetection's ``mask_matrix_nms`` (``mmdet/models/layers/matrix_nms.py``):
sort, keep the top ``nms_pre``, decay, drop scores below ``filter_thr``, sort again, keep the top
``max_num``; ``-1`` disables a threshold or limit.
"""

from __future__ import annotations

import tensorflow as tf

KERNELS = ("gaussian", "linear")

# The linear kernel divides by 1 - comp_i, which is 0 when mask i duplicates a better mask.
LINEAR_EPS = 1e-6


def matrix_nms(masks, labels, scores, *, kernel="gaussian", sigma=2.0, filter_thr=-1.0, nms_pre=-1, max_num=-1,
               mask_area=None):
    """Class-aware Matrix NMS for instance masks.

    Only pairs with the same label decay each other. A mask with no higher-scored mask of its
    class keeps its score (decay 1). Works eagerly and inside ``tf.function`` (no Python branching
    on tensor values, no loop over masks); N = 0 gives empty outputs.

    Linear kernel and duplicates: if mask i is an exact duplicate of a better mask of its class,
    ``comp_i = 1`` and the reference code divides by ``1 - comp_i = 0`` (``inf``, or ``0/0 = NaN``
    when j duplicates i too). Here the denominator is clamped to ``LINEAR_EPS``, i.e. each ratio
    takes its limit: with ``iou_ij < 1`` the ratio is huge and never the minimum (a fully
    suppressed mask suppresses nothing), with ``iou_ij = 1`` it is 0, which is what j gets anyway
    from the better mask that i duplicates. Empty masks (union 0) have IoU 0.

    Args:
        masks: ``(N, H, W)`` binary masks (bool, integer or float 0/1).
        labels: ``(N,)`` integer class labels.
        scores: ``(N,)`` scores (any order).
        kernel: ``"gaussian"`` or ``"linear"``.
        sigma: gaussian kernel ``exp(-sigma * iou^2)`` (code convention: 2.0 == the paper's 0.5).
        filter_thr: after the decay, keep scores ``>= filter_thr``; ``<= 0`` disables it.
        nms_pre: consider only the ``nms_pre`` highest-scored masks; ``<= 0`` considers all.
        max_num: return at most ``max_num`` masks; ``<= 0`` returns all.
        mask_area: optional ``(N,)`` precomputed pixel counts of ``masks``.

    Returns:
        ``(scores, labels, masks, keep_inds)``, sorted by decayed score, highest first:
        ``(K,)`` float32 decayed scores, ``(K,)`` labels (input dtype), ``(K, H, W)`` masks (input
        dtype) and ``(K,)`` int32 indices into the ORIGINAL inputs (``masks[keep_inds]`` are the
        returned masks).

    Raises:
        ValueError: unknown ``kernel``.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    masks = tf.convert_to_tensor(masks)
    labels = tf.convert_to_tensor(labels)
    scores = tf.cast(scores, tf.float32)
    shape = tf.shape(masks)
    # (N, HW), input dtype, no copy. -1 for N: ONNX's Reshape reads a 0 as "keep this dimension",
    # so an exported graph with no candidate (N = 0) could not tell (0, HW) from (0, -1).
    flat = tf.reshape(masks, tf.stack([-1, shape[1] * shape[2]]))

    # 1. Sort by score (stable: ties keep input order) and keep the top nms_pre.
    order = tf.argsort(scores, direction="DESCENDING", stable=True)
    if nms_pre > 0:
        order = order[:nms_pre]
    sorted_scores, sorted_labels = tf.gather(scores, order), tf.gather(labels, order)  # (n,), n = min(N, nms_pre)

    # 2. IoU of every pair with one matmul: inter = M M^T, union = a_i + a_j - inter. The (n, HW)
    # masks are the only big tensor here, so they are touched as little as possible: with nms_pre
    # the kept rows are gathered in their input dtype (a bool is a quarter of a float) and cast
    # once; without it the masks are cast in input order and the small (n, n) result is permuted.
    if nms_pre > 0:
        flat = tf.cast(tf.gather(flat, order), tf.float32)  # (n, HW), rows in score order
        inter = tf.matmul(flat, flat, transpose_b=True)  # (n, n)
    else:
        flat = tf.cast(flat, tf.float32)  # (N, HW), input order
        inter = tf.gather(tf.gather(tf.matmul(flat, flat, transpose_b=True), order), order, axis=1)
    if mask_area is not None:
        area = tf.gather(tf.cast(mask_area, tf.float32), order)  # (n,), score order
    else:
        area = tf.reduce_sum(flat, axis=1)  # the rows of flat
        area = area if nms_pre > 0 else tf.gather(area, order)
    iou = tf.math.divide_no_nan(inter, area[:, None] + area[None, :] - inter)
    # Pair (i, j) counts when i is scored above j (upper triangle) and both share a class.
    rank = tf.range(tf.shape(order)[0])
    pairs = (rank[:, None] < rank[None, :]) & (sorted_labels[:, None] == sorted_labels[None, :])
    pair_iou = tf.where(pairs, iou, 0.0)  # (n, n) iou_ij, 0 outside the pairs
    # comp[i] = max IoU of i with any higher-scored mask of its class (0 if none); column max.
    comp = tf.reduce_max(pair_iou, axis=0)[:, None]  # (n, 1), indexed by the row i

    # 3. Decay of j = min over its pairs (i, j) of f(iou_ij) / f(comp_i) (SOLOv2 Eq. 4).
    if kernel == "gaussian":
        ratio = tf.exp(-sigma * (pair_iou ** 2 - comp ** 2))
    else:
        ratio = (1.0 - pair_iou) / tf.maximum(1.0 - comp, LINEAR_EPS)
    decay = tf.reduce_min(tf.where(pairs, ratio, 1.0), axis=0)  # (n,), 1 with no pair
    decayed = sorted_scores * decay

    # 4. Drop low decayed scores, sort again, keep the top max_num.
    position = tf.range(tf.shape(decayed)[0])
    if filter_thr > 0:
        position = tf.boolean_mask(position, decayed >= filter_thr)
    position = tf.gather(position, tf.argsort(tf.gather(decayed, position), direction="DESCENDING", stable=True))
    if max_num > 0:
        position = position[:max_num]
    keep_inds = tf.cast(tf.gather(order, position), tf.int32)
    return tf.gather(decayed, position), tf.gather(labels, keep_inds), tf.gather(masks, keep_inds), keep_inds
