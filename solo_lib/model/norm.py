"""GroupNorm with a closed-form gradient: Keras' layer, with a faster training step on a CPU.

``keras.layers.GroupNormalization`` reshapes ``(B, H, W, C)`` to ``(B, H, W, G, C/G)``, takes the
moments over axes (1, 2, 4) and lets autodiff differentiate that graph. On a CPU without XLA this
is memory-bound and slow: reductions over a non-contiguous axis set, and a backward pass of about
twenty full-size elementwise ops (the gradient of each mean is a ``Tile``). In the tiny preset's
training step GroupNorm and its gradient were about a third of the op time (``python -m bench
profile``), more than the convolutions of the backbone.

:class:`GroupNormalization` here is the same layer (a subclass with the same weights, arguments and
config) whose ``call`` computes, on the TensorFlow backend, for ``(B, H, W, C)`` inputs
and ``axis=-1``:

* forward: per-channel sums over (H, W), which TensorFlow reduces in one contiguous pass, combined
  into group statistics on the small ``(B, C)`` tensor; the variance is two-pass,
  ``mean((x - mu)^2)``, so a large mean costs no precision. Then one multiply-add with per-(b, c)
  coefficients: ``y = x * a + b``, ``a = gamma / sigma``, ``b = beta - mu * a``.
* backward, by hand (``tf.custom_gradient``): with ``g = dy * gamma`` and ``xhat = (x - mu) / sigma``
  the standard normalisation gradient ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sigma`` (means
  over a group) is linear in ``dy`` and ``x``: ``dx = dy * A + x * B + C`` with ``A, B, C`` per
  (b, c). It needs two per-channel sums, ``sum(dy)`` and ``sum(dy * x)``, which also give
  ``dgamma`` and ``dbeta``.

It is faster than Keras' computation on each feature-map shape measured (sizes of both presets), and than
either version compiled with XLA (``jit_compile``); the tiny preset's training step, where GroupNorm
is a large share of the time, is about a third shorter, the paper step (mostly convolutions) no
faster (the README's Performance section has the figures). ``tests/test_norm.py`` checks outputs and all
three gradients against ``keras.layers.GroupNormalization``. Other backends, other ranks or axes,
half-precision inputs, and models built with ``remat=True`` (see ``closed_form_gradient``) use the
parent's ``call``.

**Why the same class name.** Keras' ``.weights.h5`` and ``.keras`` files address a layer inside a
model by its class name, snake-cased (``keras/src/saving/saving_lib.py``, ``_save_container_state``:
layer names are deliberately not used), and Keras offers no public way to choose that key. So a
subclass keeps the parent's name, and weights saved with ``keras.layers.GroupNormalization``
(``data/sample_model``, a learner's checkpoints) load into it; ``register_keras_serializable``
files it as ``solo_lib>GroupNormalization``, apart from Keras' own. The backbone's
``BatchNormalization`` does the same. If Keras keyed weights by another name, such files would stop
loading: ``tests/test_norm.py::test_weights_saved_from_keras_layer_load_into_ours`` fails then.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="solo_lib")
class GroupNormalization(keras.layers.GroupNormalization):
    """``keras.layers.GroupNormalization`` with a faster training step (see the module docstring).

    It keeps Keras' class name on purpose: Keras stores a layer's weights in ``.weights.h5`` and
    ``.keras`` files under a path made from its class name, so weights saved from a model built
    with Keras' layer (``data/sample_model``, a learner's checkpoints) load into this one unchanged.

    Args:
        groups: number of groups the channels are split into.
        axis: the channel axis.
        epsilon: added to each group's variance. 1e-5 as in the reference code (WXinlong/SOLO
            builds its GroupNorm layers with mmdetection's ``build_norm_layer``, which sets 1e-5,
            also PyTorch's ``nn.GroupNorm`` default) rather than Keras' 1e-3, which noticeably
            damps the normalised values of feature maps with a small variance. A layer restored
            from its own Keras config keeps the epsilon stored there (SOLOv2 stores no layer
            configs: it builds its layers, and so this default, from its ``SOLOConfig``).
        closed_form_gradient: compute as described in the module docstring; False uses Keras'
            computation. The model turns it off with ``remat=True``: in the gradient-checkpointed
            paper step it raised the peak memory (README, Performance) for no gain in speed, that
            step being mostly convolutions.
        **kwargs: ``keras.layers.GroupNormalization``'s other arguments.
    """

    def __init__(self, groups=32, axis=-1, epsilon=1e-5, closed_form_gradient=True, **kwargs):
        super().__init__(groups=groups, axis=axis, epsilon=epsilon, **kwargs)
        self.closed_form_gradient = closed_form_gradient

    def call(self, inputs):
        fast = (self.closed_form_gradient and keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4
                and self.axis in (-1, 3) and inputs.dtype == tf.float32 and self.scale and self.center)
        if not fast:
            return super().call(inputs)
        return _group_norm(inputs, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta),
                           self.groups, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "closed_form_gradient": self.closed_form_gradient}


def _group_norm(x, gamma, beta, groups, epsilon):
    """GroupNorm of ``x`` ``(B, H, W, C)`` with ``gamma``, ``beta`` ``(C,)``; gradient by hand."""
    channels = x.shape[-1]
    # member[g, c] = 1 if channel c is in group g (groups are contiguous runs of C / G channels):
    # (B, C) @ member^T sums channels into groups, (B, G) @ member spreads groups over channels.
    member = tf.cast(tf.equal(tf.range(channels)[None, :] // (channels // groups), tf.range(groups)[:, None]),
                     x.dtype)

    def group_sum(per_channel):  # (B, C) -> (B, G)
        return tf.matmul(per_channel, member, transpose_b=True)

    def spread(per_group):  # (B, G) -> (B, C)
        return tf.matmul(per_group, member)

    def pixels(per_channel):  # (B, C) -> (B, 1, 1, C), to broadcast over the image
        return tf.reshape(per_channel, (-1, 1, 1, channels))

    @tf.custom_gradient
    def forward(x, gamma, beta):
        shape = tf.shape(x)
        count = tf.cast(shape[1] * shape[2] * (channels // groups), x.dtype)  # values in one (image, group)
        mean = group_sum(tf.reduce_sum(x, axis=(1, 2))) / count  # (B, G)
        mean_c = spread(mean)  # (B, C)
        variance = group_sum(tf.reduce_sum(tf.math.squared_difference(x, pixels(mean_c)), axis=(1, 2))) / count
        inv_std = tf.math.rsqrt(variance + epsilon)  # (B, G)
        inv_std_c = spread(inv_std)
        scale_c = inv_std_c * gamma  # a = gamma / sigma, (B, C)
        scale = pixels(scale_c)
        y = x * scale + pixels(beta - mean_c * scale_c)

        def backward(dy):
            sum_dy = tf.reduce_sum(dy, axis=(1, 2))  # (B, C)
            # sum(dy * (x - mu)) per channel, as sum(dy * x) - mu * sum(dy): one pass over dy and x.
            sum_dy_xc = tf.reduce_sum(dy * x, axis=(1, 2)) - mean_c * sum_dy
            dbeta = tf.reduce_sum(sum_dy, axis=0)
            dgamma = tf.reduce_sum(inv_std_c * sum_dy_xc, axis=0)  # sum(dy * xhat)
            mean_g = group_sum(gamma * sum_dy) / count  # mean(g), (B, G)
            mean_g_xhat = inv_std * group_sum(gamma * sum_dy_xc) / count  # mean(g * xhat)
            # dx = (g - mean(g) - (x - mu) * inv_std * mean(g * xhat)) * inv_std = dy * A + x * B + C
            b = -inv_std * inv_std * mean_g_xhat
            c = -inv_std * mean_g - b * mean
            dx = dy * scale + x * pixels(spread(b)) + pixels(spread(c))
            return dx, dgamma, dbeta

        return y, backward

    return forward(x, gamma, beta)
