"""COCO mask AP with ``pycocotools.cocoeval.COCOeval`` (notebook 11).

One module past ~300 lines, because it is one idea, mask AP from predictions to numbers: COCO
results, the checks that keep COCOeval from silently ignoring them, COCOeval itself, and
:func:`greedy_match`, an independent formulation of its matching (exercise 11c).

COCO scores instance segmentation by mask IoU. A prediction is a *result*: one dict per
predicted instance, ``{"image_id", "category_id", "segmentation", "score"}``, where the
segmentation is a compressed RLE and ``category_id`` is the ORIGINAL COCO id (1..90 with gaps
for COCO 2017), not the model's contiguous label ``0..C-1``; :func:`predictions_to_coco_results`
restores it with ``CategoryMap.to_coco_id``. Forgetting that is the classic bug: results with
unknown ids are silently ignored by COCOeval and the others land in the wrong class.

``COCOeval`` matches results to ground truth greedily by score at each IoU threshold
(0.50:0.05:0.95), builds a precision/recall curve per class, area range and detection limit,
and averages precision at 101 recall points. Crowd regions (``iscrowd: 1``) are matched with
IoU = intersection / detection area, and a detection that matches one is ignored (neither true
nor false positive); COCOeval does this itself, so crowd annotations stay in the ground truth.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from solo_lib.data.coco import CocoDataset
from solo_lib.data.coco_file import CategoryMap
from solo_lib.data.segmentation import check_rle, is_finite, is_int
from solo_lib.errors import EXAMPLES, DatasetError, DatasetWarning
from solo_lib.files import write_text_atomically

STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def encode_masks(masks) -> list[dict]:
    """Compressed RLEs of binary masks, ready for JSON.

    Args:
        masks: ``(K, H, W)`` binary masks (bool, or numbers in {0, 1}); threshold soft masks first.

    Returns:
        K dicts ``{"size": [H, W], "counts": str}``. pycocotools produces ``counts`` as bytes;
        they are decoded to ASCII so ``json.dumps`` accepts them (pycocotools reads both).

    Raises:
        ValueError: ``masks`` is not 3-D or has values other than 0 and 1.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (K, H, W), got shape {masks.shape}")
    if masks.dtype != bool and not np.isin(masks, (0, 1)).all():
        raise ValueError("masks must be binary (0 or 1); threshold soft masks (e.g. > 0.5) before encoding")
    if masks.shape[0] == 0:
        return []
    # pycocotools wants (H, W, K) uint8 in column-major (Fortran) order: COCO's RLE runs down columns.
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")} for rle in rles]


def predictions_to_coco_results(image_id: int, masks, labels, scores, categories: CategoryMap) -> list[dict]:
    """One image's predictions as COCO result entries.

    Args:
        image_id: the COCO image id.
        masks: ``(K, H, W)`` binary masks at the original image size.
        labels: ``(K,)`` contiguous labels in ``[0, C)``.
        scores: ``(K,)`` confidences.
        categories: the dataset's :class:`CategoryMap`, to restore the COCO category ids.

    Returns:
        K dicts ``{"image_id", "category_id", "segmentation", "score"}`` with plain Python types.

    Raises:
        ValueError: ``masks``, ``labels`` and ``scores`` disagree on K.
    """
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    rles = encode_masks(masks)
    if not len(rles) == len(labels) == len(scores):
        raise ValueError(f"image id {image_id}: {len(rles)} masks, {len(labels)} labels and {len(scores)} scores; "
                         "expected one label and one score per mask")
    return [
        {"image_id": int(image_id), "category_id": int(categories.to_coco_id(label)),
         "segmentation": rle, "score": float(score)}
        for rle, label, score in zip(rles, labels, scores)
    ]


def write_results_json(results: list[dict], path: str | os.PathLike) -> Path:
    """Writes COCO results to a JSON file atomically (temporary file, then ``os.replace``).

    A crash mid-write leaves the previous file, never half a file.

    Returns:
        The path written.
    """
    return write_text_atomically(path, json.dumps(results))


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """COCO mask AP of one evaluation.

    The first six fields are ``stats[0:6]``. COCO's convention applies: a value is -1 when the
    ground truth has no instance in that area range (small < 32^2 <= medium < 96^2 <= large
    pixels), so it is undefined rather than zero.

    Attributes:
        ap: AP averaged over IoU 0.50:0.05:0.95 (the COCO metric).
        ap50: AP at IoU 0.5.
        ap75: AP at IoU 0.75.
        ap_small: AP for small instances.
        ap_medium: AP for medium instances.
        ap_large: AP for large instances.
        per_class: class name -> AP at IoU 0.50:0.05:0.95 (area "all", 100 detections);
            ``nan`` for a class without ground truth in the evaluated images.
        stats: the 12 numbers COCOeval's ``summarize`` prints, in its order (:data:`STAT_NAMES`).
    """

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    per_class: dict[str, float]
    stats: list[float]

    def summary(self) -> str:
        """A short table: the 12 COCO numbers, then one line per class."""
        lines = [f"{name:>10s} {value:6.3f}" for name, value in zip(STAT_NAMES, self.stats)]
        lines += [f"{name:>10s} {value:6.3f}" for name, value in self.per_class.items()]
        return "\n".join(lines)


def _check_results(dataset: CocoDataset, results: list[dict]) -> None:
    """Fails early, with a clear message, on results COCOeval would reject or misuse.

    Raises:
        DatasetError: results that are not a list of dicts; an entry lacking a key, naming an
            unknown image, with a score that is not a finite number, a category id that is not
            an integer, or a segmentation that is not a valid compressed RLE of the image's size.
    """
    if not isinstance(results, list):
        raise DatasetError(f"results must be a list of dicts, got {type(results).__name__}")
    known_ids = set(dataset.categories.coco_ids)
    unknown = []
    for index, res in enumerate(results):
        if not isinstance(res, dict):
            raise DatasetError(f"results[{index}] must be a dict {{image_id, category_id, segmentation, score}}, "
                               f"got {type(res).__name__}")
        missing = [k for k in ("image_id", "category_id", "segmentation", "score") if k not in res]
        if missing:
            raise DatasetError(f"results[{index}] lacks {missing}")
        image_id = res["image_id"]
        if not is_int(image_id):
            raise DatasetError(f"results[{index}] has image id {image_id!r}; it must be an integer COCO image id")
        try:
            info = dataset.image_info(image_id)
        except KeyError:
            raise DatasetError(f"results[{index}] has image id {image_id}, which is not in "
                               f"{dataset.annotation_file}") from None
        where = f"results[{index}], image id {image_id}"
        score = res["score"]
        if not is_finite(score):
            raise DatasetError(f"{where}: score {score!r} is not a finite number; COCOeval ranks results by score")
        if not is_int(res["category_id"]):
            raise DatasetError(f"{where}: category id {res['category_id']!r} is not an integer; restore COCO ids "
                               "with CategoryMap.to_coco_id(label)")
        segm = res["segmentation"]
        size = list(segm.get("size", ())) if isinstance(segm, dict) else None
        if size != [info["height"], info["width"]]:
            hint = ("; a result's segmentation must be a compressed RLE (encode_masks)" if not isinstance(segm, dict)
                    else "; resize predicted masks to the original image before encoding")
            raise DatasetError(f"{where}: mask size {size} differs from the image's [height, width] "
                               f"[{info['height']}, {info['width']}]{hint}")
        check_rle(segm, where, info["height"], info["width"])
        if res["category_id"] not in known_ids:
            unknown.append(res["category_id"])
    if unknown:
        shown = sorted(set(unknown))[:EXAMPLES]
        warnings.warn(f"{len(unknown)} results have category ids not in {dataset.annotation_file} (e.g. {shown}); "
                      "COCOeval ignores them. Restore COCO ids with CategoryMap.to_coco_id(label).",
                      DatasetWarning, stacklevel=3)


def _check_ground_truth(dataset: CocoDataset) -> None:
    """COCOeval sorts ground truth into size ranges (small, medium, large) by each annotation's
    ``area``; real COCO files have it, hand-made ones may not, or may carry a wrong one.

    A missing or invalid area is an error rather than something repaired here: the file is the
    reference other evaluators read too, so it is fixed once, at its source, and every tool then
    reports the same AP.

    Raises:
        DatasetError: annotations without ``area``, or whose area is not a positive finite number.
    """
    annotations = dataset.coco.dataset.get("annotations", [])
    ids = [ann.get("id") for ann in annotations if "area" not in ann]
    if ids:
        raise DatasetError(f"{dataset.annotation_file}: {len(ids)} annotations lack 'area' (annotation ids "
                           f"{ids[:EXAMPLES]}); COCOeval needs it, e.g. pycocotools.mask.area of the mask")
    bad = [ann for ann in annotations if not is_finite(ann["area"]) or ann["area"] <= 0]
    if bad:
        shown = ", ".join(f"{ann.get('id')}: {ann['area']!r}" for ann in bad[:EXAMPLES])
        raise DatasetError(f"{dataset.annotation_file}: {len(bad)} annotations have an 'area' that is not a positive "
                           f"number (annotation id: area {shown}{', ...' if len(bad) > EXAMPLES else ''}); COCOeval "
                           "sorts ground truth into small/medium/large by it: set it to the mask's pixel count "
                           "(pycocotools.mask.area), or remove annotations whose mask is empty")


def _load_results(coco_gt: COCO, results: list[dict]) -> COCO:
    """``coco_gt.loadRes`` on copies (loadRes adds ``area``, ``bbox``, ``id`` to each dict).

    loadRes reads ``results[0]`` to guess the result type, so it fails on an empty list. No
    results is a legitimate outcome (an untrained model), so we then build an empty results
    object by hand and let COCOeval score it: AP 0 wherever there is ground truth.
    """
    if results:
        return coco_gt.loadRes([dict(r) for r in results])
    coco_dt = COCO()
    coco_dt.dataset = {"images": list(coco_gt.dataset["images"]),
                       "categories": list(coco_gt.dataset["categories"]), "annotations": []}
    coco_dt.createIndex()
    return coco_dt


def per_class_ap(precision: np.ndarray, params, categories: CategoryMap) -> dict[str, float]:
    """AP at IoU 0.50:0.05:0.95 of each class, from COCOeval's accumulated precision.

    Args:
        precision: ``E.eval["precision"]``, ``(T, R, K, A, M)``: IoU thresholds x recall points
            x classes x area ranges x detection limits; -1 where a class has no ground truth.
        params: ``E.params`` (its ``catIds``, ``areaRngLbl`` and ``maxDets`` index the axes).
        categories: names the classes.

    Returns:
        class name -> mean of the valid (> -1) entries at area "all" and 100 detections, as
        ``COCOeval.summarize`` averages them; ``nan`` when there is none.
    """
    area = params.areaRngLbl.index("all")
    max_dets = params.maxDets.index(100)
    out = {}
    for k, cat_id in enumerate(params.catIds):
        p = precision[:, :, k, area, max_dets]  # (T, R)
        valid = p[p > -1]
        out[categories.names[categories.to_label(cat_id)]] = float(valid.mean()) if valid.size else math.nan
    return out


def evaluate_segm(dataset: CocoDataset, results: list[dict], *, image_ids=None, verbose: bool = False) -> EvalResult:
    """COCO mask AP of ``results`` against ``dataset``'s ground truth.

    Args:
        dataset: the ground truth; ``dataset.coco`` (crowd regions included) is COCOeval's cocoGt.
        results: COCO result entries (see :func:`predictions_to_coco_results`). An empty list
            is allowed and scores 0 (see :class:`EvalResult` for the -1 of empty area ranges).
        image_ids: evaluate only these images (default: every image of the dataset, so an image
            without results counts all its instances as missed).
        verbose: let pycocotools print its progress and summary table.

    Returns:
        An :class:`EvalResult`.

    Raises:
        DatasetError: a malformed result (unknown image id, a score that is not a finite number,
            a mask of the wrong size or a corrupt RLE), or ground truth without a valid ``area``.
    """
    _check_ground_truth(dataset)
    _check_results(dataset, results)
    coco_gt = dataset.coco
    out = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with out:
        coco_dt = _load_results(coco_gt, results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
        if image_ids is not None:
            evaluator.params.imgIds = [int(i) for i in image_ids]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [float(s) for s in evaluator.stats]
    return EvalResult(*stats[:6], per_class=per_class_ap(evaluator.eval["precision"], evaluator.params,
                                                         dataset.categories), stats=stats)


PredictFn = Callable[[Any, np.ndarray, Any], dict]


def progress_disabled() -> bool:
    """True when the environment variable ``TQDM_DISABLE`` is set (to anything but ``""``, ``0``
    or ``false``). Read at call time: tqdm reads it only once, when it is imported."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


def evaluate_model(model, dataset: CocoDataset, config=None, predict_fn: PredictFn | None = None,
                   image_ids=None, *, progress: bool = True) -> tuple[EvalResult, list[dict]]:
    """Runs ``predict_fn`` on every image and scores the predictions with :func:`evaluate_segm`.

    ``evaluate_model(model, dataset)`` evaluates a SOLOv2 model as :func:`solo_lib.inference.predict`
    sees it, with its own configuration.

    Args:
        model: passed through to ``predict_fn``.
        dataset: the images and their ground truth.
        config: passed through to ``predict_fn`` (a ``SOLOConfig``); default ``model.config``
            (None for a model without one).
        predict_fn: ``predict_fn(model, image, config) -> {"masks", "labels", "scores"}`` with
            ``image`` ``(H, W, 3)`` uint8 and ``(K, H, W)`` binary masks at the image's size,
            ``(K,)`` contiguous labels and ``(K,)`` scores (numpy or tensors); default
            :func:`solo_lib.inference.predict`, imported only when it is used, so that this module
            (and scoring another predictor's output) does not load TensorFlow.
        image_ids: the images to evaluate (default: all).
        progress: show a progress bar over the images (unless ``TQDM_DISABLE`` is set); callers
            that draw their own bar, such as training's ``MaskAPCurve``, pass False.

    Returns:
        ``(EvalResult, results)``; ``results`` can be saved with :func:`write_results_json`.

    Raises:
        CheckpointError: ``model`` (a SOLOv2) predicts other classes than the dataset's, or the
            same ones in another label order (``solo_lib.model.solov2.check_classes``).
        ValueError: ``predict_fn`` returned masks of another size than the image.
    """
    if config is None:
        config = getattr(model, "config", None)
    if predict_fn is None:
        from solo_lib.inference import predict as predict_fn
    if hasattr(getattr(model, "config", None), "num_classes"):  # a SOLOv2 (other models: not checked)
        from solo_lib.model.solov2 import check_classes

        check_classes(model, dataset)
    image_ids = dataset.image_ids if image_ids is None else [int(i) for i in image_ids]
    results = []
    for image_id in tqdm(image_ids, desc="evaluate", unit="image", disable=not progress or progress_disabled()):
        image = dataset.load_image(image_id)
        pred = predict_fn(model, image, config)
        masks = np.asarray(pred["masks"])
        if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
            raise ValueError(f"image id {image_id}: predict_fn returned masks of shape {masks.shape}, expected "
                             f"(K, {image.shape[0]}, {image.shape[1]}) at the original image size")
        results += predictions_to_coco_results(image_id, masks, pred["labels"], pred["scores"], dataset.categories)
    return evaluate_segm(dataset, results, image_ids=image_ids), results


def greedy_match(iou, iou_thr: float) -> np.ndarray:
    """COCO's matching of one image's detections of one class to its ground truth.

    Detections are taken in score order; each is matched to the not-yet-matched object it
    overlaps most, if that IoU is at least ``iou_thr``, and is otherwise a false positive. An
    object matched once cannot be matched again, so a duplicate detection of it is a false
    positive. This is ``COCOeval.evaluateImg`` without crowd regions or ignored objects (ties go
    to the later object, as there). Notebook 11, exercise 11c.

    Args:
        iou: ``(D, G)`` mask IoU of D detections, highest score first, with G objects.
        iou_thr: the IoU a match needs (0.5 for AP50).

    Returns:
        ``(D,)`` int: the index of the object each detection matched, or -1.
    """
    iou = np.asarray(iou, np.float64)
    if iou.ndim != 2:
        raise ValueError(f"iou must be (D, G), got shape {iou.shape}")
    matched = np.full(iou.shape[0], -1, np.int64)
    taken = np.zeros(iou.shape[1], bool)
    for d in range(iou.shape[0] if iou.shape[1] else 0):
        candidates = np.where(taken, -1.0, iou[d])  # an object matched already is out of the race
        best = iou.shape[1] - 1 - int(np.argmax(candidates[::-1]))  # the largest IoU; ties: the later object
        if candidates[best] >= min(iou_thr, 1 - 1e-10):
            matched[d], taken[best] = best, True
    return matched
