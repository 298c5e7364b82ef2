"""Feature Pyramid Network (Lin et al. 2017) giving P2-P6 from C2-C5 (notebook 05).

Lateral 1x1 convs bring every C_k to the same width, a top-down pass adds each coarser map,
upsampled (nearest), to the next finer one, and a 3x3 conv smooths each sum. P6 is P5 subsampled
with stride 2 (a 1x1 max-pool with stride 2, as mmdetection's FPN does without extra convs).
Upsampling is cropped to the finer map's exact size, so inputs whose size is not a multiple of 32
still work. With ``remat=True`` a training call checkpoints the pyramid in two pieces
(``solo_lib.model.remat``): the lateral convs and top-down sums (C2-C5 -> M2-M5), and the 3x3
output convs (M2-M5 -> P2-P6), so the backward pass keeps only C2-C5 and M2-M5.

TensorFlow ops, no ``keras.ops``: the model trains with a TensorFlow-only step, so a second
vocabulary buys no portability (and ``tf.image.resize`` takes a size known only when run).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from solo_lib.model.remat import checkpointed, use_remat


def resize_like(x, reference, method="nearest"):
    """Resizes ``(B, h, w, C)`` to the spatial size of ``reference`` ``(B, H, W, *)``.

    ``tf.image.resize`` (what Keras' resize calls on the TF backend) takes the size as a tensor, so
    this also works in a ``tf.function`` traced for any image size (``solo_lib.inference.predict``);
    ``keras.ops.image.resize`` needs it as Python ints.
    """
    return tf.image.resize(x, tf.shape(reference)[1:3], method=method)


def upsample2x_like(x, reference):
    """Nearest-neighbour 2x upsampling cropped to ``reference``'s size (``H <= 2h``, ``W <= 2w``).

    For an exact 2x size this equals nearest resizing; written with ``repeat`` because XLA on CPU
    has no gradient kernel for nearest resizing (``jit_compile=True`` training).
    """
    size = tf.shape(reference)[1:3]
    x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
    return x[:, : size[0], : size[1]]


@keras.saving.register_keras_serializable(package="solo_lib")
class FPN(keras.layers.Layer):
    """P2-P5 (and optionally P6) with ``channels`` channels each.

    Args:
        channels: output width of every level (256 in the paper).
        with_p6: also return P6 (needed by a 5-level head).
        remat: checkpoint the pyramid in training calls.

    Call:
        ``[C2, C3, C4, C5]`` -> ``[P2, P3, P4, P5]`` (+ ``P6``), strides 4, 8, 16, 32 (64).
    """

    def __init__(self, channels: int = 256, with_p6: bool = True, remat: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.with_p6, self.remat = channels, with_p6, remat
        # One attribute per layer, not a list: Keras 3 saves layers kept in a list to .keras files,
        # but tf.train.Checkpoint does not follow them (they would restore as random weights).
        for k in range(2, 6):
            setattr(self, f"lateral_c{k}", keras.layers.Conv2D(channels, 1, name=f"lateral_c{k}"))
            setattr(self, f"output_p{k}", keras.layers.Conv2D(channels, 3, padding="same", name=f"output_p{k}"))
        self.p6 = keras.layers.MaxPooling2D(pool_size=1, strides=2, name="p6_subsample")

    def call(self, features, training=None):
        top_down, smooth = self.top_down, self.smooth
        if use_remat(self.remat, training, self.lateral_c2, self.output_p2):
            top_down = checkpointed(top_down)
            # Replaying the output convs recomputes nothing their backward needs (only their inputs,
            # M2-M5, which are kept): as a checkpoint this piece just makes that backward wait for
            # all of P2-P6's gradients, after the head's and the mask branch's backward passes,
            # instead of running the P2 conv's (large im2col buffers) next to them.
            smooth = checkpointed(smooth)
        return list(smooth(*top_down(*features)))

    def smooth(self, *merged):
        """3x3 output convs (and P6): ``M2, ..., M5`` -> ``(P2, ..., P5(, P6))``."""
        outputs = [getattr(self, f"output_p{k}")(m) for k, m in zip(range(2, 6), merged)]
        if self.with_p6:
            outputs.append(self.p6(outputs[-1]))
        return tuple(outputs)

    def top_down(self, *features):
        """Lateral 1x1 convs and the top-down sums: ``C2, ..., C5`` -> ``(M2, ..., M5)``."""
        lateral_convs = [getattr(self, f"lateral_c{k}") for k in range(2, 6)]
        laterals = [conv(c) for conv, c in zip(lateral_convs, features)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):  # top-down: P5 -> P4 -> P3 -> P2
            merged.insert(0, lateral + upsample2x_like(merged[0], lateral))
        return tuple(merged)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "with_p6": self.with_p6, "remat": self.remat}
