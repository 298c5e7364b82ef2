"""Notebook 12's pictures (solo_lib.viz_export): the exported graph's steps in the order it runs
them, all inside one frame, with the formats that hold it; and one image's instances from predict
and each export, side by side, with the counts in the titles."""

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from solo_lib import viz_export  # noqa: E402
from solo_lib.config import SOLOConfig  # noqa: E402
from solo_lib.export import FORMATS  # noqa: E402

# The steps of serving_function in the order the graph runs them (written out: the test's own copy
# of solo_lib.inference's module docstring, steps 1-7, after preprocess's resize and pad).
ORDER = ["image", "resize", "pad", "network", "point_nms", "threshold", "dynamic_conv", "small_mask_filter",
         "maskness", "matrix_nms", "resize_back", "outputs"]


@pytest.fixture(scope="module")
def config():
    return SOLOConfig.tiny(4)


@pytest.fixture(scope="module")
def figure(config):
    fig = viz_export.draw_export_pipeline(config)
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def patches(fig, kind):
    return {p.get_gid(): p for p in fig.axes[0].patches if isinstance(p, kind)}


def texts(fig, prefix):
    """``{owner gid: [its text lines in order]}`` of the texts whose gid starts with ``prefix``."""
    out = {}
    for t in sorted(fig.axes[0].texts, key=lambda t: t.get_gid() or ""):
        gid = t.get_gid() or ""
        if gid.startswith(prefix) and ":text" in gid:
            out.setdefault(gid.rsplit(":", 1)[0], []).append(t.get_text())
    return out


def extent(fig, artist):
    return artist.get_window_extent(fig.canvas.get_renderer())


def inside(inner, outer, margin=0.5):
    return (outer.x0 - margin <= inner.x0 and inner.x1 <= outer.x1 + margin
            and outer.y0 - margin <= inner.y0 and inner.y1 <= outer.y1 + margin)


def test_steps_carry_the_configs_settings(config):
    steps = viz_export.export_steps(config)
    assert [s.key for s in steps] == ORDER
    assert [s.key for s in steps if not s.in_graph] == ["image", "outputs"]
    detail = {s.key: s.detail for s in steps}
    assert detail["resize"] == "to 256 x 256" and detail["threshold"] == "score > 0.1"
    assert detail["matrix_nms"] == ">= 0.05, top 100" and detail["small_mask_filter"].startswith("p > 0.5")
    other = viz_export.export_steps(config.replace(score_thr=0.25, image_scale=(512, 384)))
    assert {s.key: s.detail for s in other}["threshold"] == "score > 0.25"
    assert {s.key: s.detail for s in other}["resize"] == "to 512 x 384"
    unnamed = {s.key: s.detail for s in viz_export.export_steps()}
    assert unnamed["threshold"] == "score > score_thr" and unnamed["resize"] == "to image_scale"


def test_every_step_is_a_box_with_its_name_and_settings(figure, config):
    boxes = patches(figure, FancyBboxPatch)
    lines = texts(figure, "step:")
    for step in viz_export.export_steps(config):
        gid = f"step:{step.key}"
        assert gid in boxes, gid
        assert lines[gid][:2] == [step.name, step.detail], (gid, lines[gid])
        for t in figure.axes[0].texts:  # each line sits inside its own box
            if (t.get_gid() or "").startswith(gid + ":"):
                assert inside(extent(figure, t), extent(figure, boxes[gid])), t.get_gid()


def on_edge(box, x, y, tol=3.0):
    """(x, y) lies within ``tol`` pixels of the border of ``box`` (display coordinates)."""
    return box.padded(tol).contains(x, y) and not box.padded(-tol).contains(x, y)


def test_arrows_join_consecutive_steps_in_order(figure):
    arrows = [p for p in figure.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert [a.get_gid() for a in arrows] == [f"{a}->{b}" for a, b in zip(ORDER, ORDER[1:])]
    boxes = patches(figure, FancyBboxPatch)
    renderer = figure.canvas.get_renderer()
    for arrow in arrows:
        start, end = arrow.get_gid().split("->")
        # the arrow's two ends in data coordinates (FancyArrowPatch keeps them; no public getter)
        (x0, y0), (x1, y1) = figure.axes[0].transData.transform(arrow._posA_posB)
        a, b = (boxes[f"step:{k}"].get_window_extent(renderer) for k in (start, end))
        # the tail leaves the first box's edge and the head reaches the next box's edge
        assert on_edge(a, x0, y0) and on_edge(b, x1, y1), arrow.get_gid()


def test_the_frame_holds_every_step_between_image_and_outputs(figure):
    boxes = patches(figure, FancyBboxPatch)
    frame = extent(figure, boxes["graph"])
    for key in ORDER:
        box = extent(figure, boxes[f"step:{key}"])
        if key in ("image", "outputs"):
            assert box.x1 < frame.x0, key  # left of the frame: what goes in and comes out
        else:
            assert inside(box, frame), key
    title = next(t for t in figure.axes[0].texts if t.get_gid() == "graph:title")
    assert "serving_function" in title.get_text()


def test_every_format_is_a_badge_under_the_frame(figure):
    boxes = patches(figure, FancyBboxPatch)
    lines = texts(figure, "format:")
    frame = extent(figure, boxes["graph"])
    assert [g for g in boxes if g.startswith("format:")] == [f"format:{f}" for f in FORMATS]
    for fmt in FORMATS:
        assert lines[f"format:{fmt}"] == [viz_export.FORMAT_LABELS[fmt], viz_export.FORMAT_RUNTIMES[fmt]]
        assert extent(figure, boxes[f"format:{fmt}"]).y1 < frame.y0
    assert lines["format:onnx"][0] == "ONNX opset 17" and lines["format:tflite_fp16"][0] == "LiteRT float16"


def test_pipeline_texts_do_not_overlap(figure):
    boxes = [(t.get_gid(), extent(figure, t)) for t in figure.axes[0].texts if t.get_text()]
    width, height = figure.canvas.get_width_height()
    for gid, box in boxes:
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, gid
    for (ga, a), (gb, b) in itertools.combinations(boxes, 2):
        assert a.x1 + 1 <= b.x0 or b.x1 + 1 <= a.x0 or a.y1 + 1 <= b.y0 or b.y1 + 1 <= a.y0, (ga, gb)


def test_a_subset_of_formats_and_an_unknown_one():
    fig = viz_export.draw_export_pipeline(formats=("tflite", "onnx"))
    try:
        assert [g for g in patches(fig, FancyBboxPatch) if g.startswith("format:")] == ["format:tflite", "format:onnx"]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="unknown format"):
        viz_export.draw_export_pipeline(formats=("keras",))


def result(masks, labels, scores):
    return {"masks": np.asarray(masks, np.uint8), "labels": np.asarray(labels, np.int32),
            "scores": np.asarray(scores, np.float32)}


def test_comparison_draws_each_result_with_its_counts():
    image = np.full((30, 40, 3), 100, np.uint8)
    masks = np.zeros((3, 30, 40), np.uint8)
    masks[0, 2:10, 2:12] = 1
    masks[1, 15:25, 20:35] = 1
    masks[2, 2:8, 30:38] = 1
    results = {"predict": result(masks, [0, 1, 2], [0.9, 0.6, 0.1]),  # the third is below 0.3: not drawn
               "LiteRT float32": result(masks[:2], [0, 1], [0.9, 0.2]),
               "empty": result(np.zeros((0, 30, 40)), [], [])}
    fig, counts = viz_export.draw_export_comparison(image, results, ["a", "b", "c"], score_thr=0.3)
    try:
        assert counts == {"predict": (3, 2), "LiteRT float32": (2, 1), "empty": (0, 0)}
        assert [ax.get_title() for ax in fig.axes] == [
            "predict\n3 instances, 2 drawn", "LiteRT float32\n2 instances, 1 drawn", "empty\n0 instances, 0 drawn"]
        assert "score >= 0.3" in fig._suptitle.get_text()
        drawn = [np.asarray(ax.images[0].get_array()) for ax in fig.axes]
        # predict's panel: masks 0 and 1 tinted, mask 2 (score 0.1) and the background untouched
        for k in (0, 1):
            assert (drawn[0][masks[k] == 1] != 100).any(axis=-1).all(), k
        assert (drawn[0][masks[2] == 1] == 100).all() and (drawn[0][masks.sum(0) == 0] == 100).all()
        # the second panel: mask 1 has score 0.2 there, so only mask 0 is tinted
        assert (drawn[1][masks[0] == 1] != 100).any(axis=-1).all() and (drawn[1][masks[1] == 1] == 100).all()
        np.testing.assert_array_equal(drawn[2], image)
        labels = [[t.get_text() for t in ax.texts] for ax in fig.axes]
        assert labels == [["b 0.60", "a 0.90"], ["a 0.90"], []]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        viz_export.draw_export_comparison(image, {}, ["a"])
