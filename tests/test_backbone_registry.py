"""solo_lib.model.registry: a backbone added by one builder and one registration, end to end.

A toy backbone (a stem and four conv -> GroupNorm -> ReLU stages) is registered for each test
and unregistered after it, so no other test sees it. Through ``SOLOConfig(backbone="toy")`` it
must build a SOLOv2 model, run forward and train (plainly and gradient-checkpointed, with the
same loss), freeze its stages by their registered prefixes, and save and load as a ``.keras``
file while registered.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from batches import two_rectangles
from tolerances import assert_close_float32

from solo_lib.config import SOLOConfig
from solo_lib.errors import ConfigError
from solo_lib.losses import solo_losses
from solo_lib.model.backbone import Backbone
from solo_lib.model.blocks import conv_gn_relu
from solo_lib.model.registry import BackboneSpec, backbone_names, get_backbone, register_backbone, unregister_backbone
from solo_lib.model.solov2 import build_model

TOY_CHANNELS = (16, 16, 32, 32)


def build_toy(weights, groups, norm_eval, closed_form_gradient):
    """Stem (stride 2), then stages at strides 4, 8, 16, 32: ``[C2, C3, C4, C5]``."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="toy_stem_conv")(inputs)
    outputs = []
    for stage, channels in enumerate(TOY_CHANNELS):
        for layer in conv_gn_relu(channels, 3, groups, f"toy_s{stage}", strides=2,
                                  closed_form_gradient=closed_form_gradient):
            x = layer(x)
        outputs.append(x)
    return keras.Model(inputs, outputs, name="toy_c2_c5")


TOY = BackboneSpec(name="toy", build=build_toy, channels=TOY_CHANNELS,
                   taps=tuple(f"toy_s{stage}_relu" for stage in range(4)), stem=("toy_stem_",),
                   stages=tuple(f"toy_s{stage}_" for stage in range(4)))


@pytest.fixture
def toy():
    register_backbone(TOY)
    try:
        yield TOY
    finally:
        unregister_backbone("toy")


def config(**overrides):
    return SOLOConfig.tiny(2, backbone="toy", image_scale=(64, 64), **overrides)


def test_config_knows_a_backbone_only_while_it_is_registered(toy):
    assert backbone_names() == ("resnet50", "tiny", "toy")
    assert config().backbone == "toy"
    unregister_backbone("toy")
    try:
        with pytest.raises(ConfigError, match=r"backbone must be one of \('resnet50', 'tiny'\).*'toy'"):
            config()
        with pytest.raises(ConfigError, match="unknown backbone 'toy'; registered: 'resnet50', 'tiny'"):
            Backbone("toy")
    finally:
        register_backbone(TOY)
    with pytest.raises(ValueError, match="registered already"):
        register_backbone(TOY)


def test_toy_model_runs_forward_and_trains(toy):
    keras.utils.set_random_seed(0)
    cfg = config()
    model = build_model(cfg, (64, 64))
    layers = {layer.name for layer in model.backbone.features.layers}
    assert {"toy_stem_conv", "toy_s3_relu"} <= layers and model.backbone.channels == TOY_CHANNELS
    out = model(tf.zeros((2, 64, 96, 3)))
    assert out["mask_feature"].shape == (2, 16, 24, cfg.mask_channels)
    assert out["category"].shape == (2, cfg.num_cells, 2)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = [w.numpy() for w in model.backbone.trainable_weights]
    logs = model.train_step(two_rectangles(cfg))
    assert np.isfinite(float(logs["loss"]))
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.backbone.trainable_weights))


def test_toy_checkpointed_step_matches_the_plain_one(toy):
    grads, losses = {}, {}
    for remat in (False, True):
        keras.utils.set_random_seed(0)
        model = build_model(config(remat=remat), (64, 64))
        assert (model.backbone.segments is not None) is remat  # cut into its registered pieces
        images, targets = two_rectangles(model.config)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = solo_losses(model(images, training=True), targets, model.config)["total"]
            return loss, tape.gradient(loss, model.backbone.trainable_variables)

        losses[remat], grads[remat] = step()
    assert len(grads[True]) == len(grads[False]) == 14  # the stem's kernel and bias, 4 x (kernel, gamma, beta)
    # The same arithmetic in other orders (replayed, and GroupNorm's closed-form gradient is off
    # under remat): a focal sum over 976 cells x 2 classes of outputs at most 13 layers deep (as the
    # tiny preset's, tests/test_remat.py), then the backward pass as deep again, through sums over
    # at most the 64 x 64 canvas.
    assert_close_float32(losses[True].numpy(), losses[False].numpy(), terms=976 * 2, depth=13, what="loss")
    for a, b in zip(grads[True], grads[False]):
        assert_close_float32(a.numpy(), b.numpy(), terms=64 * 64, depth=2 * 13, what="backbone gradient")


def test_toy_stages_freeze_by_their_registered_prefixes(toy):
    backbone = Backbone("toy", frozen_stages=1)
    frozen = {layer.name for layer in backbone.features.layers if layer.weights and not layer.trainable}
    assert frozen == {"toy_stem_conv", "toy_s0_conv", "toy_s0_gn"}
    with pytest.raises(ValueError, match="toy backbone has no pretrained weights"):
        Backbone("toy", weights="imagenet")


def test_toy_model_saves_and_loads_as_a_keras_file_while_registered(toy, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(config(), (64, 64))
    x = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    model.save(tmp_path / "toy.keras")
    loaded = keras.saving.load_model(tmp_path / "toy.keras", safe_mode=True)
    for key, value in model(x).items():
        np.testing.assert_array_equal(loaded(x)[key].numpy(), value.numpy())
    unregister_backbone("toy")
    try:
        with pytest.raises(Exception, match="toy"):  # the file names a backbone nobody registered
            keras.saving.load_model(tmp_path / "toy.keras", safe_mode=True)
    finally:
        register_backbone(TOY)


def test_a_registration_that_does_not_match_its_builder_fails_when_built():
    wrong = BackboneSpec(name="wrong", build=build_toy, channels=(16, 16, 32, 64), taps=TOY.taps,
                         stem=TOY.stem, stages=TOY.stages)
    register_backbone(wrong)
    try:
        with pytest.raises(ValueError, match=r"gives maps of \[16, 16, 32, 32\] channels"):
            Backbone("wrong")
    finally:
        unregister_backbone("wrong")
    with pytest.raises(ValueError, match="must end a checkpoint piece"):
        BackboneSpec(name="bad", build=build_toy, channels=TOY_CHANNELS, taps=TOY.taps, stem=(), stages=TOY.stages,
                     segments=(("toy_s0_relu",), ("toy_s3_relu",)))
    assert "wrong" not in backbone_names() and get_backbone("tiny").channels == (32, 64, 96, 128)
