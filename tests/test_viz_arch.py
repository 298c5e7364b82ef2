"""The architecture pictures (solo_lib.viz_arch): shapes read from the built model equal what its
layers really output, the diagram shows them in the right boxes joined by the right arrows, and
the "you are here" map highlights the right part for each notebook."""

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from solo_lib import viz_arch  # noqa: E402
from solo_lib.demo import load_sample_model  # noqa: E402
from solo_lib.inference import category_scores, postprocess  # noqa: E402
from solo_lib.model.dynamic import dynamic_conv, gather_kernels  # noqa: E402
from solo_lib.model.solov2 import head_inputs, normalize_images, split_levels  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return load_sample_model()[0]


@pytest.fixture(scope="module")
def stages(model):
    return viz_arch.architecture_shapes(model)


@pytest.fixture(scope="module")
def figure(model, stages):
    fig = viz_arch.draw_architecture(model, shapes=stages)
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def eager_shapes(model, canvas):
    """The shapes of every stage from an eager run of the model's layers on a zero image: what
    the layers really output (independent of the tracing in viz_arch)."""
    c = model.config
    images = tf.zeros((1, *canvas, 3))
    features = model.backbone(normalize_images(images, c.normalization))
    pyramid = model.fpn(features)
    out = model.head(head_inputs(pyramid, c.num_levels))
    out["mask_feature"] = model.mask_branch(pyramid[:4])
    shapes = {"input": images.shape, "mask_feature": out["mask_feature"].shape,
              "point_nms": category_scores(out["category"], c.grid_sizes).shape}
    shapes.update({f"C{k + 2}": t.shape for k, t in enumerate(features)})
    shapes.update({f"P{k + 2}": t.shape for k, t in enumerate(pyramid)})
    for name in ("category", "kernel"):
        shapes.update({f"{name}_{i}": t.shape for i, t in enumerate(split_levels(out[name], c.grid_sizes))})
    cells = tf.constant([[0, 5, 700]], tf.int32)  # K = 3 cells of levels 0 and 1
    shapes["masks"] = dynamic_conv(out["mask_feature"], gather_kernels(out["kernel"], cells)).shape
    shapes["instances"] = postprocess(out, c, canvas, canvas)["masks"].shape
    return {k: tuple(int(v) for v in s) for k, s in shapes.items()}


def test_shapes_are_the_layers_real_outputs(model, stages):
    real = eager_shapes(model, (256, 256))
    keys = [s.key for s in stages]
    assert keys == ["input", "C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "category_0", "kernel_0",
                    "category_1", "kernel_1", "category_2", "kernel_2", "mask_feature", "point_nms", "masks",
                    "instances"]
    for stage in stages:
        if stage.key == "masks":  # K candidate cells: 3 in the eager run
            assert stage.shape[1] == "K" and real["masks"] == (1, 3, *stage.shape[2:]), stage
        elif stage.key == "instances":  # N kept instances: whatever the zero image gives
            assert stage.shape[0] == "N" and real["instances"][1:] == stage.shape[1:], stage
        else:
            assert stage.shape == real[stage.key], stage


def test_shapes_follow_the_config(model, stages):
    """The paper's shapes, from the config alone: (1, S, S, C), (1, S, S, E), (1, H/4, W/4, E)."""
    c = model.config
    by_key = {s.key: s for s in stages}
    assert by_key["input"].shape == (1, 256, 256, 3)
    for level, s in enumerate(c.grid_sizes):
        assert by_key[f"category_{level}"].shape == (1, s, s, c.num_classes)
        assert by_key[f"kernel_{level}"].shape == (1, s, s, c.mask_channels)
    assert by_key["mask_feature"].shape == (1, 64, 64, c.mask_channels)
    assert by_key["point_nms"].shape == (1, sum(s * s for s in c.grid_sizes), c.num_classes)
    assert by_key["masks"].shape_text == "(1, K, 64, 64)"
    assert by_key["instances"].shape_text == "(N, 256, 256)"
    for k, stride in zip(("P2", "P3", "P4", "P5"), (4, 8, 16, 32)):
        assert by_key[k].shape == (1, 256 // stride, 256 // stride, c.fpn_channels)


def test_a_canvas_that_is_not_a_multiple_of_32_is_refused(model):
    with pytest.raises(ValueError, match="multiples of 32"):
        viz_arch.architecture_shapes(model, canvas=(100, 256))


def box_texts(fig):
    """``{box gid: [its text lines]}`` of the diagram."""
    texts = {}
    for text in fig.axes[0].texts:
        gid = text.get_gid() or ""
        if gid.startswith("box:"):
            texts.setdefault(gid.rsplit(":", 1)[0], []).append(text.get_text())
    return texts


def test_every_stage_is_a_box_showing_its_shape(figure, stages):
    texts = box_texts(figure)
    boxes = {p.get_gid() for p in figure.axes[0].patches if isinstance(p, FancyBboxPatch)}
    for stage in stages:
        level = stage.key.split("_")[-1] if stage.key.startswith(("category_", "kernel_")) else None
        gid = f"box:level{level}" if level is not None else f"box:{stage.key}"
        assert gid in boxes, gid
        shown = " ".join(" ".join(texts[gid]).split())  # the input box wraps its shape over two lines
        assert stage.shape_text in shown, (gid, stage.shape_text, texts[gid])
    # Written out, so a reader of this test sees what the picture shows.
    assert texts["box:P2"] == ["P2  stride 4", "(1, 64, 64, 64)"]
    assert texts["box:C5"] == ["C5  stride 32", "(1, 8, 8, 128)"]
    assert texts["box:level0"] == ["level 0: S = 24", "category (1, 24, 24, 4)", "kernel   (1, 24, 24, 64)"]
    assert texts["box:mask_feature"][1] == "(1, 64, 64, 64)"
    assert texts["box:masks"][1] == "(1, K, 64, 64)"
    assert texts["box:instances"][1] == "(N, 256, 256)"
    assert "box:P6" not in boxes  # three levels: no P6


def test_arrows_join_the_stages_in_order(figure):
    arrows = [p.get_gid() for p in figure.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert arrows == ["input->C2", "C2->C3", "C3->C4", "C4->C5",
                      "C2->P2", "C3->P3", "C4->P4", "C5->P5",
                      "P5->P4", "P4->P3", "P3->P2",
                      "P2->level0", "P3->level1", "P4->level2",
                      "P2-P5->mask_feature", "category->point_nms", "point_nms->masks", "kernel->masks",
                      "mask_feature->masks", "masks->instances"]


def text_boxes(fig):
    renderer = fig.canvas.get_renderer()
    return [(t.get_gid(), t.get_window_extent(renderer)) for t in fig.axes[0].texts + fig.texts
            if t.get_text().strip()] + [("title", t.get_window_extent(renderer)) for t in [fig.axes[0].title]
                                        if t.get_text()]


def assert_no_overlap(fig, margin=1.0):
    """No two texts overlap (pixels, with a margin) and every text lies inside the figure."""
    boxes = text_boxes(fig)
    width, height = fig.canvas.get_width_height()
    for gid, box in boxes:
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (gid, box)
    for (gid_a, a), (gid_b, b) in itertools.combinations(boxes, 2):
        apart = (a.x1 + margin <= b.x0 or b.x1 + margin <= a.x0 or a.y1 + margin <= b.y0 or b.y1 + margin <= a.y0)
        assert apart, (gid_a, gid_b)


def test_diagram_texts_do_not_overlap_and_sit_in_their_boxes(figure):
    assert_no_overlap(figure)
    renderer = figure.canvas.get_renderer()
    patches = {p.get_gid(): p.get_window_extent(renderer) for p in figure.axes[0].patches}
    for text in figure.axes[0].texts:
        gid = text.get_gid() or ""
        if gid.startswith("box:"):
            box, inner = patches[gid.rsplit(":", 1)[0]], text.get_window_extent(renderer)
            assert box.x0 <= inner.x0 and inner.x1 <= box.x1 and box.y0 <= inner.y0 and inner.y1 <= box.y1, gid


def test_five_levels_draw_p6_and_five_head_boxes():
    """The paper's layout (five levels, P6) on a small model: the tiny backbone with the paper's
    grids, so it builds in a second (the ResNet-50 paper model draws the same boxes), on a canvas
    that is not the model's default."""
    from solo_lib.config import SOLOConfig
    from solo_lib.model.solov2 import build_model

    paper = SOLOConfig.paper_r50(3)
    config = SOLOConfig.tiny(3, grid_sizes=paper.grid_sizes, scale_ranges=paper.scale_ranges)
    model = build_model(config, (128, 192))
    stages = {s.key: s for s in viz_arch.architecture_shapes(model, canvas=(128, 192))}
    assert stages["input"].shape == (1, 128, 192, 3)
    assert stages["P2"].shape == (1, 32, 48, 64)
    assert stages["category_0"].shape == (1, 40, 40, 3)  # the grid does not depend on the canvas
    assert stages["instances"].shape_text == "(N, 128, 192)"
    fig = viz_arch.draw_architecture(model, canvas=(128, 192), shapes=list(stages.values()))
    try:
        fig.canvas.draw()
        texts = box_texts(fig)
        assert texts["box:P6"] == ["P6  stride 64", "(1, 2, 3, 64)"]
        assert texts["box:level4"] == ["level 4: S = 12", "category (1, 12, 12, 3)", "kernel   (1, 12, 12, 64)"]
        assert texts["box:point_nms"][1] == "(1, 3872, 3)"  # 40² + 36² + 24² + 16² + 12² cells
        arrows = [p.get_gid() for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
        assert arrows[8:17] == ["P5->P4", "P4->P3", "P3->P2", "P5->P6", "P2->level0", "P3->level1", "P4->level2",
                                "P5->level3", "P6->level4"]
        assert_no_overlap(fig)
    finally:
        plt.close(fig)


# The course's parts, and which a notebook's map lights up (written out: the test's own copy).
EXPECTED = {4: {"targets"}, 5: {"backbone"}, 6: {"heads"}, 7: {"losses"}, 8: {"training"},
            "08b": {"data", "training", "inference", "evaluation"},
            9: {"training"}, 10: {"inference"}, 11: {"evaluation"}, 12: {"inference"}}
PARTS = ["data", "targets", "backbone", "heads", "losses", "training", "inference", "evaluation"]


def lit_parts(fig):
    boxes = [p for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]
    assert [p.get_gid() for p in boxes] == [f"part:{name}" for name in PARTS]
    return {p.get_gid().split(":")[1] for p in boxes
            if np.allclose(p.get_facecolor(), to_rgba(viz_arch.HIGHLIGHT))}


@pytest.mark.parametrize("notebook", list(EXPECTED))
def test_you_are_here_highlights_the_notebooks_part(notebook):
    fig = viz_arch.you_are_here(notebook)
    try:
        assert lit_parts(fig) == EXPECTED[notebook]
        assert tuple(fig.get_size_inches()) == (8.0, 1.6)
        arrows = [p.get_gid() for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
        assert arrows == [f"{a}->{b}" for a, b in zip(PARTS, PARTS[1:])]
        title = next(t.get_text() for t in fig.axes[0].texts if t.get_gid() == "title")
        number = notebook if isinstance(notebook, str) else f"{notebook:02d}"
        assert title.startswith(f"You are here: notebook {number} (")
        fig.canvas.draw()
        assert_no_overlap(fig)
    finally:
        plt.close(fig)


def test_you_are_here_takes_strings_and_refuses_unknown_notebooks():
    fig = viz_arch.you_are_here("04")
    assert lit_parts(fig) == {"targets"}
    plt.close(fig)
    fig = viz_arch.you_are_here("2")
    assert lit_parts(fig) == {"data"}
    plt.close(fig)
    fig = viz_arch.you_are_here(" 08B ")
    assert lit_parts(fig) == {"data", "training", "inference", "evaluation"}
    plt.close(fig)
    for bad in (13, "00", "4b", None, True):
        with pytest.raises(ValueError, match="known notebooks: 01, 02"):
            viz_arch.you_are_here(bad)
