"""A trained SOLOv2 model inspected cell by cell (notebook 10, "Inside a trained model").

One module past ~300 lines, because it is one idea: one network run on one image, inspected cell by
cell; each figure draws exactly one of the results computed here, so they stay beside them.

SOLOv2 (arXiv 2003.10152, §3) splits instance segmentation into two questions asked of every grid
cell of every pyramid level: *what* is centred here (the category branch, S x S x C scores) and
*which pixels* belong to it (the kernel branch: one 1 x 1 kernel G per cell, applied to the unified
mask feature F by dynamic convolution, §3.2). This module runs the network once on an image and
exposes both answers for any cell, so a learner can see what each cell's kernel draws, including
the cells nobody keeps, and how the maskness score (the authors' ``get_seg_single``, kept by
mmdetection) rescales the category score of a kept cell.

In the spirit of Matterport's ``inspect_model`` notebook for Mask R-CNN: the pictures come from the
model's real outputs, computed by the same functions inference uses
(:func:`solo_lib.inference.preprocess`, :func:`solo_lib.inference.point_nms`,
:func:`solo_lib.model.dynamic.dynamic_conv`), so what is drawn is what ``predict`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from solo_lib.config import SOLOConfig
from solo_lib.viz import legend_handles
from solo_lib.viz_style import class_color


@dataclass(frozen=True)
class Inspection:
    """Everything the network said about one image.

    Attributes:
        config: the model's ``SOLOConfig``.
        canvas: ``(Hc, Wc, 3)`` uint8: the image resized to the model's scale and padded, as the
            network saw it.
        image_size: ``(h, w)`` of the image region at the canvas's top-left.
        scores: one ``(S, S, C)`` array per level: sigmoid of the category logits.
        kept: the same after point NMS (a score survives where it is the maximum of its 2 x 2
            neighbourhood), as inference uses them.
        kernels: ``(M, E)``: the kernel G of every cell of every level, flat, level by level.
        mask_feature: ``(Hc/4, Wc/4, E)``: the unified mask feature F.
    """

    config: SOLOConfig
    canvas: np.ndarray
    image_size: tuple[int, int]
    scores: tuple[np.ndarray, ...]
    kept: tuple[np.ndarray, ...]
    kernels: np.ndarray
    mask_feature: np.ndarray


def inspect_image(model, image) -> Inspection:
    """Runs ``model`` once on ``image`` (any size, RGB 0-255) and keeps all its outputs."""
    import tensorflow as tf

    from solo_lib.inference import point_nms, preprocess
    from solo_lib.model.solov2 import split_levels

    config = model.config
    canvas, resized = preprocess(image, config)  # (1, Hc, Wc, 3)
    outputs = model(canvas, training=False)
    levels = split_levels(tf.sigmoid(tf.cast(outputs["category"], tf.float32)), config.grid_sizes)
    return Inspection(
        config=config,
        canvas=np.clip(canvas[0].numpy(), 0, 255).astype(np.uint8),
        image_size=tuple(int(v) for v in resized),
        scores=tuple(np.asarray(level[0]) for level in levels),
        kept=tuple(np.asarray(point_nms(level)[0]) for level in levels),
        kernels=np.asarray(outputs["kernel"][0], np.float32),
        mask_feature=np.asarray(outputs["mask_feature"][0], np.float32),
    )


def flat_cell(config: SOLOConfig, level: int, row: int, col: int) -> int:
    """The flat index of cell ``(row, col)`` of ``level`` in the model's ``(M, ...)`` outputs
    (levels one after another, each row-major)."""
    sizes = config.grid_sizes
    if not 0 <= level < len(sizes):
        raise ValueError(f"level must be in [0, {len(sizes) - 1}], got {level}")
    s = sizes[level]
    if not (0 <= row < s and 0 <= col < s):
        raise ValueError(f"level {level} has a {s} x {s} grid; cell ({row}, {col}) is outside it")
    return sum(t * t for t in sizes[:level]) + row * s + col


def cell_region(config: SOLOConfig, canvas_size, level: int, row: int, col: int) -> tuple[float, float, float, float]:
    """``(y0, x0, y1, x1)`` in canvas pixels: the part of the canvas that cell covers (the S x S
    grid divides the whole padded canvas, as the targets do, notebook 04)."""
    s = config.grid_sizes[level]
    height, width = canvas_size
    return row * height / s, col * width / s, (row + 1) * height / s, (col + 1) * width / s


def cell_mask(inspection: Inspection, level: int, row: int, col: int) -> dict:
    """What one cell predicts: its class scores and the mask its kernel draws.

    The mask is inference's steps 3-5 for this one cell (SOLOv2 §3.2): dynamic convolution of
    F with the cell's kernel, sigmoid, binarised at ``mask_thr``; maskness = the mean probability
    of the foreground pixels; the category score is multiplied by it.

    Returns:
        dict: ``index`` (flat cell), ``scores`` ``(C,)`` after sigmoid, ``kept`` ``(C,)`` after
        point NMS, ``label`` (best class), ``score`` (its kept score), ``kernel`` ``(E,)``,
        ``probability`` ``(Hc/4, Wc/4)``, ``mask`` (bool, same shape), ``area`` (foreground pixels
        at stride 4), ``min_area`` (the small-mask filter: kept only if ``area > min_area``),
        ``maskness`` (0 for an empty mask), ``final`` (``score * maskness``), ``region``
        (:func:`cell_region`).
    """
    import tensorflow as tf

    from solo_lib.inference import cell_strides
    from solo_lib.model.dynamic import dynamic_conv

    config = inspection.config
    index = flat_cell(config, level, row, col)
    kernel = inspection.kernels[index]
    logits = dynamic_conv(inspection.mask_feature[None], kernel[None, None])[0, 0]  # (h4, w4)
    probability = np.asarray(tf.sigmoid(logits), np.float32)
    mask = probability > config.mask_thr
    area = int(mask.sum())
    maskness = float(probability[mask].mean()) if area else 0.0
    scores, kept = inspection.scores[level][row, col], inspection.kept[level][row, col]
    label = int(np.argmax(scores))
    return {
        "index": index, "scores": scores, "kept": kept, "label": label, "score": float(kept[label]),
        "kernel": kernel, "probability": probability, "mask": mask, "area": area,
        "min_area": float(cell_strides(config)[index]), "maskness": maskness,
        "final": float(kept[label]) * maskness,
        "region": cell_region(config, inspection.canvas.shape[:2], level, row, col),
    }


def owner_cells(mask, config: SOLOConfig) -> list[tuple[int, int, int]]:
    """The cells that own a ground-truth object in training: ``(level, row, col)`` of the cell at
    its centre of mass on every level whose scale range holds it (``solo_lib.targets``'s rule,
    SOLO §3.3.1; the centre region around that cell is positive too).

    Args:
        mask: ``(Hc, Wc)`` binary mask of the object on the canvas.
        config: the model's ``SOLOConfig``.
    """
    from solo_lib.geometry import grid_cell
    from solo_lib.targets import instance_geometry

    geo = {k: float(v[0]) for k, v in instance_geometry(np.asarray(mask)[None]).items()}
    scale = (geo["w"] * geo["h"]) ** 0.5
    return [(level, *grid_cell(geo["cy"], geo["cx"], np.shape(mask), s))
            for level, (s, (lo, hi)) in enumerate(zip(config.grid_sizes, config.scale_ranges))
            if geo["area"] > 0 and lo <= scale <= hi]


def strongest_cells(inspection: Inspection, count: int = 5) -> list[tuple[int, int, int]]:
    """The ``count`` cells with the highest score after point NMS, as ``(level, row, col)``,
    best first (ties: earlier level, then row-major)."""
    found = []
    for level, kept in enumerate(inspection.kept):
        best = kept.max(axis=-1)
        for row, col in zip(*np.nonzero(best > 0)):
            found.append((-float(best[row, col]), level, int(row), int(col)))
    return [(level, row, col) for _, level, row, col in sorted(found)[:count]]


def draw_level_heatmaps(inspection: Inspection, class_names, *, after_point_nms: bool = False):
    """One panel per level: the image with that level's grid, each cell tinted by its best class
    score (0 to 1), and every cell above ``score_thr`` outlined in its class's colour.

    Args:
        inspection: from :func:`inspect_image`.
        class_names: names indexed by label (for the legend).
        after_point_nms: draw the scores point NMS keeps instead of the raw sigmoid scores.

    Returns:
        ``(figure, outlined)``: ``outlined[level]`` is the list of ``(row, col, label)`` drawn;
        each outline is a ``Rectangle`` with gid ``"cell-{level}-{row}-{col}"``.
    """
    config = inspection.config
    levels = inspection.kept if after_point_nms else inspection.scores
    height, width = inspection.canvas.shape[:2]
    fig, axes = plt.subplots(1, len(levels), figsize=(3.3 * len(levels), 3.6), squeeze=False)
    outlined = []
    for level, (ax, scores) in enumerate(zip(axes[0], levels)):
        s = config.grid_sizes[level]
        ax.imshow(inspection.canvas, alpha=0.6)
        heat = ax.imshow(scores.max(axis=-1), cmap="magma", vmin=0.0, vmax=1.0, alpha=0.55,
                         extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="nearest")
        cells = []
        for row, col in zip(*np.nonzero(scores.max(axis=-1) > config.score_thr)):
            label = int(np.argmax(scores[row, col]))
            y0, x0, y1, x1 = cell_region(config, (height, width), level, row, col)
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.5,
                                   edgecolor=class_color(label), gid=f"cell-{level}-{row}-{col}"))
            cells.append((int(row), int(col), label))
        outlined.append(cells)
        ax.set_title(f"level {level}: {s} x {s}, stride {config.level_strides[level]}\n"
                     f"{len(cells)} cells > {config.score_thr:g}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.subplots_adjust(bottom=0.2, top=0.85, left=0.02, right=0.9, wspace=0.08)
    fig.colorbar(heat, cax=fig.add_axes((0.92, 0.25, 0.012, 0.55)), label="best class score")
    fig.legend(handles=legend_handles(class_names), loc="lower center", ncol=len(class_names), fontsize=8,
               title="outline: the cell's best class", title_fontsize=8)
    return fig, outlined


def draw_cell_gallery(inspection: Inspection, cells, class_names):
    """What several cells' kernels draw: one panel per ``(level, row, col)``, the mask probability
    ``sigmoid(F * G)`` of that cell over the image (at stride 4), the cell marked by a white
    square, titled with its best class and that class's score (before point NMS). Every cell draws
    a mask; only the cells with a high category score are kept by inference.

    Returns:
        ``(figure, drawn)``: ``drawn`` the :func:`cell_mask` dicts, in the order of ``cells``.
    """
    config = inspection.config
    stride = config.mask_stride
    fig, axes = plt.subplots(1, len(cells), figsize=(2.4 * len(cells), 2.9), squeeze=False)
    drawn = []
    for ax, (level, row, col) in zip(axes[0], cells):
        cell = cell_mask(inspection, level, row, col)
        drawn.append(cell)
        small = inspection.canvas[::stride, ::stride].astype(np.float32) / 255
        ax.imshow(small * 0.5)
        ax.imshow(cell["probability"], cmap="viridis", vmin=0, vmax=1, alpha=0.7)
        y0, x0, y1, x1 = (v / stride for v in cell["region"])
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.5, edgecolor="white",
                               gid=f"cell-{level}-{row}-{col}"))
        best = float(cell["scores"][cell["label"]])
        ax.set_title(f"level {level} ({row}, {col})\n{class_names[cell['label']]} {best:.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig, drawn


def draw_cell(inspection: Inspection, level: int, row: int, col: int, class_names):
    """Six panels about one cell: where it is, its class scores, its kernel, the mask probability
    its kernel draws, that mask binarised, and the maskness that rescales its score.

    Returns:
        ``(figure, cell)`` with ``cell`` the :func:`cell_mask` dict that was drawn. The panels'
        gids are ``"where"``, ``"classes"``, ``"kernel"``, ``"probability"``, ``"mask"``,
        ``"maskness"``.
    """
    config = inspection.config
    cell = cell_mask(inspection, level, row, col)
    s = config.grid_sizes[level]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.6))
    (where, classes, kernel), (prob_ax, mask_ax, maskness_ax) = axes
    for ax, gid in zip(axes.flat, ("where", "classes", "kernel", "probability", "mask", "maskness")):
        ax.set_gid(gid)

    y0, x0, y1, x1 = cell["region"]
    where.imshow(inspection.canvas)
    where.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=2, edgecolor="white",
                              gid="the-cell"))
    where.set_title(f"level {level} ({s} x {s}), cell (row {row}, col {col})", fontsize=9)
    where.set_xticks([])
    where.set_yticks([])

    colors = [class_color(k) for k in range(len(class_names))]
    classes.bar(range(len(class_names)), cell["scores"], color=colors)
    classes.axhline(config.score_thr, color="black", lw=1, ls="--", label=f"score_thr {config.score_thr:g}")
    classes.set_xticks(range(len(class_names)), class_names, fontsize=8, rotation=20)
    classes.set_ylim(0, 1)
    suppressed = cell["scores"][cell["label"]] > 0 and cell["score"] == 0
    classes.set_title("class scores" + (" (point NMS: a neighbour is higher)" if suppressed else ""), fontsize=9)
    classes.legend(fontsize=8, loc="upper right")

    kernel.bar(range(len(cell["kernel"])), cell["kernel"], color="0.35", width=1.0)
    kernel.set_title(f"its kernel G: {len(cell['kernel'])} weights (a 1 x 1 conv)", fontsize=9)
    kernel.set_xlabel("channel of the mask feature F", fontsize=8)

    shown = prob_ax.imshow(cell["probability"], cmap="viridis", vmin=0, vmax=1)
    prob_ax.set_title(f"sigmoid(F * G): {cell['probability'].shape[0]} x {cell['probability'].shape[1]} "
                      f"at stride {config.mask_stride}", fontsize=9)
    fig.colorbar(shown, ax=prob_ax, shrink=0.8)
    prob_ax.set_xticks([])
    prob_ax.set_yticks([])

    small = inspection.canvas[::config.mask_stride, ::config.mask_stride]
    overlay = small.astype(np.float32) * 0.7
    overlay[cell["mask"]] = 0.4 * overlay[cell["mask"]] + 0.6 * 255 * np.asarray(class_color(cell["label"]))
    mask_ax.imshow(overlay.astype(np.uint8))
    keep = "kept" if cell["area"] > cell["min_area"] else "dropped: too small"
    mask_ax.set_title(f"> {config.mask_thr:g}: {cell['area']} pixels ({keep})", fontsize=9)
    mask_ax.set_xticks([])
    mask_ax.set_yticks([])

    inside = cell["probability"][cell["mask"]]
    if inside.size:
        maskness_ax.hist(inside, bins=np.linspace(config.mask_thr, 1, 21), color=class_color(cell["label"]))
        maskness_ax.axvline(cell["maskness"], color="black", lw=1.5)
    maskness_ax.set_xlim(config.mask_thr, 1)
    maskness_ax.set_xlabel("probability of the mask's pixels", fontsize=8)
    name = class_names[cell["label"]]
    maskness_ax.set_title(f"maskness {cell['maskness']:.2f} (black line)\n"
                          f"{name}: {cell['score']:.2f} x {cell['maskness']:.2f} = {cell['final']:.2f}", fontsize=9)
    fig.tight_layout()
    return fig, cell


def cell_inspector(inspection: Inspection, class_names, *, level: int = 0, row: int = 0, col: int = 0):
    """An ipywidgets explorer over :func:`draw_cell`; its children are the level, row and column
    sliders, in that order. Row and column range over the chosen level's grid. After a change,
    ``w.result`` holds the shown :func:`cell_mask` dict."""
    import ipywidgets as widgets

    sizes = inspection.config.grid_sizes
    level_slider = widgets.IntSlider(level, 0, len(sizes) - 1, description="level")
    row_slider = widgets.IntSlider(row, 0, sizes[level] - 1, description="row")
    col_slider = widgets.IntSlider(col, 0, sizes[level] - 1, description="column")

    def fit_grid(change):  # a smaller grid clamps row and column (which redraws once more)
        row_slider.max = col_slider.max = sizes[change["new"]] - 1

    level_slider.observe(fit_grid, names="value")

    def show(level=level, row=row, col=col):
        s = sizes[level]
        fig, cell = draw_cell(inspection, level, min(row, s - 1), min(col, s - 1), class_names)
        plt.show()
        return cell

    return widgets.interactive(show, level=level_slider, row=row_slider, col=col_slider)
