"""Notebook 10's inspection of a trained model (solo_lib.viz_inspect): what it draws is what
inference computes, cell by cell, on the course's sample model."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from solo_lib import viz_inspect as vi  # noqa: E402
from solo_lib.data.coco import load_sample_dataset  # noqa: E402
from solo_lib.demo import load_sample_model  # noqa: E402
from solo_lib.inference import predict, preprocess  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    model, _ = load_sample_model()
    dataset = load_sample_dataset("train")
    image = dataset[4].image  # 20 objects on 256 x 256: many positive cells
    return model, dataset.class_names, image, vi.inspect_image(model, image)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_inspection_holds_the_networks_outputs_on_the_canvas(setup):
    model, _, image, insp = setup
    canvas, resized = preprocess(image, model.config)
    np.testing.assert_array_equal(insp.canvas, canvas[0].numpy().astype(np.uint8))
    assert insp.image_size == tuple(resized)
    sizes = model.config.grid_sizes
    assert [s.shape for s in insp.scores] == [(n, n, len(setup[1])) for n in sizes]
    assert [k.shape for k in insp.kept] == [s.shape for s in insp.scores]
    assert insp.kernels.shape[0] == sum(n * n for n in sizes)
    assert insp.mask_feature.shape[:2] == (canvas.shape[1] // 4, canvas.shape[2] // 4)
    assert insp.mask_feature.shape[2] == insp.kernels.shape[1]
    # Point NMS only ever zeroes scores.
    for raw, kept in zip(insp.scores, insp.kept):
        assert np.all((kept == raw) | (kept == 0))


def test_flat_cell_walks_the_levels_row_major_and_refuses_cells_outside_the_grid(setup):
    config = setup[0].config
    s0, s1 = config.grid_sizes[:2]
    assert vi.flat_cell(config, 0, 0, 0) == 0
    assert vi.flat_cell(config, 0, 1, 2) == s0 + 2
    assert vi.flat_cell(config, 1, 0, 0) == s0 * s0
    assert vi.flat_cell(config, 1, s1 - 1, s1 - 1) == s0 * s0 + s1 * s1 - 1
    with pytest.raises(ValueError, match="outside"):
        vi.flat_cell(config, 1, s1, 0)
    with pytest.raises(ValueError, match="level"):
        vi.flat_cell(config, len(config.grid_sizes), 0, 0)
    assert vi.cell_region(config, (256, 128), 0, 1, 2) == (256 / s0, 2 * 128 / s0, 2 * 256 / s0, 3 * 128 / s0)


def test_cell_mask_is_the_dot_product_of_the_feature_with_the_cells_kernel(setup):
    _, _, _, insp = setup
    level, row, col = vi.strongest_cells(insp, 1)[0]
    cell = vi.cell_mask(insp, level, row, col)
    # An independent formulation in float64. The logits are sums of E = 64 products; float32
    # round-off is ~1e-6 of their size, far below 1e-4 after the sigmoid (slope <= 1/4).
    logits = insp.mask_feature.astype(np.float64) @ insp.kernels[cell["index"]].astype(np.float64)
    expected = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(cell["probability"], expected, atol=1e-4)
    clear = np.abs(expected - 0.5) > 1e-3  # pixels whose side of 0.5 no rounding can change
    np.testing.assert_array_equal(cell["mask"][clear], (expected > 0.5)[clear])
    assert cell["area"] == int(cell["mask"].sum()) > 0
    assert cell["maskness"] == pytest.approx(float(cell["probability"][cell["mask"]].mean()))
    assert cell["final"] == pytest.approx(cell["score"] * cell["maskness"])
    np.testing.assert_array_equal(cell["scores"], insp.scores[level][row, col])


def test_the_strongest_cell_is_predicts_best_instance(setup):
    model, _, image, insp = setup
    result = predict(model, image)
    level, row, col = vi.strongest_cells(insp, 1)[0]
    cell = vi.cell_mask(insp, level, row, col)
    assert cell["label"] == result["labels"][0]
    # The best instance is never decayed by Matrix NMS: its score is category score x maskness.
    # Both are float32 means over ~10^2 pixels in different orders: equal to ~1e-6 relative.
    assert cell["final"] == pytest.approx(float(result["scores"][0]), rel=1e-4)
    # Its mask, upsampled x4 nearest here and bilinearly in predict, covers the same object.
    big = np.kron(cell["mask"], np.ones((4, 4), bool))[:image.shape[0], :image.shape[1]]
    best = result["masks"][0].astype(bool)
    assert (big & best).sum() / (big | best).sum() > 0.8


def test_strongest_cells_are_sorted_and_survive_point_nms(setup):
    _, _, _, insp = setup
    cells = vi.strongest_cells(insp, 6)
    scores = [insp.kept[lv][r, c].max() for lv, r, c in cells]
    assert len(cells) == 6 and scores == sorted(scores, reverse=True) and min(scores) > 0


@pytest.mark.parametrize("after_point_nms", [False, True])
def test_heatmaps_outline_exactly_the_cells_above_the_threshold(setup, after_point_nms):
    model, names, _, insp = setup
    config = model.config
    fig, outlined = vi.draw_level_heatmaps(insp, names, after_point_nms=after_point_nms)
    levels = insp.kept if after_point_nms else insp.scores
    panels = [ax for ax in fig.axes if ax.images and ax.images[0].get_array().ndim == 3]
    assert len(panels) == len(config.grid_sizes)
    for level, (ax, scores) in enumerate(zip(panels, levels)):
        expected = {(int(r), int(c)) for r, c in zip(*np.nonzero(scores.max(-1) > config.score_thr))}
        assert {(r, c) for r, c, _ in outlined[level]} == expected
        heat = ax.images[1].get_array()
        np.testing.assert_array_equal(heat, scores.max(-1))
        boxes = {p.get_gid(): p for p in ax.patches if isinstance(p, Rectangle)}
        assert set(boxes) == {f"cell-{level}-{r}-{c}" for r, c in expected}
        for r, c, label in outlined[level]:
            assert label == int(np.argmax(scores[r, c]))
            y0, x0, y1, x1 = vi.cell_region(config, insp.canvas.shape[:2], level, r, c)
            assert boxes[f"cell-{level}-{r}-{c}"].get_xy() == (x0 - 0.5, y0 - 0.5)
        assert f"{len(expected)} cells" in ax.get_title()
    raw = vi.draw_level_heatmaps(insp, names)[1]
    # Point NMS only removes cells, and here it removes some.
    assert sum(map(len, outlined)) <= sum(map(len, raw))
    if after_point_nms:
        assert sum(map(len, outlined)) < sum(map(len, raw))


def test_draw_cell_shows_where_the_cell_is_and_what_its_kernel_draws(setup):
    model, names, _, insp = setup
    level, row, col = vi.strongest_cells(insp, 1)[0]
    fig, cell = vi.draw_cell(insp, level, row, col, names)
    panels = {ax.get_gid(): ax for ax in fig.axes if ax.get_gid()}
    assert set(panels) == {"where", "classes", "kernel", "probability", "mask", "maskness"}
    (box,) = [p for p in panels["where"].patches if p.get_gid() == "the-cell"]
    y0, x0, y1, x1 = cell["region"]
    assert box.get_xy() == (x0 - 0.5, y0 - 0.5) and box.get_width() == x1 - x0
    assert f"row {row}, col {col}" in panels["where"].get_title()
    np.testing.assert_array_equal([b.get_height() for b in panels["classes"].patches], cell["scores"])
    np.testing.assert_array_equal([b.get_height() for b in panels["kernel"].patches], cell["kernel"])
    np.testing.assert_array_equal(panels["probability"].images[0].get_array(), cell["probability"])
    assert f"{cell['area']} pixels (kept)" in panels["mask"].get_title()
    assert names[cell["label"]] in panels["maskness"].get_title()
    assert f"{cell['maskness']:.2f}" in panels["maskness"].get_title()


def test_a_background_cell_still_draws_a_mask_and_is_not_kept(setup):
    model, names, _, insp = setup
    fig, cell = vi.draw_cell(insp, 0, 0, 0, names)  # the top-left corner: no object there
    assert cell["score"] < model.config.score_thr
    panels = {ax.get_gid(): ax for ax in fig.axes if ax.get_gid()}
    assert panels["probability"].images[0].get_array().shape == insp.mask_feature.shape[:2]


def test_gallery_has_one_panel_per_cell(setup):
    _, names, _, insp = setup
    cells = vi.strongest_cells(insp, 3) + [(0, 0, 0)]
    fig, drawn = vi.draw_cell_gallery(insp, cells, names)
    assert len(fig.axes) == 4 and [d["index"] for d in drawn] == [vi.flat_cell(insp.config, *c) for c in cells]
    for ax, (level, row, col), cell in zip(fig.axes, cells, drawn):
        assert [p.get_gid() for p in ax.patches] == [f"cell-{level}-{row}-{col}"]
        np.testing.assert_array_equal(ax.images[1].get_array(), cell["probability"])
        assert names[cell["label"]] in ax.get_title()


def test_cell_inspector_sliders_follow_the_levels_grid(setup):
    model, names, _, insp = setup
    sizes = model.config.grid_sizes
    w = vi.cell_inspector(insp, names, level=0, row=sizes[0] - 1, col=3)
    level, row, col = w.children[:3]
    assert (level.description, row.description, col.description) == ("level", "row", "column")
    assert row.max == sizes[0] - 1
    level.value = len(sizes) - 1  # the coarsest grid: row and column are clamped to it
    assert row.max == col.max == sizes[-1] - 1 and row.value == sizes[-1] - 1
    assert w.result["index"] == vi.flat_cell(model.config, len(sizes) - 1, sizes[-1] - 1, 3)


def test_owner_cells_are_the_centre_cells_that_training_assigns(setup):
    from solo_lib.geometry import on_canvas
    from solo_lib.targets import assign_grid_cells

    model, _, _, _ = setup
    config = model.config
    sample = on_canvas(load_sample_dataset("train")[4], config)
    targets = assign_grid_cells(sample.masks, sample.labels, config)
    for k, mask in enumerate(sample.masks):
        owners = vi.owner_cells(mask, config)
        assert owners, f"instance {k} belongs to no level"
        levels = [lv for lv, t in enumerate(targets) if k in t.instances]
        assert [lv for lv, _, _ in owners] == levels
        for level, row, col in owners:
            s = config.grid_sizes[level]
            assert row * s + col in targets[level].cells[targets[level].instances == k]
