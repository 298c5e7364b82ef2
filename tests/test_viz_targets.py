"""Notebook 04's grid view and explorer: they show exactly what assign_grid_cells computes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from solo_lib import viz  # noqa: E402
from solo_lib.config import SOLOConfig  # noqa: E402
from solo_lib.data.coco import load_sample_dataset  # noqa: E402
from solo_lib.geometry import canvas_size, on_canvas  # noqa: E402
from solo_lib.targets import assign_grid_cells  # noqa: E402
from solo_lib.viz_style import class_color  # noqa: E402

CONFIG = SOLOConfig.tiny(3, grid_sizes=(8, 4), scale_ranges=((1, 20), (16, 100)))


def hand_sample():
    """64 x 96 canvas: a 16 x 16 square (both levels), a 40 x 40 square (level 1 only), a crowd."""
    masks = np.zeros((3, 64, 96), np.uint8)
    masks[0, 8:24, 8:24] = 1
    masks[1, 20:60, 50:90] = 1
    masks[2, 40:50, 10:20] = 1
    return {"image": np.full((64, 96, 3), 90, np.uint8), "masks": masks, "labels": np.array([0, 2, 1], np.int32),
            "iscrowd": np.array([False, False, True]), "class_names": ("a", "b", "c")}


def assert_same_targets(got, want):
    for name in ("category", "cells", "instances"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


@pytest.mark.parametrize("level", [0, 1])
def test_grid_view_draws_the_targets_it_returns(level):
    s = hand_sample()
    fig, targets = viz.grid_view(s, CONFIG, level=level, instance=0)
    assert_same_targets(targets, assign_grid_cells(s["masks"], s["labels"], CONFIG, s["iscrowd"])[level])
    assert len(fig.axes) == 2
    grid = CONFIG.grid_sizes[level]
    count = int((targets.instances == 0).sum())
    assert count > 0
    title = fig.axes[0].get_title()
    assert f"level {level}: S={grid}" in title and f"{count} positives" in title
    # One filled rectangle per positive cell, plus the dashed centre region.
    assert len(fig.axes[0].patches) == count + 1
    # The category map shows each cell's class colour, light gray for background.
    rgb = np.asarray(fig.axes[1].images[0].get_array())
    for i in range(grid):
        for j in range(grid):
            c = targets.category[i, j]
            expected = (0.85,) * 3 if c == CONFIG.num_classes else class_color(c)
            np.testing.assert_allclose(rgb[i, j], expected)  # the same floats, copied: exact (rtol 1e-7)
    plt.close(fig)


def test_grid_view_titles_say_why_an_instance_has_no_positives():
    s = hand_sample()
    fig, targets = viz.grid_view(s, CONFIG, level=0, instance=1)  # 40 px: only level 1
    assert "size out of range): 0 positives" in fig.axes[0].get_title() and 1 not in targets.instances
    assert len(fig.axes[0].patches) == 1  # the centre region only
    fig, _ = viz.grid_view(s, CONFIG, level=1, instance=2)
    assert "crowd): 0 positives" in fig.axes[0].get_title()
    s["masks"][0] = 0
    fig, _ = viz.grid_view(s, CONFIG, level=0, instance=0)
    assert "empty mask): 0 positives" in fig.axes[0].get_title()
    empty = dict(s, masks=s["masks"][:0], labels=s["labels"][:0], iscrowd=s["iscrowd"][:0])
    fig, targets = viz.grid_view(empty, CONFIG, level=1, instance=0)
    assert "no instances" in fig.axes[0].get_title() and len(targets.cells) == 0
    with pytest.raises(ValueError, match="level must be in"):
        viz.grid_view(s, CONFIG, level=2)
    with pytest.raises(ValueError, match="instance in"):
        viz.grid_view(s, CONFIG, instance=3)
    plt.close("all")


def test_grid_view_accepts_a_sample():
    sample = load_sample_dataset("val")[0]
    config = SOLOConfig.tiny(len(sample.class_names))
    fig, targets = viz.grid_view(sample, config, level=1, instance=0)
    assert_same_targets(targets, assign_grid_cells(sample.masks, sample.labels, config, sample.iscrowd)[1])
    assert sample.class_names[sample.labels[0]] in fig.axes[0].get_title()
    plt.close(fig)


def test_grid_explorer_reruns_when_a_slider_changes():
    ds = load_sample_dataset("train")
    config = SOLOConfig.tiny(ds.num_classes)
    w = viz.grid_explorer(ds, config)
    index, level, instance = w.children[:3]
    assert (index.max, level.max) == (len(ds) - 1, config.num_levels - 1)
    assert instance.max == max(len(ds[i].labels) for i in range(len(ds))) - 1

    def expected(i, lv):
        s = on_canvas(ds[i], config)  # the explorer shows each image on its canvas, as training sees it
        assert s.image.shape[:2] == canvas_size(*ds[i].image.shape[:2], config.image_scale)
        return assign_grid_cells(s.masks, s.labels, config, s.iscrowd)[lv]

    assert_same_targets(w.result, expected(0, 0))
    level.value = 2
    index.value = 4
    assert_same_targets(w.result, expected(4, 2))
    index.value = 1  # 3 instances: a larger instance index is clamped to the last one
    instance.value = instance.max
    assert_same_targets(w.result, expected(1, 2))
    assert "instance 2 (" in plt.gcf().axes[0].get_title()
    plt.close("all")
