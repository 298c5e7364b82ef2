"""The unified mask feature branch of SOLOv2 (§3.2.2, "Mask Feature Learning"; notebook 06).

One map F of E channels at stride 4 serves every instance: each level P2-P5 goes through
3x3 conv -> GroupNorm -> ReLU blocks and 2x bilinear upsamplings until it reaches stride 4
(P2: 1 block; P3: 1 block + 1 upsampling; P4: 2 of each; P5: 3 of each, with the CoordConv
channels appended to its input, as the paper does for the coarsest level), the four maps are
summed, and a 1x1 conv -> GroupNorm -> ReLU gives E channels. A dynamic kernel from the head then
turns F into one instance mask (``solo_lib.model.dynamic``). With ``remat=True`` a training call
checkpoints the four level paths (replayed one after another) and the fusion
(``solo_lib.model.remat``).

TensorFlow ops, no ``keras.ops``: the model trains with a TensorFlow-only step, so a second
vocabulary buys no portability.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from solo_lib.model.blocks import conv_gn_relu
from solo_lib.model.fpn import resize_like
from solo_lib.model.head import coordinate_channels
from solo_lib.model.remat import checkpointed, checkpointed_in_turn, use_remat


@keras.saving.register_keras_serializable(package="solo_lib")
class MaskFeatureBranch(keras.layers.Layer):
    """``[P2, P3, P4, P5]`` -> F ``(B, H/4, W/4, E)``.

    Args:
        hidden_channels: width of the per-level blocks (128 in the paper).
        out_channels: E (256 in the paper).
        groups: GroupNorm groups.
        remat: checkpoint each level's path and the fusion in training calls.
    """

    def __init__(self, hidden_channels=128, out_channels=256, groups=32, remat=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_channels, self.out_channels, self.groups = hidden_channels, out_channels, groups
        self.remat = remat
        # One initializer for every conv here. Unseeded, it draws its seed once, when created, so
        # convs of the same shape start with the same weights (p2-p4's first blocks; the later
        # blocks), unlike the reference's independent normal_init(std=0.01) per conv. Kept as is:
        # a new initializer per conv would change every initial, and so every trained, weight.
        normal = keras.initializers.RandomNormal(stddev=0.01)

        def block(name):
            return keras.Sequential(conv_gn_relu(hidden_channels, 3, groups, name, kernel_initializer=normal,
                                                 closed_form_gradient=not remat), name=name)

        # Level k (P2..P5) has max(k, 1) blocks; after each block but the P2 one, a 2x upsampling.
        # One attribute per block (tf.train.Checkpoint does not follow layers kept in lists).
        for k in range(4):
            for i in range(max(k, 1)):
                setattr(self, f"p{k + 2}_block{i}", block(f"p{k + 2}_block{i}"))
        self.fuse = keras.Sequential(conv_gn_relu(out_channels, 1, groups, "fuse", padding="valid",
                                                  kernel_initializer=normal, closed_form_gradient=not remat),
                                     name="fuse")

    def call(self, features, training=None):
        def level_path(x, k):
            if k == 3:
                x = tf.concat([x, coordinate_channels(x)], axis=-1)
            for i in range(max(k, 1)):
                block = getattr(self, f"p{k + 2}_block{i}")
                x = block(x, training=training)
                if k > 0:  # 2x bilinear up, to the next finer level's exact size; ends on P2's
                    x = resize_like(x, features[k - 1 - i], method="bilinear")
            return x

        def fuse(total):
            return self.fuse(total, training=training)

        if use_remat(self.remat, training, self.fuse):
            paths = [x for (x,) in checkpointed_in_turn(lambda k, x: (level_path(x, k),))(*features[:4])]
            return checkpointed(fuse)(paths[0] + paths[1] + paths[2] + paths[3])
        total = None
        for k in range(4):
            x = level_path(features[k], k)
            total = x if total is None else total + x
        return fuse(total)

    def get_config(self):
        return {**super().get_config(), "hidden_channels": self.hidden_channels, "out_channels": self.out_channels,
                "groups": self.groups, "remat": self.remat}
