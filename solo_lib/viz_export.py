"""Pictures of notebook 12 (deploy): what the exported graph holds, and an export's instances next
to ``predict``'s.

:func:`draw_export_pipeline` draws the steps of :func:`solo_lib.export.serving_function` in the
order the graph runs them (the same order as :func:`solo_lib.inference.predict`: resize and pad as
in ``preprocess``, the network, then steps 1-7 of :func:`solo_lib.inference.instances`), inside one
frame, with the formats that hold that whole graph beneath it. :func:`draw_export_comparison`
draws the instances of one image as ``predict`` and each exported format return them.
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from solo_lib.export import FORMATS, ONNX_OPSET
from solo_lib.viz import draw_predictions
from solo_lib.viz_arch import BOX_COLORS

# How the notebook and the figures name each format.
FORMAT_LABELS = {"saved_model": "SavedModel", "tflite": "LiteRT float32", "tflite_fp16": "LiteRT float16",
                 "onnx": f"ONNX opset {ONNX_OPSET}"}
# What runs each format, under its label in the picture.
FORMAT_RUNTIMES = {"saved_model": "TensorFlow, TF Serving", "tflite": "LiteRT Interpreter",
                   "tflite_fp16": "LiteRT, half the file", "onnx": "ONNX Runtime"}


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the exported graph.

    Attributes:
        key: a short unique id, used in the figure's gids (``"step:<key>"``).
        name: the step's name, the first (bold) line of its box.
        detail: the second line: what it does, with the configuration's values.
        notebook: the notebook that teaches it.
        part: the colour family (a key of :data:`solo_lib.viz_arch.BOX_COLORS`).
        in_graph: False for the image that goes in and the arrays that come out.
    """

    key: str
    name: str
    detail: str
    notebook: str
    part: str
    in_graph: bool = True


def export_steps(config=None) -> list[Step]:
    """The steps of the exported graph, in the order it runs them.

    Args:
        config: a ``SOLOConfig``; its image scale and thresholds are written into the steps (as
            the export builds them into the graph). None: the names of the settings instead.

    Returns:
        12 :class:`Step`: the input image, resize, pad, network, point NMS, threshold, dynamic
        convolution, small-mask filter, maskness, Matrix NMS, resize back, and the outputs.
    """
    if config is None:
        scale, score, mask, update, top = "image_scale", "score_thr", "mask_thr", "update_thr", "max_per_img"
    else:
        scale = "no resize" if config.image_scale is None else " x ".join(str(v) for v in config.image_scale)
        score, mask, update, top = (f"{v:g}" for v in (config.score_thr, config.mask_thr, config.update_thr,
                                                        config.max_per_img))
    return [
        Step("image", "image", "(H, W, 3) uint8", "any size", "input", in_graph=False),
        Step("resize", "resize", f"to {scale}", "04", "input"),
        Step("pad", "pad", "to the canvas", "04", "input"),
        Step("network", "network", "backbone, FPN, heads", "05, 06", "backbone"),
        Step("point_nms", "point NMS", "2 x 2 maxima", "10", "postprocess"),
        Step("threshold", "threshold", f"score > {score}", "10", "postprocess"),
        Step("dynamic_conv", "dynamic conv", "K candidate masks", "06, 10", "dynamic_conv"),
        Step("small_mask_filter", "small-mask filter", f"p > {mask}, area > stride", "10", "postprocess"),
        Step("maskness", "maskness", "score x mean p", "10", "postprocess"),
        Step("matrix_nms", "Matrix NMS", f">= {update}, top {top}", "10", "postprocess"),
        Step("resize_back", "resize back", "masks to (H, W)", "10", "postprocess"),
        Step("outputs", "outputs", "masks, labels, scores", "(K, H, W), (K,), (K,)", "input", in_graph=False),
    ]


def draw_export_pipeline(config=None, formats=FORMATS):
    """The exported graph as boxes in one frame, and the formats that hold all of it.

    The top row runs left to right (image, resize, pad, network, point NMS, threshold), the bottom
    row right to left (dynamic conv, small-mask filter, maskness, Matrix NMS, resize back,
    outputs), so the image enters and the outputs leave on the left. Every step between them sits
    inside the frame: every format in ``formats`` holds that whole graph, so a phone or a server
    runs none of it in Python.

    Args:
        config: a ``SOLOConfig`` whose settings are written in the boxes (see :func:`export_steps`).
        formats: some of :data:`solo_lib.export.FORMATS`, drawn as badges under the frame.

    Returns:
        A matplotlib Figure. Steps are ``FancyBboxPatch`` with gid ``"step:<key>"`` and texts
        ``"step:<key>:text<i>"``; arrows are ``FancyArrowPatch`` with gids ``"<key>-><next key>"``,
        in the order the graph runs; the frame is ``"graph"`` (title ``"graph:title"``); each format
        is a ``FancyBboxPatch`` ``"format:<name>"`` with texts ``"format:<name>:text<i>"``.

    Raises:
        ValueError: an unknown format.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    steps = export_steps(config)
    cols, w, h, dx = 6, 1.7, 0.9, 2.05
    y_top, y_bottom = 3.2, 1.85
    # Top row: steps 0-5 left to right; bottom row: steps 6-11 right to left.
    places = [(c * dx, y_top) for c in range(cols)] + [((cols - 1 - c) * dx, y_bottom) for c in range(cols)]
    fig, ax = plt.subplots(figsize=(12.5, 4.6))
    ax.set_xlim(-w / 2 - 0.15, (cols - 1) * dx + w / 2 + 0.15)
    ax.set_ylim(0.0, 4.25)
    ax.axis("off")
    for step, (x, y) in zip(steps, places):
        lit = step.in_graph
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor=BOX_COLORS[step.part], edgecolor="#555555" if lit else "#222222",
                                    linewidth=1.0 if lit else 1.6, gid=f"step:{step.key}", zorder=2))
        for i, (line, size, weight) in enumerate(((step.name, 10, "bold"), (step.detail, 8.5, "normal"),
                                                  (_notebook_text(step.notebook), 7.5, "normal"))):
            ax.text(x, y + 0.25 - i * 0.25, line, ha="center", va="center", fontsize=size, fontweight=weight,
                    color="#444444" if i == 2 else "black", gid=f"step:{step.key}:text{i}", zorder=3)
    for i in range(len(steps) - 1):
        (x0, y0), (x1, y1) = places[i], places[i + 1]
        if y0 == y1:  # along a row, edge to edge
            sign = 1 if x1 > x0 else -1
            start, end = (x0 + sign * w / 2, y0), (x1 - sign * w / 2, y1)
        else:  # down from the end of the top row to the start of the bottom one
            start, end = (x0, y0 - h / 2), (x1, y1 + h / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linewidth=1.1,
                                     color="#333333", shrinkA=0, shrinkB=0, gid=f"{steps[i].key}->{steps[i + 1].key}",
                                     zorder=1))
    inside = [p for s, p in zip(steps, places) if s.in_graph]
    x0 = min(x for x, _ in inside) - w / 2 - 0.12
    x1 = max(x for x, _ in inside) + w / 2 + 0.12
    y0, y1 = y_bottom - h / 2 - 0.12, y_top + h / 2 + 0.12
    ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0.0,rounding_size=0.12",
                                facecolor="none", edgecolor="#cc5500", linewidth=1.6, linestyle="--", gid="graph",
                                zorder=0))
    ax.text((x0 + x1) / 2, y1 + 0.08, "one graph: solo_lib.export.serving_function, the same steps as predict",
            ha="center", va="bottom", fontsize=10, color="#cc5500", style="italic", gid="graph:title")
    # The formats, under the frame.
    ax.text(x0, 0.62, "held whole\nby every format:", ha="left", va="center", fontsize=9, fontweight="bold",
            gid="formats:title")
    bw, gap = 1.95, 0.18
    for k, fmt in enumerate(formats):
        x = x0 + 1.45 + k * (bw + gap)
        ax.add_patch(FancyBboxPatch((x, 0.3), bw, 0.64, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor="#fff7ee", edgecolor="#cc5500", linewidth=1.0, gid=f"format:{fmt}"))
        lines = ((FORMAT_LABELS[fmt], 9.5, "bold"), (FORMAT_RUNTIMES[fmt], 8, "normal"))
        for i, (line, size, weight) in enumerate(lines):
            ax.text(x + bw / 2, 0.74 - i * 0.26, line, ha="center", va="center", fontsize=size, fontweight=weight,
                    gid=f"format:{fmt}:text{i}")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)
    return fig


def _notebook_text(notebook: str) -> str:
    return notebook if not notebook[:1].isdigit() else f"notebook {notebook}"


def draw_export_comparison(image, results: dict, class_names, score_thr: float = 0.3, *, size: float = 3.3):
    """One image's instances as ``predict`` and each exported format return them, side by side.

    Args:
        image: ``(H, W, 3)`` uint8, the image all of them segmented.
        results: ``{panel name: {"masks", "labels", "scores"}}``, in panel order (``predict``
            first, then the formats).
        class_names: names indexed by label.
        score_thr: draw instances with at least this score (the counts in the titles are of all).
        size: inches per panel.

    Returns:
        ``(fig, counts)``: the Figure (one Axes per result, titled ``"<name>"`` and
        ``"<K> instances, <D> drawn"``) and ``{name: (K, D)}``.
    """
    if not results:
        raise ValueError("results is empty: give at least predict's result")
    fig, axes = plt.subplots(1, len(results), figsize=(size * len(results), size + 0.5), squeeze=False)
    counts = {}
    for ax, (name, result) in zip(axes[0], results.items()):
        total = len(np.asarray(result["scores"]))
        drawn = draw_predictions(ax, image, result, class_names, score_thr)
        counts[name] = (total, len(drawn))
        ax.set_title(f"{name}\n{total} instances, {len(drawn)} drawn", fontsize=9.5)
    fig.suptitle(f"The same image through predict and each export (drawn: score >= {score_thr:g})", fontsize=10.5)
    fig.tight_layout()
    return fig, counts
