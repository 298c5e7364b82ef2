"""Checkers of the build-something exercises of notebook 11 (evaluation).

11a (mask IoU) and 11b (COCO AP of a ranked list) are in :mod:`solo_lib.exercises.training`. 11c
asks for the piece between them: matching ranked detections to ground truth. Its expected
answers come from pycocotools itself: each case is a small COCO ground truth and result set made
of random masks, run through ``COCOeval.evaluate`` and read from its ``dtMatches``.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from solo_lib.exercises.common import blobs as _blobs
from solo_lib.exercises.common import expect as _expect


def _rles(masks: np.ndarray) -> list[dict]:
    return [mask_utils.encode(np.asfortranarray(m)) for m in masks]


def coco_matches(gt_masks: np.ndarray, dt_masks: np.ndarray, scores, iou_thr: float):
    """What pycocotools decides for one image and one class.

    Args:
        gt_masks: ``(G, H, W)`` uint8 objects.
        dt_masks: ``(D, H, W)`` uint8 detections, in any order.
        scores: ``(D,)`` their scores.
        iou_thr: the IoU threshold.

    Returns:
        ``(iou (D, G), is_match (D,))`` with detections sorted by score, highest first, as
        COCOeval sorts them; ``is_match`` is read from ``COCOeval.evaluateImg``'s ``dtMatches``.
    """
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")  # COCOeval's own sort
    dt_masks, scores = dt_masks[order], np.asarray(scores, np.float64)[order]
    height, width = gt_masks.shape[1:] if len(gt_masks) else dt_masks.shape[1:]
    gt_rles, dt_rles = _rles(gt_masks), _rles(dt_masks)
    iou = np.asarray(mask_utils.iou(dt_rles, gt_rles, [0] * len(gt_rles)), np.float64).reshape(len(dt_rles),
                                                                                               len(gt_rles))
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "height": int(height), "width": int(width)}],
                  "categories": [{"id": 1, "name": "thing"}],
                  "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": rle, "iscrowd": 0,
                                   "area": float(mask_utils.area(rle))} for k, rle in enumerate(gt_rles)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dt_rles:
            return iou, np.zeros(0, bool)
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "segmentation": rle, "score": float(s)}
                         for rle, s in zip(dt_rles, scores)])
        evaluator = COCOeval(gt, dt, iouType="segm")
        evaluator.params.iouThrs = np.array([iou_thr])
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluator.params.maxDets = [100]
        evaluator.evaluate()
    (record,) = [r for r in evaluator.evalImgs if r is not None]
    return iou, np.asarray(record["dtMatches"][0] > 0)


def check_11c_match(match) -> str:
    """``match(iou (D, G), iou_thr) -> (D,) bool``: COCO's greedy matching of detections (sorted by
    score, highest first) to objects; True for a detection that matched an object."""
    rng = np.random.default_rng(11)
    cases = []
    for num_gt, num_dt, thr in ((3, 3, 0.5), (4, 7, 0.5), (5, 9, 0.75), (2, 6, 0.5), (6, 4, 0.5), (3, 0, 0.5),
                                (0, 3, 0.5), (4, 8, 0.3)):
        gt = _blobs(num_gt, 24, 32, rng, centre=(0.25, 0.75), radius=(0.12, 0.35))
        # Detections: jittered copies of objects (some twice: duplicates) and a few random blobs.
        picks = rng.integers(0, max(num_gt, 1), num_dt)
        dt = _blobs(num_dt, 24, 32, rng, centre=(0.25, 0.75), radius=(0.12, 0.35))
        for k, g in enumerate(picks):
            if num_gt and rng.random() < 0.75:
                dt[k] = np.roll(gt[g], tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
        cases.append((gt, dt, rng.random(num_dt), thr))
    # The first detection overlaps both objects (IoU 0.35 and 0.59): it must take the better one,
    # object 1, which leaves the second detection (IoU 0.9 with object 1 only) a false positive.
    strips = np.zeros((4, 4, 20), np.uint8)
    for k, (start, stop) in enumerate(((0, 10), (10, 20), (3, 20), (10, 19))):
        strips[k, :, start:stop] = 1
    cases.append((strips[:2], strips[2:], np.array([0.9, 0.8]), 0.3))
    for gt, dt, scores, thr in cases:
        iou, expected = coco_matches(gt, dt, scores, thr)
        got = np.asarray(match(iou.copy(), thr)).astype(bool).reshape(-1)
        _expect(got.shape == expected.shape, f"{len(dt)} detections and {len(gt)} objects: expected {len(dt)} "
                f"answers, one per detection, got shape {got.shape}")
        _expect(np.array_equal(got, expected),
                f"{len(dt)} detections and {len(gt)} objects at IoU >= {thr}, IoU matrix (rows: detections by "
                f"score)\n{np.round(iou, 2)}\nexpected {expected.astype(int).tolist()}, got "
                f"{got.astype(int).tolist()} (hint: an object matched by a higher-scored detection is taken; take the "
                "untaken object with the largest IoU)")
    return f"{len(cases)} images, checked against pycocotools' COCOeval, with duplicates, no objects, no detections"
