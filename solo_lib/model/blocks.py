"""The conv -> GroupNorm -> ReLU block, the building block of the tiny backbone, the head's towers
and the mask feature branch (notebooks 05 and 06).

SOLOv2 (§3.2, and the authors' ``solov2_head.py``, which builds each with mmcv's ``ConvModule``
and ``norm_cfg=dict(type="GN", num_groups=32)``) normalises every hidden conv of its head and mask
branch with GroupNorm (Wu and He 2018): its statistics are per image, so they do not depend on the
batch of one or two images a detector trains with. The conv has no bias, since GroupNorm's offset
``beta`` would cancel it.
"""

from __future__ import annotations

import keras

from solo_lib.model.norm import GroupNormalization


def conv_gn_relu(filters, kernel_size, groups, name, index="", strides=1, padding="same",
                 kernel_initializer="glorot_uniform", closed_form_gradient=True) -> list[keras.layers.Layer]:
    """The three layers of one block: ``Conv2D`` without bias -> :class:`GroupNormalization` -> ReLU.

    A list, not a model: callers chain it into a functional model or a ``keras.Sequential``
    themselves, so the layers sit directly in it and their weights keep the paths weights files
    already use.

    Args:
        filters: output channels of the conv.
        kernel_size: of the conv.
        groups: GroupNorm groups (must divide ``filters``).
        name: the layers are named ``{name}_conv{index}``, ``{name}_gn{index}``, ``{name}_relu{index}``.
        index: see ``name`` (e.g. the block's number in a stack; empty for a lone block).
        strides: of the conv.
        padding: of the conv.
        kernel_initializer: of the conv (an instance is used as is: pass a new one per block
            unless blocks are meant to share its seed).
        closed_form_gradient: GroupNorm's argument (:class:`GroupNormalization`).

    Returns:
        ``[conv, group_norm, relu]``, each ``(B, H, W, C)`` -> ``(B, H', W', filters)``.
    """
    return [
        keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False,
                            kernel_initializer=kernel_initializer, name=f"{name}_conv{index}"),
        GroupNormalization(groups, closed_form_gradient=closed_form_gradient, name=f"{name}_gn{index}"),
        keras.layers.ReLU(name=f"{name}_relu{index}"),
    ]
