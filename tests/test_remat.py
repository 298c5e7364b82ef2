"""Gradient checkpointing (``solo_lib.model.remat``, ``SOLOConfig.remat``): the same numbers, once.

A checkpointed step must give the loss, the gradients and the BatchNorm moving statistics of a
plain step (recomputation changes the order of some float sums, so gradients agree to float
tolerance), and a model built with ``remat=True`` must save, load and predict like any other.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tolerances import EPS32, assert_close_float32

from solo_lib.config import SOLOConfig
from solo_lib.data import pipeline
from solo_lib.data.coco import load_sample_dataset
from solo_lib.losses import solo_losses
from solo_lib.model.remat import checkpointed, checkpointed_chain, checkpointed_in_turn
from solo_lib.model.solov2 import SOLOv2, build_model

TINY = SOLOConfig.tiny(4)

# Remat replays the forward pass, and with it the plain model's closed-form GroupNorm gradient
# becomes Keras' autodiff one (solo_lib.model.norm): the same numbers added in other orders, so
# results agree to float32 rounding (tests/tolerances.py), never bit for bit. The sizes below set
# the bounds: the longest sum behind one element and the number of such sums in a row.
# conv_bn_relu blocks on (2, 12, 12, 4): 3x3x8 = 72-term convolutions, but BatchNorm statistics and
# weight gradients sum over B x H x W = 288 positions; 3 blocks forward, 3 back.
BLOCK_TERMS, BLOCK_DEPTH = 2 * 12 * 12, 6
# The tiny model on 128 x 128: weight gradients of the stride-2 stem sum over 2 x 64 x 64 positions;
# forward 8 backbone + 2 FPN + 3 head convolutions in a row, and as many back.
TINY_GRAD_TERMS, TINY_DEPTH = 2 * 64 * 64, 13


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


def assert_grads_close(a, b, *, terms, depth):
    """Every gradient within float32 rounding of its plain twin, relative to its own largest entry
    (an entry near zero is judged by the size of its tensor, as its rounding error is)."""
    assert len(a) == len(b)
    for i, (ga, gb) in enumerate(zip(a, b)):
        assert_close_float32(ga, gb, terms=terms, depth=depth, what=f"gradient {i} {gb.shape}")


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
    # The loss sums 2 x 12 x 12 x 8 = 2304 outputs (terms); its inputs are 3 blocks deep.
    assert_close_float32(loss_remat, loss_plain, terms=2304, depth=3, what="loss")
    assert_grads_close(grads_remat, grads_plain, terms=BLOCK_TERMS, depth=BLOCK_DEPTH)
    for a, b in zip(after_remat, after_plain):  # updated once (twice would be momentum^2 decay)
        # A statistic updated twice would differ by about momentum^2 = 25 % of its change: a bound of
        # ~1e-4 relative (means over 288 positions, 3 blocks deep) is far below that.
        assert_close_float32(a, b, terms=BLOCK_TERMS, depth=3, what="BatchNorm moving statistic")


@pytest.fixture(scope="module")
def sample_batch():
    dataset = load_sample_dataset("train")
    source = pipeline.in_memory_source(dataset)
    # The tiny preset's grids with images resized to 128 px at most, on a 128 x 128 canvas.
    batches = pipeline.training_dataset(source, TINY.replace(image_scale=(128, 128)), batch_size=2, augment=None,
                                        seed=0, max_instances=24, max_positives=64)
    images, targets = pipeline.first_batch(batches)
    assert images.shape == (2, 128, 128, 3)  # the canvas the bounds below (TINY_GRAD_TERMS) assume
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
    # The loss: a focal sum over 2 x 976 cells x 4 classes of outputs TINY_DEPTH layers deep.
    assert_close_float32(loss_remat, loss_plain, terms=2 * 976 * 4, depth=TINY_DEPTH, what="loss")
    assert len(grads_remat) == len(remat.trainable_variables) > 20
    # Twice TINY_DEPTH: the error of the forward pass, then that of the backward pass.
    assert_grads_close(grads_remat, grads_plain, terms=TINY_GRAD_TERMS, depth=2 * TINY_DEPTH)


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
    # ResNet-50: up to 3 x 3 x 512 = 4608-term convolutions (conv5), 50 of them in a row; the loss
    # sums the four stages' outputs (largest C2, 16 x 16 x 256 = 65536 terms).
    terms, depth = 3 * 3 * 512, 50
    assert_close_float32(loss_remat, loss_plain, terms=65536, depth=depth, what="loss")
    assert_grads_close(grads_remat, grads_plain, terms=terms, depth=2 * depth)
    moved = [not np.allclose(a.numpy(), b) for a, b in zip(stats(plain), start)]  # a real move, not rounding
    assert sum(moved) > len(moved) // 3
    for a, b in zip(stats(remat), stats(plain)):
        assert_close_float32(a.numpy(), b.numpy(), terms=terms, depth=depth, what=f"BatchNorm statistic {a.path}")


def test_compiled_train_function_trains_like_the_plain_one(sample_batch):
    """``Model.fit``'s step (``train_function``): losses and weights after two SGD steps agree."""
    plain, remat = twin_models(TINY)
    start = [w.numpy() for w in plain.weights]
    for model in (plain, remat):
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=35.0))
        model.make_train_function()
    losses = {id(m): [float(m.train_function([sample_batch])["loss"]) for _ in range(2)] for m in (plain, remat)}
    # The second loss is computed with weights one step apart, so twice the depth of the first.
    assert_close_float32(losses[id(remat)], losses[id(plain)], terms=2 * 976 * 4, depth=2 * TINY_DEPTH,
                         what="losses of two steps")
    # The plain model's GroupNorm has the closed-form gradient, the checkpointed one Keras'
    # (solo_lib.model.norm). Compare what two steps did to each weight, relative to the size of
    # that change (two steps of gradient rounding), plus one float32 ulp of the weight itself, as
    # the final w - lr * v rounds to it. A weight left out of an update, or updated twice, would
    # be off by a whole step, hundreds of times the bound.
    for a, b, w0 in zip(remat.weights, plain.weights, start):
        assert_close_float32(a.numpy() - w0, b.numpy() - w0, terms=TINY_GRAD_TERMS, depth=2 * 2 * TINY_DEPTH,
                             atol=EPS32 * np.abs(w0).max(), what=f"change of {a.path} in two steps")


def test_remat_model_saves_loads_and_predicts_like_a_plain_one(tmp_path):
    plain, remat = twin_models(TINY, (64, 64))
    path = tmp_path / "remat.keras"
    remat.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, SOLOv2) and loaded.config.remat and loaded.config == TINY.replace(remat=True)
    assert len(loaded.weights) == len(plain.weights)  # no weight saved twice by the checkpoint pieces
    x = np.random.default_rng(2).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    # GroupNorm computes in a different order with remat (solo_lib.model.norm): outputs agree to float32
    # rounding of TINY_DEPTH layers of up to 3 x 3 x 128 = 1152-term convolutions, judged against each
    # output's largest value (one element near zero once failed a relative tolerance on another CPU).
    for model in (remat, loaded):
        for key, value in plain(x).items():
            assert_close_float32(model(x)[key].numpy(), value.numpy(), terms=3 * 3 * 128, depth=TINY_DEPTH,
                                 what=f"{key} of the {'loaded' if model is loaded else 'remat'} model")
    # The weights are those of the plain model: they load into one.
    remat.save_weights(tmp_path / "remat.weights.h5")
    other = build_model(TINY, (64, 64))
    other.load_weights(tmp_path / "remat.weights.h5")
    # Same class, same weights, same kernels: only run-to-run rounding could differ (one layer's worth).
    assert_close_float32(other(x)["kernel"].numpy(), plain(x)["kernel"].numpy(), terms=3 * 3 * 128,
                         what="kernel of a plain model with the remat model's weights")


def test_remat_must_be_a_bool():
    with pytest.raises(ValueError, match="remat"):
        TINY.replace(remat="yes")
