"""``greedy_match`` (solo_lib/evaluate.py) decides as pycocotools' ``COCOeval.evaluateImg`` does."""

import numpy as np
import pytest

from solo_lib.evaluate import greedy_match
from solo_lib.exercises.evaluation import _blobs, coco_matches


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou_thr", [0.3, 0.5, 0.75])
def test_matches_what_cocoeval_decides(seed, iou_thr):
    rng = np.random.default_rng(seed)
    gt = _blobs(int(rng.integers(1, 7)), 24, 32, rng)
    dt = np.concatenate([gt[rng.integers(0, len(gt), 3)], _blobs(int(rng.integers(0, 6)), 24, 32, rng)])
    dt = np.stack([np.roll(m, tuple(rng.integers(-3, 4, 2)), axis=(0, 1)) for m in dt])
    iou, expected = coco_matches(gt, dt, rng.random(len(dt)), iou_thr)
    matched = greedy_match(iou, iou_thr)
    np.testing.assert_array_equal(matched >= 0, expected)
    taken = matched[matched >= 0]
    assert len(set(taken.tolist())) == len(taken)  # no object matched twice
    assert (iou[np.flatnonzero(matched >= 0), taken] >= iou_thr).all()


def test_takes_the_best_untaken_object_not_the_first():
    # detection 0 overlaps object 0 (0.35) and object 1 (0.6): it takes object 1, so detection 1,
    # which overlaps only object 1, is a false positive
    iou = np.array([[0.35, 0.6], [0.0, 0.9]])
    np.testing.assert_array_equal(greedy_match(iou, 0.3), [1, -1])
    np.testing.assert_array_equal(greedy_match(iou, 0.7), [-1, 1])


def test_empty_cases():
    assert greedy_match(np.zeros((0, 3)), 0.5).shape == (0,)
    np.testing.assert_array_equal(greedy_match(np.zeros((2, 0)), 0.5), [-1, -1])
    with pytest.raises(ValueError, match="D, G"):
        greedy_match(np.zeros(3), 0.5)
