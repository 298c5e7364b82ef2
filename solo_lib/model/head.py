"""The SOLOv2 head: category and kernel branches on an S x S grid per level (notebook 06).

For each FPN level (SOLOv2 §3.2, and the authors' ``solov2_head.py``):

1. the level's map gets two extra channels holding each pixel's normalised x and y in [-1, 1]
   (CoordConv, Liu et al. 2018): SOLO must know *where* a cell is to say which object is there;
2. it is resized (bilinear) to S x S, one row of features per grid cell;
3. the **kernel branch** (with the coordinates) predicts E numbers per cell: the weights of a 1x1
   conv that turns the mask feature into that cell's mask (dynamic convolution);
4. the **category branch** (the same resized map without the coordinates) predicts C class
   scores per cell, as independent sigmoids with the output bias set to the prior ``p = 0.01``.

Each branch is ``head_convs`` stacked 3x3 conv -> GroupNorm -> ReLU blocks. The same weights
serve every level. Outputs are flattened over cells and concatenated over levels, so one integer
indexes a cell of any level (see ``solo_lib.model.dynamic``).

With ``remat=True`` a training call checkpoints each branch on each level
(``solo_lib.model.remat``): the backward pass keeps only the level maps and replays one branch of
one level at a time, summing the gradients of the shared tower weights as it goes. In the paper
model the towers are two thirds of the forward FLOPs, so this replay is the most expensive part of
checkpointing.

TensorFlow ops throughout, no ``keras.ops``: the model trains with a TensorFlow-only step
(``tf.GradientTape``, ``tf.custom_gradient`` checkpoints), so a second vocabulary buys no portability.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from solo_lib.model.blocks import conv_gn_relu
from solo_lib.model.remat import checkpointed_in_turn, use_remat


def coordinate_channels(x):
    """Two channels with each pixel's normalised (x, y) in [-1, 1].

    Args:
        x: ``(B, H, W, C)``.

    Returns:
        ``(B, H, W, 2)``, channel 0 = x (varies along W), channel 1 = y.
    """
    shape = tf.shape(x)
    grid_y, grid_x = tf.meshgrid(unit_linspace(shape[1]), unit_linspace(shape[2]), indexing="ij")  # (H, W)
    coords = tf.stack([grid_x, grid_y], axis=-1)[None]  # (1, H, W, 2)
    return tf.cast(tf.broadcast_to(coords, (shape[0], shape[1], shape[2], 2)), x.dtype)


def unit_linspace(num):
    """``num`` evenly spaced float32 values from -1 to 1, the same bits as ``tf.linspace(-1, 1, num)``
    (``start + i * step``, the last value exactly 1; ``[-1]`` for ``num = 1``) in about 20 graph ops
    instead of that function's ~70, for any ``num``, also a tensor of a shape unknown when traced."""
    index = tf.range(num)
    step = 2.0 / tf.cast(tf.maximum(num - 1, 1), tf.float32)
    values = -1.0 + tf.cast(index, tf.float32) * step
    return tf.where((index == num - 1) & (num > 1), 1.0, values)


def conv_gn_relu_tower(num_convs, channels, groups, name, closed_form_gradient=True):
    """``num_convs`` x (3x3 conv without bias -> GroupNorm -> ReLU), weights ~ N(0, 0.01)."""
    layers = []
    for i in range(num_convs):
        # One initializer per conv: an unseeded Keras initializer draws its seed when it is created.
        layers += conv_gn_relu(channels, 3, groups, name, i,
                               kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                               closed_form_gradient=closed_form_gradient)
    return keras.Sequential(layers, name=name)


@keras.saving.register_keras_serializable(package="solo_lib")
class SOLOv2Head(keras.layers.Layer):
    """Category and kernel predictions on each level's S x S grid.

    Args:
        num_classes: C.
        grid_sizes: S per level.
        head_convs: conv blocks per branch.
        channels: width of those blocks.
        kernel_channels: E, the dynamic kernel size (1x1 kernels on an E-channel mask feature).
        groups: GroupNorm groups.
        prior_prob: initial category probability.
        remat: checkpoint the towers in training calls.

    Call:
        a list of level maps ``(B, h_l, w_l, F)`` -> ``{"category": (B, sum S^2, C),
        "kernel": (B, sum S^2, E)}`` (logits and kernel weights).
    """

    def __init__(self, num_classes, grid_sizes, head_convs=4, channels=512, kernel_channels=256, groups=32,
                 prior_prob=0.01, remat=False, **kwargs):
        super().__init__(**kwargs)
        self.remat = remat
        self.num_classes, self.grid_sizes = num_classes, tuple(grid_sizes)
        self.head_convs, self.channels, self.kernel_channels = head_convs, channels, kernel_channels
        self.groups, self.prior_prob = groups, prior_prob
        normal = keras.initializers.RandomNormal(stddev=0.01)
        self.kernel_tower = conv_gn_relu_tower(head_convs, channels, groups, "kernel_tower",
                                               closed_form_gradient=not remat)
        self.category_tower = conv_gn_relu_tower(head_convs, channels, groups, "category_tower",
                                                 closed_form_gradient=not remat)
        self.kernel_out = keras.layers.Conv2D(kernel_channels, 3, padding="same", kernel_initializer=normal,
                                              name="kernel_out")
        # RetinaNet prior (Lin et al. 2017, §4.1): sigmoid(b) = p, so b = -log((1 - p) / p) = -log(99).
        self.category_out = keras.layers.Conv2D(
            num_classes, 3, padding="same", kernel_initializer=normal,
            bias_initializer=keras.initializers.Constant(-math.log((1 - prior_prob) / prior_prob)),
            name="category_out")

    def call(self, level_features, training=None):
        def grid(level, feature):
            """``(B, h, w, F)`` with coordinates, resized to the level's grid: ``(B, S, S, F + 2)``."""
            s = self.grid_sizes[level]
            with_coords = tf.concat([feature, coordinate_channels(feature)], axis=-1)
            return tf.image.resize(with_coords, (s, s), method="bilinear")

        def branch(index, cells):
            """Branch ``index % 2`` (0: kernel ``(B, S, S, E)``, 1: category ``(B, S, S, C)``) on a grid."""
            if index % 2 == 0:
                return (self.kernel_out(self.kernel_tower(cells, training=training)),)
            return (self.category_out(self.category_tower(cells[..., :-2], training=training)),)

        levels = list(level_features)[:len(self.grid_sizes)]
        if use_remat(self.remat, training, self.kernel_tower, self.category_tower):
            # Pieces (level 0 kernel, level 0 category, level 1 kernel, ...), replayed one at a time.
            inputs = [feature for feature in levels for _ in range(2)]
            outputs = checkpointed_in_turn(lambda i, feature: branch(i, grid(i // 2, feature)))(*inputs)
        else:
            outputs = []
            for level, feature in enumerate(levels):
                cells = grid(level, feature)
                outputs += [branch(0, cells), branch(1, cells)]
        categories, kernels = [], []
        for level, s in enumerate(self.grid_sizes):
            (kernel,), (category,) = outputs[2 * level], outputs[2 * level + 1]
            kernels.append(tf.reshape(kernel, (-1, s * s, self.kernel_channels)))
            categories.append(tf.reshape(category, (-1, s * s, self.num_classes)))
        return {"category": tf.concat(categories, axis=1), "kernel": tf.concat(kernels, axis=1)}

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "grid_sizes": list(self.grid_sizes),
                "head_convs": self.head_convs, "channels": self.channels, "kernel_channels": self.kernel_channels,
                "groups": self.groups, "prior_prob": self.prior_prob, "remat": self.remat}
