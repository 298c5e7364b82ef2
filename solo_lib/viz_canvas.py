"""Pictures of where the grid lies: one image's canvas in training and at inference (notebook 04).

The S x S grid divides the canvas (``solo_lib.geometry``). :func:`canvas_views` computes, for one
instance, the cells that own it in training and the cell where inference looks for it; the
figure of :func:`draw_canvas_views` puts them side by side, with the mistake this rule prevents:
an inference canvas of another shape (the image at its own size, padded to a multiple of 32).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from solo_lib.geometry import grid_cell, input_geometry, on_canvas, round_up
from solo_lib.targets import assign_grid_cells, instance_geometry
from solo_lib.viz_style import class_color


def _centre_cells(mask: np.ndarray, canvas: tuple[int, int], grid_sizes) -> list[tuple[int, int]]:
    """The cell of every level that holds the centre of mass of ``mask`` (on ``canvas``)."""
    geo = instance_geometry(mask[None])
    return [grid_cell(float(geo["cy"][0]), float(geo["cx"][0]), canvas, s) for s in grid_sizes]


def canvas_views(sample, config, instance: int = 0) -> dict:
    """Where one instance lies on the grids, in training and at inference.

    Args:
        sample: a sample dict or ``Sample`` (``image``, ``masks``, ``labels``, ``iscrowd``).
        config: the model's ``SOLOConfig``.
        instance: the instance to follow.

    Returns:
        A dict with three views, each a dict with ``image`` (the canvas), ``mask`` (the instance
        on it), ``canvas`` ``(Hc, Wc)``, ``region`` (the image's ``(h, w)`` at its top-left) and
        ``centre_cells`` (one ``(row, col)`` per level, the cell holding the instance's centre of
        mass):

        * ``"training"``: :func:`solo_lib.geometry.on_canvas`, the pipeline's canvas, plus
          ``positive_cells``, per level the ``(row, col)`` cells that own the instance
          (:func:`solo_lib.targets.assign_grid_cells`);
        * ``"inference"``: the canvas ``solo_lib.inference.preprocess`` builds, the same one;
        * ``"unresized"``: the image at its own size padded to a multiple of 32 (what inference
          did before the image scale existed), whose cells can differ.
    """
    from solo_lib.inference import preprocess

    s = sample if isinstance(sample, dict) else vars(sample)
    image, masks = np.asarray(s["image"]), np.asarray(s["masks"])
    if not 0 <= instance < len(masks):
        raise ValueError(f"instance must be in [0, {len(masks)}), got {instance}")
    keep = masks.reshape(len(masks), -1).any(axis=1)
    index = int(keep[:instance].sum())  # the instance's index once empty masks are dropped
    train = on_canvas(s, config)
    targets = assign_grid_cells(train["masks"], train["labels"], config, train["iscrowd"])
    mask = train["masks"][index]
    canvas = train["image"].shape[:2]
    positives = [[divmod(int(c), g) for c in level.cells[level.instances == index]]
                 for level, g in zip(targets, config.grid_sizes)]
    region = input_geometry(image.shape[0], image.shape[1], config.image_scale)[0]
    views = {"training": {"image": train["image"], "mask": mask, "canvas": canvas, "region": region,
                          "centre_cells": _centre_cells(mask, canvas, config.grid_sizes),
                          "positive_cells": positives}}
    pixels, resized = preprocess(image, config)
    pixels = pixels[0].numpy().astype(np.uint8)
    views["inference"] = {"image": pixels, "mask": mask, "canvas": pixels.shape[:2], "region": tuple(resized),
                          "centre_cells": _centre_cells(mask, pixels.shape[:2], config.grid_sizes)}
    height, width = image.shape[:2]
    old = (round_up(height), round_up(width))
    old_image = np.zeros((*old, 3), np.uint8)
    old_image[:height, :width] = image
    old_mask = np.zeros(old, np.uint8)
    old_mask[:height, :width] = masks[instance]
    views["unresized"] = {"image": old_image, "mask": old_mask, "canvas": old, "region": (height, width),
                          "centre_cells": _centre_cells(old_mask, old, config.grid_sizes)}
    return views


def draw_canvas_views(views: dict, config, level: int = 0, label: int = 0):
    """The three views of :func:`canvas_views` side by side, on one level's grid.

    Each panel shows its canvas (padding in gray) with the level's S x S grid and the instance's
    outline in its class colour; the instance's centre cell is outlined in black; the training
    panel also fills the cells that own it, in white.

    Returns:
        The figure.
    """
    grid = config.grid_sizes[level]
    names = {"training": "training (pipeline)", "inference": "inference (predict)",
             "unresized": "another canvas: own size, padded to 32"}
    sizes = [v["canvas"] for v in views.values()]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), gridspec_kw={"width_ratios": [w / h for h, w in sizes]})
    for ax, (key, view) in zip(axes, views.items()):
        hc, wc = view["canvas"]
        shown = np.full((hc, wc, 3), 200.0)  # padding: light gray
        h, w = view["region"]
        shown[:h, :w] = view["image"][:h, :w]
        ax.imshow((0.6 * shown + 0.4 * 255).astype(np.uint8))
        ax.contour(view["mask"], levels=[0.5], colors=[class_color(label)], linewidths=2)
        cell_h, cell_w = hc / grid, wc / grid
        for t in range(1, grid):
            ax.axvline(t * cell_w, color="black", lw=0.4, alpha=0.5)
            ax.axhline(t * cell_h, color="black", lw=0.4, alpha=0.5)
        positives = view.get("positive_cells", [[]] * (level + 1))[level]
        for i, j in positives:  # white: visible on any class colour
            ax.add_patch(plt.Rectangle((j * cell_w, i * cell_h), cell_w, cell_h, color="white", alpha=0.6, lw=0))
        i, j = view["centre_cells"][level]
        ax.add_patch(plt.Rectangle((j * cell_w, i * cell_h), cell_w, cell_h, fill=False, ec="black", lw=2))
        ax.set_xlim(-0.5, wc - 0.5)
        ax.set_ylim(hc - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        owners = f"\n{len(positives)} positive cells (white)" if "positive_cells" in view else ""
        ax.set_title(f"{names[key]}\ncanvas {hc}x{wc}, S={grid}\ncentre in cell ({i}, {j}){owners}", fontsize=9)
    fig.tight_layout()
    return fig
