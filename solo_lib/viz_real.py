"""Pictures of notebook 08b: what a fine-tuned model does with each held-out real object.

AP summarises a whole set in one number; a learner deciding whether more data would help needs
to see the objects one by one: which were found with a good mask, which were found with a poor
one, which were missed, and what the false detections are. :func:`object_outcomes` matches
detections to objects as COCO does (``solo_lib.evaluate.greedy_match``, score order, within a
class), and :func:`draw_object_crops` shows each object, best to worst.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from solo_lib.evaluate import greedy_match
from solo_lib.viz_eval import _iou_matrix
from solo_lib.viz_style import class_color


def object_outcomes(prediction: dict, gt_masks, gt_labels, score_thr: float, iou_thr: float = 0.5) -> dict:
    """Each object's fate among the detections scoring at least ``score_thr``.

    Args:
        prediction: ``predict``'s dict: ``masks`` ``(K, H, W)``, ``labels`` ``(K,)``, ``scores`` ``(K,)``.
        gt_masks: ``(G, H, W)`` binary objects.
        gt_labels: ``(G,)`` their labels.
        score_thr: detections below this score are left out (as a picture leaves them out).
        iou_thr: the IoU a match needs (0.5: AP50's rule).

    Returns:
        ``{"objects": [...], "false": [...]}``. ``objects[g]`` is a dict with ``detection`` (index
        into ``prediction`` of the detection COCO matches to object ``g``, or -1), ``best`` (that
        detection, or for a missed object the kept detection of its class that overlaps it most,
        -1 if none overlaps it), ``iou`` (the mask IoU of ``best``, 0 without one) and ``found``
        (bool). ``false`` lists the kept detections matched to no object, highest score first.
    """
    masks, labels, scores = (np.asarray(prediction[key]) for key in ("masks", "labels", "scores"))
    gt_masks, gt_labels = np.asarray(gt_masks, bool), np.asarray(gt_labels)
    kept = np.flatnonzero(scores >= score_thr)
    kept = kept[np.argsort(-scores[kept], kind="stable")]
    objects = [{"detection": -1, "best": -1, "iou": 0.0, "found": False} for _ in range(len(gt_labels))]
    false = []
    for label in np.unique(np.concatenate([labels[kept], gt_labels])):
        dets, gts = kept[labels[kept] == label], np.flatnonzero(gt_labels == label)
        iou = _iou_matrix(masks[dets], gt_masks[gts]) if len(dets) and len(gts) else np.zeros((len(dets), len(gts)))
        matched = greedy_match(iou, iou_thr)
        for d, g in enumerate(matched):
            if g >= 0:
                objects[gts[g]] = {"detection": int(dets[d]), "best": int(dets[d]), "iou": float(iou[d, g]),
                                   "found": True}
            else:
                false.append(int(dets[d]))
        for j, g in enumerate(gts):
            if not objects[g]["found"] and len(dets) and iou[:, j].max() > 0:
                best = int(np.argmax(iou[:, j]))
                objects[g].update(best=int(dets[best]), iou=float(iou[best, j]))
    false.sort(key=lambda k: -scores[k])
    return {"objects": objects, "false": false}


def draw_object_crops(image, prediction: dict, gt_masks, gt_labels, class_names, score_thr: float, *,
                      iou_thr: float = 0.5, ncols: int = 6, size: float = 1.8, margin: int = 6):
    """One panel per object, best mask first: the photo cropped around the object, its ground truth
    as a dashed white outline and the detection matched to it filled in its class colour; for a
    missed object, the detection of its class that overlaps it most (too little to match, or
    matched to another object first) is outlined in red.

    A panel's title is "IoU 0.87 (score 0.64)" for a found object and "missed (best IoU 0.31)"
    for an object no kept detection matches. Objects are ordered by IoU, highest first, so the
    good cases open the figure and the bad ones close it.

    Args:
        image: ``(H, W, 3)`` uint8.
        prediction, gt_masks, gt_labels, score_thr, iou_thr: as in :func:`object_outcomes`.
        class_names: names indexed by label.
        ncols: panels per row.
        size: inches per panel.
        margin: pixels of context around each object.

    Returns:
        ``(fig, order, outcomes)``: ``order`` the object indices in panel order; ``outcomes``
        :func:`object_outcomes`' result.
    """
    outcomes = object_outcomes(prediction, gt_masks, gt_labels, score_thr, iou_thr)
    objects = outcomes["objects"]
    order = sorted(range(len(objects)), key=lambda g: (not objects[g]["found"], -objects[g]["iou"]))
    nrows = max(1, -(-len(order) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.5), squeeze=False,
                             layout="constrained")
    gt_masks = np.asarray(gt_masks, bool)
    image = np.asarray(image)
    height, width = image.shape[:2]
    for ax in axes.flat:
        ax.axis("off")
    for ax, g in zip(axes.flat, order):
        ys, xs = np.nonzero(gt_masks[g])
        y0, y1 = max(0, ys.min() - margin), min(height, ys.max() + margin + 1)
        x0, x1 = max(0, xs.min() - margin), min(width, xs.max() + margin + 1)
        ax.imshow(image[y0:y1, x0:x1], extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
        outcome = objects[g]
        if outcome["found"]:
            k = outcome["detection"]
            mask = np.asarray(prediction["masks"][k], bool)[y0:y1, x0:x1]
            colour = class_color(int(prediction["labels"][k]))
            rgba = np.zeros((*mask.shape, 4))
            rgba[mask] = (*colour, 0.45)
            ax.imshow(rgba, extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
            ax.contour(np.arange(x0, x1), np.arange(y0, y1), mask, levels=[0.5], colors=[colour], linewidths=1.0)
            title = f"IoU {outcome['iou']:.2f} (score {float(prediction['scores'][k]):.2f})"
        else:
            title = f"missed (best IoU {outcome['iou']:.2f})"
            if outcome["best"] >= 0:
                near = np.asarray(prediction["masks"][outcome["best"]], bool)[y0:y1, x0:x1]
                if near.any():
                    ax.contour(np.arange(x0, x1), np.arange(y0, y1), near, levels=[0.5], colors="red",
                               linewidths=1.0)
        ax.contour(np.arange(x0, x1), np.arange(y0, y1), gt_masks[g][y0:y1, x0:x1], levels=[0.5], colors="white",
                   linestyles="dashed", linewidths=0.9)
        ax.set_xlim(x0 - 0.5, x1 - 0.5)
        ax.set_ylim(y1 - 0.5, y0 - 0.5)
        ax.set_title(f"{class_names[int(gt_labels[g])]} {g}: {title}", fontsize=7.5,
                     color="black" if outcome["found"] else "firebrick")
    found = sum(o["found"] for o in objects)
    fig.suptitle(f"Each object, best mask first: {found} of {len(objects)} found at IoU >= {iou_thr:g} "
                 f"among detections with score >= {score_thr:g}; {len(outcomes['false'])} false detection(s)",
                 fontsize=9)
    return fig, order, outcomes


def duplicate_pairs(masks, labels, iou_thr: float = 0.5) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of masks of one class overlapping with IoU at least ``iou_thr``:
    the same object drawn twice, what a clean picture must not show.

    Args:
        masks: ``(K, H, W)`` binary masks (e.g. the detections a picture shows).
        labels: ``(K,)`` their classes.
        iou_thr: the overlap that makes two masks one object (0.5: AP50's rule).
    """
    masks, labels = np.asarray(masks, bool), np.asarray(labels)
    iou = _iou_matrix(masks, masks)
    return [(i, j) for i in range(len(masks)) for j in range(i + 1, len(masks))
            if labels[i] == labels[j] and iou[i, j] >= iou_thr]


def on_object_fraction(prediction: dict, gt_masks, outcomes: dict) -> dict:
    """For each found object, the share of its matched detection's pixels that lie on the object:
    1.0 for a mask that stays inside the outline, lower for one that spills onto the background or
    a neighbour (IoU alone does not say which way a mask is wrong).

    Args:
        prediction: ``predict``'s dict.
        gt_masks: ``(G, H, W)`` binary objects.
        outcomes: :func:`object_outcomes`' result for them.

    Returns:
        ``{object index: fraction}`` for the found objects.
    """
    gt_masks = np.asarray(gt_masks, bool)
    fractions = {}
    for g, outcome in enumerate(outcomes["objects"]):
        if outcome["found"]:
            mask = np.asarray(prediction["masks"][outcome["detection"]], bool)
            fractions[g] = float((mask & gt_masks[g]).sum() / max(int(mask.sum()), 1))
    return fractions
