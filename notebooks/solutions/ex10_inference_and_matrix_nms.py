"""Solutions to the exercises of notebook 10."""

import numpy as np


def point_nms(scores):
    """Keeps a score where it is the maximum of itself and its up, left and up-left neighbours."""
    padded = np.pad(scores, ((1, 0), (1, 0)), constant_values=-np.inf)
    window_max = np.maximum.reduce([padded[1:, 1:], padded[:-1, 1:], padded[1:, :-1], padded[:-1, :-1]])
    return np.where(scores == window_max, scores, 0.0)


def decay(iou, sigma):
    """Matrix NMS gaussian decay of masks of one class sorted by score, highest first."""
    iou = np.triu(iou, k=1)  # iou[i, j] for i above j in the ranking only
    compensate = iou.max(axis=0)  # each mask's largest IoU with a higher-scored one
    # decay of j by i: exp(-sigma (iou_ij^2 - compensate_i^2)); each mask keeps its smallest.
    return np.exp(-sigma * (iou ** 2 - compensate[:, None] ** 2)).min(axis=0)
