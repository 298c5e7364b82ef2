"""Gradient checkpointing (``solo_lib.model.remat``, ``SOLOConfig.remat``): the same numbers, once.

A checkpointed step must give the loss, the gradients and the BatchNorm moving statistics of a
plain step (recomputation changes the order of some float sums, so gradients agree to float
tolerance), and a model built with ``remat=True`` must save, load and predict like any other.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from solo_lib.config import SOLOConfig
from solo_lib.data import pipeline
from solo_lib.data.coco import load_sample_dataset
from solo_lib.losses import solo_losses
from solo_lib.model.remat import checkpointed, checkpointed_chain, checkpointed_in_turn
from solo_lib.model.solov2 import SOLOv2, build_model

TINY = SOLOConfig.tiny(4)


def conv_bn_relu(channels, name):
    return keras.Sequential([keras.layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv"),
                             keras.layers.BatchNormalization(momentum=0.5, name=f"{name}_bn"),
                             keras.layers.ReLU()], name=name)


def loss_and_grads(fn, variables, x):
    """Loss and gradients of ``sum(fn(x) * w)`` (``w`` a fixed pattern, so every output element
    gets its own gradient), traced in a ``tf.function`` as ``Model.fit`` traces its step."""
    def weighted_sum(o):
        pattern = tf.cos(tf.cast(tf.range(tf.size(o)), o.dtype))
        return tf.reduce_sum(o * tf.reshape(pattern, tf.shape(o)))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.add_n([weighted_sum(o) for o in tf.nest.flatten(fn(x))])
        return loss, tape.gradient(loss, [x] + list(variables))

    loss, grads = step(tf.constant(x))
    return float(loss), [g.numpy() for g in grads]


def assert_grads_close(a, b):
    assert len(a) == len(b)
    for ga, gb in zip(a, b):
        scale = max(1e-6, float(np.abs(gb).max()))
        np.testing.assert_allclose(ga / scale, gb / scale, atol=2e-5)


@pytest.mark.parametrize("kind", ["chain", "in_turn", "single"])
def test_primitives_match_plain_backprop_and_update_batchnorm_once(kind):
    keras.utils.set_random_seed(0)
    blocks = [conv_bn_relu(8, f"b{i}") for i in range(3)]
    x = np.random.default_rng(0).standard_normal((2, 12, 12, 4)).astype(np.float32)
    h = blocks[0](x)
    blocks[1](h), blocks[2](blocks[1](h))  # build every block

    def plain(x):
        h = blocks[0](x, training=True)
        return [h, blocks[2](blocks[1](h, training=True), training=True)]

    if kind == "chain":
        wrapped = checkpointed_chain([lambda t, b=b: b(t, training=True) for b in blocks], taps=[0, 2])
    elif kind == "in_turn":  # two pieces with their own inputs, sharing blocks[1] and blocks[2]
        def piece(i, t):
            h = blocks[0](t, training=True) if i == 0 else t
            return (blocks[2](blocks[1](h, training=True), training=True),)

        def second_input(x):
            return tf.concat([x, -0.5 * x], axis=-1)  # 8 channels, like blocks[0]'s output

        def plain(x):  # noqa: F811
            return [piece(0, x)[0], piece(1, second_input(x))[0]]

        in_turn = checkpointed_in_turn(piece)

        def wrapped(x):
            return [out for (out,) in in_turn(x, second_input(x))]
    else:
        wrapped = checkpointed(plain)

    variables = [w for b in blocks for w in b.trainable_weights]
    stats = [w for b in blocks for w in b.non_trainable_weights]  # moving mean and variance
    start = [s.numpy() for s in stats]
    loss_plain, grads_plain = loss_and_grads(plain, variables, x)
    after_plain = [s.numpy() for s in stats]
    for s, value in zip(stats, start):
        s.assign(value)
    loss_remat, grads_remat = loss_and_grads(wrapped, variables, x)
    after_remat = [s.numpy() for s in stats]

    assert any(not np.allclose(a, b) for a, b in zip(after_plain, start))  # the statistics did move
    np.testing.assert_allclose(loss_remat, loss_plain, rtol=1e-5)
    assert_grads_close(grads_remat, grads_plain)
    for a, b in zip(after_remat, after_plain):  # updated once (twice would be momentum^2 decay)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def sample_batch():
    dataset = load_sample_dataset("train")
    source = pipeline.in_memory_source(dataset)
    batches = pipeline.training_dataset(source, TINY, canvas=(128, 128), batch_size=2, augment=None, seed=0,
                                        max_instances=24, max_positives=64)
    images, targets = pipeline.first_batch(batches)
    return tf.constant(images), {k: tf.constant(v) for k, v in targets.items()}


def twin_models(config, size=(128, 128)):
    keras.utils.set_random_seed(0)
    plain = build_model(config, size)
    remat = build_model(config.replace(remat=True), size)
    remat.set_weights(plain.get_weights())
    return plain, remat


def solo_loss_and_grads(model, batch):
    @tf.function
    def step(images, targets):
        with tf.GradientTape() as tape:
            loss = solo_losses(model(images, training=True), targets, model.config)["total"]
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, grads = step(*batch)
    return float(loss), [g.numpy() for g in grads]


def test_tiny_model_step_matches_plain_step(sample_batch):
    plain, remat = twin_models(TINY)
    loss_plain, grads_plain = solo_loss_and_grads(plain, sample_batch)
    loss_remat, grads_remat = solo_loss_and_grads(remat, sample_batch)
    np.testing.assert_allclose(loss_remat, loss_plain, rtol=1e-5)
    assert len(grads_remat) == len(remat.trainable_variables) > 20
    assert_grads_close(grads_remat, grads_plain)


def test_resnet_backbone_step_matches_plain_step_and_batchnorm_statistics():
    """The paper backbone (ResNet-50, BatchNorm) on a 64 x 64 image, checkpointed stage by stage."""
    config = SOLOConfig.paper_r50(4)
    plain, remat = twin_models(config, (64, 64))
    images = np.random.default_rng(1).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    stats = lambda m: m.backbone.non_trainable_weights  # noqa: E731 (BatchNorm moving statistics)
    start = [w.numpy() for w in stats(plain)]

    def backbone_grads(model):
        fn = lambda t: model.backbone(t - 110.0, training=True)  # noqa: E731
        return loss_and_grads(fn, model.backbone.trainable_variables, images)

    loss_plain, grads_plain = backbone_grads(plain)
    loss_remat, grads_remat = backbone_grads(remat)
    np.testing.assert_allclose(loss_remat, loss_plain, rtol=1e-4)
    assert_grads_close(grads_remat, grads_plain)
    moved = [not np.allclose(a.numpy(), b) for a, b in zip(stats(plain), start)]
    assert sum(moved) > len(moved) // 3
    for a, b in zip(stats(remat), stats(plain)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_compiled_train_function_trains_like_the_plain_one(sample_batch):
    """``Model.fit``'s step (``train_function``): losses and weights after two SGD steps agree."""
    plain, remat = twin_models(TINY)
    for model in (plain, remat):
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=35.0))
        model.make_train_function()
    losses = {id(m): [float(m.train_function([sample_batch])["loss"]) for _ in range(2)] for m in (plain, remat)}
    np.testing.assert_allclose(losses[id(remat)], losses[id(plain)], rtol=1e-4)
    # atol 1e-5: the plain model's GroupNorm has the closed-form gradient, the checkpointed one
    # Keras' (solo_lib.model.norm); after two steps they differ by float32 rounding (~4e-6 at most).
    for a, b in zip(remat.weights, plain.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_remat_model_saves_loads_and_predicts_like_a_plain_one(tmp_path):
    plain, remat = twin_models(TINY, (64, 64))
    path = tmp_path / "remat.keras"
    remat.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, SOLOv2) and loaded.config.remat and loaded.config == TINY.replace(remat=True)
    assert len(loaded.weights) == len(plain.weights)  # no weight saved twice by the checkpoint pieces
    x = np.random.default_rng(2).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    # atol 1e-5: GroupNorm computes in a different order with remat (solo_lib.model.norm).
    for model in (remat, loaded):
        for key, value in plain(x).items():
            np.testing.assert_allclose(model(x)[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-5)
    # The weights are those of the plain model: they load into one.
    remat.save_weights(tmp_path / "remat.weights.h5")
    other = build_model(TINY, (64, 64))
    other.load_weights(tmp_path / "remat.weights.h5")
    np.testing.assert_allclose(other(x)["kernel"].numpy(), plain(x)["kernel"].numpy(), rtol=1e-5, atol=1e-6)


def test_remat_must_be_a_bool():
    with pytest.raises(ValueError, match="remat"):
        TINY.replace(remat="yes")
