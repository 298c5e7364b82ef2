"""One grid geometry: the image scale (mmcv's rule), the canvas, and the same grid cell for an
object in training and at inference (solo_lib.geometry, issue "Full training as the paper trains")."""

import numpy as np
import pytest
import tensorflow as tf

from solo_lib.config import SOLOConfig
from solo_lib.data import augment as aug
from solo_lib.data import pipeline
from solo_lib.errors import ConfigError
from solo_lib.geometry import canvas_size, grid_cell, input_geometry
from solo_lib.inference import preprocess

PAPER = (1333, 800)

# (height, width) -> (new height, new width) at the paper's scale, worked out by hand from
# mmcv.imrescale's rule: factor = min(1333 / long side, 800 / short side), sizes int(x * f + 0.5).
RESCALE_TABLE = [
    ((480, 640), (800, 1067)),    # f = 5/3: 1066.67 -> 1067
    ((640, 480), (1067, 800)),
    ((375, 500), (800, 1067)),    # f = 2.1333: 1066.67 -> 1067
    ((200, 1024), (260, 1333)),   # long side binds: f = 1333/1024 (exact in binary), 260.35 -> 260
    ((100, 100), (800, 800)),     # enlarged 8x
    ((427, 640), (800, 1199)),    # a common COCO size: 1199.06 -> 1199
    ((800, 1333), (800, 1333)),   # already at the scale
    ((1000, 2000), (667, 1333)),  # 666.5: half up, int(x + 0.5), where Python round() would give 666
    ((3000, 4000), (800, 1067)),  # shrunk
    ((1, 1000), (1, 1333)),       # a 1-pixel line: 1.333 rounds to 1 row
    # Exact ties, 666.5 and 236.5: rounded up. mmcv's float64 gives 666 and 236 here (its factor
    # 1333 / 596 is rounded down); the exact rule is what the integer-only graph can compute.
    ((298, 596), (667, 1333)),
    ((143, 806), (237, 1333)),
]


@pytest.mark.parametrize("size, expected", RESCALE_TABLE)
def test_rescale_size_follows_mmcv_rule(size, expected):
    assert aug.rescale_size(*size, PAPER) == expected
    assert aug.rescale_size(*size, PAPER[::-1]) == expected  # (short, long) reads the same, as mmcv
    # The in-graph version rounds the same way.
    assert tuple(aug.rescale_size_tensor(tf.constant(size), PAPER).numpy()) == expected


def test_rescale_size_python_and_tensor_agree_and_fit():
    rng = np.random.default_rng(0)
    sizes = [(298, 596), (634, 1268), (1192, 596)] + rng.integers(1, 3000, size=(300, 2)).tolist()  # ties first
    for h, w in sizes:
        for scale in (PAPER, (256, 256), (1333, 640), (100, 60), (768, 448)):
            new = aug.rescale_size(int(h), int(w), scale)
            assert tuple(aug.rescale_size_tensor(tf.constant([h, w]), scale).numpy()) == new
            # It fits (rounding may add at most half a pixel) and one bound is (nearly) reached.
            assert max(new) <= max(scale) and min(new) <= min(scale)
            assert max(new) >= max(scale) - 1 or min(new) >= min(scale) - 1


def test_rescale_size_rejects_bad_input():
    with pytest.raises(ValueError, match="positive integers"):
        aug.rescale_size(0, 10, PAPER)
    with pytest.raises(ValueError, match="long, short"):
        aug.rescale_size(10, 10, (1333,))


def test_canvas_is_the_orientations_and_holds_the_resized_image():
    assert canvas_size(480, 640, PAPER) == (800, 1344)   # landscape
    assert canvas_size(640, 480, PAPER) == (1344, 800)   # portrait
    # square: with the portraits (GroupSampler: w/h > 1 is the other group)
    assert canvas_size(100, 100, PAPER) == (1344, 800)
    assert canvas_size(160, 256, (256, 256)) == (256, 256)
    assert canvas_size(176, 240, None) == (192, 256)     # no scale: own size rounded up to 32
    for size, _ in RESCALE_TABLE:
        resized, canvas = input_geometry(*size, PAPER)
        assert resized[0] <= canvas[0] and resized[1] <= canvas[1] and canvas[0] % 32 == canvas[1] % 32 == 0


def _object_image(height, width):
    """A black image with one bright rectangle (the object) and its mask; the rectangle's centre is
    at about (0.37 H, 0.61 W), away from the image's middle so a wrong canvas moves its cell."""
    image = np.zeros((height, width, 3), np.uint8)
    y0, y1 = int(0.27 * height), max(int(0.47 * height), int(0.27 * height) + 1)
    x0, x1 = int(0.51 * width), max(int(0.71 * width), int(0.51 * width) + 1)
    image[y0:y1, x0:x1] = 255
    mask = np.zeros((1, height, width), np.uint8)
    mask[0, y0:y1, x0:x1] = 1
    return image, mask


def _training_cells(image, mask, config):
    """The positive cell (row, col) of each level as the training pipeline assigns it, and the canvas."""
    sample = {"image": image, "masks": mask, "labels": np.zeros(1, np.int32), "iscrowd": np.zeros(1, bool),
              "boxes": np.zeros((1, 4), np.float32), "image_id": np.int64(1)}
    source = tf.data.Dataset.from_tensors(sample)
    batches = pipeline.training_dataset(source, config, batch_size=1, augment=aug.AugmentConfig.none())
    images, targets = pipeline.first_batch(batches)
    cells = targets["pos_cells"][0][targets["pos_valid"][0] == 1]
    per_level, start = [], 0
    for s in config.grid_sizes:
        mine = [c - start for c in cells if start <= c < start + s * s]
        assert len(mine) == 1, f"one positive cell expected on the {s}x{s} level, got {mine}"
        per_level.append(divmod(int(mine[0]), s))
        start += s * s
    return per_level, images.shape[1:3]


@pytest.mark.parametrize("size", [(480, 640), (640, 480), (375, 500), (200, 1024), (100, 100)])
@pytest.mark.parametrize("preset", ["paper_r50", "tiny"])
def test_an_object_is_in_the_same_cell_in_training_and_at_inference(size, preset):
    # Every level takes the object (scale ranges opened), and the centre region shrinks to the
    # centre cell (pos_scale tiny), so each level has exactly one positive cell: the centre's.
    config = getattr(SOLOConfig, preset)(1)
    config = config.replace(scale_ranges=((0, 1e5),) * config.num_levels, pos_scale=1e-3)
    image, mask = _object_image(*size)
    train_cells, train_canvas = _training_cells(image, mask, config)

    # Inference: predict's own preprocessing; the object is where the canvas is bright.
    canvas, resized = preprocess(image, config)
    canvas = canvas[0].numpy()
    assert tuple(canvas.shape[:2]) == tuple(train_canvas) == canvas_size(*size, config.image_scale)
    assert tuple(resized) == aug.rescale_size(*size, config.image_scale)
    ys, xs = np.nonzero(canvas[..., 0] >= 128)
    test_cells = [grid_cell(ys.mean(), xs.mean(), canvas.shape[:2], s) for s in config.grid_sizes]
    assert test_cells == train_cells


def test_a_wrong_canvas_would_move_the_object():
    """The check above can fail: on the old inference canvas (the image only padded to a multiple
    of 32, not resized) the 640x480 image's object lands in other cells."""
    config = SOLOConfig.paper_r50(1)
    config = config.replace(scale_ranges=((0, 1e5),) * 5, pos_scale=1e-3)
    image, mask = _object_image(480, 640)
    train_cells, _ = _training_cells(image, mask, config)
    ys, xs = np.nonzero(mask[0])
    old = [grid_cell(ys.mean(), xs.mean(), (480, 640), s) for s in config.grid_sizes]
    assert old != train_cells


def test_batches_hold_one_orientation_each():
    images = [np.full((h, w, 3), 100, np.uint8) for h, w in [(64, 96), (96, 64), (80, 80), (50, 120)] * 3]

    def samples():
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            mask = np.zeros((1, h, w), np.uint8)
            mask[0, 10:30, 10:30] = 1
            yield {"image": image, "masks": mask, "labels": np.zeros(1, np.int32), "iscrowd": np.zeros(1, bool),
                   "boxes": np.zeros((1, 4), np.float32), "image_id": np.int64(i)}

    source = tf.data.Dataset.from_generator(samples, output_signature=pipeline.SAMPLE_SIGNATURE)
    config = SOLOConfig.tiny(1, image_scale=(128, 96))
    batches = pipeline.training_dataset(source, config, batch_size=2, shuffle_buffer=12)
    shapes = [tuple(images.shape[1:3]) for images, _ in batches.take(12)]
    assert set(shapes) == {(96, 128), (128, 96)}  # landscape canvas and portrait (and square) canvas


def test_multiscale_draws_short_sides_from_the_list_and_is_seeded():
    image = np.full((300, 400, 3), 50, np.uint8)
    mask = np.zeros((1, 300, 400), np.uint8)
    mask[0, 100:200, 100:300] = 1
    sample = {"image": image, "masks": mask, "labels": np.zeros(1, np.int32), "iscrowd": np.zeros(1, bool),
              "boxes": np.zeros((1, 4), np.float32), "image_id": np.int64(1)}
    config = SOLOConfig.tiny(1, image_scale=(256, 192))
    sides = (128, 160, 192)

    def drawn(seed):
        batches = pipeline.training_dataset(tf.data.Dataset.from_tensors(sample), config, batch_size=1,
                                            augment=aug.AugmentConfig.none(), short_sides=sides, seed=seed)
        out = []
        for images, _ in batches.take(30):
            rows = np.nonzero(images[0].numpy()[:, 0, 0])[0]  # the image's rows (50), then zero padding
            assert images.shape[1:3] == (192, 256)  # the canvas does not change with the scale
            out.append(int(rows.max()) + 1)
        return out

    first = drawn(0)
    assert set(first) == set(sides)  # 30 draws from 3 values: each appears (chance of a miss ~ 3 * (2/3)^30)
    assert drawn(0) == first
    assert drawn(1) != first


def test_short_sides_must_fit_the_canvas():
    config = SOLOConfig.tiny(1, image_scale=(256, 192))
    with pytest.raises(ConfigError, match=r"short_sides must be integers in \[32, 192\]"):
        pipeline.check_short_sides((128, 224), config)
    with pytest.raises(ConfigError, match="no image_scale"):
        pipeline.check_short_sides(None, config.replace(image_scale=None))


def test_on_canvas_keeps_instances_aligned_and_drops_vanished_ones():
    from solo_lib.data.coco import Sample
    from solo_lib.geometry import on_canvas

    image = np.full((400, 600, 3), 90, np.uint8)
    masks = np.zeros((3, 400, 600), np.uint8)
    masks[0, 10:200, 10:300] = 1
    masks[1, 300, 500] = 1  # one pixel: gone at half size
    masks[2, 250:390, 400:590] = 1
    sample = Sample(image=image, masks=masks, labels=np.array([0, 1, 2], np.int32), boxes=np.zeros((3, 4), np.float32),
                    iscrowd=np.array([False, False, True]), annotation_ids=np.array([11, 12, 13]), image_id=1,
                    file_name="x.png", class_names=("a", "b", "c"))
    placed = on_canvas(sample, SOLOConfig.tiny(3, image_scale=(300, 200)))
    assert isinstance(placed, Sample) and placed.image.shape == (224, 320, 3)  # resized 200 x 300, landscape canvas
    assert placed.labels.tolist() == [0, 2] and placed.annotation_ids.tolist() == [11, 13]
    assert placed.iscrowd.tolist() == [False, True] and placed.masks.shape == (2, 224, 320)
    assert not placed.image[200:].any() and not placed.image[:, 300:].any()  # padding after the image
    np.testing.assert_array_equal(placed.boxes[1], [200, 125, 295, 195])  # [x0, y0, x1, y1) of mask 2, halved


def test_configs_saved_before_the_image_scale_keep_their_native_size_inference():
    old = SOLOConfig.tiny(2).to_dict()
    del old["image_scale"]  # as in checkpoints written before the setting existed
    config = SOLOConfig.from_dict(old)
    assert config.image_scale is None
    canvas, resized = preprocess(np.zeros((100, 150, 3), np.uint8), config)
    assert resized == (100, 150) and canvas.shape == (1, 128, 160, 3)  # only padded, as these models ran
    assert SOLOConfig.from_dict(SOLOConfig.tiny(2).to_dict()).image_scale == (256, 256)
