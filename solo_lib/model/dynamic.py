"""Dynamic convolution (SOLOv2 §3.2): each positive grid cell predicts a 1x1 kernel of E weights,
and applying that kernel to the unified mask feature F (E channels at stride 4) gives the cell's
instance mask: ``mask = F * G`` (1x1 convolution = a dot product over E at every pixel).

The model's outputs are flat over the grid cells of all levels (``sum S^2`` rows, level by level,
row-major within a level), so one integer indexes a cell of any level. Only the kernels of the
cells we need (positives in training, kept cells at inference) are gathered and applied, in one
batched einsum: computing masks for all 3872 cells of the paper model would not fit a laptop.

TensorFlow ops, as in every model file: the model trains with a TensorFlow-only step.
"""

import tensorflow as tf


def gather_kernels(kernels, cells):
    """Picks the kernels of some cells.

    Args:
        kernels: ``(B, sum S^2, E)`` kernel branch output, flat over the cells of all levels.
        cells: ``(B, K)`` int32 flat cell indices per image (padding entries may be any valid index).

    Returns:
        ``(B, K, E)``.
    """
    return tf.gather(kernels, cells, batch_dims=1)


def dynamic_conv(mask_feature, kernels):
    """Applies K dynamic 1x1 kernels to each image's mask feature.

    Args:
        mask_feature: ``(B, H, W, E)`` unified mask feature F.
        kernels: ``(B, K, E)`` one kernel G per instance candidate.

    Returns:
        ``(B, K, H, W)`` mask logits: ``logits[b, k] = sum_e F[b, :, :, e] * G[b, k, e]``.
    """
    return tf.einsum("bhwe,bke->bkhw", mask_feature, kernels)


def dynamic_conv_matmul(mask_feature, kernels):
    """:func:`dynamic_conv` as the batched matrix product that ``tf.einsum`` itself runs for it
    (``(B, HW, E) @ (B, K, E)^T``), so the values are bit for bit the same; inference uses it.

    Why a second spelling: exported graphs must work with no candidate (K = 0), and tf2onnx
    rewrites this einsum into reshapes whose target shape holds K, where ONNX's ``Reshape`` reads
    a 0 as "keep the input's dimension" and fails. Here K only ever reaches a reshape at the
    position it already has in the input (axis 1), where "keep" and 0 agree.
    """
    shape = tf.shape(mask_feature)  # (B, H, W, E)
    flat = tf.reshape(mask_feature, tf.stack([shape[0], shape[1] * shape[2], shape[3]]))  # (B, HW, E)
    logits = tf.transpose(tf.matmul(flat, kernels, transpose_b=True), [0, 2, 1])  # (B, K, HW)
    return tf.reshape(logits, tf.stack([shape[0], tf.shape(kernels)[1], shape[1], shape[2]]))
