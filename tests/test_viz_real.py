"""Notebook 08b's per-object pictures: each object's fate, matched as COCO matches."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from solo_lib.viz_real import draw_object_crops, object_outcomes  # noqa: E402


def square(y, x, side, shape=(60, 90)):
    mask = np.zeros(shape, np.uint8)
    mask[y:y + side, x:x + side] = 1
    return mask


# Three coins (label 0) and one spoon (label 1), 10 x 10 squares.
GT_MASKS = np.stack([square(5, 5, 10), square(5, 30, 10), square(5, 60, 10), square(35, 5, 10)])
GT_LABELS = np.array([0, 0, 0, 1])


def prediction(rows):
    """rows: (mask, label, score)."""
    return {"masks": np.stack([r[0] for r in rows]), "labels": np.array([r[1] for r in rows], np.int32),
            "scores": np.array([r[2] for r in rows], np.float32)}


PRED = prediction([
    (square(5, 5, 10), 0, 0.9),    # 0: coin 0 exactly (IoU 1)
    (square(5, 5, 10), 0, 0.8),    # 1: its duplicate: a false detection (coin 0 is taken)
    (square(5, 32, 10), 0, 0.7),   # 2: coin 1 shifted by 2 px: IoU 80 / 120 = 0.667
    (square(5, 66, 10), 0, 0.6),   # 3: coin 2 shifted by 6 px: IoU 40 / 160 = 0.25, missed
    (square(35, 5, 10), 0, 0.5),   # 4: the spoon's place, but called a coin: false, and the spoon is missed
    (square(35, 5, 10), 1, 0.05),  # 5: the spoon, right, but under the score threshold: left out
])


def test_object_outcomes_match_in_score_order_within_a_class():
    out = object_outcomes(PRED, GT_MASKS, GT_LABELS, score_thr=0.1)
    objects = out["objects"]
    assert [o["found"] for o in objects] == [True, True, False, False]
    assert [o["detection"] for o in objects] == [0, 2, -1, -1]
    assert [o["best"] for o in objects] == [0, 2, 3, -1]  # the spoon: no kept spoon detection at all
    np.testing.assert_allclose([o["iou"] for o in objects], [1.0, 80 / 120, 40 / 160, 0.0])
    assert out["false"] == [1, 3, 4]  # highest score first
    # with the threshold under the spoon's own detection it is found
    low = object_outcomes(PRED, GT_MASKS, GT_LABELS, score_thr=0.0)
    assert low["objects"][3] == {"detection": 5, "best": 5, "iou": 1.0, "found": True}
    # at IoU 0.7 the shifted coin is missed too, its best IoU still reported
    strict = object_outcomes(PRED, GT_MASKS, GT_LABELS, score_thr=0.1, iou_thr=0.7)
    assert [o["found"] for o in strict["objects"]] == [True, False, False, False]
    np.testing.assert_allclose(strict["objects"][1]["iou"], 80 / 120)
    assert strict["false"] == [1, 2, 3, 4]


def test_object_outcomes_without_detections_misses_everything():
    empty = {"masks": np.zeros((0, 60, 90), np.uint8), "labels": np.zeros(0, np.int32), "scores": np.zeros(0)}
    out = object_outcomes(empty, GT_MASKS, GT_LABELS, score_thr=0.1)
    assert out == {"objects": [{"detection": -1, "best": -1, "iou": 0.0, "found": False}] * 4, "false": []}


def test_draw_object_crops_orders_objects_best_first_and_says_what_happened():
    image = np.full((60, 90, 3), 100, np.uint8)
    fig, order, out = draw_object_crops(image, PRED, GT_MASKS, GT_LABELS, ["coin", "spoon"], score_thr=0.1, ncols=3)
    assert order == [0, 1, 2, 3]  # found by IoU (1.0, 0.667), then missed by best IoU (0.25, 0)
    visible = [ax for ax in fig.axes if ax.axison or ax.get_title()]
    titles = [ax.get_title() for ax in visible]
    assert titles == ["coin 0: IoU 1.00 (score 0.90)", "coin 1: IoU 0.67 (score 0.70)",
                      "coin 2: missed (best IoU 0.25)", "spoon 3: missed (best IoU 0.00)"]
    assert len(fig.axes) == 6 and sum(not ax.get_title() for ax in fig.axes) == 2  # 2 x 3 grid, 2 empty
    # each panel is cropped around its object with the margin (6 px, clipped at the image's edge)
    assert visible[0].get_xlim() == (-0.5, 20.5) and visible[0].get_ylim() == (20.5, -0.5)
    # a found object has its detection painted over the crop; a missed one has only the photo
    assert len(visible[0].images) == 2 and len(visible[2].images) == 1
    # the missed coin 2 shows the detection that came closest as a red outline; the spoon has none
    red = [c for c in visible[2].collections if np.allclose(c.get_edgecolor()[0][:3], (1, 0, 0))]
    assert len(red) == 1 and not [c for c in visible[3].collections
                                  if np.allclose(c.get_edgecolor()[0][:3], (1, 0, 0))]
    overlay = visible[1].images[1].get_array()
    # rows 0-20 (the top edge clips the margin), columns 24-45
    assert overlay.shape[:2] == (21, 22) and (overlay[..., 3] > 0).sum() == 100  # the whole 10 x 10 detection
    assert "2 of 4 found" in fig._suptitle.get_text() and "3 false detection(s)" in fig._suptitle.get_text()
    plt.close(fig)


def test_duplicate_pairs_are_same_class_masks_overlapping_at_the_threshold():
    from solo_lib.viz_real import duplicate_pairs

    masks = PRED["masks"]
    # 0 and 1 are the same square (IoU 1); 4 and 5 too, but of different classes; 0 and 2 do not overlap
    assert duplicate_pairs(masks, PRED["labels"]) == [(0, 1)]
    assert duplicate_pairs(masks, np.zeros(6, int)) == [(0, 1), (4, 5)]
    shifted = np.stack([square(5, 30, 10), square(5, 32, 10)])  # IoU 80 / 120 = 0.667
    assert duplicate_pairs(shifted, [0, 0]) == [(0, 1)] and duplicate_pairs(shifted, [0, 0], iou_thr=0.7) == []
    assert duplicate_pairs(np.zeros((0, 60, 90)), np.zeros(0, int)) == []


def test_on_object_fraction_says_how_much_of_a_found_mask_lies_on_its_object():
    from solo_lib.viz_real import on_object_fraction

    out = object_outcomes(PRED, GT_MASKS, GT_LABELS, score_thr=0.1)
    fractions = on_object_fraction(PRED, GT_MASKS, out)
    assert sorted(fractions) == [0, 1]  # the found objects only
    np.testing.assert_allclose([fractions[0], fractions[1]], [1.0, 0.8])  # 2 of the shifted mask's 10 columns are off
