"""Pictures of notebook 09's "Beyond one laptop": what a TFRecord shard holds (a mask as COCO run
lengths, :func:`mask_runs_plot`), which images each worker trains on under the two ways of sharing
shards, read through the real input pipeline (:func:`file_policy_ids`, :func:`data_policy_ids`,
:func:`shard_policies_plot`), and how far gradients computed by accumulation or by naive averaging
lie from the batch's one-pass gradients (:func:`gradient_differences_plot`).

``tests/test_viz_scale.py`` checks what each figure draws against the numbers it was given, and the
helpers against independent formulations (a pixel-by-pixel run count, ``tf.distribute``'s own rewrite).
"""

from __future__ import annotations

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from matplotlib.colors import to_rgb
from matplotlib.patches import FancyArrowPatch, Rectangle

from solo_lib import distributed
from solo_lib.data import pipeline

# Worker i's colour, in every panel of this notebook's figures.
WORKER_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
SHARED = "#d9d9d9"  # a shard every worker reads
# A run's colour by (pixel value, run pair parity): neighbouring runs of one value alternate shades.
RUN_COLORS = {(0, 0): "#f2f2f2", (0, 1): "#bdbdbd", (1, 0): "#08519c", (1, 1): "#6baed6"}
MODEL_PARTS = ("backbone", "fpn", "head", "mask_feature")


def run_index_map(runs, height: int, width: int) -> np.ndarray:
    """``(H, W)`` int: the index of the run each pixel lies in, runs laid column by column.

    Run ``k`` holds 1s exactly when ``k`` is odd (COCO's RLE starts with a run of 0s, possibly empty).

    Raises:
        ValueError: the runs do not add up to ``height * width``.
    """
    runs = np.asarray(runs, np.int64)
    if runs.sum() != height * width:
        raise ValueError(f"the runs add up to {int(runs.sum())} pixels, not {height} x {width} = "
                         f"{height * width}")
    return np.repeat(np.arange(runs.size), runs).reshape(width, height).T  # column-major, as COCO's RLE


def mask_runs_plot(runs, height: int, width: int, *, margin: int = 3,
                   title: str = "One instance's mask as runs"):
    """A mask's pixels coloured by run (left, zoomed on the instance) next to the run lengths (right).

    Args:
        runs: one instance's uncompressed COCO run lengths (its ``num_runs`` of ``instances/runs``).
        height, width: the image size.
        margin: pixels shown around the instance's bounding box.

    Returns:
        The figure: ``axes[0]`` an RGB image coloured by run (:data:`RUN_COLORS`), limited to the
        instance's box plus ``margin``; ``axes[1]`` one bar per run (its length, log scale), same colours.
    """
    runs = np.asarray(runs, np.int64)
    index = run_index_map(runs, height, width)
    table = np.array([to_rgb(RUN_COLORS[key]) for key in ((0, 0), (0, 1), (1, 0), (1, 1))])
    rgb = table[2 * (index % 2) + index // 2 % 2]
    ys, xs = np.nonzero(index % 2)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.6]})
    left.imshow(rgb, interpolation="nearest")
    if xs.size:
        left.set_xlim(max(xs.min() - margin, 0) - 0.5, min(xs.max() + margin, width - 1) + 0.5)
        left.set_ylim(min(ys.max() + margin, height - 1) + 0.5, max(ys.min() - margin, 0) - 0.5)
    left.set(xlabel="column x", ylabel="row y")
    left.set_title("pixels by run: down each column, then the next", fontsize=10)
    colors = [RUN_COLORS[(k % 2, k // 2 % 2)] for k in range(runs.size)]
    right.bar(np.arange(runs.size), runs, width=0.9, color=colors, edgecolor="#555555", linewidth=0.3)
    right.set(yscale="log", xlabel=f"run k ({runs.size} runs: even k = 0s, odd k = 1s)",
              ylabel="run length (pixels)")
    right.set_title(f"the record stores these {runs.size} numbers, {height * width} pixels in all",
                    fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return fig



def shard_image_ids(sharded) -> list[list[int]]:
    """The image ids each shard file of a ``ShardedDataset`` holds, in record order (no image is decoded)."""
    feature = {"image/id": tf.io.FixedLenFeature([], tf.int64)}
    return [[int(tf.io.parse_single_example(record, feature)["image/id"])
             for record in tf.data.TFRecordDataset(str(f))] for f in sharded.files]


def file_policy_ids(sharded, num_workers: int) -> list[list[int]]:
    """Per worker ``i``, the image ids ``ShardedDataset.source(InputContext(n, i))`` reads (shards
    ``i, i + n, ...``), one pass, in reading order."""
    contexts = [tf.distribute.InputContext(num_workers, i, num_replicas_in_sync=num_workers)
                for i in range(num_workers)]
    return [[int(s["image_id"]) for s in sharded.source(context)] for context in contexts]


def _painted(sample):
    """The sample with every pixel set to its image id (base 256 over R, G, B): the pipeline's
    resizing, flipping and padding keep a constant image constant, so pixel (0, 0) of a batch
    image names the image it came from. Masks, labels and so targets are unchanged."""
    image_id = sample["image_id"]
    rgb = tf.cast(tf.stack([image_id % 256, image_id // 256 % 256, image_id // 65536 % 256]), tf.uint8)
    return {**sample, "image": tf.broadcast_to(rgb, tf.shape(sample["image"]))}


def _ids(images) -> list[int]:
    pixel = np.asarray(images)[:, 0, 0].astype(np.int64)
    return (pixel[:, 0] + 256 * pixel[:, 1] + 65536 * pixel[:, 2]).tolist()


def data_policy_ids(sharded, config, *, num_workers: int, batch_size: int, steps: int,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Which images each worker trains on at each step under ``train --multi-worker``'s data policy.

    Each worker builds ``train``'s pipeline on every shard, seeded as ``train`` seeds it (so all build
    the same global batches) and marked for ``DATA`` sharding (``distributed.shard_by_data``);
    ``tf.distribute`` cuts each global batch into per-replica batches and worker ``i`` keeps the
    ``i``-th (one replica per worker; the ``rebatch`` and data shard of its ``input_lib.py``).
    Images carry their id in their pixels (:func:`_painted`).

    Returns:
        ``(global_batches (steps, B), parts (num_workers, steps, B / num_workers))`` image ids: the
        batches of one process, and each worker's share of them.
    """
    if batch_size % num_workers:
        raise ValueError(f"a global batch of {batch_size} images does not split over {num_workers} workers")

    def batches():
        keras.utils.set_random_seed(seed)  # as train() seeds before building its pipeline
        data = pipeline.training_dataset(sharded.source().map(_painted), config, batch_size=batch_size,
                                         seed=seed)
        return distributed.shard_by_data(data)

    one_process = np.array([_ids(images) for images, _ in batches().take(steps)])
    parts = np.array([[_ids(images) for images, _ in
                       batches().rebatch(batch_size // num_workers).shard(num_workers, i).take(steps)]
                      for i in range(num_workers)])
    return one_process, parts


def _box(ax, x, y, w, h, text, *, color, gid):
    ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor="#555555", linewidth=0.8, gid=gid))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9, family="monospace",
            gid=f"{gid}:text")


def _arrow(ax, start, end, worker, gid):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color=WORKER_COLORS[worker],
                                 linewidth=1.0, shrinkA=2, shrinkB=2, gid=gid))


def shard_policies_plot(shard_ids, file_ids, data_parts):
    """Two ways shards reach workers: by file (left) and by data (right), with the ids of every box.

    Args:
        shard_ids: per shard, its image ids (:func:`shard_image_ids`).
        file_ids: per worker, the ids it reads under the file policy (:func:`file_policy_ids`); a shard
            takes the colour of the one worker that read all its images (else grey, no arrow).
        data_parts: ``(workers, steps, B / workers)`` ids each worker trains on (:func:`data_policy_ids`).

    Returns:
        The figure, two axes whose boxes and arrows carry a ``gid`` (a box's text: its gid + ``:text``):
        ``file:shard{k}``, ``file:worker{i}``, ``file:shard{k}->worker{i}``; ``data:shard{k}`` (grey),
        ``data:worker{i}``, ``data:shard{k}->worker{i}``, ``data:step{s}:worker{i}:{j}`` (coloured by worker).
    """
    data_parts = np.asarray(data_parts)
    workers, steps, per = data_parts.shape
    top = max(len(shard_ids), steps + 1, workers)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 1.2 + 0.75 * top))
    for ax in (left, right):
        ax.set(xlim=(0, 10), ylim=(0, top))
        ax.axis("off")
    worker_y = [top * (1 - (i + 0.5) / workers) - 0.3 for i in range(workers)]  # lower edges, top to bottom
    for k, ids in enumerate(shard_ids):
        y = top - 0.8 - k
        readers = [i for i, read in enumerate(file_ids) if set(ids) <= set(read)]
        color = WORKER_COLORS[readers[0]] if len(readers) == 1 else SHARED
        _box(left, 0.1, y, 3.7, 0.6, f"shard {k}: " + " ".join(map(str, ids)), color=color,
             gid=f"file:shard{k}")
        for i in readers:
            _arrow(left, (3.8, y + 0.3), (5.6, worker_y[i] + 0.3), i, f"file:shard{k}->worker{i}")
        _box(right, 0.1, y, 1.8, 0.6, f"shard {k}", color=SHARED, gid=f"data:shard{k}")
        for i in range(workers):
            _arrow(right, (1.9, y + 0.3), (2.9, worker_y[i] + 0.3), i, f"data:shard{k}->worker{i}")
    for i, ids in enumerate(file_ids):
        _box(left, 5.6, worker_y[i], 4.3, 0.6, f"worker {i}: " + " ".join(map(str, ids)),
             color=WORKER_COLORS[i], gid=f"file:worker{i}")
        _box(right, 2.9, worker_y[i], 2.2, 0.6, f"worker {i}: all", color=WORKER_COLORS[i],
             gid=f"data:worker{i}")
    cell = 3.5 / (workers * per)
    for s in range(steps):
        y = top - 1.8 - s
        right.text(6.3, y + 0.3, f"step {s + 1}", ha="right", va="center", fontsize=9)
        for i in range(workers):
            for j in range(per):
                _box(right, 6.4 + (i * per + j) * cell, y, cell, 0.6, str(int(data_parts[i, s, j])),
                     color=WORKER_COLORS[i], gid=f"data:step{s}:worker{i}:{j}")
    right.text(8.15, top - 0.6, "global batches, one slice per worker", ha="center", va="center", fontsize=9)
    left.set_title("file policy (InputContext): worker i reads shards i, i + n, ...", fontsize=10)
    right.set_title("data policy (train --multi-worker): every worker reads every shard", fontsize=10)
    fig.tight_layout()
    return fig



def relative_differences(grads, reference) -> np.ndarray:
    """``(V,)``: per variable, ``max|g - g_ref| / max|g_ref|``, the scale of ``tests/tolerances.py``'s
    bounds (rounding is judged against the size of the tensor). NaN where both are None (not reached).

    Raises:
        ValueError: the lists differ in length, or a gradient is None in one list only.
    """
    if len(grads) != len(reference) or any((g is None) != (r is None) for g, r in zip(grads, reference)):
        raise ValueError(f"{len(grads)} gradients against {len(reference)}, or a gradient in one list only")
    return np.array([np.nan if r is None else np.abs(np.subtract(g, r)).max() / max(np.abs(r).max(), 1e-30)
                     for g, r in zip(grads, reference)], float)


def model_part(path: str) -> str:
    """The part of SOLOv2 a variable path belongs to: a sub-layer named in :data:`MODEL_PARTS` in
    its path (``"sol_ov2/fpn/lateral_c2/kernel"``), else ``"backbone"`` (its layers sit at the top)."""
    parts = path.split("/")
    return next((p for p in MODEL_PARTS[1:] if p in parts[:-1]), "backbone")


def gradient_differences_plot(names, differences: dict, *, bound: float, floor: float = 1e-9,
                              title: str = "Gradients of the batch computed other ways, against one pass"):
    """Per trainable variable, the relative difference of each way's gradient to the one-pass one.

    Args:
        names: the variables' paths (``model.trainable_variables``), in order.
        differences: ``{label: (V,) relative differences}`` (:func:`relative_differences`).
        bound: the float32 rounding bound the differences are judged by, drawn dashed.
        floor: differences below it (0: bit-equal) are drawn at it, as a log axis has no 0.

    Returns:
        The figure: one log-y axes, a marker series per label (x = variable index, y = difference, at
        least ``floor``), the bound's line and a named, shaded span per part (:func:`model_part`).
    """
    fig, ax = plt.subplots(figsize=(11, 3.8))
    parts = [model_part(n) for n in names]
    start, spans = 0, 0
    for k in range(1, len(parts) + 1):
        if k == len(parts) or parts[k] != parts[start]:  # a part ends: shade its variables, name it
            ax.axvspan(start - 0.5, k - 0.5, color=("#e6e6e6", "#f5f5f5")[spans % 2], zorder=0,
                       gid=f"part:{parts[start]}")
            spans += 1
            ax.text((start + k - 1) / 2, 1.01, parts[start], transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=9, gid=f"part:{parts[start]}:text")
            start = k
    for k, (label, values) in enumerate(differences.items()):
        ax.plot(np.arange(len(names)), np.maximum(np.asarray(values, float), floor), "os^Dv"[k % 5],
                markersize=4, linestyle="none", label=label)
    ax.axhline(bound, color="#333333", linestyle="--", linewidth=1,
               label=f"float32 rounding bound ({bound:.1e})")
    ax.set(yscale="log", xlim=(-0.5, len(names) - 0.5),
           xlabel=f"trainable variable ({len(names)}, in model order)",
           ylabel=f"max|g - g_one| / max|g_one|\n(0 drawn at {floor:.0e})")
    ax.set_title(title, pad=18)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    return fig
