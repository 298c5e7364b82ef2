"""Notebook 10's NMS explorer: a pure callback over cached outputs, and its widget."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from solo_lib import viz_inference  # noqa: E402
from solo_lib.config import SOLOConfig  # noqa: E402
from solo_lib.inference import postprocess, preprocess  # noqa: E402
from solo_lib.model.solov2 import build_model  # noqa: E402

NAMES = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def setup():
    keras.utils.set_random_seed(3)
    config = SOLOConfig.tiny(4, score_thr=0.005, update_thr=0.0)  # untrained: let candidates through
    model = build_model(config, (64, 64))
    image = np.random.default_rng(0).integers(0, 255, (70, 90, 3)).astype(np.uint8)
    # As predict: resized to the image scale (256, 256), to 199 x 256, and padded to the 256 x 256 canvas.
    outputs = model(preprocess(image, config)[0], training=False)
    return model, image, outputs


def test_sigma_zero_keeps_every_candidate_and_decay_removes_some(setup):
    model, image, outputs = setup
    fig0, none = viz_inference.nms_view(image, outputs, model.config, NAMES, sigma=0.0, update_thr=0.0, score_thr=0.005)
    fig1, decayed = viz_inference.nms_view(image, outputs, model.config, NAMES, sigma=8.0, update_thr=0.004,
                                           score_thr=0.005)
    assert outputs["mask_feature"].shape[1:3] == (64, 64)  # the 256 x 256 canvas at stride 4
    assert len(none["labels"]) > 0 and none["masks"].shape[1:] == image.shape[:2]  # back at the original size
    # The masks are read from the resized image's region of the canvas (199 x 256), not from its
    # top-left 70 x 90 corner, then resized to 70 x 90.
    cfg = model.config.replace(nms_sigma=0.0, update_thr=0.0, score_thr=0.005)
    want = postprocess(outputs, cfg, (199, 256), (256, 256), original_size=(70, 90))
    np.testing.assert_array_equal(none["labels"], want["labels"])
    np.testing.assert_array_equal(none["masks"], want["masks"])
    corner = postprocess(outputs, cfg, (70, 90), (256, 256))
    assert not np.array_equal(none["masks"], corner["masks"])
    assert len(decayed["labels"]) <= len(none["labels"])
    assert np.all(np.diff(none["scores"]) <= 0)  # sorted, highest first
    assert fig0.axes[0].get_title() == f"gaussian, sigma 0, keep >= 0, score > 0.005: {len(none['labels'])} masks"
    plt.close("all")


def test_explorer_reruns_postprocessing_only(setup):
    model, image, _ = setup
    w = viz_inference.nms_explorer(model, image, NAMES)
    kernel, sigma, update_thr, score_thr = w.children[:4]
    score_thr.value = 0.02
    update_thr.value = 0.0
    sigma.value = 0.0
    many = len(w.result["labels"])
    kernel.value = "linear"
    assert len(w.result["labels"]) <= many
    plt.close("all")
