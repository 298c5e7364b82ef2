"""Solutions to the exercises of notebook 07."""

import numpy as np


def dice(p, q, eps=1e-3):
    """Dice loss: 1 - 2 sum(pq) / (sum p^2 + sum q^2 + eps)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    return 1 - 2 * (p * q).sum() / ((p ** 2).sum() + (q ** 2).sum() + eps)


def focal(p, y, alpha, gamma):
    """Sigmoid focal loss per element: -alpha_t (1 - p_t)^gamma log(p_t)."""
    p_t = np.where(y == 1, p, 1 - p)
    alpha_t = np.where(y == 1, alpha, 1 - alpha)
    return -alpha_t * (1 - p_t) ** gamma * np.log(p_t)


def mask_loss(logits, targets, valid, eps=1e-3):
    """SOLO's L_mask of a batch: the mean dice loss over the valid (cell, instance) pairs.

    Args:
        logits: (B, K, H, W) mask logits of the pairs (padding included).
        targets: (B, K, H, W) 0/1 target masks of the pairs.
        valid: (B, K) bool, False on padding.
        eps: the dice denominator's epsilon.
    """
    p = 1 / (1 + np.exp(-np.asarray(logits, float)))
    q = np.asarray(targets, float)
    inter = (p * q).sum(axis=(-2, -1))  # (B, K)
    denominator = (p ** 2).sum(axis=(-2, -1)) + (q ** 2).sum(axis=(-2, -1)) + eps
    dice = 1 - 2 * inter / denominator  # (B, K)
    valid = np.asarray(valid, bool)
    return float(np.where(valid, dice, 0.0).sum() / max(valid.sum(), 1))
