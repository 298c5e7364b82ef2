"""The paper's SGD: weight decay as an L2 term in the gradient (PyTorch's convention)."""

import keras
import numpy as np
import pytest
from tolerances import assert_close_float32

from solo_lib.optim import SGDL2


def torch_sgd_reference(w, grads, lr, momentum, l2, clip):
    """PyTorch's SGD step after mmcv's global-norm clip, written out in numpy."""
    w, buf = w.copy(), None
    for g in grads:
        norm = np.sqrt(sum(float(np.sum(x * x)) for x in [g]))
        g = g * min(1.0, clip / norm)
        d = g + l2 * w
        buf = d if buf is None else momentum * buf + d
        w = w - lr * buf
    return w


def run(optimizer, w0, grads):
    var = keras.Variable(w0)
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), var)])
    return keras.ops.convert_to_numpy(var)


def test_sgdl2_is_pytorch_sgd_with_l2_after_clipping():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(4)]
    clip = 1.5  # below the gradients' norms (about 3.5), so clipping matters
    got = run(SGDL2(0.1, momentum=0.9, l2=0.05, global_clipnorm=clip), w0, grads)
    want = torch_sgd_reference(w0, grads, lr=0.1, momentum=0.9, l2=0.05, clip=clip)
    # Both in float32, in other orders: 4 steps (depth) after a global norm of 12 terms; judged
    # against the largest weight, as the rounding of w - lr * buf is relative to it (~3e-6). The
    # decoupled decay below differs by > 1e-3.
    assert_close_float32(got, want, terms=12, depth=4, what="SGDL2 against the numpy reference")
    # Keras' own weight decay is the decoupled one: a different result, which is why SGDL2 exists.
    decoupled = run(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.05, global_clipnorm=clip), w0, grads)
    assert np.abs(decoupled - want).max() > 1e-3


def test_sgdl2_without_decay_is_keras_sgd_and_round_trips():
    w0 = np.arange(6, dtype=np.float32).reshape(2, 3)
    grads = [np.full((2, 3), 0.5, np.float32), np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)]
    # The same two momentum steps written two ways (m = 0.9 m - lr g; w += m against buf = 0.9 buf + g;
    # w -= lr buf): a few roundings per step, relative to the largest weight (5).
    assert_close_float32(run(SGDL2(0.1, momentum=0.9, l2=0.0), w0, grads),
                         run(keras.optimizers.SGD(0.1, momentum=0.9), w0, grads), terms=1, depth=2,
                         what="SGDL2 with l2=0 against Keras' SGD")
    again = keras.optimizers.deserialize(keras.optimizers.serialize(SGDL2(0.02, momentum=0.8, l2=3e-4)))
    # Hyperparameters may come back as float32 values: half an ulp (6e-8), within approx's rel 1e-6.
    assert isinstance(again, SGDL2) and again.l2 == pytest.approx(3e-4) and again.momentum == pytest.approx(0.8)
    with pytest.raises(ValueError, match="weight_decay"):
        SGDL2(0.1, weight_decay=1e-4)
    with pytest.raises(ValueError, match="l2"):
        SGDL2(0.1, l2=-1.0)
