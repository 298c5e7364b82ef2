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
