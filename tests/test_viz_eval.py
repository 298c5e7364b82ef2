"""Notebook 11's pictures: precision-recall curves read from COCOeval, predictions over the truth."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from solo_lib.data.coco import load_sample_dataset  # noqa: E402
from solo_lib.evaluate import evaluate_segm, predictions_to_coco_results  # noqa: E402
from solo_lib.viz_eval import (  # noqa: E402
    MEAN_TITLE,
    coco_evaluator,
    count_matches,
    draw_generalisation,
    draw_pr_curves,
    pr_curve,
    prediction_from_results,
)


@pytest.fixture(scope="module")
def val():
    return load_sample_dataset("val")


def one_false_then_all_true(dataset, label):
    """Results for class ``label``: first (score 1) a mask of another class submitted as ``label``,
    which matches nothing of class ``label``, then every object of that class (score 0.5)."""
    results, decoy = [], None
    for s in dataset:
        mine = s.labels == label
        results += predictions_to_coco_results(s.image_id, s.masks[mine], s.labels[mine], np.full(mine.sum(), 0.5),
                                               dataset.categories)
        if decoy is None and (~mine).any():
            k = int(np.flatnonzero(~mine)[0])
            decoy = predictions_to_coco_results(s.image_id, s.masks[k:k + 1], [label], [1.0], dataset.categories)
    return decoy + results


def test_curve_is_coco_precision_of_a_known_case(val):
    # One false positive ranked first, then all N objects: precision after d detections is
    # (d - 1) / d, rising to N / (N + 1); the interpolated curve (best precision at this recall or
    # beyond) is N / (N + 1) at all 101 recall points, and recall 1 is reached.
    label = 0
    n = sum(int((s.labels == label).sum()) for s in val)
    evaluator = coco_evaluator(val, one_false_then_all_true(val, label))
    recall, precision = pr_curve(evaluator, 0.5, label)
    np.testing.assert_allclose(recall, np.linspace(0, 1, 101))
    np.testing.assert_allclose(precision, n / (n + 1))
    # and it is COCOeval's own array: IoU 0.5, area "all", 100 detections
    np.testing.assert_array_equal(precision, evaluator.eval["precision"][0, :, label, 0, 2])
    # the other classes got no detection: precision 0 at every recall point, AP 0
    for other in range(1, 4):
        np.testing.assert_array_equal(pr_curve(evaluator, 0.75, other)[1], np.zeros(101))


def test_mean_curve_area_is_coco_ap50_and_ap75(val):
    results = one_false_then_all_true(val, 2)[:-3]  # drop three objects: recall below 1
    evaluator, summary = coco_evaluator(val, results), evaluate_segm(val, results)
    assert pr_curve(evaluator, 0.5)[1].mean() == pytest.approx(summary.ap50, abs=1e-12)
    assert pr_curve(evaluator, 0.75)[1].mean() == pytest.approx(summary.ap75, abs=1e-12)
    with pytest.raises(ValueError, match="0.52"):
        pr_curve(evaluator, 0.52)


def test_figure_draws_each_class_and_the_mean_from_the_precision_array(val):
    label = 0
    evaluator = coco_evaluator(val, one_false_then_all_true(val, label))
    few = coco_evaluator(val, one_false_then_all_true(val, label), image_ids=[1, 5])  # discs and leaves only
    fig = draw_pr_curves({"all": evaluator, "two images": few}, val.class_names, iou_thrs=(0.5, 0.75))
    axes = np.array(fig.axes).reshape(2, 5)
    assert [ax.get_title() for ax in axes[0]] == ["all: disc", "block", "leaf", "star", MEAN_TITLE]
    assert axes[1, 0].get_title() == "two images: disc"
    assert "101 recall points" in fig._suptitle.get_text()
    for col in range(4):  # every class has objects in the whole set: two curves, solid and dashed
        lines = axes[0, col].get_lines()
        assert [line.get_linestyle() for line in lines] == ["-", "--"]
        for t, line in enumerate(lines):
            np.testing.assert_array_equal(line.get_ydata(), evaluator.eval["precision"][(0, 5)[t], :, col, 0, 2])
        assert len(axes[0, col].collections) == 2  # the shaded areas under both curves
    labels = [text.get_text() for text in axes[0, 0].get_legend().get_texts()]
    n = sum(int((s.labels == label).sum()) for s in val)
    assert labels == [f"IoU 0.50: AP {n / (n + 1):.2f}", f"IoU 0.75: AP {n / (n + 1):.2f}"]
    # the mean column: the mean over classes, whose area is AP50
    mean = evaluator.eval["precision"][0, :, :, 0, 2].mean(1)
    np.testing.assert_allclose(axes[0, 4].get_lines()[0].get_ydata(), mean)
    # blocks (1) and stars (3) are absent from images 1 and 5: no curve, a note instead
    for col in (1, 3):
        assert not axes[1, col].get_lines() and "no objects" in axes[1, col].texts[0].get_text()
    assert len(axes[1, 0].get_lines()) == 2 and len(axes[1, 2].get_lines()) == 2
    plt.close(fig)


def test_prediction_from_results_round_trips(val):
    s = val[1]
    scores = np.linspace(0.2, 0.9, len(s.labels)).astype(np.float32)
    back = prediction_from_results(predictions_to_coco_results(s.image_id, s.masks, s.labels, scores, val.categories),
                                   val, s.image_id)
    order = np.argsort(-scores)
    np.testing.assert_array_equal(back["masks"], s.masks[order])
    np.testing.assert_array_equal(back["labels"], s.labels[order])
    np.testing.assert_array_equal(back["scores"], scores[order])
    empty = prediction_from_results([], val, 6)
    assert empty["masks"].shape == (0, *val.load_image(6).shape[:2]) and empty["labels"].shape == (0,)


def _squares():
    """Two objects (class 0 and 1) and three detections: an exact copy of object 0 (score 0.9), a
    duplicate of it (0.5), and object 1 (0.2)."""
    gt = np.zeros((2, 20, 30), np.uint8)
    gt[0, 2:10, 2:10] = 1
    gt[1, 10:18, 15:28] = 1
    prediction = {"masks": gt[[0, 0, 1]], "labels": np.array([0, 0, 1]), "scores": np.array([0.9, 0.5, 0.2])}
    return gt, np.array([0, 1]), prediction


def test_count_matches_is_coco_matching_within_a_class():
    gt, labels, prediction = _squares()
    assert count_matches(prediction, gt, labels) == {"objects": 2, "found": 2, "false": 1}  # the duplicate
    wrong_class = dict(prediction, labels=np.array([1, 1, 0]))
    assert count_matches(wrong_class, gt, labels) == {"objects": 2, "found": 0, "false": 3}
    none = {"masks": np.zeros((0, 20, 30)), "labels": np.zeros(0, int), "scores": np.zeros(0)}
    assert count_matches(none, gt, labels) == {"objects": 2, "found": 0, "false": 0}


def test_generalisation_draws_only_detections_above_the_threshold():
    gt, labels, prediction = _squares()
    image = np.full((20, 30, 3), 128, np.uint8)
    panel = {"image": image, "prediction": prediction, "gt_masks": gt, "gt_labels": labels, "title": "image 7"}
    empty = {"image": image, "prediction": {"masks": np.zeros((0, 20, 30)), "labels": np.zeros(0, int),
                                            "scores": np.zeros(0)},
             "gt_masks": gt[:0], "gt_labels": labels[:0], "title": "image 8"}
    fig, counts = draw_generalisation({"training": [panel, panel], "validation": [empty]}, ["a", "b"], 0.3, ncols=2)
    axes = np.array(fig.axes).reshape(2, 2)  # each group starts a line: training 2 panels, validation 1
    (first, _), (third,) = counts["training"], counts["validation"]
    np.testing.assert_array_equal(first["shown"], [0, 1])  # 0.2 < 0.3: object 1's detection is not drawn
    assert (first["objects"], first["found"], first["false"]) == (2, 1, 1)
    assert axes[0, 0].get_title() == "training image 7: found 1 of 2, 1 false"
    assert sorted(t.get_text() for t in axes[0, 0].texts) == ["a 0.50", "a 0.90"]
    # outlines: 2 drawn detections (class colours) + 2 objects (white, dashed)
    assert len(axes[0, 0].collections) == 4
    assert (third["objects"], third["found"], third["false"]) == (0, 0, 0) and not axes[1, 1].axison
    assert axes[1, 0].get_title() == "validation image 8: found 0 of 0, 0 false"
    fig3, _ = draw_generalisation({"validation": [empty] * 4}, ["a", "b"], 0.3, ncols=3)
    assert len(fig3.axes) == 6 and sum(ax.axison for ax in fig3.axes) == 4  # 4 panels wrap onto 2 lines of 3
    plt.close(fig3)
    fig4, counts4 = draw_generalisation({"": [panel, empty]}, ["a", "b"], 0.3, ncols=2, number_objects=True)
    assert [ax.get_title() for ax in fig4.axes] == ["image 7: found 1 of 2, 1 false", "image 8: found 0 of 0, 0 false"]
    assert len(counts4[""]) == 2
    numbers = [t for t in fig4.axes[0].texts if (t.get_gid() or "").startswith("object:")]
    assert [t.get_text() for t in numbers] == ["0", "1"]
    for t, mask in zip(numbers, gt):  # each number at its object's centre
        ys, xs = np.nonzero(mask)
        np.testing.assert_allclose(t.get_position(), (xs.mean(), ys.mean()))
    plt.close(fig4)
    assert "score >= 0.3" in fig._suptitle.get_text()
    plt.close(fig)
    fig, counts = draw_generalisation({"training": [panel]}, ["a", "b"], 0.1)
    assert (counts["training"][0]["found"], counts["training"][0]["false"]) == (2, 1)
    plt.close(fig)
