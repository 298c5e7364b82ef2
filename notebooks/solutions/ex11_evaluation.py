"""Solutions to the exercises of notebook 11."""

import numpy as np


def mask_iou(a, b):
    """Intersection over union of two binary masks; 0.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def coco_ap(is_match, num_ground_truth):
    """COCO's 101-point interpolated AP of detections sorted by score."""
    is_match = np.asarray(is_match, bool)
    if is_match.size == 0:
        return 0.0
    true_positives = np.cumsum(is_match)
    recall = true_positives / num_ground_truth
    precision = true_positives / np.arange(1, is_match.size + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    total = 0.0
    for r in np.linspace(0, 1, 101):
        first = np.searchsorted(recall, r, side="left")  # the first detection that reaches recall r
        total += precision[first] if first < recall.size else 0.0
    return total / 101


def match(iou, iou_thr):
    """COCO's greedy matching: each detection, in score order, takes the untaken object it overlaps
    most, if that IoU reaches ``iou_thr``."""
    iou = np.asarray(iou, float)
    taken = np.zeros(iou.shape[1], bool)
    is_match = np.zeros(iou.shape[0], bool)
    for d in range(iou.shape[0]):
        best, best_iou = -1, iou_thr
        for g in range(iou.shape[1]):
            if not taken[g] and iou[d, g] >= best_iou:  # >=: a tie goes to the later object, as in COCOeval
                best, best_iou = g, iou[d, g]
        if best >= 0:
            taken[best] = is_match[d] = True
    return is_match
