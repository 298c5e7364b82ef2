"""Post-processing on hand-built network outputs whose masks are known, point NMS against a loop,
and predict on an untrained tiny model."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tolerances import assert_close_float32  # noqa: E402

from solo_lib.config import SOLOConfig  # noqa: E402
from solo_lib.inference import category_scores, instances, point_nms, postprocess, predict, preprocess  # noqa: E402
from solo_lib.model.solov2 import build_model  # noqa: E402
from solo_lib.viz import draw_predictions  # noqa: E402

# grids (24, 16, 12), level strides (8, 8, 16); the reference small-mask rule (scale 1.0)
CONFIG = SOLOConfig.tiny(3, mask_area_scale=1.0)
CANVAS, IMAGE = (64, 96), (60, 90)  # mask feature 16 x 24; the image is the top-left 60 x 90
INSIDE = 2.0  # mask logit inside a region: probability sigmoid(2) = 0.8808, the maskness
MASKNESS = 1 / (1 + np.exp(-INSIDE))


def loop_point_nms(scores):
    """The reference's 2x2 neighbourhood, cell by cell: (i-1, j-1), (i-1, j), (i, j-1), (i, j)."""
    out = np.zeros_like(scores)
    size_i, size_j, classes = scores.shape
    for i in range(size_i):
        for j in range(size_j):
            for c in range(classes):
                neighbours = [scores[y, x, c] for y in (i - 1, i) for x in (j - 1, j) if y >= 0 and x >= 0]
                out[i, j, c] = scores[i, j, c] if scores[i, j, c] == max(neighbours) else 0.0
    return out


def test_point_nms_on_a_hand_made_map():
    heat = np.array([[0.1, 0.5, 0.2],
                     [0.3, 0.4, 0.9],
                     [0.8, 0.2, 0.6]], np.float32)
    want = np.array([[0.1, 0.5, 0.0],
                     [0.3, 0.0, 0.9],
                     [0.8, 0.0, 0.0]], np.float32)  # 0.6 sits below 0.9; 0.5 is not compared with 0.9
    got = point_nms(heat[None, :, :, None])[0, :, :, 0].numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, loop_point_nms(heat[:, :, None])[:, :, 0])


def test_point_nms_matches_the_loop_with_ties():
    heat = np.random.default_rng(0).integers(0, 4, (2, 9, 9, 3)).astype(np.float32) / 4  # many ties
    got = point_nms(heat).numpy()
    for b in range(2):
        np.testing.assert_array_equal(got[b], loop_point_nms(heat[b]))


def test_category_scores_work_level_by_level():
    config = SOLOConfig.tiny(2, grid_sizes=(5, 3, 2))
    logits = np.random.default_rng(1).normal(size=(1, 25 + 9 + 4, 2)).astype(np.float32)
    got = category_scores(logits, config.grid_sizes)[0].numpy()
    probs = 1 / (1 + np.exp(-logits[0]))
    start = 0
    for s in config.grid_sizes:
        want = loop_point_nms(probs[start:start + s * s].reshape(s, s, 2)).reshape(s * s, 2)
        # Element-wise float32 sigmoid against float64, no sums: a few ulps, rtol 1e-6 is ~8-16 ulps
        # (probabilities 0.05-0.95). Suppressed cells are exactly 0 on both sides.
        np.testing.assert_allclose(got[start:start + s * s], want, rtol=1e-6)
        start += s * s


# Regions of the 16 x 24 stride-4 mask feature, one channel each: channel e is INSIDE in region e.
REGIONS = {0: (slice(2, 6), slice(3, 9)),    # 24 pixels
           1: (slice(9, 14), slice(16, 24)),  # 40 pixels, reaching into the canvas padding (cols >= 90 / 4)
           2: (slice(8, 12), slice(2, 6))}    # 16 pixels: kept at stride 8, dropped at stride 16
# (level, row, col, class, score, region). Expected: A, B, C, A2 (A2 duplicates A: decayed);
# the right neighbour of A loses point NMS, the low one misses score_thr, the small one is too small.
CELLS = {"A": (0, 5, 5, 1, 0.9, 0), "A_neighbour": (0, 5, 6, 1, 0.85, 0), "A2": (0, 15, 15, 1, 0.6, 0),
         "B": (1, 10, 10, 2, 0.7, 1), "low": (1, 2, 2, 0, 0.08, 1),
         "small": (2, 3, 3, 0, 0.8, 2), "C": (0, 20, 2, 0, 0.5, 2)}


def synthetic_outputs(cells=CELLS, config=CONFIG):
    """Model outputs where each listed cell predicts its class and region and nothing else fires."""
    offsets = np.cumsum([0] + [s * s for s in config.grid_sizes])
    category = np.full((1, offsets[-1], config.num_classes), -10.0, np.float32)
    kernel = np.zeros((1, offsets[-1], len(REGIONS)), np.float32)
    for level, row, col, label, score, region in cells.values():
        flat = offsets[level] + row * config.grid_sizes[level] + col
        category[0, flat, label] = np.log(score / (1 - score))
        kernel[0, flat, region] = 1.0
    feature = np.full((1, CANVAS[0] // 4, CANVAS[1] // 4, len(REGIONS)), -10.0, np.float32)
    for e, (rows, cols) in REGIONS.items():
        feature[0, rows, cols, e] = INSIDE
    return {"category": category, "kernel": kernel, "mask_feature": feature}


def bilinear(n_in, n_out):
    """(n_out, n_in) weights of a half-pixel bilinear resize with edge clamping."""
    weights = np.zeros((n_out, n_in))
    for y in range(n_out):
        src = min(max((y + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
        y0 = int(np.floor(src))
        y1 = min(y0 + 1, n_in - 1)
        weights[y, y0] += 1 - (src - y0)
        weights[y, y1] += src - y0
    return weights


def expected_mask(region):
    """The region's probability map, x4 bilinear to the canvas, cropped to the image, > 0.5."""
    probs = np.full((CANVAS[0] // 4, CANVAS[1] // 4), 1 / (1 + np.exp(10.0)))
    probs[REGIONS[region]] = MASKNESS
    up = bilinear(probs.shape[0], CANVAS[0]) @ probs @ bilinear(probs.shape[1], CANVAS[1]).T
    return (up[:IMAGE[0], :IMAGE[1]] > 0.5).astype(np.uint8)


def run(config=CONFIG, cells=CELLS, **kwargs):
    return postprocess(synthetic_outputs(cells, config), config, IMAGE, CANVAS, **kwargs)


def test_postprocess_recovers_the_known_instances():
    result = run()
    names = ["A", "B", "C", "A2"]
    np.testing.assert_array_equal(result["labels"], [CELLS[n][3] for n in names])
    decay = [1, 1, 1, np.exp(-2.0)]  # A2 duplicates A (IoU 1): gaussian decay exp(-sigma * 1^2)
    want_scores = [CELLS[n][4] * MASKNESS * d for n, d in zip(names, decay)]
    # Scores: sigmoid, the maskness mean over at most 16 x 24 = 384 pixels, then exp decay, all
    # float32 against float64: eps32 x (a few ulps + sqrt(384)) ~ 3e-6 relative; rtol 1e-5 is 3x
    # that, while a wrong maskness or decay would be off by > 1e-2.
    np.testing.assert_allclose(result["scores"], want_scores, rtol=1e-5)
    assert result["masks"].shape == (4, *IMAGE) and result["masks"].dtype == np.uint8
    assert result["labels"].dtype == np.int32 and result["scores"].dtype == np.float32
    for k, name in enumerate(names):
        want = expected_mask(CELLS[name][5])
        np.testing.assert_array_equal(result["masks"][k], want)
        (rows, cols) = REGIONS[CELLS[name][5]]
        block = np.zeros(CANVAS, np.uint8)  # the region x4, nearest: bilinear only rounds corners
        block[rows.start * 4:rows.stop * 4, cols.start * 4:cols.stop * 4] = 1
        assert np.logical_xor(want, block[:IMAGE[0], :IMAGE[1]]).sum() <= 4 * 3
    assert result["masks"][1][:, -1].any()  # B is cropped at the image border, not squeezed into it


def test_small_masks_are_dropped_by_their_level_stride():
    # The 16-pixel region passes at level 0 (16 > 8) but not at level 2 (16 > 16 fails); without the
    # rule the level-2 cell (score 0.8) would win and decay the level-0 one.
    result = run(cells={"small": CELLS["small"], "C": CELLS["C"]})
    np.testing.assert_allclose(result["scores"], [0.5 * MASKNESS], rtol=1e-5)  # as in the test above
    assert len(run(cells={"small": CELLS["small"]})["labels"]) == 0


def test_mask_area_scale_scales_the_small_mask_threshold():
    # At 0.4 (the tiny preset) the level-2 threshold is 0.4 * 16 = 6.4 < 16: the small mask survives
    # there too, and as the better-scored duplicate it decays the level-0 one.
    result = run(CONFIG.replace(mask_area_scale=0.4), cells={"small": CELLS["small"], "C": CELLS["C"]})
    assert len(result["labels"]) == 2
    assert SOLOConfig.tiny(3).mask_area_scale == 0.4 and SOLOConfig.paper_r50(3).mask_area_scale == 1.0


@pytest.mark.parametrize("change,names", [
    ({"score_thr": 0.75}, ["A"]),                 # B (0.7), C (0.5), A2 (0.6) miss the category threshold
    ({"update_thr": 0.1}, ["A", "B", "C"]),       # A2's decayed score 0.07 misses the update threshold
    ({"max_per_img": 2}, ["A", "B"]),
    ({"nms_kernel": "linear"}, ["A", "B", "C"]),  # linear decay of a duplicate: 1 - 1 = 0
    ({"nms_pre": 2}, ["A", "B"]),                 # only the two best enter Matrix NMS
])
def test_postprocess_respects_thresholds(change, names):
    result = run(CONFIG.replace(**change))
    np.testing.assert_array_equal(result["labels"], [CELLS[n][3] for n in names])
    # As in test_postprocess_recovers_the_known_instances (rtol 1e-5 ~ 3x the float32 rounding).
    np.testing.assert_allclose(result["scores"], [CELLS[n][4] * MASKNESS for n in names], rtol=1e-5)


@pytest.mark.parametrize("case", ["nothing fires", "masks below mask_thr"])
def test_postprocess_returns_empty_results(case):
    if case == "nothing fires":
        result = run(cells={})
    else:
        result = run(CONFIG.replace(mask_thr=0.9))  # inside probability 0.88: every mask is empty
    assert result["masks"].shape == (0, *IMAGE) and result["masks"].dtype == np.uint8
    assert result["labels"].shape == (0,) and result["labels"].dtype == np.int32
    assert result["scores"].shape == (0,) and result["scores"].dtype == np.float32


def test_postprocess_resizes_to_the_original_size_and_instances_runs_as_a_graph():
    eager = run()
    small = run(original_size=(30, 45))
    assert small["masks"].shape == (4, 30, 45)
    # Scores do not depend on the output size: the same ops on the same inputs, so the same bits
    # (default rtol 1e-7, under one ulp).
    np.testing.assert_allclose(small["scores"], eager["scores"])
    assert (small["masks"] == eager["masks"][:, ::2, ::2]).mean() > 0.97
    # In a graph, instances() is post-processing (postprocess returns numpy and says so there).
    graph = tf.function(lambda o: instances(o["category"], o["kernel"], o["mask_feature"], CONFIG, IMAGE))(
        synthetic_outputs())
    for key in ("masks", "labels"):  # integers: equal
        np.testing.assert_array_equal(graph[key].numpy(), eager[key])
    # Scores: the maskness sums over 16 x 24 = 384 pixels, perhaps reordered in the graph; then
    # a product and the exp decay (depth 3).
    assert_close_float32(graph["scores"].numpy(), eager["scores"], terms=16 * 24, depth=3, what="graph scores")
    with pytest.raises(ValueError, match="canvas"):
        postprocess(synthetic_outputs(), CONFIG, IMAGE, (60, 90))
    with pytest.raises(RuntimeError, match="inside tf.function call solo_lib.inference.instances"):
        tf.function(lambda outputs: postprocess(outputs, CONFIG, IMAGE, CANVAS))(synthetic_outputs())


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return build_model(SOLOConfig.tiny(4), (64, 64))


def test_predict_any_image_size(tiny_model):
    image = np.random.default_rng(0).integers(0, 256, (150, 97, 3), dtype=np.uint8)
    result = predict(tiny_model, image)  # untrained: every score is near the 0.01 prior
    assert result["masks"].shape == (0, 150, 97) and result["labels"].shape == (0,)
    loose = tiny_model.config.replace(score_thr=0.0, update_thr=0.0)  # let untrained predictions through
    result = predict(tiny_model, image, loose)
    k = len(result["scores"])
    assert 0 < k <= loose.max_per_img
    assert result["masks"].shape == (k, 150, 97) and result["masks"].dtype == np.uint8
    assert set(np.unique(result["masks"])) <= {0, 1}
    assert result["labels"].dtype == np.int32 and result["labels"].min() >= 0 and result["labels"].max() < 4
    assert result["scores"].dtype == np.float32 and np.all(np.diff(result["scores"]) <= 0)
    with pytest.raises(ValueError, match="RGB"):
        predict(tiny_model, image[..., 0])


def test_predict_traces_once_for_every_size_and_follows_the_weights():
    """predict's compiled forward pass: one trace serves every canvas size, it gives the eager
    model's outputs, it sees weight updates, and it does not keep a deleted model alive."""
    import gc
    import weakref

    from solo_lib.inference import compiled_forward

    keras.utils.set_random_seed(1)
    model = build_model(SOLOConfig.tiny(4), (64, 64))
    rng = np.random.default_rng(1)
    # Three image scales, three canvases: 64x64, 160x128 (portrait), 64x224 (landscape).
    for size, scale in (((64, 64), (64, 64)), ((150, 97), (160, 100)), ((33, 200), (224, 64))):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        canvas, _ = preprocess(image, model.config.replace(image_scale=scale))
        compiled, eager = compiled_forward(model)(canvas), model(canvas, training=False)
        for key in ("category", "kernel", "mask_feature"):
            # The traced graph may pick other kernels or fuse ops: float32 rounding of 13 layers in a
            # row (8 backbone + 2 FPN + 3 head convolutions), of up to 3 x 3 x 128 = 1152 terms each,
            # relative to each output's largest value (~1e-4 of it; wrong weights move outputs by > 1e-2).
            assert_close_float32(compiled[key], eager[key], terms=3 * 3 * 128, depth=13, what=f"{key} at {size}")
        predict(model, image)
    assert compiled_forward(model).experimental_get_tracing_count() == 1
    model.head.category_out.weights[1].assign(np.full(4, 5.0, np.float32))  # every class score near 1
    assert np.all(tf.sigmoid(compiled_forward(model)(canvas)["category"]).numpy() > 0.9)
    alive = weakref.ref(model)
    del model, compiled, eager
    gc.collect()
    assert alive() is None


def test_predict_resizes_to_the_image_scale_and_returns_masks_at_the_original_size(tiny_model):
    """A 100 x 150 image at the tiny preset's scale (256, 256): the network sees it enlarged to
    171 x 256 (mmcv's rule: factor min(256 / 150, 256 / 100) = 1.71, rounded half up) on the
    256 x 256 canvas, exactly the pixels the training pipeline would give it; the masks come back at
    100 x 150."""
    from solo_lib.data import augment as aug
    from solo_lib.data import pipeline
    from solo_lib.geometry import canvas_size
    from solo_lib.inference import compiled_forward  # predict's forward pass: the same outputs

    config = tiny_model.config
    assert config.image_scale == (256, 256)
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    canvas, resized = preprocess(image, config)
    assert tuple(resized) == aug.rescale_size(100, 150, config.image_scale) == (171, 256)
    assert canvas.shape == (1, *canvas_size(100, 150, config.image_scale), 3) == (1, 256, 256, 3)
    assert canvas.dtype == tf.float32
    # The same pixels as in training (the pipeline without augmentation), padding included.
    mask = np.zeros((1, 100, 150), np.uint8)
    mask[0, 20:60, 30:90] = 1
    sample = {"image": image, "masks": mask, "labels": np.zeros(1, np.int32), "iscrowd": np.zeros(1, bool),
              "boxes": np.zeros((1, 4), np.float32), "image_id": np.int64(1)}
    trained_on, _ = pipeline.first_batch(pipeline.training_dataset(
        tf.data.Dataset.from_tensors(sample), config, batch_size=1, augment=aug.AugmentConfig.none()))
    np.testing.assert_array_equal(canvas.numpy(), trained_on.astype(np.float32))

    loose = config.replace(score_thr=0.0, update_thr=0.0)  # let untrained predictions through
    result = predict(tiny_model, image, loose)
    k = len(result["scores"])
    assert k > 0 and result["masks"].shape == (k, 100, 150) and result["masks"].dtype == np.uint8
    # The masks are those of the resized image region, resized back: against the masks at 171 x 256
    # from the same outputs, sampled at the original pixels' centres, they agree but at edges
    # (measured 99.5 %; masks read from the canvas's top-left 100 x 150 instead agree on 90 %).
    at_resized = postprocess(compiled_forward(tiny_model)(canvas), loose, resized, canvas.shape[1:3])
    assert at_resized["masks"].shape == (k, 171, 256)
    rows = np.minimum(((np.arange(100) + 0.5) * 171 / 100).astype(int), 170)
    cols = np.minimum(((np.arange(150) + 0.5) * 256 / 150).astype(int), 255)
    nearest = at_resized["masks"][:, rows][:, :, cols]
    assert nearest.any() and (nearest == result["masks"]).mean() > 0.98


def test_draw_predictions_draws_the_instances_above_the_threshold():
    result = run()
    image = np.full((*IMAGE, 3), 128, np.uint8)
    fig, ax = plt.subplots()
    shown = draw_predictions(ax, image, result, ["zero", "one", "two"], score_thr=0.3, title="predictions")
    assert list(shown) == [0, 1, 2]  # A2 (0.07) is below 0.3
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(f"{name} {score:.2f}" for name, score in
                           zip(["one", "two", "zero"], result["scores"][:3]))
    drawn = ax.images[0].get_array()
    assert drawn.shape == (*IMAGE, 3) and (drawn[result["masks"][0] == 1] != 128).any()
    plt.close(fig)
