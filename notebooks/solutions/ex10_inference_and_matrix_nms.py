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


def matrix_nms_scores(masks, labels, scores, sigma):
    """Gaussian Matrix NMS of all candidates: each score after the decay, in the input order."""
    order = np.argsort(-scores, kind="stable")  # 1. rank by score, highest first
    flat = masks[order].reshape(len(order), -1).astype(np.float64)
    inter = flat @ flat.T  # 2. IoU of every pair with one matrix product
    area = flat.sum(axis=1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    same = labels[order][:, None] == labels[order][None, :]
    iou = np.triu(iou * same, k=1)  # only i ranked above j, of the same class
    compensate = iou.max(axis=0)  # 3. each mask's own largest IoU with a better one
    decay = np.exp(-sigma * (iou ** 2 - compensate[:, None] ** 2)).min(axis=0)  # 4. SOLOv2 §3.3
    decayed = np.empty_like(scores)
    decayed[order] = scores[order] * decay  # back to the input order
    return decayed
