"""Pictures of the network's feature maps (notebooks 05 and 06).

* :func:`draw_feature_maps`: an image beside maps of several resolutions (C2-C5, P2-P6), each
  shown as its mean absolute activation over the canvas, so a coarse map looks coarse.
* :func:`draw_channels`: chosen channels of one map (the CoordConv channels, the mask feature F),
  each with its colour bar.
* :func:`draw_kernel_mask`: what one dynamic kernel draws: the target, the logits F x G and the
  mask where they are positive, with its IoU (SOLOv2 §3.2).

Each function returns the figure; titles say what each panel shows, with the shape it shows.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def _numpy(x) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def mean_abs_maps(features) -> list[np.ndarray]:
    """Each ``(1, h, w, C)`` (or ``(h, w, C)``) map's mean absolute activation over C: ``(h, w)``."""
    maps = []
    for feature in features:
        f = _numpy(feature)
        maps.append(np.abs(f[0] if f.ndim == 4 else f).mean(axis=-1))
    return maps


def _panels(count: int, size: float = 2.3, height: float = 3.0):
    fig, axes = plt.subplots(1, count, figsize=(size * count, height), layout="constrained")
    return fig, np.atleast_1d(axes)


def draw_feature_maps(image, features, names, title: str = "mean |activation| of each map"):
    """The image and each feature map's mean absolute activation, all over the image's extent.

    Every map is drawn over the same ``(H, W)`` extent as the image, pixel blocks and all, so a
    map of stride 32 shows as a mosaic of 32 x 32 blocks: the resolution at which it describes
    the image.

    Args:
        image: ``(H, W, 3)`` uint8, the canvas the maps were computed from.
        features: maps ``(1, h, w, C)`` or ``(h, w, C)``.
        names: one name per map (``"C2"``, ...).
        title: the figure's title.

    Returns:
        The figure: panel 0 the image, panel k its k-th map titled ``"name\\nh x w, stride s"``.
    """
    image = _numpy(image)
    height, width = image.shape[:2]
    maps = mean_abs_maps(features)
    if len(names) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(names)} names")
    fig, axes = _panels(len(maps) + 1)
    axes[0].imshow(image, extent=(0, width, height, 0))
    axes[0].set_title(f"input\n{height} x {width}", fontsize=10)
    for ax, name, m in zip(axes[1:], names, maps):
        ax.imshow(m, cmap="magma", interpolation="nearest", extent=(0, width, height, 0))
        stride = height / m.shape[0]
        stride_text = f"{stride:.0f}" if float(stride).is_integer() else f"{stride:.1f}"
        ax.set_title(f"{name}\n{m.shape[0]} x {m.shape[1]}, stride {stride_text}", fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=11)
    return fig


def draw_channels(feature, channels, names, image=None, title: str | None = None):
    """Chosen channels of one map, each with its own colour bar.

    A channel with negative values is drawn on a scale symmetric about zero (blue < 0 < red), a
    non-negative one (after a ReLU) on a sequential scale from 0 to its maximum.

    Args:
        feature: ``(1, h, w, C)`` or ``(h, w, C)``.
        channels: the channel indices to draw.
        names: one panel title per channel.
        image: optional ``(H, W, 3)`` image drawn first, over the same extent as the channels.
        title: the figure's title.

    Returns:
        The figure; each channel's panel has a colour bar.
    """
    f = _numpy(feature)
    f = f[0] if f.ndim == 4 else f
    if len(names) != len(channels):
        raise ValueError(f"{len(channels)} channels but {len(names)} names")
    fig, axes = _panels(len(channels) + (image is not None))
    height, width = (_numpy(image).shape[:2] if image is not None else f.shape[:2])
    extent = (0, width, height, 0)
    if image is not None:
        axes[0].imshow(_numpy(image), extent=extent)
        axes[0].set_title(f"input\n{height} x {width}", fontsize=10)
    for ax, c, name in zip(axes[len(axes) - len(channels):], channels, names):
        values = f[..., c]
        limit = float(np.abs(values).max()) or 1.0
        if values.min() >= 0:  # after a ReLU: a sequential scale from 0
            shown = ax.imshow(values, cmap="viridis", vmin=0, vmax=limit, interpolation="nearest", extent=extent)
        else:
            shown = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest", extent=extent)
        ax.set_title(f"{name}\n{values.shape[0]} x {values.shape[1]}", fontsize=10)
        fig.colorbar(shown, ax=ax, shrink=0.7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def kernel_mask_iou(target, logits, threshold: float = 0.0) -> float:
    """IoU of ``logits > threshold`` with the binary ``target`` (both ``(h, w)``)."""
    drawn, target = _numpy(logits) > threshold, _numpy(target) > 0
    union = (drawn | target).sum()
    return float((drawn & target).sum() / union) if union else 1.0


def draw_kernel_mask(target, logits, threshold: float = 0.0, title: str | None = None):
    """What one dynamic kernel G draws from the mask feature F (SOLOv2 §3.2).

    Args:
        target: ``(h, w)`` binary target mask at the mask feature's stride.
        logits: ``(h, w)`` mask logits, F x G.
        threshold: where the logits become the mask.
        title: the figure's title.

    Returns:
        The figure: the target, the logits (diverging scale about ``threshold``) and
        ``logits > threshold`` titled with its IoU against the target.
    """
    target, logits = _numpy(target), _numpy(logits)
    if target.shape != logits.shape:
        raise ValueError(f"target {target.shape} and logits {logits.shape} differ in shape")
    fig, axes = _panels(3, size=2.8)
    axes[0].imshow(target > 0, cmap="gray", interpolation="nearest")
    axes[0].set_title(f"target\n{target.shape[0]} x {target.shape[1]}", fontsize=10)
    limit = float(np.abs(logits - threshold).max()) or 1.0
    shown = axes[1].imshow(logits, cmap="RdBu_r", vmin=threshold - limit, vmax=threshold + limit,
                           interpolation="nearest")
    axes[1].set_title("F x G\n(mask logits)", fontsize=10)
    fig.colorbar(shown, ax=axes[1], shrink=0.7)
    axes[2].imshow(logits > threshold, cmap="gray", interpolation="nearest")
    axes[2].set_title(f"F x G > {threshold:g}\nIoU with target {kernel_mask_iou(target, logits, threshold):.2f}",
                      fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
