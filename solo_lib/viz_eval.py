"""Pictures of notebook 11 (evaluation): precision-recall curves and predictions next to the truth.

COCO's AP is the area under an interpolated precision-recall curve (``COCOeval.accumulate``): the
curves drawn here are read straight from COCOeval's accumulated ``precision`` array, so what the
learner sees is exactly what was averaged into AP.
"""

from __future__ import annotations

import contextlib
import io

import matplotlib.pyplot as plt
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from solo_lib.evaluate import evaluate_segm, greedy_match
from solo_lib.viz import draw_predictions
from solo_lib.viz_style import class_color

# How a threshold's curve is drawn: IoU 0.5 solid, 0.75 dashed, others dotted.
_LINESTYLES = {0.5: "-", 0.75: "--"}
MEAN_TITLE = "mean of classes"


def coco_evaluator(dataset, results, image_ids=None) -> COCOeval:
    """COCOeval of ``results`` against ``dataset``, evaluated and accumulated, without its prints.

    :func:`solo_lib.evaluate.evaluate_segm` runs first, so results are checked the same way
    (clear errors for unknown images, bad masks or ids) and an empty list is allowed.

    Args:
        dataset: a ``CocoDataset`` (the ground truth).
        results: COCO result entries, as ``evaluate_model`` returns them.
        image_ids: evaluate only these images (default: all of the dataset's).

    Returns:
        The ``COCOeval``; its ``eval["precision"]`` is ``(T, R, K, A, M)``: IoU thresholds
        (0.50:0.05:0.95) x 101 recall points x classes x area ranges x detection limits, -1 where
        a class has no ground truth.
    """
    evaluate_segm(dataset, results, image_ids=image_ids)  # validates the results (raises DatasetError)
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            coco_dt = dataset.coco.loadRes([dict(r) for r in results])
        else:  # loadRes cannot guess the type of an empty list: an empty result set by hand
            from pycocotools.coco import COCO

            coco_dt = COCO()
            coco_dt.dataset = {"images": list(dataset.coco.dataset["images"]),
                               "categories": list(dataset.coco.dataset["categories"]), "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(dataset.coco, coco_dt, iouType="segm")
        if image_ids is not None:
            evaluator.params.imgIds = [int(i) for i in image_ids]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def pr_curve(evaluator: COCOeval, iou_thr: float, class_index: int | None = None):
    """One interpolated precision-recall curve, as COCOeval averages it into AP.

    Args:
        evaluator: an accumulated ``COCOeval``.
        iou_thr: one of its IoU thresholds (0.5, 0.55, ..., 0.95).
        class_index: index into ``evaluator.params.catIds``; ``None`` for the mean over the
            classes that have ground truth (its mean is then AP at that threshold, e.g. AP50).

    Returns:
        ``(recall (101,), precision (101,))`` at area "all" and 100 detections per image, or
        ``None`` when no class in question has ground truth. ``precision.mean()`` is the AP.

    Raises:
        ValueError: ``iou_thr`` is not one of the evaluator's thresholds.
    """
    params = evaluator.params
    hits = np.flatnonzero(np.isclose(params.iouThrs, iou_thr))
    if hits.size != 1:
        raise ValueError(f"IoU threshold {iou_thr} is not one of COCOeval's {np.round(params.iouThrs, 2).tolist()}")
    area, max_dets = params.areaRngLbl.index("all"), params.maxDets.index(100)
    precision = evaluator.eval["precision"][hits[0], :, :, area, max_dets]  # (R, K)
    if class_index is not None:
        precision = precision[:, [class_index]]
    valid = (precision > -1).all(axis=0)  # a class without ground truth is -1 everywhere
    if not valid.any():
        return None
    return np.asarray(params.recThrs, np.float64), precision[:, valid].mean(axis=1)


def draw_pr_curves(evaluators: dict, class_names, iou_thrs=(0.5, 0.75), *, size: float = 2.3):
    """Precision-recall curves: one row per evaluation, one column per class plus their mean.

    Each curve is COCOeval's interpolated precision at its 101 recall points 0, 0.01, ..., 1;
    the shaded area under it, divided by 1 (the recall range), is the AP given in the legend.

    Args:
        evaluators: row title -> accumulated ``COCOeval`` (e.g. training and validation images).
        class_names: the names of ``params.catIds``, in that order.
        iou_thrs: the IoU thresholds to draw (0.5 solid, 0.75 dashed).
        size: inches per panel.

    Returns:
        The Figure. Each Axes' title names its class (or :data:`MEAN_TITLE`); each curve is a
        line labelled ``"IoU 0.50: AP 0.94"``.
    """
    columns = [*range(len(class_names)), None]
    fig, axes = plt.subplots(len(evaluators), len(columns), figsize=(size * len(columns), size * len(evaluators)),
                             squeeze=False, sharex=True, sharey=True)
    for row, (row_title, evaluator) in enumerate(evaluators.items()):
        for col, k in enumerate(columns):
            ax = axes[row, col]
            color = "black" if k is None else class_color(k)
            for thr in iou_thrs:
                curve = pr_curve(evaluator, thr, k)
                if curve is None:
                    continue
                recall, precision = curve
                ax.plot(recall, precision, drawstyle="steps-post", color=color, ls=_LINESTYLES.get(thr, ":"),
                        lw=1.5, label=f"IoU {thr:.2f}: AP {precision.mean():.2f}")
                ax.fill_between(recall, precision, step="post", color=color, alpha=0.15, lw=0)
            if ax.lines:
                ax.legend(loc="best", fontsize=7, framealpha=0.8)
            else:
                ax.text(0.5, 0.5, "no objects\nof this class", ha="center", va="center", fontsize=8)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.05)
            name = MEAN_TITLE if k is None else class_names[k]
            ax.set_title(f"{row_title}: {name}" if col == 0 else name, fontsize=9)
            if row == len(evaluators) - 1:
                ax.set_xlabel("recall", fontsize=8)
            if col == 0:
                ax.set_ylabel("interpolated precision", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle("COCO's interpolated precision (the best precision at this recall or beyond) at 101 recall points "
                 "0, 0.01, ..., 1; AP = the mean of the 101 values, the shaded area", fontsize=9)
    fig.tight_layout()
    return fig


def prediction_from_results(results: list[dict], dataset, image_id: int) -> dict:
    """One image's detections back from COCO result entries, in ``predict``'s format.

    Drawing what was evaluated (rather than predicting again) guarantees the picture shows the
    very masks and scores that COCOeval scored.

    Args:
        results: COCO result entries (``evaluate_model``'s second output).
        dataset: the ``CocoDataset`` they belong to (image size, category ids back to labels).
        image_id: the image.

    Returns:
        ``{"masks" (K, H, W) uint8, "labels" (K,) int32, "scores" (K,) float32}``, highest score
        first; K may be 0.
    """
    info = dataset.image_info(image_id)
    mine = sorted((r for r in results if r["image_id"] == image_id), key=lambda r: -r["score"])
    masks = np.zeros((0, info["height"], info["width"]), np.uint8)
    if mine:
        masks = np.ascontiguousarray(mask_utils.decode([dict(r["segmentation"]) for r in mine]).transpose(2, 0, 1))
    return {"masks": masks,
            "labels": np.array([dataset.categories.to_label(r["category_id"]) for r in mine], np.int32),
            "scores": np.array([r["score"] for r in mine], np.float32)}


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` mask IoU of binary masks ``(N, H, W)``; 0 where both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    a = a.reshape(len(a), int(np.prod(a.shape[1:]))).astype(np.float64)
    b = b.reshape(len(b), int(np.prod(b.shape[1:]))).astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def count_matches(prediction: dict, gt_masks, gt_labels, iou_thr: float = 0.5) -> dict:
    """How many objects ``prediction`` found, COCO-style, within each class.

    Args:
        prediction: ``masks`` ``(K, H, W)``, ``labels`` ``(K,)`` and ``scores`` ``(K,)``.
        gt_masks: ``(G, H, W)`` binary objects (crowd regions left out).
        gt_labels: ``(G,)`` their labels.
        iou_thr: the IoU a match needs.

    Returns:
        ``{"objects": G, "found": matched objects, "false": unmatched detections}``.
    """
    masks, labels, scores = (np.asarray(prediction[key]) for key in ("masks", "labels", "scores"))
    gt_masks, gt_labels = np.asarray(gt_masks), np.asarray(gt_labels)
    order = np.argsort(-scores, kind="stable")
    masks, labels = masks[order], labels[order]
    found = 0
    for label in np.unique(labels):
        dt, gt = labels == label, gt_labels == label
        found += int((greedy_match(_iou_matrix(masks[dt], gt_masks[gt]), iou_thr) >= 0).sum())
    return {"objects": len(gt_labels), "found": found, "false": len(labels) - found}


def draw_generalisation(rows: dict, class_names, score_thr: float, *, iou_thr: float = 0.5, ncols: int = 3,
                        size: float = 3.0, number_objects: bool = False):
    """Predictions drawn over the ground truth, one group of panels per image set (training, validation).

    Each panel fills the detections scoring at least ``score_thr`` in their class colour (labels
    "name score") and outlines every ground-truth object in dashed white, so a missed object is
    a white outline with nothing inside. Its title counts, among the drawn detections, the objects
    found (matched at IoU >= ``iou_thr`` within their class, as COCO matches) and the false ones.

    Args:
        rows: group title (``""``: none) -> list of panels, each a dict with ``image`` ``(H, W, 3)`` uint8,
            ``prediction`` (``predict``'s dict), ``gt_masks`` ``(G, H, W)``, ``gt_labels``
            ``(G,)`` and ``title``. A group starts on a new line and wraps after ``ncols`` panels.
        class_names: names indexed by label.
        score_thr: draw (and count) only detections with ``score >= score_thr``.
        iou_thr: the IoU a match needs.
        ncols: panels per line.
        size: inches per panel.
        number_objects: write each ground-truth object's index (its position in ``gt_masks``) at
            its centre, so other pictures of the same objects can refer to them.

    Returns:
        ``(fig, counts)``: ``counts[group_title]`` is one dict per panel with ``shown`` (indices into
        the prediction, highest score first) and :func:`count_matches`' ``objects``, ``found``
        and ``false``.
    """
    lines = [(title, panels[i:i + ncols]) for title, panels in rows.items() for i in range(0, len(panels), ncols)]
    fig, axes = plt.subplots(len(lines), ncols, figsize=(size * ncols, size * len(lines) + 0.4), squeeze=False,
                             layout="constrained")
    counts = {title: [] for title in rows}
    for r, (title, panels) in enumerate(lines):
        for c in range(ncols):
            ax = axes[r, c]
            if c >= len(panels):
                ax.axis("off")
                continue
            panel = panels[c]
            shown = draw_predictions(ax, panel["image"], panel["prediction"], class_names, score_thr)
            for g, mask in enumerate(np.asarray(panel["gt_masks"])):
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors="white", linestyles="dashed", linewidths=0.9)
                    if number_objects:
                        ys, xs = np.nonzero(mask)
                        ax.text(xs.mean(), ys.mean(), str(g), color="white", fontsize=8, fontweight="bold",
                                ha="center", va="center", gid=f"object:{g}",
                                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "lw": 0})
            kept = {key: np.asarray(panel["prediction"][key])[shown] for key in ("masks", "labels", "scores")}
            count = count_matches(kept, panel["gt_masks"], panel["gt_labels"], iou_thr)
            counts[title].append({"shown": shown, **count})
            ax.set_title(f"{title + ' ' if title else ''}{panel['title']}: "
                         f"found {count['found']} of {count['objects']}, {count['false']} false", fontsize=9)
    fig.suptitle(f"Detections with score >= {score_thr:g} (filled); ground truth (dashed white outlines); "
                 f"found = matched at IoU >= {iou_thr:g}", fontsize=10)
    return fig, counts
