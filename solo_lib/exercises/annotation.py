"""The exercise of notebook 08b: a mask's outline as the polygon a LabelMe file stores.

08b-a asks for what ``scripts/annotate_real_photos.py`` does for every object of
``data/real_photos``: turn a binary mask into LabelMe points. The check is the converter's own
round trip: the polygon is rasterised by pycocotools, as ``convert-labelme`` rasterises it, and
must give back the mask. Cases are random ellipses and the real coins of ``coins_top``.
"""

from __future__ import annotations

import numpy as np

from solo_lib.data.segmentation import decode_segmentation
from solo_lib.exercises.common import blobs as _blobs
from solo_lib.exercises.common import expect as _expect


def _coin_masks(count: int) -> list[np.ndarray]:
    """The first ``count`` coins of the real training photo ``coins_top``, as its COCO file has them."""
    from solo_lib.data.coco import load_real_photos

    coins = next(s for s in load_real_photos("train") if s.class_names[s.labels[0]] == "coin")
    return [m.astype(np.uint8) for m in coins.masks[:count]]


def check_08b_a_mask_to_polygon(mask_to_polygon) -> str:
    """``mask_to_polygon(mask (H, W)) -> (P, 2)`` LabelMe points (x, y): the outline of a mask with
    one piece, such that pycocotools fills it back into the same mask (IoU >= 0.95)."""
    rng = np.random.default_rng(8)
    cases = [_blobs(1, h, w, rng, centre=(0.4, 0.6), radius=(0.15, 0.4))[0]
             for h, w in ((12, 14), (20, 30), (40, 40), (64, 48), (12, 14), (20, 30))]
    cases += _coin_masks(3)
    for mask in cases:
        points = np.asarray(mask_to_polygon(mask.copy()), np.float64)
        where = f"a {mask.shape[0]} x {mask.shape[1]} mask of {int(mask.sum())} pixels"
        _expect(points.ndim == 2 and points.shape[1] == 2 and len(points) >= 3,
                f"{where}: expected (P, 2) points with P >= 3, got shape {points.shape}")
        filled = decode_segmentation([points.reshape(-1).tolist()], *mask.shape).astype(bool)
        iou = (filled & mask.astype(bool)).sum() / max((filled | mask.astype(bool)).sum(), 1)
        _expect(iou >= 0.95, f"{where}: pycocotools fills your polygon into a mask with IoU {iou:.3f} to the "
                             f"original (need >= 0.95); are the points (x, y), and on pixel edges?")
    return f"{len(cases)} masks, ellipses and real coins, filled back by pycocotools"
