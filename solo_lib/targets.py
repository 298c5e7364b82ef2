"""SOLOv2 training targets: which grid cells own which instance (notebook 04).

One module past ~300 lines, because it is one idea: the grid assignment, the mask targets and their
batching are one computation, from an image's masks to the tensors the losses read, taught whole in
notebook 04.

SOLO divides the input canvas into an S x S grid at every pyramid level (SOLO §3.1, SOLOv2 §3.1).
A cell ``(i, j)`` (row i, column j) is *positive* for an instance when the instance's size falls in
the level's scale range and the cell lies in the instance's *centre region*: the centre of mass
+/- ``0.5 * pos_scale * (w, h)`` (the box ``(cx, cy, eps * w, eps * h)`` with eps = 0.2 of SOLO
§3.3.1, "Label Assignment"), clipped to the centre cell and its 8 neighbours. A positive cell
predicts the instance's class (category branch) and a kernel that must produce the instance's
mask (mask branch).

The rules follow the authors' code, ``solov2_target_single`` in WXinlong/SOLO
(``mmdet/models/anchor_heads/solov2_head.py``; AdelaiDet's ``SOLOv2.get_ground_truth_single`` is
the same), except that background is class ``C`` here (labels are ``0..C-1``, see
``solo_lib.data.coco_file.CategoryMap``), boxes are the masks' tight boxes, and crowd regions are skipped.

Everything is numpy in, numpy out, for one image; the training pipeline calls
:func:`image_targets` per image and stores the compact result (never one channel per cell).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from solo_lib.config import SOLOConfig


class LevelTargets(NamedTuple):
    """Targets of one pyramid level with an S x S grid.

    Attributes:
        category: ``(S, S)`` int32 class of each cell; ``C`` (``num_classes``) is background.
        cells: ``(K,)`` int32 flat row-major cell index ``i * S + j`` of each positive pair.
        instances: ``(K,)`` int32 index (into the image's N instances) of each positive pair.
            Pairs are ordered by instance, then by cell. Two instances may share a cell: both
            keep their pair, and the cell's category is the later instance's label.
    """

    category: np.ndarray
    cells: np.ndarray
    instances: np.ndarray


def _binary_uint8(masks) -> np.ndarray:
    """Masks as uint8 0/1: a bool array is viewed as it is (no copy), anything else is compared with 0."""
    masks = np.asarray(masks)
    return masks.view(np.uint8) if masks.dtype == bool else (masks != 0).view(np.uint8)


def instance_geometry(masks: np.ndarray) -> dict[str, np.ndarray]:
    """Tight box size, centre of mass and area of every mask, from row and column projections.

    Args:
        masks: ``(N, H, W)`` binary masks.

    Returns:
        A dict of ``(N,)`` arrays: ``area`` (int64 pixel count), ``w`` and ``h`` (int64 tight box
        size, ``max_x - min_x + 1``; 0 for an empty mask), ``cx`` and ``cy`` (float64 centre of
        mass, the mean 0-based column and row of the mask's pixels; 0 for an empty mask).
    """
    m = _binary_uint8(masks)  # (N, H, W) 0/1
    n, height, width = m.shape
    # Per-row and per-column pixel counts. A uint16 accumulator holds any side up to 65535 and
    # sums about three times faster than int64 (the counts are then widened, they are small).
    acc = np.uint16 if max(height, width) < 2 ** 16 else np.int64
    rows = m.sum(axis=2, dtype=acc).astype(np.int64)  # (N, H) pixels per row
    cols = m.sum(axis=1, dtype=acc).astype(np.int64)  # (N, W) pixels per column
    area = rows.sum(axis=1)  # (N,)
    safe = np.maximum(area, 1)
    # Centre of mass: scipy.ndimage.center_of_mass in the reference code, here exact integer
    # moments divided once.
    cy = (rows @ np.arange(height, dtype=np.int64)) / safe
    cx = (cols @ np.arange(width, dtype=np.int64)) / safe
    h = _extent(rows > 0)
    w = _extent(cols > 0)
    return {"area": area, "w": w, "h": h, "cx": cx, "cy": cy}


def _extent(occupied: np.ndarray) -> np.ndarray:
    """``(N, L)`` bool occupancy -> ``(N,)`` ``last - first + 1`` of the True run (0 if none)."""
    length = occupied.shape[1]
    first = occupied.argmax(axis=1)
    last = length - 1 - occupied[:, ::-1].argmax(axis=1)
    return np.where(occupied.any(axis=1), last - first + 1, 0).astype(np.int64)


def _cell(v: np.ndarray, size: int, grid: int) -> np.ndarray:
    """Pixel coordinate -> grid cell: ``clip(floor(v / size * S), 0, S - 1)``.

    The reference code writes ``int((v / size) // (1 / S))``; both agree except possibly for a
    point within float round-off of a cell border.
    """
    return np.clip(np.floor(v / size * grid), 0, grid - 1).astype(np.int64)


def assign_grid_cells(masks: np.ndarray, labels: np.ndarray, config: SOLOConfig,
                      iscrowd: np.ndarray | None = None) -> list[LevelTargets]:
    """Assigns each instance to grid cells at every level whose scale range it fits.

    Args:
        masks: ``(N, H, W)`` bool or uint8 instance masks on the input canvas.
        labels: ``(N,)`` ints in ``[0, C)``, C = ``config.num_classes``.
        config: gives ``grid_sizes``, ``scale_ranges``, ``pos_scale`` and ``num_classes``.
        iscrowd: optional ``(N,)`` bool; crowd instances never become positives.

    Returns:
        One :class:`LevelTargets` per level, in ``config.grid_sizes`` order.

    Raises:
        ValueError: masks not 3-D, labels or iscrowd of the wrong length, or a label outside
            ``[0, C)``.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    n, height, width = masks.shape
    labels = np.asarray(labels, np.int64).reshape(-1)
    crowd = np.zeros(n, bool) if iscrowd is None else np.asarray(iscrowd, bool).reshape(-1)
    if labels.shape != (n,) or crowd.shape != (n,):
        raise ValueError(f"{n} masks need {n} labels and iscrowd flags, got {labels.size} and {crowd.size}")
    num_classes = config.num_classes
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}) (contiguous labels, see CategoryMap), "
                         f"got {sorted(set(labels.tolist()))}")

    geo = instance_geometry(masks)
    scale = np.sqrt(geo["w"] * geo["h"])  # (N,) sqrt of the tight box area
    usable = (geo["area"] > 0) & ~crowd
    half_w = 0.5 * config.pos_scale * geo["w"]  # SOLO §3.3.1: centre region eps * (w, h)
    half_h = 0.5 * config.pos_scale * geo["h"]

    levels = []
    for grid, (lo, hi) in zip(config.grid_sizes, config.scale_ranges):
        sel = np.flatnonzero(usable & (lo <= scale) & (scale <= hi))  # (M,) ascending instance order
        cy, cx = geo["cy"][sel], geo["cx"][sel]
        ci, cj = _cell(cy, height, grid), _cell(cx, width, grid)  # centre cell (row, column)
        # Centre region in cells, kept within one cell of the centre cell: at most 3 x 3.
        top = np.maximum(_cell(cy - half_h[sel], height, grid), ci - 1)
        bottom = np.minimum(_cell(cy + half_h[sel], height, grid), ci + 1)
        left = np.maximum(_cell(cx - half_w[sel], width, grid), cj - 1)
        right = np.minimum(_cell(cx + half_w[sel], width, grid), cj + 1)
        steps = np.arange(3)
        rows = top[:, None] + steps  # (M, 3)
        cols = left[:, None] + steps  # (M, 3)
        inside = (rows <= bottom[:, None])[:, :, None] & (cols <= right[:, None])[:, None, :]  # (M, 3, 3)
        flat = rows[:, :, None] * grid + cols[:, None, :]  # (M, 3, 3) row-major cell index
        # Boolean indexing walks (M, 3, 3) in C order: by instance, then row, then column.
        cells = flat[inside].astype(np.int32)
        instances = np.broadcast_to(sel[:, None, None], inside.shape)[inside].astype(np.int32)
        # Instances are written in order, so a shared cell takes the latest instance's class.
        # np.maximum.at makes that explicit (fancy assignment with repeated indices has no
        # guaranteed winner).
        owner = np.full(grid * grid, -1, np.int64)
        np.maximum.at(owner, cells, instances)
        category = np.full(grid * grid, num_classes, np.int32)
        hit = owner >= 0
        category[hit] = labels[owner[hit]]
        levels.append(LevelTargets(category.reshape(grid, grid), cells, instances))
    return levels


def level_offsets(config: SOLOConfig) -> tuple[int, ...]:
    """Start of each level in the flat ``(sum S^2,)`` cell layout: ``(0, S0^2, S0^2 + S1^2, ...)``."""
    starts, total = [], 0
    for grid in config.grid_sizes:
        starts.append(total)
        total += grid * grid
    return tuple(starts)


def mask_targets(masks: np.ndarray, stride: int) -> np.ndarray:
    """Instance masks at the mask feature's resolution (SOLOv2 §3.2.2: 1/4 of the input).

    Bilinear resize without antialiasing and with half-pixel centres (``tf.image.resize``'s
    TF2 default), then ``>= 0.5``; the reference code rescales with OpenCV's bilinear the same way.

    Args:
        masks: ``(N, H, W)`` binary masks.
        stride: downsampling factor (``config.mask_stride``).

    Returns:
        ``(N, H // stride, W // stride)`` uint8 in {0, 1}.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3 or int(stride) < 1:
        raise ValueError(f"masks must be (N, H, W) and stride >= 1, got shape {masks.shape} and stride {stride}")
    n, height, width = masks.shape
    s = int(stride)
    out_h, out_w = height // s, width // s
    if n == 0 or out_h == 0 or out_w == 0:
        return np.zeros((n, out_h, out_w), np.uint8)
    binary = _binary_uint8(masks)  # (N, H, W) 0/1
    if height % s == 0 and width % s == 0:
        # The same numbers without the resize. With half-pixel centres, output pixel i samples input
        # position s * i + (s - 1) / 2: for odd s exactly pixel s * i + (s - 1) // 2; for even s
        # half-way between pixels s * i + s / 2 - 1 and s * i + s / 2, in both directions, so the
        # bilinear value is the mean of that 2 x 2 block and ">= 0.5" means "at least 2 of 4 set".
        # tests/test_targets.py holds this against tf.image.resize.
        if s % 2:
            return np.ascontiguousarray(binary[:, (s - 1) // 2::s, (s - 1) // 2::s])
        a, b = s // 2 - 1, s // 2
        count = (binary[:, a::s, a::s] + binary[:, a::s, b::s]) + (binary[:, b::s, a::s] + binary[:, b::s, b::s])
        return (count >= 2).astype(np.uint8)
    return _resize_masks_tf(binary, out_h, out_w)


def _resize_masks_tf(binary: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """``tf.image.resize`` (bilinear, half-pixel centres, no antialias) of 0/1 masks, ``>= 0.5``."""
    import tensorflow as tf  # lazy: assign_grid_cells and the widgets need numpy only

    binary = binary[..., None]  # (N, H, W, 1); uint8 in, float32 out
    resized = tf.image.resize(binary, (out_h, out_w), method="bilinear", antialias=False)
    return (resized.numpy()[..., 0] >= 0.5).astype(np.uint8)


def round_trip_iou(masks: np.ndarray, stride: int = 4) -> np.ndarray:
    """The best IoU a stride-``stride`` mask can reach: each mask goes to its training target
    (:func:`mask_targets`) and back to full size the way inference brings predictions back
    (bilinear x ``stride`` with half-pixel centres, ``> 0.5``; ``solo_lib.inference.postprocess``),
    and is compared with the original. A model that reproduced its targets exactly would score
    this. Thin parts and objects a few pixels across lose the most (notebook 08).

    Args:
        masks: ``(N, H, W)`` binary masks on an image of any size (padded to a multiple of
            ``stride`` at the bottom and right, as the canvas is).
        stride: the target's stride (``config.mask_stride``).

    Returns:
        ``(N,)`` float64 IoU per mask (0 for an empty mask).
    """
    import tensorflow as tf  # lazy, as in _resize_masks_tf

    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    n, height, width = masks.shape
    canvas_h, canvas_w = -(-height // stride) * stride, -(-width // stride) * stride
    padded = np.zeros((n, canvas_h, canvas_w), np.uint8)
    padded[:, :height, :width] = masks
    small = mask_targets(padded, stride).astype(np.float32)[..., None]  # (N, h, w, 1)
    back = tf.image.resize(small, (canvas_h, canvas_w), method="bilinear").numpy()[..., 0] > 0.5
    back = back[:, :height, :width]
    inter = (back & masks).sum(axis=(1, 2))
    union = (back | masks).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def image_targets(masks: np.ndarray, labels: np.ndarray, config: SOLOConfig,
                  iscrowd: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Everything the training pipeline stores for one image, in a compact flat layout.

    Args:
        masks: ``(N, H, W)`` instance masks on the input canvas.
        labels: ``(N,)`` ints in ``[0, C)``.
        config: the model configuration.
        iscrowd: optional ``(N,)`` bool.

    Returns:
        A dict with ``category`` ``(sum S^2,)`` int32 (level maps flattened and concatenated,
        see :func:`level_offsets`), ``pos_cells`` ``(K,)`` int32 global cell indices ordered by
        level, then instance, then cell, ``pos_instances`` ``(K,)`` int32 and ``masks``
        ``(N, H // s, W // s)`` uint8 with s = ``config.mask_stride``.
    """
    levels = assign_grid_cells(masks, labels, config, iscrowd)
    offsets = level_offsets(config)
    return {
        "category": np.concatenate([lv.category.reshape(-1) for lv in levels]),
        "pos_cells": np.concatenate([lv.cells + start for lv, start in zip(levels, offsets)]).astype(np.int32),
        "pos_instances": np.concatenate([lv.instances for lv in levels]).astype(np.int32),
        "masks": mask_targets(masks, config.mask_stride),
    }


def collate_targets(per_image: list[dict]) -> dict:
    """Pads the targets of several images (all on the same canvas) into one batch.

    Positive pairs and instance masks vary in number per image; they are padded to the batch
    maximum, and ``pos_valid`` marks the real pairs so the losses skip the padding.

    Args:
        per_image: ``image_targets`` dicts, one per image.

    Returns:
        ``category`` ``(B, M)`` int32, ``pos_cells`` / ``pos_instances`` ``(B, K)`` int32 (0 on
        padding), ``pos_valid`` ``(B, K)`` bool, ``masks`` ``(B, N, h, w)`` uint8 (zeros on padding).
    """
    batch = len(per_image)
    k = max(1, max(len(t["pos_cells"]) for t in per_image))
    n = max(1, max(len(t["masks"]) for t in per_image))
    h, w = per_image[0]["masks"].shape[1:]
    out = {
        "category": np.stack([t["category"] for t in per_image]).astype(np.int32),
        "pos_cells": np.zeros((batch, k), np.int32),
        "pos_instances": np.zeros((batch, k), np.int32),
        "pos_valid": np.zeros((batch, k), bool),
        "masks": np.zeros((batch, n, h, w), np.uint8),
    }
    for b, t in enumerate(per_image):
        count = len(t["pos_cells"])
        out["pos_cells"][b, :count] = t["pos_cells"]
        out["pos_instances"][b, :count] = t["pos_instances"]
        out["pos_valid"][b, :count] = True
        out["masks"][b, : len(t["masks"])] = t["masks"]
    return out
