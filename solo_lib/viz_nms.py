"""Suppression you can see: Matrix NMS drawn step by step (notebook 10, SOLOv2 §3.3).

One module past ~300 lines, because it is one idea: the figures of notebook 10's Matrix NMS section
and the numpy decay table they draw, which is also the independent formulation that tests check
``solo_lib.nms.matrix_nms`` against.

``postprocess`` (:mod:`solo_lib.inference`) hides the candidates that Matrix NMS decays: a
duplicate keeps a lower score and is painted under the mask it repeats. These functions take the
candidates *before* Matrix NMS apart:

- :func:`nms_candidates`: steps 1-5 of post-processing (point NMS, score threshold, dynamic
  convolution, binarisation and small-mask filter, maskness), the masks Matrix NMS receives;
- :func:`decay_table`: the Matrix NMS decay written out in numpy, every intermediate kept (sorted
  scores, IoU matrix, compensation, ratios, decay), an independent formulation of
  :func:`solo_lib.nms.matrix_nms`;
- :func:`duplicate_groups`: candidates of one class that overlap (IoU above a threshold), grouped;
- figures: :func:`candidate_panels` (each candidate's outline in its own panel, one row per
  duplicate group, titled with its score before and after), :func:`decay_heatmap` (IoU and decay
  ratios with candidates labelled), :func:`score_bars` (score before and after, with the
  threshold), and :func:`sigma_view` / :func:`sigma_explorer` (a slider on sigma).

Candidates are named ``#r`` by their rank ``r`` in score order (0 = highest), as Matrix NMS sorts them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch, Rectangle

from solo_lib.viz_style import class_color

KEPT_TITLE = "black"  # title colour of a candidate whose decayed score passes the threshold
DROPPED_TITLE = "#7f7f7f"  # ... and of one that falls below it (grey: red is a class colour)
THRESHOLD_COLOR = "black"


def nms_candidates(outputs, config, *, index=0) -> dict:
    """The candidates that Matrix NMS receives: steps 1-5 of :func:`solo_lib.inference.postprocess`.

    Point NMS on each grid, the (cell, class) pairs above ``config.score_thr``, their masks by
    dynamic convolution at stride 4, binarised at ``config.mask_thr`` and filtered by size, and the
    maskness rescaling (SOLOv2 §3.3: score = category score x mean probability inside the mask).

    Args:
        outputs: the model's output dict (``category`` ``(B, M, C)``, ``kernel`` ``(B, M, E)``,
            ``mask_feature`` ``(B, Hc/4, Wc/4, E)``).
        config: the model's ``SOLOConfig``.
        index: which image of the batch.

    Returns:
        dict of numpy arrays, one row per candidate, sorted by ``scores`` (highest first, as Matrix
        NMS ranks them): ``masks`` ``(K, Hc/4, Wc/4)`` bool, ``probs`` ``(K, Hc/4, Wc/4)`` float32,
        ``labels`` ``(K,)`` int32, ``cells`` ``(K,)`` flat grid cells, ``category`` ``(K,)`` the
        category scores, ``maskness`` ``(K,)`` and ``scores`` ``(K,)`` = category x maskness.
    """
    import tensorflow as tf

    from solo_lib.inference import category_scores, cell_strides
    from solo_lib.model.dynamic import dynamic_conv, gather_kernels

    scores = category_scores(outputs["category"][index:index + 1], config.grid_sizes)[0].numpy()  # (M, C)
    cells, labels = np.nonzero(scores > config.score_thr)  # row-major, as tf.where in postprocess
    kernels = gather_kernels(outputs["kernel"][index:index + 1], cells[None].astype(np.int32))
    feature = outputs["mask_feature"][index:index + 1]
    probs = tf.sigmoid(tf.cast(dynamic_conv(feature, kernels)[0], tf.float32)).numpy()  # (K, h4, w4)
    masks = probs > config.mask_thr
    area = masks.reshape(len(masks), -1).sum(axis=1).astype(np.float32)
    big = area > cell_strides(config)[cells]
    category = scores[cells, labels]
    maskness = (probs * masks).reshape(len(masks), -1).sum(axis=1) / np.maximum(area, 1.0)
    order = np.argsort(-(category * maskness)[big], kind="stable")
    keep = np.flatnonzero(big)[order]
    return {"masks": masks[keep], "probs": probs[keep], "labels": labels[keep].astype(np.int32),
            "cells": cells[keep], "category": category[keep].astype(np.float32),
            "maskness": maskness[keep].astype(np.float32),
            "scores": (category[keep] * maskness[keep]).astype(np.float32)}


def iou_matrix(masks) -> np.ndarray:
    """``(N, N)`` IoU of every pair of binary masks ``(N, H, W)``, from one matrix product
    (intersection = M Mᵀ of the flattened masks); 0 where both masks are empty."""
    masks = np.asarray(masks)
    flat = masks.reshape(len(masks), int(np.prod(masks.shape[1:]))).astype(np.float64)
    inter = flat @ flat.T
    area = flat.sum(axis=1)
    union = area[:, None] + area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def decay_table(masks, labels, scores, *, kernel="gaussian", sigma=2.0) -> dict:
    """Matrix NMS written out in numpy, every intermediate kept (SOLOv2 §3.3).

    For candidates sorted by score and every pair (i ranked above j) of the same class::

        decay_j = min_i f(iou_ij) / f(comp_i),   comp_i = max_k iou_ki (k ranked above i)

    with ``f(iou) = exp(-sigma iou^2)`` (gaussian, the code's sigma convention) or ``1 - iou``
    (linear, denominator clamped as in :mod:`solo_lib.nms`). Unlike ``matrix_nms`` it drops
    nothing, so every candidate can be drawn with its score before and after.

    Args:
        masks: ``(N, H, W)`` binary masks.
        labels: ``(N,)`` class labels.
        scores: ``(N,)`` scores (any order).
        kernel: ``"gaussian"`` or ``"linear"``.
        sigma: gaussian decay strength.

    Returns:
        dict, everything in score order (rank r = row r): ``order`` ``(N,)`` input index of each
        rank; ``scores``, ``labels`` ``(N,)``; ``iou`` ``(N, N)`` IoU of all pairs; ``pairs``
        ``(N, N)`` bool, i above j and the same class; ``comp`` ``(N,)``; ``ratio`` ``(N, N)``
        f(iou_ij)/f(comp_i) on pairs, 1 elsewhere; ``decay`` ``(N,)``; ``decayed`` ``(N,)`` =
        scores x decay; ``suppressor`` ``(N,)`` the rank i that gives j its decay (-1 if none).
    """
    from solo_lib.nms import KERNELS, LINEAR_EPS

    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    scores = np.asarray(scores, np.float32)
    order = np.argsort(-scores, kind="stable")
    masks, labels, scores = np.asarray(masks)[order], np.asarray(labels)[order], scores[order]
    n = len(scores)
    iou = iou_matrix(masks)
    pairs = np.triu(np.ones((n, n), bool), k=1) & (labels[:, None] == labels[None, :])
    pair_iou = np.where(pairs, iou, 0.0)
    comp = pair_iou.max(axis=0) if n else np.zeros(0)
    if kernel == "gaussian":
        ratio = np.exp(-sigma * (pair_iou ** 2 - comp[:, None] ** 2))
    else:
        ratio = (1.0 - pair_iou) / np.maximum(1.0 - comp[:, None], LINEAR_EPS)
    ratio = np.where(pairs, ratio, 1.0)
    decay = ratio.min(axis=0) if n else np.zeros(0)
    suppressor = np.where(pairs.any(axis=0), ratio.argmin(axis=0), -1) if n else np.zeros(0, int)
    return {"order": order, "scores": scores, "labels": labels, "iou": iou, "pairs": pairs, "comp": comp,
            "ratio": ratio, "decay": decay, "decayed": (scores * decay).astype(np.float32),
            "suppressor": suppressor}


def duplicate_groups(masks, labels, *, iou_thr=0.5) -> list[list[int]]:
    """Candidates that repeat one object: connected groups of same-class masks with IoU > ``iou_thr``.

    Args:
        masks: ``(N, H, W)`` binary masks, in score order (as :func:`nms_candidates` returns them).
        labels: ``(N,)`` class labels.
        iou_thr: two masks of one class with a larger IoU are duplicates.

    Returns:
        The groups as lists of indices (ascending, i.e. best first), ordered by their best member;
        a candidate with no duplicate is a group of one.
    """
    labels = np.asarray(labels)
    linked = (iou_matrix(masks) > iou_thr) & (labels[:, None] == labels[None, :])
    group = list(range(len(labels)))  # union-find: each index points towards its group's smallest index

    def root(i):
        while group[i] != i:
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(linked, k=1))):
        a, b = root(i), root(j)
        group[max(a, b)] = min(a, b)
    groups = {}
    for i in range(len(labels)):
        groups.setdefault(root(i), []).append(i)
    return [groups[k] for k in sorted(groups)]


def duplicate_pairs(masks, labels, *, iou_thr=0.5) -> int:
    """How many pairs of same-class masks overlap with IoU > ``iou_thr`` (each pair counted once)."""
    labels = np.asarray(labels)
    linked = (iou_matrix(masks) > iou_thr) & (labels[:, None] == labels[None, :])
    return int(np.triu(linked, k=1).sum())


def _upsample(mask, stride):
    """A stride-``stride`` mask on the canvas's pixel grid (nearest), for outlines on the image."""
    return np.asarray(mask, bool).repeat(stride, axis=0).repeat(stride, axis=1)


def _outline(ax, mask, stride, color, **style):
    if np.asarray(mask).any():
        ax.contour(_upsample(mask, stride), levels=[0.5], colors=[color], **style)


def candidate_panels(canvas, candidates, table, class_names, *, groups=None, threshold=0.05, stride=4,
                     max_groups=6, max_per_group=4, panel=1.9):
    """Each candidate's outline in a panel of its own: one row per duplicate group, best first.

    A panel shows the image around the group, the candidate's outline in its class colour (solid)
    and, from the second member on, the group's best mask as a dashed white outline, so the overlap
    is visible. Its title is ``#rank class``, ``score -> decayed score`` and, for a duplicate, its
    IoU with the best member; titles of candidates whose decayed score falls below ``threshold``
    are red.

    Args:
        canvas: ``(Hc, Wc, 3)`` uint8, the model input the candidates were computed on.
        candidates: :func:`nms_candidates`' dict (masks at stride ``stride``, score order).
        table: :func:`decay_table` of those candidates (same order: ``table["order"]`` is the
            identity when the candidates come sorted).
        class_names: names indexed by label.
        groups: the rows to draw, lists of candidate indices; default the groups of
            :func:`duplicate_groups` with more than one member.
        threshold: the decayed score a candidate needs to stay (``update_thr``, or a display threshold).
        stride: mask stride relative to ``canvas``.
        max_groups: at most this many rows.
        max_per_group: at most this many panels per row.
        panel: size of one panel in inches.

    Returns:
        ``(fig, shown)``: the figure and the list of rows drawn (candidate indices per row).
    """
    masks = candidates["masks"]
    if groups is None:
        groups = [g for g in duplicate_groups(masks, candidates["labels"]) if len(g) > 1]
    shown = [list(g[:max_per_group]) for g in groups[:max_groups]]
    rows, cols = max(len(shown), 1), max([len(g) for g in shown] + [1])
    fig, axes = plt.subplots(rows, cols, figsize=(panel * cols, (panel + 0.45) * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    height, width = np.shape(canvas)[:2]
    for row, group in enumerate(shown):
        union = np.any(masks[group], axis=0)
        ys, xs = np.nonzero(union)
        margin = 6
        y0, y1 = max(ys.min() * stride - margin, 0), min((ys.max() + 1) * stride + margin, height)
        x0, x1 = max(xs.min() * stride - margin, 0), min((xs.max() + 1) * stride + margin, width)
        side = max(y1 - y0, x1 - x0)  # a square window: panels of one row at one scale
        # Centred on the group, shifted to stay inside the canvas where it fits.
        cy = min(max((y0 + y1) / 2, side / 2), max(height - side / 2, side / 2))
        cx = min(max((x0 + x1) / 2, side / 2), max(width - side / 2, side / 2))
        best = group[0]
        for col, k in enumerate(group):
            ax = axes[row, col]
            ax.set_axis_on()
            ax.imshow(canvas)
            if col > 0:
                _outline(ax, masks[best], stride, "white", linewidths=1.2, linestyles="dashed")
            _outline(ax, masks[k], stride, class_color(candidates["labels"][k]), linewidths=2.0)
            ax.set_xlim(cx - side / 2, cx + side / 2)
            ax.set_ylim(cy + side / 2, cy - side / 2)
            ax.set_xticks([])
            ax.set_yticks([])
            before, after = float(table["scores"][k]), float(table["decayed"][k])
            mark = "" if after >= threshold else "✗ "
            title = f"{mark}#{k} {class_names[int(candidates['labels'][k])]}\n{before:.2f} → {after:.2f}"
            if col > 0:
                title += f"  IoU {table['iou'][best, k]:.2f}"
            ax.set_title(title, fontsize=8, color=KEPT_TITLE if after >= threshold else DROPPED_TITLE)
    fig.suptitle(f"score before → after Matrix NMS; ✗ grey: below {threshold:g}, dropped; "
                 "dashed white: the best of the row", fontsize=9)
    fig.tight_layout()
    return fig, shown


def decay_heatmap(table, *, ranks=None, class_names=None, annotate=True):
    """The IoU of each pair and its decay ratio f(iou_ij)/f(comp_i) as two heatmaps, candidates labelled.

    Left: IoU of every pair (i above j, same class); other cells grey. Right: the ratios; the
    smallest ratio of each column (which mask decays j, and by how much) is boxed, and the
    column's decay factor is written under it.

    Args:
        table: :func:`decay_table`'s dict.
        ranks: the candidate ranks to show (default all), in order.
        class_names: names indexed by label (tick labels ``#r class``); default ``#r``.
        annotate: write the values in the cells.

    Returns:
        ``(fig, boxed)``: the figure and the ``(i, j)`` ranks of the boxed cells.
    """
    ranks = np.arange(len(table["scores"])) if ranks is None else np.asarray(ranks)
    n = len(ranks)
    pairs = table["pairs"][np.ix_(ranks, ranks)]
    iou = np.where(pairs, table["iou"][np.ix_(ranks, ranks)], np.nan)
    ratio = np.where(pairs, table["ratio"][np.ix_(ranks, ranks)], np.nan)
    names = [f"#{r}" + (f" {class_names[int(table['labels'][r])]}" if class_names else "") for r in ranks]
    size = 0.42 * n + 1.6
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 0.6, size + 0.5))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")  # grey: not a pair
    boxed = []
    for ax, values, title, low, high in ((axes[0], iou, "IoU of i with j (same class, i above j)", 0.0, 1.0),
                                         (axes[1], ratio, "f(iou_ij) / f(comp_i); boxed: the min", 0.0, 1.0)):
        ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=low, vmax=high)
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
        for tick, r in zip(ax.get_xticklabels(), ranks):
            tick.set_color(class_color(table["labels"][r]))
        for tick, r in zip(ax.get_yticklabels(), ranks):
            tick.set_color(class_color(table["labels"][r]))
        ax.set_xlabel("j (decayed)", fontsize=8)
        ax.set_ylabel("i (decays j)", fontsize=8)
        ax.set_title(title, fontsize=9)
        if annotate:
            for i, j in zip(*np.nonzero(np.isfinite(values))):
                v = values[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
    for j in range(n):
        column = ratio[:, j]
        if np.isfinite(column).any():
            i = int(np.nanargmin(column))
            boxed.append((int(ranks[i]), int(ranks[j])))
            axes[1].add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=2))
        axes[1].text(j, n - 0.3, f"{table['decay'][ranks[j]]:.2f}", ha="center", va="top", fontsize=6,
                     rotation=90, color="black")
    axes[1].set_ylim(n + 0.9, -0.5)
    axes[1].text(-0.7, n + 0.3, "decay", ha="right", va="center", fontsize=7, color="black")
    fig.tight_layout()
    return fig, boxed


def score_bars(ax, table, *, threshold=0.05, ranks=None, class_names=None, title=None):
    """Each candidate's score before (pale) and after (solid) Matrix NMS, with the threshold line.

    Args:
        ax: a matplotlib Axes.
        table: :func:`decay_table`'s dict.
        threshold: horizontal line; candidates whose decayed score is below it are hatched.
        ranks: the candidate ranks to show (default all).
        class_names: names for the legend, indexed by label.
        title: optional title; default says how many of how many pass.

    Returns:
        ``(K,)`` bool: which of the shown candidates have a decayed score >= ``threshold``.
    """
    ranks = np.arange(len(table["scores"])) if ranks is None else np.asarray(ranks)
    before, after = table["scores"][ranks], table["decayed"][ranks]
    colors = [class_color(table["labels"][r]) for r in ranks]
    kept = after >= threshold
    x = np.arange(len(ranks))
    ax.bar(x, before, color=colors, alpha=0.25, width=0.8)
    ax.bar(x, after, color=colors, width=0.8, hatch=None)
    for xi, keep in zip(x, kept):
        if not keep:
            ax.bar(xi, after[xi], color="none", edgecolor="white", hatch="///", width=0.8, linewidth=0)
    ax.axhline(threshold, color=THRESHOLD_COLOR, linestyle="--", linewidth=1.2)
    ax.text(len(ranks) - 0.5, threshold, f"threshold {threshold:g}", color=THRESHOLD_COLOR, va="bottom", ha="right",
            fontsize=8)
    ax.set_xticks(x, [f"#{r}" for r in ranks], rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(ranks) - 0.4)
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("score", fontsize=8)
    if class_names:
        present = sorted({int(table["labels"][r]) for r in ranks})
        handles = [Patch(color=class_color(c), label=class_names[c]) for c in present]
        handles += [Patch(color="grey", alpha=0.25, label="before"), Patch(color="grey", label="after")]
        ax.legend(handles=handles, fontsize=7, ncol=len(handles), loc="upper right", frameon=False)
    ax.set_title(title or f"{int(kept.sum())} of {len(ranks)} candidates keep a score >= {threshold:g}", fontsize=9)
    return kept


def sigma_view(canvas, candidates, class_names, *, sigma=2.0, threshold=0.05, kernel="gaussian", stride=4):
    """Callback of notebook 10's sigma explorer: scores before and after the decay, and what survives.

    Left: :func:`score_bars` of every candidate with the threshold. Right: the image with the
    outlines of the candidates whose decayed score passes ``threshold``; a survivor that duplicates
    a better survivor (same class, IoU > 0.5) is drawn dashed, so duplicates that survive are seen.

    Args:
        canvas: ``(Hc, Wc, 3)`` uint8 model input.
        candidates: :func:`nms_candidates`' dict.
        class_names: names indexed by label.
        sigma: gaussian decay strength (code convention, 2.0 = the paper's 0.5).
        threshold: the decayed score needed to stay.
        kernel: ``"gaussian"`` or ``"linear"``.
        stride: mask stride relative to ``canvas``.

    Returns:
        ``(fig, result)``: ``result`` has ``table`` (:func:`decay_table`), ``kept`` (ranks that
        pass), ``duplicates_kept`` (those among them that duplicate a better survivor).
    """
    table = decay_table(candidates["masks"], candidates["labels"], candidates["scores"], kernel=kernel, sigma=sigma)
    masks = candidates["masks"][table["order"]]
    fig, (ax_bars, ax_image) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1.5, 1]})
    score_bars(ax_bars, table, threshold=threshold, class_names=class_names)
    kept = np.flatnonzero(table["decayed"] >= threshold)
    linked = (table["iou"] > 0.5) & (table["labels"][:, None] == table["labels"][None, :])
    duplicates = [int(j) for n, j in enumerate(kept) if linked[kept[:n], j].any()]
    ax_image.imshow(canvas)
    placed = []
    for j in kept:
        style = "dashed" if j in duplicates else "solid"
        color = class_color(table["labels"][j])
        _outline(ax_image, masks[j], stride, color, linewidths=1.5, linestyles=style)
        ys, xs = np.nonzero(masks[j])
        if len(ys):  # its rank, as under its bar, at the mask's top-left; side by side where labels meet
            x, y = xs.min() * stride, ys.min() * stride - 2
            x += 16 * sum(abs(x - u) < 16 and abs(y - v) < 10 for u, v in placed)
            placed.append((x, y))
            ax_image.text(x, y, f"#{j}", color="white", fontsize=7, bbox={"facecolor": color, "pad": 1, "lw": 0})
    ax_image.set_xticks([])
    ax_image.set_yticks([])
    name = f"sigma {sigma:g}" if kernel == "gaussian" else "linear"
    ax_image.set_title(f"{name}: {len(kept)} masks kept, {len(duplicates)} of them duplicates (dashed)", fontsize=9)
    fig.tight_layout()
    return fig, {"table": table, "kept": kept, "duplicates_kept": duplicates}


def sigma_explorer(canvas, candidates, class_names, *, sigma=2.0, threshold=0.05):
    """An ipywidgets explorer over :func:`sigma_view`: the candidates are computed once, only the
    decay is repeated. Children, in order: the sigma slider, the threshold slider. After
    ``w.children[i].value = ...`` the widget re-runs and ``w.result`` holds the view's ``result``."""
    import ipywidgets as widgets

    def show(sigma=sigma, threshold=threshold):
        fig, result = sigma_view(canvas, candidates, class_names, sigma=sigma, threshold=threshold)
        plt.show()
        return result

    return widgets.interactive(
        show,
        sigma=widgets.FloatSlider(sigma, min=0.0, max=10.0, step=0.5, description="sigma"),
        threshold=widgets.FloatSlider(threshold, min=0.0, max=0.5, step=0.05, description="keep >="),
    )
