"""Backbone ``frozen_stages`` and ``norm_eval`` (mmdetection's ResNet options the reference uses).

Frozen layers must be left out of the trainable weights and come out of a real SOLOv2 training
step unchanged; with ``norm_eval`` every BatchNorm keeps its moving statistics while its scale and
offset train, and without it the statistics move (so the checks can fail). The gradient-
checkpointed step (``remat=True``) must behave the same. ResNet-50 runs on 64 x 64 images with a
small head, the tiny backbone on 64 x 64.
"""

import keras
import numpy as np
import pytest
from batches import two_rectangles

from solo_lib.config import SOLOConfig
from solo_lib.model.backbone import Backbone, BatchNormalization
from solo_lib.model.registry import get_backbone
from solo_lib.model.solov2 import SOLOv2, build_model, normalize_images

# ResNet-50 as in the paper preset, everything after it small: one head conv, two levels.
SMALL_HEAD = dict(fpn_channels=32, grid_sizes=(8, 4), scale_ranges=((1, 48), (24, 2048)), head_convs=1,
                  head_channels=32, norm_groups=8, mask_feature_channels=16, mask_channels=16)
STEM = ("conv1_conv", "conv1_bn")  # the stem's layers with weights
MOVING = ("moving_mean", "moving_variance")


def paper(**overrides):
    return SOLOConfig.paper_r50(2, image_scale=(64, 64), **SMALL_HEAD, **overrides)


def backbone_weights(model):
    """``{(layer name, weight name): value}`` of every backbone weight."""
    return {(layer.name, w.name): w.numpy() for layer in model.backbone.features.layers for w in layer.weights}


def train_one_step(config, size=64):
    """A model built from ``config``, its backbone weights before and after one ``train_step``."""
    keras.utils.set_random_seed(0)
    model = build_model(config, (size, size))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = backbone_weights(model)
    logs = model.train_step(two_rectangles(config, size))
    assert np.isfinite(float(logs["loss"]))
    return model, before, backbone_weights(model)


def is_frozen_resnet_layer(name):  # frozen_stages=1: the stem and stage conv2
    return name.startswith(("conv1_", "pool1_", "conv2_"))


@pytest.mark.parametrize("norm_eval, remat", [(True, False), (True, True), (False, False)])
def test_frozen_stages_and_norm_eval_in_a_resnet_training_step(norm_eval, remat):
    model, before, after = train_one_step(paper(frozen_stages=1, norm_eval=norm_eval, remat=remat))
    trainable = {id(w) for w in model.trainable_variables}
    layers = model.backbone.features.layers
    changed = {key for key in before if not np.array_equal(before[key], after[key])}
    batch_norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batch_norms) == 53

    frozen = [layer for layer in layers if is_frozen_resnet_layer(layer.name) and layer.weights]
    # The stem's conv and BatchNorm, then conv2's 3 blocks of 3 (conv, BatchNorm) and its shortcut's.
    assert {layer.name for layer in frozen} >= set(STEM) and len(frozen) == 2 + 3 * 3 * 2 + 2
    for layer in frozen:
        assert not layer.trainable and not any(id(w) in trainable for w in layer.weights), layer.name
        assert not any((layer.name, w.name) in changed for w in layer.weights), layer.name

    for layer in layers:
        if not is_frozen_resnet_layer(layer.name) and isinstance(layer, keras.layers.Conv2D):
            assert id(layer.kernel) in trainable and (layer.name, "kernel") in changed, layer.name
    for layer in batch_norms:
        if not is_frozen_resnet_layer(layer.name):
            assert (layer.name, "gamma") in changed and (layer.name, "beta") in changed, layer.name
        stats_moved = [(layer.name, name) in changed for name in MOVING]
        # Frozen BatchNorm (trainable = False) runs in inference mode either way.
        assert stats_moved == [norm_eval is False and not is_frozen_resnet_layer(layer.name)] * 2, layer.name

    # norm_eval: batch statistics are never used, so a training call computes the inference one.
    # Without it only C2, the output of the frozen stage conv2, is the same.
    x = normalize_images(two_rectangles(model.config)[0], "caffe")
    for level, (train, infer) in enumerate(zip(model.backbone(x, training=True), model.backbone(x, training=False))):
        if norm_eval or level == 0:
            np.testing.assert_array_equal(train.numpy(), infer.numpy())
        else:  # normalised with the batch's statistics: visibly different
            assert np.abs(train.numpy() - infer.numpy()).max() > 0.01 * np.abs(infer.numpy()).max()


def test_frozen_prefixes_follow_mmdetection():
    resnet, tiny = get_backbone("resnet50"), get_backbone("tiny")
    assert resnet.frozen_prefixes(-1) == ()
    assert resnet.frozen_prefixes(0) == ("conv1_", "pool1_")
    assert resnet.frozen_prefixes(1) == ("conv1_", "pool1_", "conv2_")
    assert resnet.frozen_prefixes(4) == ("conv1_", "pool1_", "conv2_", "conv3_", "conv4_", "conv5_")
    assert tiny.frozen_prefixes(-1) == tiny.frozen_prefixes(0) == ()
    assert tiny.frozen_prefixes(2) == ("stage0_", "stage1_")
    for bad in (-2, 5, True, 1.0):
        with pytest.raises(ValueError, match="frozen_stages"):
            Backbone("tiny", frozen_stages=bad)


def resnet_trainable_count(frozen_stages):
    return len(Backbone("resnet50", frozen_stages=frozen_stages).trainable_weights)


def test_resnet_stages_freeze_their_weights_and_all_four_freeze_everything():
    # keras.applications.ResNet50: 53 convolutions (kernel, bias) and 53 BatchNorms (gamma, beta).
    assert resnet_trainable_count(-1) == 4 * 53
    assert resnet_trainable_count(0) == 4 * 53 - 4  # conv1_conv and conv1_bn
    assert resnet_trainable_count(4) == 0


@pytest.mark.parametrize("frozen_stages", [-1, 0, 1, 2, 4])
def test_tiny_backbone_freezes_its_first_stages(frozen_stages):
    backbone = Backbone("tiny", frozen_stages=frozen_stages, norm_eval=True)  # norm_eval: no BatchNorm, no effect
    backbone(np.zeros((1, 64, 64, 3), np.float32))
    trainable = {id(w) for w in backbone.trainable_weights}
    for layer in backbone.features.layers:
        if layer.weights:
            stage = int(layer.name[len("stage")])
            assert all((id(w) in trainable) is (stage >= frozen_stages) for w in layer.weights), layer.name
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in backbone.features.layers)


def test_tiny_model_training_step_leaves_frozen_stages_unchanged():
    config = SOLOConfig.tiny(2, frozen_stages=2)
    _, before, after = train_one_step(config)
    for (layer, weight), value in before.items():
        moved = not np.array_equal(value, after[(layer, weight)])
        assert moved is (int(layer[len("stage")]) >= 2), (layer, weight)


def trainable_flags(backbone):
    return [(layer.name, layer.trainable) for layer in backbone.features.layers if layer.weights]


def test_get_config_round_trip():
    tiny = Backbone("tiny", frozen_stages=2, norm_eval=True)
    config = tiny.get_config()
    assert config["frozen_stages"] == 2 and config["norm_eval"] is True
    again = Backbone.from_config(config)
    assert again.get_config() == config and trainable_flags(again) == trainable_flags(tiny)

    evaluated = Backbone("resnet50", frozen_stages=1, norm_eval=True)
    restored = Backbone.from_config(evaluated.get_config())
    assert restored.get_config() == evaluated.get_config()
    assert trainable_flags(restored) == trainable_flags(evaluated)
    norms = [layer for layer in restored.features.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 53 and all(type(layer) is BatchNormalization and layer.norm_eval for layer in norms)
    assert not restored.features.get_layer("conv2_block3_3_bn").trainable
    assert restored.features.get_layer("conv3_block1_1_bn").trainable

    # SOLOv2 rebuilds its backbone from its SOLOConfig (what .keras files store).
    model = SOLOv2.from_config(SOLOv2(SOLOConfig.tiny(2, frozen_stages=1)).get_config())
    assert model.backbone.frozen_stages == 1 and not model.backbone.features.get_layer("stage0_conv0").trainable


def test_norm_eval_batchnorm_shares_weight_files_with_keras_batchnorm(tmp_path):
    """Our BatchNormalization keeps Keras' class name, so weights files name its weights the same:
    a file saved with either layer loads into the other."""
    def model(norm):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        return keras.Model(inputs, norm(name="bn")(x))

    keras.utils.set_random_seed(4)
    theirs, ours = model(keras.layers.BatchNormalization), model(lambda **kw: BatchNormalization(norm_eval=True, **kw))
    rng = np.random.default_rng(4)
    theirs.get_layer("bn").set_weights([rng.uniform(0.5, 2, 4).astype("float32") for _ in range(4)])
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    for source, target in ((theirs, ours), (ours, theirs)):
        source.save_weights(tmp_path / "w.weights.h5")
        target.load_weights(tmp_path / "w.weights.h5")
        np.testing.assert_array_equal(target(x, training=False).numpy(), source(x, training=False).numpy())
    # ...and ours normalises with the moving statistics in a training call, Keras' with the batch's.
    np.testing.assert_array_equal(ours(x, training=True).numpy(), ours(x, training=False).numpy())
    assert not np.allclose(theirs(x, training=True).numpy(), theirs(x, training=False).numpy())
