"""solo_lib.model.norm: GroupNormalization with a hand-written gradient, against Keras' layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tolerances import EPS32, assert_close_float32

from solo_lib.model.norm import GroupNormalization


def pair(channels, groups, seed=0):
    """Our layer and Keras' with the same (non-trivial) gamma and beta, and the same epsilon (ours
    defaults to 1e-5, Keras' to 1e-3)."""
    rng = np.random.default_rng(seed)
    ours = GroupNormalization(groups)
    reference = keras.layers.GroupNormalization(groups, epsilon=ours.epsilon)
    for layer in (ours, reference):
        layer.build((None, None, None, channels))
    gamma, beta = rng.normal(1.0, 0.5, channels), rng.normal(0.0, 1.0, channels)
    for layer in (ours, reference):
        layer.set_weights([gamma.astype("float32"), beta.astype("float32")])
    return ours, reference


def gn_terms(shape, groups):
    """The longest sum behind one GroupNorm output or gradient: a group's statistics sum
    H x W x C/G values, dgamma and dbeta sum B x H x W."""
    b, h, w, c = shape
    return max(h * w * c // groups, b * h * w)


def forward_and_gradients(layer, x, upstream):
    """``layer(x)`` and the gradients of ``sum(layer(x) * upstream)`` w.r.t. x, gamma and beta
    (tensors; works eagerly and inside a ``tf.function``)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)
    return [y] + tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])


@pytest.mark.parametrize("shape, groups, offset", [
    ((2, 16, 16, 32), 16, 0.0),   # two channels per group, as in the tiny preset
    ((3, 9, 13, 24), 4, 0.0),     # odd, non-square image, batch of 3
    ((1, 8, 8, 12), 12, 0.0),     # one channel per group (instance-norm-like)
    ((2, 7, 5, 8), 1, 0.0),       # one group (layer-norm-like)
    ((2, 16, 16, 32), 8, 300.0),  # a mean far from 0: the variance is computed around the mean
])
def test_matches_keras_group_normalization(shape, groups, offset):
    rng = np.random.default_rng(1)
    x = (rng.normal(0.0, 2.0, shape) + offset + rng.normal(0.0, 1.0, shape[-1])).astype("float32")
    upstream = rng.normal(0.0, 1.0, shape).astype("float32")
    ours, reference = pair(shape[-1], groups)
    got = forward_and_gradients(ours, x, upstream)
    want = forward_and_gradients(reference, x, upstream)
    # Closed form against autodiff: the same sums in other orders. Depth 2: the mean, then the
    # variance around it (forward), sum(dy) and sum(dy * x), then their combination (backward).
    # The bound is about 1e-4 of each tensor's largest value; a wrong term in the gradient formula
    # moves results by a percent or more. With the offset, y and dx must stay as close: the
    # variance is taken around the mean, where a one-pass E[x^2] - E[x]^2 would lose
    # log2((300 / 2)^2) ~ 14 bits (errors ~1e-3 of max|y|). Two roundings do scale with the offset:
    # y = x * a + b (a = gamma / std) adds two numbers of size |x| * |gamma| / std (std >= 2 here)
    # that cancel, so y may differ by ulps of that size, and dgamma = (sum(dy * x) - mean * sum(dy))
    # / std is a difference of sums |mean| / std = 150 times larger than itself.
    multiply_add = 4 * EPS32 * np.abs(x).max() * np.abs(ours.gamma.numpy()).max() / 2.0
    for name, a, b in zip(("y", "dx", "dgamma", "dbeta"), got, want):
        a, b = a.numpy(), b.numpy()
        cancellation = max(1.0, offset / 2.0) if name == "dgamma" else 1.0
        assert_close_float32(a, b, terms=gn_terms(shape, groups), depth=2, scale=cancellation * np.abs(b).max(),
                             atol=multiply_add if name == "y" else 0.0,
                             what=f"{name} of {shape}, {groups} groups, offset {offset}")


def test_matches_inside_a_tf_function_with_unknown_image_size():
    ours, reference = pair(32, 16)
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, (2, 12, 20, 32)).astype("float32")
    upstream = rng.normal(0.0, 1.0, x.shape).astype("float32")
    spec = tf.TensorSpec((None, None, None, 32), tf.float32)

    def compiled(layer):
        return tf.function(lambda x: forward_and_gradients(layer, x, upstream), input_signature=[spec])

    for name, a, b in zip(("y", "dx", "dgamma", "dbeta"), compiled(ours)(x), compiled(reference)(x)):
        # As in test_matches_keras_group_normalization (mean near 0).
        assert_close_float32(a.numpy(), b.numpy(), terms=gn_terms(x.shape, 16), depth=2, what=f"traced {name}")


def test_weights_saved_from_keras_layer_load_into_ours(tmp_path):
    """Same class name, same weight paths: a model built with Keras' layer loads into ours."""
    def model(norm):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(16, 3, padding="same", name="conv")(inputs)
        return keras.Model(inputs, norm(4, epsilon=1e-5, name="gn")(x))

    keras.utils.set_random_seed(0)
    theirs = model(keras.layers.GroupNormalization)
    theirs.get_layer("gn").set_weights([np.linspace(0.5, 2, 16, dtype="float32"), np.ones(16, "float32")])
    theirs.save_weights(tmp_path / "w.weights.h5")
    ours = model(GroupNormalization)
    ours.load_weights(tmp_path / "w.weights.h5")
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 3)).astype("float32")
    # The same convolution (3 x 3 x 3 = 27 terms), then GroupNorm in two orders over 8 x 8 x 4 = 256
    # values a group (depth 3: the convolution, the mean, the variance).
    assert_close_float32(ours(x).numpy(), theirs(x).numpy(), terms=gn_terms((2, 8, 8, 16), 4), depth=3,
                         what="conv + GroupNorm, ours against Keras'")


def test_saves_and_loads_as_a_keras_file(tmp_path):
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, GroupNormalization(2, epsilon=1e-3, name="gn")(inputs))  # not the default
    model.get_layer("gn").set_weights([np.arange(1, 9, dtype="float32"), np.zeros(8, "float32")])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    layer = loaded.get_layer("gn")
    assert type(layer) is GroupNormalization and layer.groups == 2 and layer.epsilon == 1e-3
    x = np.random.default_rng(4).normal(size=(1, 5, 6, 8)).astype("float32")
    # The same layer and computation on both sides; the bound only allows for a kernel that rounds
    # differently from run to run (a group is 5 x 6 x 4 = 120 values; mean, then variance).
    assert_close_float32(loaded(x).numpy(), model(x).numpy(), terms=gn_terms(x.shape, 2), depth=2,
                         what="loaded GroupNorm")


def test_half_precision_input_uses_keras_computation():
    ours, reference = pair(16, 4)
    x = np.random.default_rng(5).normal(size=(2, 6, 6, 16)).astype("float16")
    # Both run Keras' computation in float16 (eps 9.8e-4, outputs up to ~4): atol 1e-3 is about one
    # float16 ulp at 1, no room for our float32 path (whose result would differ by several ulps).
    np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), atol=1e-3)


def test_closed_form_gradient_off_is_keras_computation_and_round_trips():
    ours, reference = pair(16, 4)
    off = GroupNormalization.from_config({**ours.get_config(), "closed_form_gradient": False})
    off.build((None, None, None, 16))
    off.set_weights(reference.get_weights())
    x = np.random.default_rng(6).normal(size=(2, 6, 6, 16)).astype("float32")
    np.testing.assert_array_equal(off(x).numpy(), reference(x).numpy())
    assert ours.get_config()["closed_form_gradient"] and not off.get_config()["closed_form_gradient"]


@pytest.mark.parametrize("remat", [False, True])
def test_model_uses_the_closed_form_gradient_unless_checkpointing(remat):
    from solo_lib.config import SOLOConfig
    from solo_lib.model.solov2 import build_model

    model = build_model(SOLOConfig.tiny(4, remat=remat), (64, 64))
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.GroupNormalization)]
    assert len(norms) == 20 and all(type(layer) is GroupNormalization for layer in norms)
    assert all(layer.closed_form_gradient is (not remat) for layer in norms)
    assert all(layer.epsilon == 1e-5 for layer in norms)  # the reference's, not Keras' 1e-3


def np_group_norm(x, groups, gamma, beta, epsilon):
    """GroupNorm (Wu and He 2018, Eq. 1 with groups of C/G channels) in float64, for (B, H, W, C)."""
    b, h, w, c = x.shape
    g = np.asarray(x, np.float64).reshape(b, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    variance = ((g - mean) ** 2).mean(axis=(1, 2, 4), keepdims=True)
    return ((g - mean) / np.sqrt(variance + epsilon)).reshape(x.shape) * gamma + beta


def test_default_epsilon_is_the_reference_one_and_an_explicit_one_is_kept():
    layer = GroupNormalization(4)
    assert layer.epsilon == 1e-5 and layer.get_config()["epsilon"] == 1e-5
    assert keras.layers.GroupNormalization(4).epsilon == 1e-3  # Keras' own default, which we override
    for explicit in (GroupNormalization(4, epsilon=1e-3), GroupNormalization(4, -1, 1e-3)):
        assert explicit.epsilon == 1e-3
        assert GroupNormalization.from_config(explicit.get_config()).epsilon == 1e-3


@pytest.mark.parametrize("closed_form_gradient", [True, False])
def test_output_matches_numpy_group_norm_with_epsilon_1e5(closed_form_gradient):
    """On activations of standard deviation 0.01 (variance 1e-4), epsilon 1e-3 instead of 1e-5 would
    shrink the output about three times (1 / sqrt(1.1e-3) vs 1 / sqrt(1.1e-4))."""
    rng = np.random.default_rng(7)
    shape, groups = (2, 6, 5, 8), 4
    x = rng.normal(0.0, 0.01, shape).astype("float32")
    gamma, beta = rng.normal(1.0, 0.3, 8).astype("float32"), rng.normal(0.0, 0.5, 8).astype("float32")
    layer = GroupNormalization(groups, closed_form_gradient=closed_form_gradient)
    layer.build(shape)
    layer.set_weights([gamma, beta])
    got = layer(x).numpy()
    expected = np_group_norm(x, groups, gamma, beta, 1e-5)
    old = np_group_norm(x, groups, gamma, beta, 1e-3)
    assert np.abs(old - expected).max() > 0.3 * np.abs(expected).max()  # the test can tell them apart
    # A group is 6 x 5 x 2 = 60 values; the mean, then the variance around it (depth 2): a bound of
    # ~1e-5 of the largest output, where the old epsilon is off by more than 30 %.
    assert_close_float32(got, expected, terms=gn_terms(shape, groups), depth=2,
                         what=f"GroupNorm, eps 1e-5, closed form {closed_form_gradient}")
