"""The SOLOv2 network: shapes, initialisation, dynamic conv, and exact save/reload round trips."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from tolerances import assert_close_float32

from solo_lib.config import SOLOConfig
from solo_lib.model.dynamic import dynamic_conv, gather_kernels
from solo_lib.model.head import coordinate_channels
from solo_lib.model.solov2 import SOLOv2, build_model, normalize_images, pad_to_multiple, split_levels

TINY = SOLOConfig.tiny(4)


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return build_model(TINY, (64, 64))


def images(batch, h, w, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("config", [TINY, SOLOConfig.paper_r50(80)], ids=["tiny", "paper_r50"])
def test_forward_shapes_on_a_non_square_padded_canvas(config):
    keras.utils.set_random_seed(0)
    model = SOLOv2(config)
    x = pad_to_multiple(images(2, 150, 97), 32)  # neither side a multiple of 32
    assert tuple(x.shape) == (2, 160, 128, 3)
    out = model(x)
    m = sum(s * s for s in config.grid_sizes)
    assert tuple(out["category"].shape) == (2, m, config.num_classes)
    assert tuple(out["kernel"].shape) == (2, m, config.mask_channels)
    assert tuple(out["mask_feature"].shape) == (2, 40, 32, config.mask_channels)
    levels = split_levels(out["category"], config.grid_sizes)
    assert [tuple(t.shape) for t in levels] == [(2, s, s, config.num_classes) for s in config.grid_sizes]
    if config.backbone == "resnet50":
        assert m == 3872


def test_unpadded_odd_sizes_still_run(tiny_model):
    out = tiny_model(images(1, 70, 45))
    assert tuple(out["mask_feature"].shape)[1:3] == (18, 12)  # ceil(70 / 4), ceil(45 / 4)


def test_category_prior_and_sigmoid_scores_at_init(tiny_model):
    bias = tiny_model.head.category_out.bias.numpy()
    np.testing.assert_allclose(bias, -math.log(99), rtol=1e-6)  # a float32 constant: < 1 ulp (1.2e-7)
    probs = tf.sigmoid(tiny_model(images(1, 64, 64))["category"]).numpy()
    # Not rounding: random weights spread the logits around the bias, so the mean probability sits
    # near 0.01 but not on it; a missing prior bias would give ~0.5.
    assert abs(probs.mean() - 0.01) < 0.005  # the prior: almost every cell starts as background


def test_coordinate_channels():
    c = coordinate_channels(tf.zeros((2, 3, 5, 7))).numpy()
    assert c.shape == (2, 3, 5, 2)
    # Exact (default rtol 1e-7, under an ulp): multiples of 1/2 are exact in float32.
    np.testing.assert_allclose(c[0, 0, :, 0], np.linspace(-1, 1, 5))  # x along the width
    np.testing.assert_allclose(c[1, :, 4, 1], np.linspace(-1, 1, 3))  # y along the height


def test_dynamic_conv_matches_an_explicit_loop():
    rng = np.random.default_rng(0)
    feature = rng.normal(size=(2, 6, 5, 8)).astype(np.float32)
    kernels = rng.normal(size=(2, 30, 8)).astype(np.float32)
    cells = np.array([[3, 3, 29], [0, 7, 1]], np.int32)
    got = dynamic_conv(feature, gather_kernels(kernels, cells)).numpy()
    want, size = np.zeros(got.shape), np.zeros(got.shape)
    for b in range(2):
        for k, cell in enumerate(cells[b]):
            for y in range(6):
                for x in range(5):
                    products = [float(feature[b, y, x, e]) * float(kernels[b, cell, e]) for e in range(8)]
                    want[b, k, y, x], size[b, k, y, x] = sum(products), sum(map(abs, products))
    # float32 8-term dot products against float64. A dot product can cancel, so the rounding is
    # relative to the largest sum of |products| (~1e-5 absolute); a wrong kernel or pixel is off by O(1).
    assert_close_float32(got, want, terms=8, scale=size.max(), what="dynamic conv")


def test_caffe_normalization_is_the_resnet_preprocessing():
    x = images(2, 4, 5)
    # The same float32 subtraction (and division) on both sides, element-wise: equal to an ulp; rtol
    # 1e-6 is ~8 ulps. A wrong channel order or mean is off by > 1e-2 relative.
    np.testing.assert_allclose(normalize_images(x, "caffe").numpy(),
                               keras.applications.resnet.preprocess_input(x.copy()), rtol=1e-6)
    np.testing.assert_allclose(normalize_images(x, "unit").numpy(), x / 255.0, rtol=1e-6)


def test_head_weights_are_shared_across_levels():
    three = build_model(TINY, (64, 64))
    two = build_model(TINY.replace(grid_sizes=(24, 12), scale_ranges=((1, 64), (32, 2048))), (64, 64))
    assert three.head.count_params() == two.head.count_params()


def test_frozen_backbone_has_no_trainable_weights():
    model = build_model(TINY.replace(freeze_backbone=True), (64, 64))
    trainable = {id(w) for w in model.trainable_weights}
    assert not any(id(w) in trainable for w in model.backbone.weights)
    assert len(model.trainable_weights) > 0


def outputs_equal(a, b, x):
    oa, ob = a(x), b(x)
    for key in ("category", "kernel", "mask_feature"):
        np.testing.assert_array_equal(oa[key].numpy(), ob[key].numpy())


def test_keras_file_reloads_with_safe_mode_and_identical_outputs(tiny_model, tmp_path):
    path = tmp_path / "tiny.keras"
    tiny_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, SOLOv2) and loaded.config == TINY
    outputs_equal(tiny_model, loaded, images(2, 96, 64, seed=3))


def test_weights_file_and_tf_checkpoint_restore_every_sublayer(tiny_model, tmp_path):
    x = images(1, 64, 96, seed=4)
    fresh = build_model(TINY, (64, 64))
    with pytest.raises(AssertionError):
        outputs_equal(tiny_model, fresh, x)  # different random init: the check below means something
    tiny_model.save_weights(tmp_path / "tiny.weights.h5")
    fresh.load_weights(tmp_path / "tiny.weights.h5")
    outputs_equal(tiny_model, fresh, x)
    # tf.train.Checkpoint follows only tracked attributes: a head kept in an untracked list
    # would silently restore as random weights (a pitfall of earlier TF SOLO code).
    prefix = tf.train.Checkpoint(model=tiny_model).save(str(tmp_path / "ckpt"))
    stored = [name for name, _ in tf.train.list_variables(prefix) if name.startswith("model/")]
    assert len(stored) == len(tiny_model.weights)
    other = build_model(TINY, (64, 64))
    tf.train.Checkpoint(model=other).restore(prefix).assert_existing_objects_matched()
    outputs_equal(tiny_model, other, x)


def test_paper_model_parameter_count_and_keras_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(SOLOConfig.paper_r50(80), (64, 64))
    assert model.backbone.count_params() == 23_587_712  # keras.applications.ResNet50 without its top
    assert 46_000_000 < model.count_params() < 47_500_000
    path = tmp_path / "paper.keras"
    model.save(path)
    outputs_equal(model, keras.saving.load_model(path, safe_mode=True), images(1, 64, 64))


def test_local_backbone_weights_file(tmp_path):
    keras.utils.set_random_seed(1)
    source = build_model(SOLOConfig.paper_r50(3), (64, 64))
    path = tmp_path / "resnet50.weights.h5"
    source.backbone.features.save_weights(path)
    model = build_model(SOLOConfig.paper_r50(3, backbone_weights=str(path)), (64, 64))
    x = normalize_images(images(1, 64, 64), "caffe")
    for a, b in zip(source.backbone(x), model.backbone(x)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(FileNotFoundError, match="not-there"):
        SOLOv2(SOLOConfig.paper_r50(3, backbone_weights="not-there.h5"))


def test_config_validation_and_presets():
    assert SOLOConfig.paper_r50(80).num_cells == 3872
    assert SOLOConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="one entry per level"):
        TINY.replace(grid_sizes=(24, 16))
    with pytest.raises(ValueError, match="ImageNet weights"):
        SOLOConfig.tiny(4, backbone_weights="imagenet")
    # Inference and loss fields are checked too, and every problem is named in one message.
    with pytest.raises(ValueError, match=r"nms_kernel must be 'gaussian' or 'linear', got 'box'.*"
                                         r"nms_sigma and mask_area_scale must be >= 0"):
        TINY.replace(nms_kernel="box", nms_sigma=-1.0)
    for bad, field in ((dict(score_thr=1.5), "score_thr"), (dict(mask_thr=0.0), "mask_thr"),
                       (dict(nms_pre=0), "nms_pre"), (dict(max_per_img=-5), "max_per_img"),
                       (dict(update_thr=1.0), "update_thr"), (dict(mask_stride=8), "mask_stride"),
                       (dict(focal_alpha=2.0), "focal_alpha"), (dict(dice_eps=0.0), "dice_eps")):
        with pytest.raises(ValueError, match=field):
            TINY.replace(**bad)
    # The documented escape hatches stay valid: -1 disables a limit, sigma 0 means no decay.
    TINY.replace(nms_pre=-1, max_per_img=-1, update_thr=-1.0, nms_sigma=0.0, score_thr=0.0)
