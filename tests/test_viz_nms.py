"""Notebook 10's suppression pictures: the candidates, the numpy decay table and what each figure draws."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from solo_lib import viz_nms  # noqa: E402
from solo_lib.nms import matrix_nms  # noqa: E402
from solo_lib.viz_style import class_color  # noqa: E402

NAMES = ("disc", "block", "leaf", "star")


def three_masks():
    """A and B duplicates (B inside A, IoU 30/36), C apart; all class 0, scores 0.9, 0.8, 0.7."""
    m = np.zeros((3, 16, 16), bool)
    m[0, 1:7, 1:7] = True
    m[1, 2:7, 1:7] = True
    m[2, 10:14, 10:14] = True
    return m, np.zeros(3, np.int32), np.array([0.9, 0.8, 0.7], np.float32)


def blobs(count, rng, size=20):
    ys, xs = np.mgrid[0:size, 0:size]
    out = np.zeros((count, size, size), bool)
    for k in range(count):
        cy, cx = rng.uniform(6, 14, 2)
        ry, rx = rng.uniform(3, 7, 2)
        out[k] = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1.0
    return out


def test_decay_table_by_hand():
    masks, labels, scores = three_masks()
    t = viz_nms.decay_table(masks, labels, scores, sigma=2.0)
    np.testing.assert_array_equal(t["order"], [0, 1, 2])
    assert t["iou"][0, 1] == pytest.approx(30 / 36)
    assert t["iou"][0, 2] == 0 and t["iou"][1, 2] == 0
    np.testing.assert_array_equal(t["pairs"], [[False, True, True], [False, False, True], [False, False, False]])
    np.testing.assert_allclose(t["comp"], [0, 30 / 36, 0])
    # B decays by exp(-2 (30/36)^2); C's IoU with B is 0, and B's compensation would *raise* it, so
    # its minimum ratio is A's (exactly 1): C keeps its score.
    np.testing.assert_allclose(t["decay"], [1, np.exp(-2 * (30 / 36) ** 2), 1], rtol=1e-6)
    assert t["ratio"][1, 2] == pytest.approx(np.exp(2 * (30 / 36) ** 2), rel=1e-6)
    np.testing.assert_array_equal(t["suppressor"], [-1, 0, 0])


@pytest.mark.parametrize("kernel, sigma", [("gaussian", 2.0), ("gaussian", 0.5), ("gaussian", 6.0), ("linear", 2.0)])
def test_decay_table_matches_matrix_nms(kernel, sigma):
    rng = np.random.default_rng(7)
    masks = blobs(12, rng)
    labels = rng.integers(0, 2, 12).astype(np.int32)
    scores = rng.permutation(np.linspace(0.2, 0.95, 12)).astype(np.float32)  # distinct, unsorted
    t = viz_nms.decay_table(masks, labels, scores, kernel=kernel, sigma=sigma)
    decayed, _, _, keep = matrix_nms(masks, labels, scores, kernel=kernel, sigma=sigma)
    by_input = np.empty(12, np.float32)
    by_input[t["order"]] = t["decayed"]
    np.testing.assert_allclose(by_input[keep.numpy()], decayed.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(t["scores"], np.sort(scores)[::-1])
    assert t["pairs"].sum() > 0 and (t["decay"] < 1).any()  # the case does decay something


def test_duplicate_groups_and_pairs():
    masks, labels, _ = three_masks()
    more = np.concatenate([masks, masks[2:3], masks[0:1]])  # D = C again (class 0); E = A again but class 1
    more_labels = np.array([0, 0, 0, 0, 1])
    assert viz_nms.duplicate_groups(more, more_labels) == [[0, 1], [2, 3], [4]]
    assert viz_nms.duplicate_pairs(more, more_labels) == 2  # (A, B) and (C, D); E is another class
    assert viz_nms.duplicate_pairs(more, more_labels, iou_thr=0.9) == 1  # A-B is 0.83
    assert viz_nms.duplicate_groups(more[:0], more_labels[:0]) == []


def candidates_of(masks, labels, scores):
    order = np.argsort(-scores, kind="stable")
    return {"masks": masks[order], "labels": labels[order], "scores": scores[order]}


def test_candidate_panels_titles_outlines_and_rows():
    masks, labels, scores = three_masks()
    masks = np.concatenate([masks, masks[2:3]])  # D duplicates C exactly
    labels, scores = np.array([0, 0, 2, 2]), np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    cand = candidates_of(masks, labels, scores)
    t = viz_nms.decay_table(cand["masks"], cand["labels"], cand["scores"], sigma=2.0)
    canvas = np.zeros((64, 64, 3), np.uint8)
    fig, shown = viz_nms.candidate_panels(canvas, cand, t, NAMES, threshold=0.2)
    assert shown == [[0, 1], [2, 3]]
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 4
    titles = [ax.get_title() for ax in visible]
    assert titles[0] == "#0 disc\n0.90 → 0.90"
    b = 0.8 * np.exp(-2 * (30 / 36) ** 2)  # 0.199: below 0.2, dropped
    assert titles[1] == f"✗ #1 disc\n0.80 → {b:.2f}  IoU 0.83"
    assert titles[3] == f"✗ #3 leaf\n0.60 → {0.6 * np.exp(-2):.2f}  IoU 1.00"
    assert [to_rgb(ax.title.get_color()) for ax in visible] == [to_rgb(c) for c in ("black", "#7f7f7f") * 2]
    # Each panel: its own outline in its class colour; the second of a row also the best one, dashed white.
    for ax, k in zip(visible, (0, 1, 2, 3)):
        contours = [c for c in ax.collections if hasattr(c, "get_paths")]
        colors = [tuple(np.round(c.get_edgecolor()[0][:3], 3)) for c in contours]
        assert tuple(np.round(class_color(cand["labels"][k]), 3)) in colors
        assert ((1.0, 1.0, 1.0) in colors) == (k in (1, 3))
    plt.close("all")


def test_decay_heatmap_boxes_the_suppressor():
    rng = np.random.default_rng(3)
    masks = blobs(6, rng)
    labels = np.array([0, 0, 0, 1, 1, 0])
    scores = np.array([0.9, 0.8, 0.75, 0.7, 0.6, 0.5], np.float32)
    t = viz_nms.decay_table(masks, labels, scores)
    fig, boxed = viz_nms.decay_heatmap(t, class_names=NAMES)
    expected = [(int(t["suppressor"][j]), j) for j in range(6) if t["pairs"][:, j].any()]
    assert boxed == expected
    iou_ax, ratio_ax = fig.axes
    shown = iou_ax.images[0].get_array()
    assert shown.mask[~t["pairs"]].all() and not shown.mask[t["pairs"]].any()  # grey outside the pairs
    np.testing.assert_allclose(shown.data[t["pairs"]], t["iou"][t["pairs"]])
    assert [tick.get_text() for tick in iou_ax.get_xticklabels()] == [f"#{r} {NAMES[labels[r]]}" for r in range(6)]
    texts = [x.get_text() for x in ratio_ax.texts]
    assert all(f"{d:.2f}" in texts for d in t["decay"])  # the decay row
    # A subset of ranks: only those rows and columns.
    fig, boxed = viz_nms.decay_heatmap(t, ranks=[0, 1, 2])
    assert all(i in (0, 1, 2) and j in (0, 1, 2) for i, j in boxed)
    assert len(fig.axes[0].get_xticklabels()) == 3
    plt.close("all")


def test_score_bars_heights_and_threshold():
    masks, labels, scores = three_masks()
    t = viz_nms.decay_table(masks, labels, scores)
    fig, ax = plt.subplots()
    kept = viz_nms.score_bars(ax, t, threshold=0.3, class_names=NAMES)
    np.testing.assert_array_equal(kept, [True, False, True])
    heights = [p.get_height() for p in ax.patches if p.get_width() == pytest.approx(0.8)]
    np.testing.assert_allclose(heights[:3], scores, rtol=1e-6)  # before
    np.testing.assert_allclose(heights[3:6], t["decayed"], rtol=1e-6)  # after
    assert [line.get_ydata()[0] for line in ax.lines] == [0.3]
    assert ax.get_title() == "2 of 3 candidates keep a score >= 0.3"
    plt.close("all")


def test_sigma_view_more_sigma_fewer_survivors():
    masks, labels, scores = three_masks()
    cand = candidates_of(masks, labels, scores)
    canvas = np.zeros((64, 64, 3), np.uint8)
    _, none = viz_nms.sigma_view(canvas, cand, NAMES, sigma=0.0, threshold=0.3)
    fig, strong = viz_nms.sigma_view(canvas, cand, NAMES, sigma=2.0, threshold=0.3)
    assert none["kept"].tolist() == [0, 1, 2] and none["duplicates_kept"] == [1]  # B survives, drawn dashed
    assert strong["kept"].tolist() == [0, 2] and strong["duplicates_kept"] == []
    assert fig.axes[1].get_title() == "sigma 2: 2 masks kept, 0 of them duplicates (dashed)"
    assert len([c for c in fig.axes[1].collections if hasattr(c, "get_paths")]) == 2  # two outlines
    plt.close("all")


def test_sigma_explorer_reruns_the_decay():
    masks, labels, scores = three_masks()
    cand = candidates_of(masks, labels, scores)
    w = viz_nms.sigma_explorer(np.zeros((64, 64, 3), np.uint8), cand, NAMES, sigma=0.0, threshold=0.3)
    sigma, threshold = w.children[:2]
    assert (sigma.description, threshold.description) == ("sigma", "keep >=")
    assert len(w.result["kept"]) == 3
    sigma.value = 2.0
    assert len(w.result["kept"]) == 2
    threshold.value = 0.1
    assert len(w.result["kept"]) == 3
    plt.close("all")


def test_nms_candidates_are_what_postprocess_suppresses():
    """Matrix NMS with the config's settings on nms_candidates gives postprocess's scores and labels."""
    from solo_lib.data.coco import load_sample_dataset
    from solo_lib.demo import load_sample_model
    from solo_lib.inference import postprocess, preprocess

    model, _ = load_sample_model()
    c = model.config
    sample = load_sample_dataset("train")[0]
    canvas, resized = preprocess(sample.image, c)
    outputs = model(canvas, training=False)
    cand = viz_nms.nms_candidates(outputs, c)
    assert len(cand["scores"]) > 0 and np.all(np.diff(cand["scores"]) <= 0)
    np.testing.assert_allclose(cand["scores"], cand["category"] * cand["maskness"], rtol=1e-6)
    assert np.all(cand["maskness"] > c.mask_thr) and np.all(cand["category"] > c.score_thr)
    scores, labels, _, _ = matrix_nms(cand["masks"], cand["labels"], cand["scores"], kernel=c.nms_kernel,
                                      sigma=c.nms_sigma, filter_thr=c.update_thr, nms_pre=c.nms_pre,
                                      max_num=c.max_per_img)
    want = postprocess(outputs, c, resized, tuple(canvas.shape[1:3]))
    np.testing.assert_array_equal(labels.numpy(), want["labels"])
    np.testing.assert_allclose(scores.numpy(), want["scores"], rtol=1e-5)


def test_sigma_view_labels_each_survivor_with_its_rank():
    masks, labels, scores = three_masks()
    cand = candidates_of(masks, labels, scores)
    fig, result = viz_nms.sigma_view(np.zeros((64, 64, 3), np.uint8), cand, NAMES, sigma=0.0, threshold=0.3)
    assert sorted(t.get_text() for t in fig.axes[1].texts) == ["#0", "#1", "#2"]
    positions = [t.get_position() for t in fig.axes[1].texts]
    assert len(set(positions)) == 3  # A and B share a top-left corner: their labels are side by side
    plt.close("all")
