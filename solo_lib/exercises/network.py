"""Checkers for the exercises that build a piece of the network (notebooks 05 and 06).

Each runs the learner's function on several cases and compares it with the library's own layer
(:class:`solo_lib.model.fpn.FPN`, :class:`solo_lib.model.head.SOLOv2Head`), random weights and
all, so a right answer is one that computes what the model computes.
"""

from __future__ import annotations

import math

import numpy as np

from solo_lib.exercises.common import expect


def _close(got, want, what: str) -> None:
    """``got`` equals ``want`` up to float32 rounding of sums of a few hundred terms."""
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    expect(got.shape == want.shape, f"{what}: expected shape {want.shape}, got {got.shape}")
    scale = max(1.0, float(np.abs(want).max()))
    error = float(np.abs(got - want).max())
    expect(error <= 1e-4 * scale, f"{what}: values differ from the library's by up to {error:.3g} "
                                  f"(the values themselves reach {scale:.3g})")


# -- 05: the FPN's top-down path ------------------------------------------------------------

def check_05b_top_down(top_down) -> str:
    """``top_down([L2, L3, L4, L5]) -> [M2, M3, M4, M5]``: the FPN's top-down sums.

    ``L_k`` are the lateral 1x1 convs' outputs ``(B, h_k, w_k, C)``; ``M5 = L5`` and
    ``M_k = L_k + up2(M_{k+1})`` (nearest, cropped to ``L_k``'s size). Compared with
    :meth:`solo_lib.model.fpn.FPN.top_down` on inputs of several sizes, odd ones included.
    """
    import tensorflow as tf

    from solo_lib.model.fpn import FPN

    rng = np.random.default_rng(5)
    fpn = FPN(channels=8, with_p6=False)
    cases = ((64, 64, 1), (70, 45, 1), (96, 32, 2))
    for h, w, batch in cases:
        sizes = [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16, 32)]
        features = [tf.constant(rng.normal(size=(batch, *size, c)), tf.float32)
                    for size, c in zip(sizes, (4, 6, 8, 10))]
        laterals = [getattr(fpn, f"lateral_c{k}")(c) for k, c in zip(range(2, 6), features)]
        want = fpn.top_down(*features)
        got = top_down([lateral.numpy() for lateral in laterals])
        expect(len(got) == 4, f"input {h}x{w}: expected 4 maps M2-M5, got {len(got)}")
        for k, (g, m) in enumerate(zip(got, want)):
            _close(g, m, f"input {h}x{w} (C2 {sizes[0][0]}x{sizes[0][1]}), M{k + 2}")
    return f"{len(cases)} input sizes, odd ones and a batch of 2 included"


# -- 06: one head branch ----------------------------------------------------------------------

def check_06b_kernel_branch(kernel_branch) -> str:
    """``kernel_branch(feature, s, tower, kernel_out) -> (B, S, S, E)``: the kernel branch on a level.

    ``feature`` is a level map ``(B, h, w, F)``; the answer appends the CoordConv channels,
    resizes (bilinear) to ``s x s`` and applies ``tower`` then ``kernel_out``. Compared with a
    :class:`solo_lib.model.head.SOLOv2Head`'s kernel output on grids smaller and larger than the map.
    """
    import keras
    import tensorflow as tf

    from solo_lib.model.head import SOLOv2Head

    rng = np.random.default_rng(6)
    cases = ((8, 8, 5, 1), (12, 7, 6, 1), (5, 9, 12, 2))
    for h, w, s, batch in cases:
        keras.utils.set_random_seed(int(rng.integers(1 << 30)))
        head = SOLOv2Head(num_classes=3, grid_sizes=(s,), head_convs=1, channels=8, kernel_channels=5, groups=2)
        feature = tf.constant(rng.normal(size=(batch, h, w, 6)), tf.float32)
        want = tf.reshape(head([feature])["kernel"], (batch, s, s, head.kernel_channels))
        got = kernel_branch(feature, s, head.kernel_tower, head.kernel_out)
        _close(got, want, f"a {h}x{w} map on a {s}x{s} grid")
    return f"{len(cases)} maps, grids smaller and larger than the map"
