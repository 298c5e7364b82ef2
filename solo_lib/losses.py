"""The SOLOv2 training loss: focal loss on the category grid plus dice loss on the dynamic masks.

SOLO's loss (the "Loss Function" paragraph of the SOLO paper, arXiv 1912.04488, kept
unchanged in SOLOv2, arXiv 2003.10152, and in the journal paper, arXiv 2106.15947) is

    L = L_cate + lambda * L_mask                                          (lambda = 3)
    L_mask = 1 / N_pos * sum_k 1{p*_k > 0} d_mask(m_k, m*_k)
    d_mask = L_Dice = 1 - D(p, q),
    D(p, q) = 2 sum_xy p_xy q_xy / (sum_xy p_xy^2 + sum_xy q_xy^2)

``L_cate`` is RetinaNet's sigmoid focal loss (Lin et al., arXiv 1708.02002, Eq. 5) summed over
every cell of every level and class and divided by the number of positive *cells* + 1, as the
authors' code does (WXinlong/SOLO ``SOLOv2Head.loss``: ``avg_factor=num_ins + 1``, where
``num_ins`` counts the cells flagged in the per-cell boolean ``ins_ind_label``). ``N_pos`` of
``L_mask`` counts (cell, instance) pairs instead: the reference's ``loss_ins`` is the mean dice
over every pair. The two differ when instances share a cell (the cell holds one pair per
instance, but is one positive cell whose category is the later instance's). Masks are only
computed for the positive pairs: their kernels are gathered and applied to the mask feature in
one batched einsum (:mod:`solo_lib.model.dynamic`).

Everything here is a pure function of tensors, safe in ``tf.function`` and ``tf.distribute``
(no Python branching on tensor values). Values are per batch; cross-replica scaling is the
trainer's job.
"""

import keras
import tensorflow as tf

from solo_lib.model.dynamic import dynamic_conv, gather_kernels


def focal_loss(category_logits, category_targets, num_classes, alpha=0.25, gamma=2.0):
    """Sigmoid focal loss over all grid cells, summed (RetinaNet Eq. 5, SOLO's L_cate).

    ``FL(p_t) = -alpha_t * (1 - p_t)^gamma * log(p_t)`` for each cell and class, where
    ``p = sigmoid(logit)``, ``p_t = p`` and ``alpha_t = alpha`` if the cell's class is this
    class, else ``p_t = 1 - p`` and ``alpha_t = 1 - alpha``. SOLO has no background class: the
    C outputs are independent sigmoids and a background cell (target C) is negative for all.

    Args:
        category_logits: ``(B, M, C)`` category logits, M = sum of S^2 over levels.
        category_targets: ``(B, M)`` int class per cell, ``C`` (= num_classes) for background.
        num_classes: C.
        alpha: weight of the positive term (1 - alpha for the negatives).
        gamma: focusing exponent.

    Returns:
        Scalar float32: the SUM over cells, classes and images (:func:`solo_losses` divides it
        by the number of positive cells + 1).
    """
    logits = tf.cast(category_logits, tf.float32)
    # one_hot gives an all-zero row for the out-of-range index C: background is negative for all C.
    y_true = tf.one_hot(tf.cast(category_targets, tf.int32), num_classes, dtype=tf.float32)  # (B, M, C)
    # Keras' binary focal crossentropy is exactly RetinaNet's Eq. 5 here: the focal factor is
    # (1 - p_t)^gamma, and with apply_class_balancing the weight is alpha for targets 1 and
    # 1 - alpha for targets 0. With from_logits=True the cross-entropy is computed from the logits
    # (keras.ops.sigmoid keeps them, so there is no clipping to [1e-7, 1 - 1e-7] and confidently
    # wrong cells keep their gradient; tests/test_losses.py checks this). It MEANS over the last
    # axis (C), so multiply by C to get the sum.
    per_cell = keras.losses.binary_focal_crossentropy(
        y_true, logits, apply_class_balancing=True, alpha=alpha, gamma=gamma, from_logits=True)  # (B, M)
    return tf.reduce_sum(per_cell) * float(num_classes)


def dice_loss(mask_logits, mask_targets, eps=1e-3):
    """Dice loss of each predicted mask against its target (SOLO's D(p, q)).

    ``1 - 2 * sum(p * q) / (sum(p^2) + sum(q^2) + eps)`` with ``p = sigmoid(logits)``, sums over
    the pixels. ``eps`` keeps the value finite when both masks are empty. (The authors' code,
    WXinlong/SOLO ``dice_loss``, adds 0.001 to each of the two sums; we add ``eps`` once.)

    Args:
        mask_logits: ``(B, K, H, W)`` mask logits.
        mask_targets: ``(B, K, H, W)`` binary target masks (any numeric dtype).
        eps: the denominator's epsilon (``SOLOConfig.dice_eps``).

    Returns:
        ``(B, K)`` float32 dice loss per mask, in ``[0, 1]``.
    """
    p = tf.sigmoid(tf.cast(mask_logits, tf.float32))
    q = tf.cast(mask_targets, tf.float32)
    intersection = tf.reduce_sum(p * q, axis=[-2, -1])  # (B, K)
    denominator = tf.reduce_sum(p * p, axis=[-2, -1]) + tf.reduce_sum(q * q, axis=[-2, -1]) + eps
    return 1.0 - 2.0 * intersection / denominator


def solo_losses(outputs, targets, config, normalizers=None):
    """SOLOv2's training loss ``L = L_cate + lambda * L_mask`` (SOLO) for one batch.

    Args:
        outputs: the model's outputs, a dict with
            ``category`` ``(B, M, C)`` logits (M = ``config.num_cells``),
            ``kernel`` ``(B, M, E)`` dynamic kernels,
            ``mask_feature`` ``(B, H, W, E)`` unified mask feature at ``config.mask_stride``.
        targets: the batch's targets, a dict with
            ``category`` ``(B, M)`` int32 class per cell (``C`` for background),
            ``pos_cells`` ``(B, K)`` int32 flat cell index of each positive (cell, instance) pair,
            ``pos_instances`` ``(B, K)`` int32 instance index of each pair into ``masks``,
            ``pos_valid`` ``(B, K)`` bool or 0/1, False (0) on padding (padding indices may be anything),
            ``masks`` ``(B, N, H, W)`` uint8 instance masks at the mask feature's resolution.
        config: a :class:`solo_lib.config.SOLOConfig` (num_classes, focal_alpha, focal_gamma,
            dice_eps, mask_loss_weight).
        normalizers: None (the batch's own counts), or ``(num_pos, num_pos_cells)`` float32
            scalars of a larger batch this one is part of (:func:`loss_normalizers`): gradient
            accumulation computes each micro-batch's share of the whole batch's loss with them, so
            the shares add up to the whole batch's loss (``SOLOv2.train_step``).

    Returns:
        A dict of float32 scalars: ``total`` = ``category`` + ``config.mask_loss_weight`` *
        ``mask``, ``category`` (focal sum / (num_pos_cells + 1)), ``mask`` (mean dice over the
        valid pairs, 0 when there are none), ``num_pos`` (number of valid pairs in the batch) and
        ``num_pos_cells`` (number of cells whose category target is a class, ``0 <= c < C``;
        fewer than ``num_pos`` when instances share cells).
    """
    valid = tf.cast(targets["pos_valid"], tf.bool)  # (B, K)
    category_targets = tf.cast(targets["category"], tf.int32)  # (B, M)
    num_pos, num_pos_cells = loss_normalizers(targets, config) if normalizers is None else normalizers

    # L_cate: focal loss over every cell of every level, divided by the number of positive cells
    # + 1, each cell counted once however many instances share it (WXinlong/SOLO SOLOv2Head.loss:
    # avg_factor = num_ins + 1, num_ins the sum of the per-cell flags ins_ind_label).
    focal_sum = focal_loss(outputs["category"], category_targets, config.num_classes,
                           alpha=config.focal_alpha, gamma=config.focal_gamma)
    category = focal_sum / (num_pos_cells + 1.0)

    # L_mask: masks only for the positive pairs, averaged over the pairs (WXinlong/SOLO: the mean
    # of the dice of every (cell, instance) pair). Padding indices are replaced by 0 so
    # that gathers never see an out-of-range index (tf.gather raises on CPU); their dice values
    # are then dropped below.
    cells = tf.where(valid, tf.cast(targets["pos_cells"], tf.int32), 0)  # (B, K)
    instances = tf.where(valid, tf.cast(targets["pos_instances"], tf.int32), 0)  # (B, K)
    kernels = gather_kernels(tf.cast(outputs["kernel"], tf.float32), cells)  # (B, K, E)
    mask_logits = dynamic_conv(tf.cast(outputs["mask_feature"], tf.float32), kernels)  # (B, K, H, W)
    mask_targets = tf.gather(targets["masks"], instances, batch_dims=1)  # (B, K, H, W)
    dice = dice_loss(mask_logits, mask_targets, eps=config.dice_eps)  # (B, K), finite everywhere
    # Select on the (finite) dice values, so padding contributes neither value nor gradient.
    dice = tf.where(valid, dice, 0.0)
    mask = tf.reduce_sum(dice) / tf.maximum(num_pos, 1.0)  # mean over valid pairs; 0 if none

    total = category + config.mask_loss_weight * mask
    return {"total": total, "category": category, "mask": mask, "num_pos": num_pos, "num_pos_cells": num_pos_cells}


def loss_normalizers(targets, config):
    """The two counts :func:`solo_losses` divides by, read from the targets alone (no forward pass).

    Returns:
        ``(num_pos, num_pos_cells)`` float32 scalars: the valid (cell, instance) pairs of the
        batch (``L_mask``'s ``N_pos``) and its positive cells (``L_cate``'s ``num_ins``).
    """
    num_pos = tf.reduce_sum(tf.cast(tf.cast(targets["pos_valid"], tf.bool), tf.float32))
    category_targets = tf.cast(targets["category"], tf.int32)
    positive_cells = (category_targets >= 0) & (category_targets < config.num_classes)
    return num_pos, tf.reduce_sum(tf.cast(positive_cells, tf.float32))
