"""Matrix NMS against an independent, loop-by-loop reading of the SOLOv2 paper (§3.3, Eq. 4)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from solo_lib.nms import matrix_nms


def paper_matrix_nms(masks, labels, scores, kernel, sigma_paper, filter_thr=-1.0, nms_pre=-1, max_num=-1):
    """SOLOv2 Eq. 4 with explicit loops, class-aware, in the PAPER's sigma convention.

    decay_j = min over higher-scored i of f(iou_ij) / f(iou_{*,i}), where
    f(iou_{*,i}) = min over k scored above i of f(iou_ki); gaussian f = exp(-iou^2 / sigma),
    linear f = 1 - iou. Returns (decayed scores, keep_inds) sorted by decayed score.
    """
    masks = np.asarray(masks, bool)
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    if nms_pre > 0:
        order = order[:nms_pre]

    def iou(a, b):
        union = np.logical_or(masks[a], masks[b]).sum()
        return np.logical_and(masks[a], masks[b]).sum() / union if union else 0.0

    def f(x):
        return math.exp(-x * x / sigma_paper) if kernel == "gaussian" else 1.0 - x

    decayed = {}
    for rank_j, j in enumerate(order):
        decay = 1.0
        for rank_i in range(rank_j):
            i = order[rank_i]
            if labels[i] != labels[j]:
                continue
            f_comp = min([f(iou(order[k], i)) for k in range(rank_i) if labels[order[k]] == labels[i]] + [1.0])
            decay = min(decay, f(iou(i, j)) / f_comp)
        decayed[j] = scores[j] * decay
    kept = [j for j in order if filter_thr <= 0 or decayed[j] >= filter_thr]
    kept.sort(key=lambda j: -decayed[j])
    if max_num > 0:
        kept = kept[:max_num]
    return np.array([decayed[j] for j in kept]), np.array(kept, int)


def random_instances(n=24, size=20, num_classes=3, seed=0):
    """Random rectangles (varied overlaps), labels and distinct scores."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        y0, x0 = rng.integers(0, size - 4, 2)
        h, w = rng.integers(3, size // 2, 2)
        masks[k, y0:y0 + h, x0:x0 + w] = 1
    labels = rng.integers(0, num_classes, n)
    scores = rng.permutation(np.linspace(0.2, 0.95, n))
    return masks, labels, scores


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("filter_thr,nms_pre,max_num", [(-1, -1, -1), (0.3, -1, -1), (-1, 15, -1), (-1, -1, 7),
                                                        (0.25, 18, 10), (0.99, -1, -1)])
def test_matches_the_paper_loop(kernel, filter_thr, nms_pre, max_num):
    masks, labels, scores = random_instances()
    want_scores, want_inds = paper_matrix_nms(masks, labels, scores, kernel, 0.5, filter_thr, nms_pre, max_num)
    got_scores, got_labels, got_masks, got_inds = matrix_nms(
        masks, labels, scores, kernel=kernel, sigma=2.0, filter_thr=filter_thr, nms_pre=nms_pre, max_num=max_num)
    np.testing.assert_array_equal(got_inds.numpy(), want_inds)
    # No long sums: intersections are exact integer counts in float32 (a 0/1 matmul), then a division,
    # an exp and a product per score, against float64. A few ulps: rtol 1e-5 (~80 ulps) leaves room;
    # atol 1e-7 (~1 ulp of the inputs, scores <= 0.95) is for linear-kernel scores decayed to ~0.
    # A wrong IoU or compensation changes scores by > 1e-2.
    np.testing.assert_allclose(got_scores.numpy(), want_scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got_labels.numpy(), labels[want_inds])
    np.testing.assert_array_equal(got_masks.numpy(), masks[want_inds])
    if filter_thr == 0.99:
        assert len(want_inds) == 0  # nothing passes: empty but well-formed
    else:
        # Not a rounding tolerance: some score must decay visibly (>= 1e-3), far above float32 noise.
        assert np.any(want_scores < scores[want_inds] - 1e-3), "the example should decay some scores"


def test_keep_inds_index_the_inputs_and_scores_only_decay():
    masks, labels, scores = random_instances(seed=3)
    got_scores, got_labels, got_masks, keep = (t.numpy() for t in matrix_nms(masks, labels, scores))
    assert sorted(keep) == list(range(len(scores)))  # nothing filtered: a permutation of the inputs
    assert np.all(got_scores <= scores[keep] + 1e-7)  # float64 scores rounded to float32: < 1 ulp (6e-8)
    assert np.all(np.diff(got_scores) <= 0)  # sorted by decayed score
    np.testing.assert_array_equal(got_labels, labels[keep])
    np.testing.assert_array_equal(got_masks, masks[keep])
    top = np.argmax(scores)  # the best mask never decays
    # Its float32 copy: half an ulp (6e-8 relative), within approx's default rel 1e-6.
    assert got_scores[list(keep).index(top)] == pytest.approx(scores[top])


def test_precomputed_area_and_input_dtypes():
    masks, labels, scores = random_instances(seed=5)
    plain = matrix_nms(masks.astype(bool), labels, scores)
    with_area = matrix_nms(masks.astype(np.float32), labels, scores, mask_area=masks.sum((1, 2)))
    # Areas are exact integers in float32 either way: the same scores to an ulp (rtol 1e-6 ~ 8 ulps).
    np.testing.assert_allclose(plain[0].numpy(), with_area[0].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(plain[3].numpy(), with_area[3].numpy())
    assert plain[2].dtype == tf.bool and with_area[2].dtype == tf.float32 and plain[1].dtype == tf.int64


def test_sigma_convention_on_a_hand_computed_pair():
    # Two same-class masks with IoU 0.5 (4 shared pixels, 8 in the union); scores 0.9 and 0.8.
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, 0:2, 0:2] = 1
    masks[1, 0:2, 0:4] = 1
    scores, labels = np.array([0.8, 0.9]), np.array([1, 1])
    got, _, _, keep = matrix_nms(masks, labels, scores, kernel="gaussian", sigma=2.0)
    # Paper: exp(-iou^2 / 0.5) = exp(-0.5); code: exp(-2.0 * iou^2); the same number.
    # Closed forms here and below: IoU 4/8 is exact, exp and a product round by a few float32 ulps
    # (eps 1.2e-7), so rtol 1e-6 (~8 ulps); the other sigma convention would give 0.8 * exp(-0.125).
    np.testing.assert_allclose(got.numpy(), [0.9, 0.8 * math.exp(-0.5)], rtol=1e-6)  # 0.48522
    np.testing.assert_array_equal(keep.numpy(), [1, 0])
    got_linear = matrix_nms(masks, labels, scores, kernel="linear")[0]
    np.testing.assert_allclose(got_linear.numpy(), [0.9, 0.4], rtol=1e-6)


def test_class_aware_identical_masks_of_different_classes_do_not_decay():
    masks = np.ones((3, 5, 5), np.uint8)
    scores = np.array([0.9, 0.8, 0.7])
    got, labels, _, keep = matrix_nms(masks, np.array([0, 1, 2]), scores)
    np.testing.assert_allclose(got.numpy(), scores, rtol=1e-6)
    got, _, _, keep = matrix_nms(masks, np.array([0, 1, 0]), scores)  # the third duplicates the first
    np.testing.assert_allclose(got.numpy(), [0.9, 0.8, 0.7 * math.exp(-2.0)], rtol=1e-6)


def test_linear_kernel_with_duplicates_stays_finite():
    # Three identical masks of one class: comp = 1 for the second and third (1 - comp = 0).
    masks = np.zeros((4, 6, 6), np.uint8)
    masks[:3, 1:4, 1:4] = 1
    masks[3, 2:6, 2:6] = 1  # overlaps them partially
    labels, scores = np.zeros(4, int), np.array([0.9, 0.8, 0.7, 0.6])
    got, _, _, keep = matrix_nms(masks, labels, scores, kernel="linear")
    got, keep = got.numpy(), keep.numpy()
    assert np.all(np.isfinite(got))
    by_input = dict(zip(keep, got))
    assert by_input[0] == pytest.approx(0.9)  # float32 0.9: half an ulp, within approx's rel 1e-6
    assert by_input[1] == 0.0 and by_input[2] == 0.0  # duplicates of the best mask
    iou = 4 / (9 + 16 - 4)  # the fourth mask decays by the best one only
    assert by_input[3] == pytest.approx(0.6 * (1 - iou), rel=1e-6)  # closed form: a few float32 ulps
    assert np.all(np.isfinite(matrix_nms(masks, labels, scores, kernel="gaussian")[0].numpy()))


def test_empty_input():
    scores, labels, masks, keep = matrix_nms(np.zeros((0, 7, 9), bool), np.zeros((0,), np.int32), np.zeros((0,)),
                                             filter_thr=0.1, nms_pre=5, max_num=3)
    assert scores.shape == (0,) and scores.dtype == tf.float32
    assert labels.shape == (0,) and labels.dtype == tf.int32
    assert masks.shape == (0, 7, 9) and masks.dtype == tf.bool
    assert keep.shape == (0,) and keep.dtype == tf.int32


def test_inside_tf_function_with_unknown_n():
    nms = tf.function(lambda m, labels, s: matrix_nms(m, labels, s, kernel="linear", filter_thr=0.3, nms_pre=20,
                                                      max_num=8),
                      input_signature=[tf.TensorSpec((None, 20, 20), tf.uint8), tf.TensorSpec((None,), tf.int64),
                                       tf.TensorSpec((None,), tf.float64)])
    masks, labels, scores = random_instances(seed=7)
    graph, eager = nms(masks, labels, scores), matrix_nms(masks, labels, scores, kernel="linear", filter_thr=0.3,
                                                          nms_pre=20, max_num=8)
    # Element-wise math on exact integer intersections: graph and eager agree to an ulp or two
    # (rtol 1e-6 ~ 8 ulps); scores are >= 0.3 (filter_thr), so relative is the right measure.
    np.testing.assert_allclose(graph[0].numpy(), eager[0].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(graph[3].numpy(), eager[3].numpy())
    assert nms(masks[:0], labels[:0], scores[:0])[0].shape == (0,)


def test_unknown_kernel():
    with pytest.raises(ValueError, match="kernel"):
        matrix_nms(np.ones((1, 2, 2)), [0], [1.0], kernel="hard")
