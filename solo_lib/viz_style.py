"""Colours and labels shared by every figure of the course: the class palette, masks blended in
their class colour, and class-name labels kept inside their axes and apart.

Every ``solo_lib.viz*`` module draws classes in these colours, so a class looks the same in each
notebook; :func:`separate_labels` tidies the labels :func:`solo_lib.viz.draw_instances` places.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb

# One colour per class, the same in every notebook (matplotlib's colour-blind-safe tab10 order).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")

# Group id of the class-name labels drawn by draw_instances, so separate_labels can find them.
LABEL_GID = "instance-label"


def class_color(label: int) -> tuple[float, float, float]:
    """The RGB colour (floats in [0, 1]) of a class label."""
    return to_rgb(PALETTE[int(label) % len(PALETTE)])


def overlay_masks(image: np.ndarray, masks: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blends each instance mask into the image in its class colour.

    Args:
        image: ``(H, W, 3)`` uint8.
        masks: ``(N, H, W)`` binary.
        labels: ``(N,)`` class labels.
        alpha: opacity of the masks.

    Returns:
        ``(H, W, 3)`` uint8; pixels under several masks take the last one's colour.
    """
    out = np.asarray(image, np.float32).copy()
    for mask, label in zip(np.asarray(masks).astype(bool), np.asarray(labels)):
        out[mask] = (1 - alpha) * out[mask] + alpha * 255.0 * np.array(class_color(label))
    return out.clip(0, 255).astype(np.uint8)


def separate_labels(fig, gap: float = 1.0) -> None:
    """Moves the class-name labels of :func:`draw_instances` so none leaves its axes or covers another.

    A label sits just above its box's top-left corner. A box at the top of the image would push it
    into the axes title, and boxes with nearby corners stack their labels on top of each other.
    Call this after the figure's layout is final (after ``tight_layout``): it measures the labels
    in display pixels, pulls each one inside its axes, and moves it down below any label already
    placed that it overlaps (in drawing order).

    Args:
        fig: a figure whose axes were drawn with :func:`draw_instances`.
        gap: display pixels kept between a label and its neighbours or the axes' edge.
    """
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_gid() == LABEL_GID]
        if not labels:
            continue
        ax.apply_aspect()  # an image's axes shrink to its aspect ratio only when drawn: do it now
        frame = ax.get_window_extent(renderer)
        to_data = ax.transData.inverted()
        placed = []
        for text in labels:
            box = _label_extent(text, renderer)
            dx = min(0.0, frame.x1 - gap - box.x1) + max(0.0, frame.x0 + gap - box.x0)  # keep it inside
            dy = min(0.0, frame.y1 - gap - box.y1)  # below the top edge (display y grows upwards)
            box = box.translated(dx, dy)
            for _ in range(len(placed) + 1):  # each step clears one overlap; a clear spot is found in time
                hit = next((other for other in placed if box.overlaps(other)), None)
                if hit is None or box.y0 - (box.y1 - hit.y0 + gap) < frame.y0:
                    break  # free, or no room left below: leave it
                shift = box.y1 - hit.y0 + gap
                box = box.translated(0.0, -shift)
                dy -= shift
            if dx or dy:
                x, y = ax.transData.transform(text.get_position())
                text.set_position(to_data.transform((x + dx, y + dy)))
            placed.append(box)


def _label_extent(text, renderer):
    """Display-pixel extent of a label including its coloured background box."""
    patch = text.get_bbox_patch()
    if patch is not None:
        text.update_bbox_position_size(renderer)
        return patch.get_window_extent(renderer)
    return text.get_window_extent(renderer)
