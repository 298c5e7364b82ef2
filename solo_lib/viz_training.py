"""Pictures of notebooks 08 and 09: how training went and what it is scheduled to do.

Loss curves per epoch, mask AP50 against training steps, the best IoU that stride-4 masks leave
room for on small objects, and the learning-rate schedule. Each function draws numbers it is
given (or computes them with :mod:`solo_lib`), and ``tests/test_viz_training.py`` checks that
what is drawn equals them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

# The loss components a ``History`` holds (``solo_lib.train.loss_curves``), in drawing order.
LOSS_KEYS = ("loss", "category_loss", "mask_loss")


def loss_curves_plot(curves: dict, *, mask_loss_weight: float = 3.0, steps_per_epoch: int | None = None,
                     batch_size: int | None = None, title: str = "Training losses"):
    """The total, category and mask losses per epoch, one line each.

    SOLO's loss is ``L = L_cate + lambda * L_mask`` (arXiv 1912.04488, §3.3.2): the category loss is
    a focal loss, the mask loss a dice loss, weighted by ``lambda`` (``mask_loss_weight``).

    Args:
        curves: ``{key: (E,) per-epoch values}`` with the keys of :data:`LOSS_KEYS`, as
            ``solo_lib.train.loss_curves(history)`` returns them.
        mask_loss_weight: ``lambda``, named in the total's label (``SOLOConfig.mask_loss_weight``).
        steps_per_epoch: if given with ``batch_size``, the x label says what an epoch is.
        batch_size: images per step.
        title: the axes' title.

    Returns:
        The matplotlib figure: one axes, one line per key, x = epochs 1..E.
    """
    labels = {"loss": f"total = category + {mask_loss_weight:g} x mask", "category_loss": "category (focal)",
              "mask_loss": "mask (dice)"}
    fig, ax = plt.subplots(figsize=(6, 3))
    for key in LOSS_KEYS:
        values = np.asarray(curves[key], float)
        ax.plot(np.arange(1, len(values) + 1), values, label=labels[key])
    xlabel = "epoch"
    if steps_per_epoch is not None and batch_size is not None:
        xlabel += f" ({steps_per_epoch} steps of {batch_size} images)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def ap50_curves(runs: dict, *, bar: float = 0.9, batch_size: int | None = None, ylabel: str = "mask AP50",
                title: str = "Memorising the training images"):
    """Mask AP50 against training steps, one line per run, with the bar to reach as a dotted line.

    Each line starts at (0 steps, AP50 0): before training a model with random weights or with a
    freshly reset class predictor detects nothing (every class score starts at the prior 0.01,
    under the score threshold).

    Args:
        runs: ``{label: points}``, where ``points`` is a list of dicts with ``steps`` and
            ``mask_ap50`` (``MaskAPCurve.points`` or a stored ``learning_curve``).
        bar: the AP50 to reach, drawn as a horizontal line.
        batch_size: images per step, named in the x label if given.
        ylabel: the y axis label (say which images AP50 is measured on).
        title: the axes' title.

    Returns:
        The matplotlib figure: the runs' lines in order, then the bar's line.
    """
    fig, ax = plt.subplots(figsize=(6, 3))
    markers = ("o-", "s-", "^-", "d-")
    for k, (label, points) in enumerate(runs.items()):
        ax.plot([0] + [p["steps"] for p in points], [0] + [p["mask_ap50"] for p in points], markers[k % len(markers)],
                label=label)
    ax.axhline(bar, color="gray", linestyle=":", label=f"the bar: AP50 {bar:g}")
    ax.set_xlabel("training step" + (f" ({batch_size} images)" if batch_size is not None else ""))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def object_ious(dataset, predictions, mask_stride: int):
    """For every annotated object: its size, the best IoU a stride-``mask_stride`` mask can reach,
    and the best IoU of a predicted mask of its class.

    The best possible IoU is :func:`solo_lib.targets.round_trip_iou`: the annotation taken to its
    training target and back, as inference brings predictions back to the image.

    Args:
        dataset: samples with ``masks`` ``(N, H, W)`` and ``labels`` ``(N,)`` (a ``CocoDataset``).
        predictions: one ``predict`` result per sample, in the same order: ``masks``
            ``(K, H, W)`` and ``labels`` ``(K,)``.
        mask_stride: the model's mask stride (``config.mask_stride``).

    Returns:
        ``(sizes, best_possible, own_iou)``, three ``(total objects,)`` float arrays: the square
        root of each object's area in pixels, its round-trip IoU, and the highest IoU of a predicted
        mask with the same label (0 if the model predicted none of that class).
    """
    from solo_lib.targets import round_trip_iou

    sizes, best_possible, own_iou = [], [], []
    for sample, pred in zip(dataset, predictions):
        pred_masks, pred_labels = np.asarray(pred["masks"]).astype(bool), np.asarray(pred["labels"])
        for mask, label in zip(np.asarray(sample.masks).astype(bool), sample.labels):
            same = pred_masks[pred_labels == label]  # (K', H, W): the predicted masks of that class
            inter, union = (same & mask).sum((1, 2)), (same | mask).sum((1, 2))
            own_iou.append((inter / np.maximum(union, 1)).max(initial=0.0))
            sizes.append(np.sqrt(mask.sum()))
        best_possible.extend(round_trip_iou(sample.masks, mask_stride))
    return tuple(np.array(values, float) for values in (sizes, best_possible, own_iou))


def small_objects_plot(sizes, best_possible, own_iou, *, iou_threshold: float = 0.5):
    """Each object's IoU against its size: the best a stride-4 mask allows (gray dashes) and the
    model's best mask (dots), with the IoU that AP50 asks for as a dotted line.

    Args:
        sizes: ``(N,)`` square roots of the objects' areas in pixels (x, log scale).
        best_possible: ``(N,)`` round-trip IoU per object (:func:`object_ious`).
        own_iou: ``(N,)`` the model's best IoU per object.
        iou_threshold: the matching threshold drawn as a line (0.5 for AP50).

    Returns:
        The matplotlib figure: two scatter collections (best possible, then the model's) and the
        threshold line.
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter(sizes, best_possible, marker="_", s=120, color="gray", label="perfect stride-4 mask")
    ax.scatter(sizes, own_iou, s=14, label="your model's best mask")
    ax.axhline(iou_threshold, color="gray", linestyle=":",
               label=f"IoU {iou_threshold:g} (AP{round(100 * iou_threshold)})")
    ax.set_xscale("log")
    ax.set_xlabel("object size: square root of its area (px)")
    ax.set_ylabel("IoU with the annotation")
    ax.set_title(f"Small objects: little room above IoU {iou_threshold:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lr_schedule_plot(config, steps_per_epoch: int, *, every: int = 50, name: str = "schedule"):
    """The learning rate of a ``TrainConfig`` over its whole run, on a log scale.

    The rate is ``solo_lib.optim.WarmupStepDecay``, built as training builds it
    (``solo_lib.train.make_optimizer``): linear warm-up from ``warmup_ratio`` times the base rate,
    then ``decay_factor`` times less after each of ``decay_epochs``.

    Args:
        config: a ``TrainConfig``.
        steps_per_epoch: training steps per epoch (images / batch size).
        every: draw the rate every this many steps.
        name: what the schedule is, at the start of the title (e.g. ``"1x schedule on COCO"``).

    Returns:
        ``(figure, steps, rate)``: the ``(T,)`` steps drawn (0, every, 2 * every, ...) and the
        ``(T,)`` rate at each; the line's x values are ``steps / steps_per_epoch`` (epochs).
    """
    from solo_lib.optim import WarmupStepDecay

    schedule = WarmupStepDecay(config.learning_rate, config.warmup_steps, config.warmup_ratio,
                               [e * steps_per_epoch for e in config.decay_epochs], config.decay_factor)
    steps = np.arange(0, config.epochs * steps_per_epoch, every)
    rate = schedule(steps).numpy()  # the schedule takes a whole array of steps at once
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.plot(steps / steps_per_epoch, rate)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_yscale("log")
    epochs = [str(e) for e in config.decay_epochs]
    decays = ", ".join(epochs[:-1]) + " and " + epochs[-1] if len(epochs) > 1 else "".join(epochs)
    title = f"{name}: " + ("warm-up" if config.warmup_steps else "no warm-up")
    if config.decay_epochs:
        title += f", then x{config.decay_factor:g} at epoch{'s' if len(config.decay_epochs) > 1 else ''} {decays}"
    ax.set_title(title)
    fig.tight_layout()
    return fig, steps, rate
