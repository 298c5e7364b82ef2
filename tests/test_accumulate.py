"""Gradient accumulation (``TrainConfig.accumulate_steps``, ``SOLOv2.train_step``).

A batch computed in k micro-batches must give the loss and the gradients of the same batch in one
pass: the loss's normalisers are counted on the whole batch before the micro-batches run, so their
shares add up. That holds wherever the network treats images independently: the tiny preset
(GroupNorm) and the paper preset's ResNet-50 with BatchNorm frozen (``norm_eval``). With BatchNorm
in training mode each micro-batch has its own batch statistics, and the gradients differ: that
check shows the comparison can fail.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tolerances import assert_close_float32

from solo_lib.config import SOLOConfig
from solo_lib.data import pipeline
from solo_lib.data.coco import load_sample_dataset
from solo_lib.errors import ConfigError
from solo_lib.losses import solo_losses
from solo_lib.model.solov2 import build_model
from solo_lib.targets import collate_targets, image_targets
from solo_lib.train import train
from solo_lib.train_config import TrainConfig

TINY = SOLOConfig.tiny(4, image_scale=(128, 128))
# Rounding bounds as in tests/test_remat.py: a weight gradient of the tiny network sums over
# B x 64 x 64 positions at most (its stride-2 stem on a 128 x 128 canvas), 13 layers deep; forward
# and backward errors add (2 x depth). Accumulating adds k partial sums, far fewer terms than that.
TINY_GRAD_TERMS, TINY_DEPTH = 4 * 64 * 64, 13
# ResNet-50 at 64 x 64 with a small head (tests/test_backbone_freezing.py): ~60 layers deep, a weight
# gradient sums over at most B x 32 x 32 positions (its stride-2 stem).
SMALL_HEAD = dict(fpn_channels=32, grid_sizes=(8, 4), scale_ranges=((1, 48), (24, 2048)), head_convs=1,
                  head_channels=32, norm_groups=8, mask_feature_channels=16, mask_channels=16)
R50_GRAD_TERMS, R50_DEPTH = 4 * 32 * 32, 60


@pytest.fixture(scope="module")
def sample_batch():
    """Four sample images with their targets, as the training pipeline gives them."""
    source = pipeline.in_memory_source(load_sample_dataset("train"))
    batches = pipeline.training_dataset(source, TINY, batch_size=4, augment=None, seed=0, max_instances=24,
                                        max_positives=64)
    images, targets = pipeline.first_batch(batches)
    assert images.shape == (4, 128, 128, 3)
    counts = targets["pos_valid"].sum(axis=1)
    # The micro-batches must differ in positives, or splitting would not test the normalisers.
    assert len(set(counts[:2].sum(keepdims=True).tolist() + counts[2:].sum(keepdims=True).tolist())) == 2, counts
    return tf.constant(images), {k: tf.constant(v) for k, v in targets.items()}


def rectangles_batch(config, size=64, batch=4):
    """``batch`` random images with two or three rectangles each, their targets built by solo_lib.targets."""
    rng = np.random.default_rng(1)
    per_image = []
    for b in range(batch):
        masks = np.zeros((2 + b % 2, size, size), np.uint8)
        for m in masks:
            y, x = rng.integers(0, size // 2, 2)
            m[y:y + rng.integers(12, size // 2), x:x + rng.integers(12, size // 2)] = 1
        per_image.append(image_targets(masks, np.arange(len(masks)) % config.num_classes, config))
    targets = collate_targets(per_image)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    return tf.constant(images), {key: tf.constant(value) for key, value in targets.items()}


def loss_and_grads(model, batch, steps):
    """The whole-batch loss and gradients, in one pass (steps=1) or in ``steps`` micro-batches."""

    @tf.function
    def one_pass(images, targets):
        with tf.GradientTape() as tape:
            loss = solo_losses(model(images, training=True), targets, model.config)["total"]
        return loss, tape.gradient(loss, model.trainable_variables)

    @tf.function
    def accumulated(images, targets):
        losses, grads = model._accumulated_gradients(images, targets, steps)
        return losses["total"], grads

    loss, grads = (one_pass if steps == 1 else accumulated)(*batch)
    return float(loss), [None if g is None else g.numpy() for g in grads]


def assert_grads_close(actual, expected, *, terms, depth):
    assert len(actual) == len(expected) > 20
    for i, (a, b) in enumerate(zip(actual, expected)):
        assert (a is None) == (b is None), f"gradient {i}: reached in one way only"
        if b is not None:
            assert_close_float32(a, b, terms=terms, depth=depth, what=f"gradient {i} {b.shape}")


@pytest.mark.parametrize("steps", [2, 4])
def test_tiny_micro_batches_give_the_batch_gradient(sample_batch, steps):
    keras.utils.set_random_seed(0)
    model = build_model(TINY, (128, 128))
    loss_one, grads_one = loss_and_grads(model, sample_batch, 1)
    loss_acc, grads_acc = loss_and_grads(model, sample_batch, steps)
    # The loss: a focal sum over 4 x 976 cells x 4 classes of outputs 13 layers deep.
    assert_close_float32(loss_acc, loss_one, terms=4 * 976 * 4, depth=TINY_DEPTH, what="loss")
    assert_grads_close(grads_acc, grads_one, terms=TINY_GRAD_TERMS, depth=2 * TINY_DEPTH)


def test_naive_averaging_would_differ(sample_batch):
    """Averaging micro-batch losses, each normalised by its own positives (what accumulating Keras'
    way does), is not the batch's loss here: the micro-batches hold different numbers of positives.
    The difference is far above the rounding bound, so the tests above can tell the two apart."""
    keras.utils.set_random_seed(0)
    model = build_model(TINY, (128, 128))
    images, targets = sample_batch
    whole = float(solo_losses(model(images, training=True), targets, TINY)["total"])
    halves = [float(solo_losses(model(images[i:i + 2], training=True), {k: v[i:i + 2] for k, v in targets.items()},
                                TINY)["total"]) for i in (0, 2)]
    assert abs(np.mean(halves) - whole) > 1e-3 * abs(whole)


def test_paper_backbone_with_frozen_batchnorm_gives_the_batch_gradient():
    keras.utils.set_random_seed(0)
    config = SOLOConfig.paper_r50(2, image_scale=(64, 64), norm_eval=True, **SMALL_HEAD)
    model = build_model(config, (64, 64))
    batch = rectangles_batch(config)
    loss_one, grads_one = loss_and_grads(model, batch, 1)
    loss_acc, grads_acc = loss_and_grads(model, batch, 2)
    assert_close_float32(loss_acc, loss_one, terms=4 * config.num_cells * 2, depth=R50_DEPTH, what="loss")
    assert_grads_close(grads_acc, grads_one, terms=R50_GRAD_TERMS, depth=2 * R50_DEPTH)

    # Control: BatchNorm in training mode normalises each micro-batch by its own statistics.
    training_bn = build_model(config.replace(norm_eval=False), (64, 64))
    training_bn.set_weights(model.get_weights())
    _, grads_bn_one = loss_and_grads(training_bn, batch, 1)
    _, grads_bn_acc = loss_and_grads(training_bn, batch, 2)
    with pytest.raises(AssertionError):
        assert_grads_close(grads_bn_acc, grads_bn_one, terms=R50_GRAD_TERMS, depth=2 * R50_DEPTH)


def test_training_with_accumulation_equals_training_on_the_batch():
    """Through train(): two optimiser updates on batches of 4, in one pass or in 2 micro-batches of 2."""
    cfg = TrainConfig(epochs=1, batch_size=4, steps_per_epoch=2, optimizer="sgd", learning_rate=0.01,
                      warmup_steps=0, decay_epochs=(), checkpoint_dir=None, max_instances=24, max_positives=64)
    dataset = load_sample_dataset("train")
    one, history_one = train(TINY, cfg, dataset, progress=False)
    acc, history_acc = train(TINY, cfg.replace(accumulate_steps=2), dataset, progress=False)
    assert acc.optimizer.iterations.numpy() == one.optimizer.iterations.numpy() == 2
    # The epoch's mean loss: the second step's forward pass already carries the first update's rounding.
    assert_close_float32(history_acc.history["loss"], history_one.history["loss"], terms=4 * 976 * 4,
                         depth=3 * TINY_DEPTH, what="epoch loss")
    # Each update moves a weight by lr x (momentum-summed) gradient; compared as the change from
    # the shared starting point (train() seeds the initialisation with cfg.seed), at the gradients'
    # bound with the depth doubled again for the two steps, plus the rounding of adding it to w0.
    keras.utils.set_random_seed(cfg.seed)
    start = build_model(TINY, class_names=dataset.class_names)
    for w0, a, b in zip(start.get_weights(), acc.get_weights(), one.get_weights()):
        assert_close_float32(a - w0, b - w0, terms=TINY_GRAD_TERMS, depth=4 * TINY_DEPTH,
                             scale=max(float(np.abs(b - w0).max()), 1e-30), atol=2 * np.spacing(np.abs(w0).max()),
                             what="weight change")


def test_batch_must_split_into_micro_batches():
    with pytest.raises(ConfigError, match="multiple of accumulate_steps"):
        TrainConfig(batch_size=6, accumulate_steps=4)
    with pytest.raises(ConfigError, match="accumulate_steps must be >= 1"):
        TrainConfig(accumulate_steps=0)
