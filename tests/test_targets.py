"""SOLOv2 targets against a slow loop reference, hand-worked grids and a numpy bilinear resize."""

import math

import numpy as np
import pytest

from solo_lib.config import SOLOConfig
from solo_lib.targets import (
    LevelTargets,
    _resize_masks_tf,
    assign_grid_cells,
    image_targets,
    instance_geometry,
    level_offsets,
    mask_targets,
)


def one_level(grid, num_classes=3, pos_scale=0.2):
    """A config with a single level that takes every size."""
    return SOLOConfig.tiny(num_classes, grid_sizes=(grid,), scale_ranges=((0, 10_000),), pos_scale=pos_scale)


# -- the slow reference: plain Python loops, written from the rules, not from the module ---------

def slow_assign(masks, labels, iscrowd, config):
    """Per instance: pixels -> box and centre of mass; per level: every cell tested, in order."""
    n, height, width = masks.shape
    pixels = []
    for k in range(n):
        xs, ys = [], []
        for y, row in enumerate(masks[k].tolist()):
            for x, v in enumerate(row):
                if v:
                    xs.append(x)
                    ys.append(y)
        pixels.append((xs, ys))
    levels = []
    for grid, (lo, hi) in zip(config.grid_sizes, config.scale_ranges):
        def cell(v, size):
            return min(max(math.floor(v / size * grid), 0), grid - 1)

        category = [[config.num_classes] * grid for _ in range(grid)]
        cells, instances = [], []
        for k in range(n):
            xs, ys = pixels[k]
            if not xs or iscrowd[k]:
                continue
            w, h = max(xs) - min(xs) + 1, max(ys) - min(ys) + 1
            if not lo <= math.sqrt(w * h) <= hi:
                continue
            cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
            ci, cj = cell(cy, height), cell(cx, width)
            eps = config.pos_scale
            rows = range(cell(cy - 0.5 * eps * h, height), cell(cy + 0.5 * eps * h, height) + 1)
            cols = range(cell(cx - 0.5 * eps * w, width), cell(cx + 0.5 * eps * w, width) + 1)
            for i in range(grid):
                for j in range(grid):
                    if i in rows and j in cols and abs(i - ci) <= 1 and abs(j - cj) <= 1:
                        category[i][j] = int(labels[k])
                        cells.append(i * grid + j)
                        instances.append(k)
        levels.append((np.array(category), cells, instances))
    return levels


def random_instances(rng, height, width, n, num_classes):
    """Rectangles, ellipses and L shapes of log-uniform size anywhere (partly off-canvas), some
    empty, some crowd."""
    masks = np.zeros((n, height, width), np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for k in range(n):
        kind = rng.integers(4)
        if kind == 3 and rng.random() < 0.4:
            continue  # empty mask
        bh, bw = (np.exp(rng.uniform(0, np.log(max(height, width)), 2))).astype(int) + 1
        y0, x0 = rng.integers(-bh // 3, height), rng.integers(-bw // 3, width)
        if kind == 0 or kind == 3:
            masks[k, max(y0, 0):y0 + bh, max(x0, 0):x0 + bw] = 1
        elif kind == 1:
            masks[k] = ((yy - y0 - bh / 2) / (bh / 2)) ** 2 + ((xx - x0 - bw / 2) / (bw / 2)) ** 2 <= 1
        else:  # an L: centre of mass away from the box centre
            masks[k, max(y0, 0):y0 + bh, max(x0, 0):x0 + max(bw // 4, 1)] = 1
            masks[k, max(y0 + bh - max(bh // 4, 1), 0):y0 + bh, max(x0, 0):x0 + bw] = 1
    labels = rng.integers(0, num_classes, n)
    iscrowd = rng.random(n) < 0.15
    return masks, labels, iscrowd


def test_matches_slow_reference_on_random_instance_sets():
    rng = np.random.default_rng(0)
    presets = (SOLOConfig.paper_r50(5), SOLOConfig.tiny(5), one_level(7, 5, pos_scale=1.0))
    canvases = ((64, 64), (96, 160), (150, 90), (33, 47), (200, 300), (320, 480))
    exercised = {"levels": set(), "two_levels": 0, "shared": 0, "nine": 0, "crowd_or_empty": 0}
    for trial in range(48):
        config = presets[trial % 3]
        height, width = canvases[(trial // 3) % 6]  # every preset on every canvas
        masks, labels, iscrowd = random_instances(rng, height, width, int(rng.integers(0, 12)), 5)
        if trial % 2:
            masks = masks.astype(bool)
        got = assign_grid_cells(masks, labels, config, iscrowd)
        want = slow_assign(masks, labels, iscrowd, config)
        assert len(got) == config.num_levels
        for level, (lv, (category, cells, instances)) in enumerate(zip(got, want)):
            assert isinstance(lv, LevelTargets)
            assert lv.category.dtype == lv.cells.dtype == lv.instances.dtype == np.int32
            np.testing.assert_array_equal(lv.category, category, err_msg=f"trial {trial} level {level}")
            assert lv.cells.tolist() == cells and lv.instances.tolist() == instances, (trial, level)
            if cells:
                exercised["levels"].add((config.num_levels, level))
            exercised["shared"] += len(cells) - len(set(cells))
            exercised["nine"] += np.bincount(instances).tolist().count(9) if instances else 0
        per_instance = [set(lv.instances.tolist()) for lv in got]
        exercised["two_levels"] += sum(sum(k in s for s in per_instance) >= 2 for k in range(len(labels)))
        exercised["crowd_or_empty"] += int((iscrowd | ~masks.any(axis=(1, 2))).sum())
    # The random sets really reach the cases that matter.
    assert {(5, 0), (5, 1), (5, 2), (5, 3), (3, 0), (3, 1), (3, 2)} <= exercised["levels"]
    assert min(exercised["two_levels"], exercised["shared"], exercised["nine"], exercised["crowd_or_empty"]) > 0


# -- hand-worked grids -----------------------------------------------------------------------------

def test_hand_worked_square_gets_the_four_cells_around_its_centre():
    # 64 x 64 canvas, S = 8 (8-px cells). An 8 x 8 square at rows/cols 12..19: centre 15.5 (cell 1),
    # region 15.5 +/- 0.5 * 0.2 * 8 = [14.7, 16.3] -> cells 1..2 in both directions.
    masks = np.zeros((1, 64, 64), np.uint8)
    masks[0, 12:20, 12:20] = 1
    (lv,) = assign_grid_cells(masks, [2], one_level(8))
    assert lv.cells.tolist() == [9, 10, 17, 18] and lv.instances.tolist() == [0, 0, 0, 0]
    expected = np.full((8, 8), 3)
    expected[1:3, 1:3] = 2
    np.testing.assert_array_equal(lv.category, expected)


def test_x_is_the_column_and_y_the_row_on_a_wide_canvas():
    # H = 32, W = 64, S = 4: rows 0..3, cols 40..47 -> cy = 1.5 (row 0), cx = 43.5 (column 2).
    masks = np.zeros((1, 32, 64), np.uint8)
    masks[0, 0:4, 40:48] = 1
    (lv,) = assign_grid_cells(masks, [1], one_level(4))
    assert lv.cells.tolist() == [2] and lv.category[0, 2] == 1 and (lv.category == 1).sum() == 1


def test_centre_exactly_on_a_cell_border_belongs_to_the_next_cell():
    # Rows/cols 0..32: centre of mass 16.0 = 2 * 8 exactly, so the centre cell is 2 (floor), not 1.
    # With pos_scale 1 the region is 16 +/- 16.5 -> cells 0..4, clipped to 2 +/- 1 = 1..3: 3 x 3.
    masks = np.zeros((1, 64, 64), np.uint8)
    masks[0, 0:33, 0:33] = 1
    geo = instance_geometry(masks)
    assert (geo["cx"][0], geo["cy"][0], geo["w"][0], geo["h"][0]) == (16.0, 16.0, 33, 33)
    (lv,) = assign_grid_cells(masks, [0], one_level(8, pos_scale=1.0))
    assert lv.cells.tolist() == [9, 10, 11, 17, 18, 19, 25, 26, 27]
    # At most 3 x 3 even for a canvas-sized instance.
    masks[0] = 1
    (lv,) = assign_grid_cells(masks, [0], one_level(8, pos_scale=1.0))
    assert len(lv.cells) == 9 and (lv.category == 0).sum() == 9


@pytest.mark.parametrize("side, levels", [(47, [0]), (48, [0, 1]), (60, [0, 1]), (96, [0, 1, 2]), (97, [1, 2])])
def test_scale_ranges_are_inclusive_and_overlap(side, levels):
    # Paper ranges (1, 96), (48, 192), (96, 384), ...: sqrt(w * h) of a side x side square is side.
    masks = np.zeros((1, 256, 256), np.uint8)
    masks[0, 10:10 + side, 20:20 + side] = 1
    got = assign_grid_cells(masks, [0], SOLOConfig.paper_r50(1))
    assert [k for k, lv in enumerate(got) if len(lv.cells)] == levels


def test_later_instance_overwrites_shared_cells_and_both_keep_their_pairs():
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 12:20, 12:20] = 1  # cells 9, 10, 17, 18
    masks[1, 20:28, 12:20] = 1  # centre 23.5, region [22.7, 24.3] -> rows 2..3: cells 17, 18, 25, 26
    (lv,) = assign_grid_cells(masks, [1, 2], one_level(8))
    assert lv.cells.tolist() == [9, 10, 17, 18, 17, 18, 25, 26]
    assert lv.instances.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert lv.category.reshape(-1)[[9, 10, 17, 18, 25, 26]].tolist() == [1, 1, 2, 2, 2, 2]
    (lv,) = assign_grid_cells(masks[::-1], [2, 1], one_level(8))  # swapped: the other one wins
    assert lv.category.reshape(-1)[[9, 10, 17, 18, 25, 26]].tolist() == [1, 1, 1, 1, 2, 2]


def test_crowd_and_empty_masks_are_never_positive():
    masks = np.zeros((3, 64, 64), np.uint8)
    masks[1, 12:20, 12:20] = 1
    masks[2, 12:20, 12:20] = 1  # same place, crowd: must not overwrite instance 1
    (lv,) = assign_grid_cells(masks, [0, 1, 2], one_level(8), iscrowd=[False, False, True])
    assert lv.instances.tolist() == [1, 1, 1, 1]  # instance 0 is empty; indices still count it
    assert set(lv.category.reshape(-1).tolist()) == {1, 3}
    (lv,) = assign_grid_cells(masks[2:], [2], one_level(8), iscrowd=[True])
    assert len(lv.cells) == 0 and (lv.category == 3).all()


def test_no_instances():
    config = SOLOConfig.paper_r50(4)
    got = assign_grid_cells(np.zeros((0, 48, 80), np.uint8), np.zeros(0, np.int32), config)
    for lv, grid in zip(got, config.grid_sizes):
        assert lv.category.shape == (grid, grid) and (lv.category == 4).all()
        assert lv.cells.shape == lv.instances.shape == (0,) and lv.cells.dtype == np.int32
    out = image_targets(np.zeros((0, 48, 80), np.uint8), [], config)
    assert out["masks"].shape == (0, 12, 20) and out["pos_cells"].shape == (0,)
    assert out["category"].shape == (config.num_cells,) and (out["category"] == 4).all()


def test_bad_inputs_raise():
    masks = np.ones((2, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="labels must be in"):
        assign_grid_cells(masks, [0, 3], one_level(4))
    with pytest.raises(ValueError, match="2 masks need 2 labels"):
        assign_grid_cells(masks, [0], one_level(4))
    with pytest.raises(ValueError, match="masks must be"):
        assign_grid_cells(masks[0], [0], one_level(4))


# -- mask targets ----------------------------------------------------------------------------------

def numpy_bilinear(mask, out_h, out_w):
    """Bilinear resize with half-pixel centres, float32 like TensorFlow's kernel: source
    coordinate (o + 0.5) * in / out - 0.5, neighbours clamped to the image."""
    f32 = np.float32

    def taps(out_size, in_size):
        scale = f32(in_size) / f32(out_size)
        src = (np.arange(out_size, dtype=f32) + f32(0.5)) * scale - f32(0.5)
        lower = np.maximum(np.floor(src), 0).astype(int)
        upper = np.minimum(np.ceil(src), in_size - 1).astype(int)
        return lower, upper, (src - np.floor(src)).astype(f32)

    (y0, y1, dy), (x0, x1, dx) = taps(out_h, mask.shape[0]), taps(out_w, mask.shape[1])
    m = mask.astype(f32)
    top = m[y0][:, x0] + (m[y0][:, x1] - m[y0][:, x0]) * dx
    bottom = m[y1][:, x0] + (m[y1][:, x1] - m[y1][:, x0]) * dx
    return top + (bottom - top) * dy[:, None]


def test_mask_targets_small_known_example():
    # Stride 4 on an 8 x 8 mask: output (0, 0) samples input point (1.5, 1.5), the mean of
    # pixels rows 1..2 x cols 1..2; it is kept when at least 2 of those 4 are set.
    masks = np.zeros((4, 8, 8), np.uint8)
    masks[0, 1, 1:3] = 1  # 2 of 4 -> 0.5 -> kept
    masks[1, 1, 1] = 1  # 1 of 4 -> 0.25 -> dropped
    masks[2, 0, 0] = masks[2, 3, 3] = masks[2, 0:4, 0] = 1  # outside the 2 x 2 taps -> dropped
    masks[3, 5:7, 5:7] = 1  # output (1, 1)
    out = mask_targets(masks, 4)
    assert out.shape == (4, 2, 2) and out.dtype == np.uint8
    assert out.reshape(4, -1).tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]


@pytest.mark.parametrize("height, width, stride", [(64, 96, 4), (70, 93, 4), (50, 50, 3), (40, 24, 8), (45, 60, 3),
                                                   (32, 32, 1), (48, 64, 2), (96, 64, 16)])
def test_mask_targets_match_numpy_bilinear(height, width, stride):
    rng = np.random.default_rng(height * width)
    masks, _, _ = random_instances(rng, height, width, 8, 1)
    out = mask_targets(masks.astype(bool), stride)
    assert out.shape == (8, height // stride, width // stride) and out.dtype == np.uint8
    expected = np.stack([numpy_bilinear(m, height // stride, width // stride) >= 0.5 for m in masks])
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(mask_targets(masks, stride), out)  # uint8 and bool agree


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 5, 8])
def test_mask_targets_block_rule_equals_tf_resize(stride):
    # Sides that are multiples of the stride take the block rule; it must give tf.image.resize's
    # numbers exactly (the slow path, still used for other sides).
    rng = np.random.default_rng(stride)
    masks, _, _ = random_instances(rng, 24 * stride, 16 * stride, 12, 1)
    binary = (masks != 0).view(np.uint8)
    np.testing.assert_array_equal(mask_targets(masks, stride), _resize_masks_tf(binary, 24, 16))


# -- the flat layout -------------------------------------------------------------------------------

def test_level_offsets():
    assert level_offsets(SOLOConfig.paper_r50(1)) == (0, 1600, 2896, 3472, 3728)
    assert level_offsets(SOLOConfig.tiny(1)) == (0, 576, 832)


@pytest.mark.parametrize("config", [SOLOConfig.paper_r50(5), SOLOConfig.tiny(5)], ids=["paper", "tiny"])
def test_image_targets_flatten_levels_in_order(config):
    rng = np.random.default_rng(7)
    masks, labels, iscrowd = random_instances(rng, 120, 200, 10, 5)
    out = image_targets(masks, labels, config, iscrowd)
    levels = assign_grid_cells(masks, labels, config, iscrowd)
    assert set(out) == {"category", "pos_cells", "pos_instances", "masks"}
    assert out["category"].shape == (config.num_cells,) and out["category"].dtype == np.int32
    for lv, start, grid in zip(levels, level_offsets(config), config.grid_sizes):
        np.testing.assert_array_equal(out["category"][start:start + grid * grid].reshape(grid, grid), lv.category)
    np.testing.assert_array_equal(out["pos_cells"], np.concatenate(
        [lv.cells + start for lv, start in zip(levels, level_offsets(config))]))
    np.testing.assert_array_equal(out["pos_instances"], np.concatenate([lv.instances for lv in levels]))
    assert out["pos_cells"].dtype == out["pos_instances"].dtype == np.int32
    # A positive's global cell carries its instance's label unless a later instance took it.
    last = {}
    for cell, k in zip(out["pos_cells"], out["pos_instances"]):
        last[cell] = max(last.get(cell, -1), k)
    assert all(out["category"][c] == labels[k] for c, k in last.items())
    np.testing.assert_array_equal(out["masks"], mask_targets(masks, config.mask_stride))


def test_collate_targets_pads_and_marks_valid_pairs():
    from solo_lib.targets import collate_targets

    config = SOLOConfig.tiny(3)
    masks_a = np.zeros((2, 64, 64), bool)
    masks_a[0, 5:30, 5:30] = True
    masks_a[1, 40:60, 30:50] = True
    a = image_targets(masks_a, np.array([0, 2]), config)
    b = image_targets(np.zeros((0, 64, 64), bool), np.zeros((0,), int), config)  # no instances
    batch = collate_targets([a, b])
    k = len(a["pos_cells"])
    assert batch["pos_cells"].shape == (2, k) and batch["masks"].shape == (2, 2, 16, 16)
    assert batch["pos_valid"][0].all() and not batch["pos_valid"][1].any()
    np.testing.assert_array_equal(batch["pos_cells"][0], a["pos_cells"])
    np.testing.assert_array_equal(batch["pos_instances"][0], a["pos_instances"])
    np.testing.assert_array_equal(batch["masks"][0], a["masks"])
    assert (batch["category"][1] == 3).all() and not batch["masks"][1].any()


def test_round_trip_iou_of_aligned_squares():
    from solo_lib.targets import round_trip_iou

    masks = np.zeros((3, 40, 40), np.uint8)
    masks[0, 4:8, 8:12] = 1  # one stride-4 target pixel: its bilinear tent is >= 0.5 on 12 of 16 pixels
    masks[1, 4:36, 4:36] = 1  # 32 x 32: only the four corner pixels fall below 0.5 (0.625^2)
    masks[2, 9, 9] = 1  # one pixel: no target pixel at all
    # Exact (default rtol 1e-7): ratios of pixel counts with power-of-two denominators.
    np.testing.assert_allclose(round_trip_iou(masks, 4), [12 / 16, 1020 / 1024, 0.0])
    np.testing.assert_allclose(round_trip_iou(masks[:2, :37, :38], 4), [12 / 16, 1020 / 1024])  # canvas padding
    assert round_trip_iou(np.zeros((0, 8, 8)), 4).shape == (0,)
