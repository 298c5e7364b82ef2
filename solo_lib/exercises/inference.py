"""Checkers of notebook 10's build-something exercises (inference and Matrix NMS, SOLOv2 §3.3).

The expected answers come from the library's :func:`solo_lib.nms.matrix_nms`, so a learner's
numpy version is checked against the TensorFlow one that ``predict`` uses.
"""

from __future__ import annotations

import numpy as np

from solo_lib.exercises.common import blobs as _blobs
from solo_lib.exercises.common import expect as _expect


def _hand_case():
    """A and B duplicates (B inside A, IoU 30/36), C apart; one class, scores not sorted."""
    m = np.zeros((3, 10, 10), np.uint8)
    m[0, 1:7, 1:7] = 1
    m[1, 2:7, 1:7] = 1
    m[2, 7:10, 7:10] = 1
    return m, np.zeros(3, np.int32), np.array([0.7, 0.8, 0.9], np.float32)  # A is the worst here


def check_10c_matrix_nms(matrix_nms_scores) -> str:
    """``matrix_nms_scores(masks (N, H, W), labels (N,), scores (N,), sigma) -> (N,)``: every
    candidate's score after the gaussian Matrix NMS decay, in the INPUT order (nothing dropped)."""
    from solo_lib.nms import matrix_nms

    rng = np.random.default_rng(100)
    cases = [("1 mask", np.ones((1, 6, 6), np.uint8), np.zeros(1, np.int32), np.array([0.6], np.float32), 2.0),
             ("the three masks A, B, C with C scored highest", *_hand_case(), 2.0)]
    for count, classes, sigma in ((8, 1, 2.0), (10, 2, 2.0), (12, 3, 0.5), (12, 2, 6.0)):
        masks = _blobs(count, 24, 28, rng)
        labels = rng.integers(0, classes, count).astype(np.int32)
        scores = rng.permutation(np.linspace(0.15, 0.95, count)).astype(np.float32)  # distinct, unsorted
        cases.append((f"{count} masks of {classes} class{'es' if classes > 1 else ''} (unsorted scores), "
                      f"sigma {sigma}", masks, labels, scores, sigma))
    for name, masks, labels, scores, sigma in cases:
        decayed, _, _, keep = matrix_nms(masks, labels, scores, kernel="gaussian", sigma=sigma)
        expected = np.empty(len(scores), np.float32)
        expected[keep.numpy()] = decayed.numpy()  # back to the input order
        got = np.asarray(matrix_nms_scores(masks.copy(), labels.copy(), scores.copy(), sigma), np.float64)
        _expect(got.shape == expected.shape and np.allclose(got, expected, rtol=1e-4, atol=1e-6),
                f"{name}: expected {np.round(expected, 4)}, got {np.round(got, 4)} (hint: sort by score first and "
                "return the scores in the input order; only masks of the same class decay each other)")
    return f"{len(cases)} sets of masks, 1 to 3 classes, sigma 0.5 to 6, against solo_lib.nms.matrix_nms"
