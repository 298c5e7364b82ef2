"""Checkers of the exercises of notebooks 08-11 (a training step, resuming, the learning-rate
schedule, inference, evaluation).

Each ``check_NN*`` takes the learner's function, runs it on cases with known answers and returns a
short description of what was checked, or raises ``Wrong`` naming the first failing case. Where
the library already does the job (the training step, the learning-rate schedule, point NMS, Matrix NMS, COCO's mask
IoU) the expected answers come from it; the COCO AP interpolation is written out here in numpy,
following ``COCOeval.accumulate``.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from solo_lib.exercises.common import blobs as _blobs
from solo_lib.exercises.common import expect as _expect

# -- 08: one training step by hand -----------------------------------------------------------

def check_08a_train_step(train_step) -> str:
    """``train_step(model, optimizer, images, targets) -> total loss``: one optimisation step written
    out (forward pass, SOLO losses, gradient, optimizer update), compared with ``SOLOv2.train_step``
    run on an identical copy of a tiny model, for two steps (the second one uses the momentum the
    first left in the optimizer)."""
    import keras

    from solo_lib.config import SOLOConfig
    from solo_lib.data import pipeline
    from solo_lib.data.coco import load_sample_dataset
    from solo_lib.model.solov2 import build_model

    try:  # a stub raises before it looks at its arguments: know that before building two models
        train_step(None, None, None, None)
    except NotImplementedError:
        raise
    except Exception:  # an attempt, failing on these placeholder arguments as it should
        pass
    dataset = load_sample_dataset("train")
    config = SOLOConfig.tiny(dataset.num_classes, image_scale=(96, 96))
    batches = iter(pipeline.training_dataset(pipeline.in_memory_source(dataset), config, batch_size=2, seed=8))
    keras.utils.set_random_seed(8)
    yours = build_model(config, (96, 96))
    reference = None  # built after your first step, from the same starting weights

    def sgd():  # the recipe's optimiser: SGD with momentum 0.9, global gradient clipping at 35
        return keras.optimizers.SGD(0.01, momentum=0.9, global_clipnorm=35.0)

    optimizer = sgd()
    for step in (1, 2):
        images, targets = next(batches)
        before = yours.get_weights()
        got = train_step(yours, optimizer, images, targets)
        if reference is None:
            reference = build_model(config, (96, 96))
            reference.set_weights(before)
            reference.compile(optimizer=sgd())
        for metric in reference.metrics:
            metric.reset_state()
        expected = float(reference.train_step((images, targets))["loss"])
        _expect(all(float(m.count.numpy()) == 0 for m in yours.metrics),
                "your function called model.train_step (or fit): write the step yourself with tf.GradientTape")
        _expect(got is not None and np.isclose(float(got), expected, rtol=1e-4),
                f"step {step}: your function returned the loss {got!r}, the library's step computed {expected:.5f} "
                "(hint: return solo_losses(...)['total'], the category loss plus the weighted mask loss)")
        for ref_w, your_w in zip(reference.trainable_weights, yours.trainable_weights):
            _expect(np.allclose(your_w.numpy(), ref_w.numpy(), rtol=1e-4, atol=1e-6),
                    f"step {step}: after your step the weight {ref_w.path} differs from the library's by up to "
                    f"{np.abs(your_w.numpy() - ref_w.numpy()).max():.2g} (hint: differentiate the total loss with "
                    "respect to model.trainable_variables, and let optimizer.apply_gradients update them, so "
                    "momentum and clipping apply)")
    return "2 steps of a tiny model on sample batches: same loss and same weights as SOLOv2.train_step"


# -- 09: resuming and the learning-rate schedule ------------------------------------------------

def check_09a_resume_epoch(resume_epoch) -> str:
    """``resume_epoch(file_names) -> int``: epochs done by the newest ``epoch_NNNN.keras``, 0 if none."""
    cases = (
        ([], 0),
        (["events.out.tfevents.1", "notes.txt"], 0),
        (["epoch_0001.keras", "epoch_0002.keras"], 2),
        (["epoch_0009.keras", "epoch_0010.keras", "epoch_0002.keras"], 10),  # numbers, not list order
        (["epoch_0003.keras", ".tmp-4242-epoch_0004.keras"], 3),  # a save that was killed half-way
        (["epoch_0005.keras", "epoch_0006.keras.bak", "old_epoch_0099.keras", "epoch_12.keras"], 5),
    )
    for names, expected in cases:
        got = resume_epoch(list(names))
        _expect(got == expected, f"{names}: expected {expected}, got {got!r} (hint: only names that are exactly "
                                 "epoch_ + 4 digits + .keras are checkpoints)")
    return f"{len(cases)} folders, with half-written and unrelated files"


def check_09b_learning_rate(learning_rate) -> str:
    """``learning_rate(step, base, warmup_steps, ratio, boundaries, factor) -> float``: linear
    warm-up from ``ratio * base`` to ``base``, then ``base * factor ** (boundaries passed)``."""
    from solo_lib.optim import WarmupStepDecay

    settings = ((0.01, 20, 0.01, (720,), 0.1), (0.02, 500, 0.001, (8000, 11000), 0.1), (0.1, 1, 0.5, (), 0.5))
    for base, warmup, ratio, boundaries, factor in settings:
        schedule = WarmupStepDecay(base, warmup, ratio, boundaries, factor)
        for step in sorted({0, 1, warmup // 2, warmup - 1, warmup, warmup + 1, *boundaries,
                            *(b - 1 for b in boundaries), 12000}):
            expected = float(schedule(step))
            got = learning_rate(step, base, warmup, ratio, boundaries, factor)
            _expect(np.isclose(float(got), expected, rtol=1e-5),
                    f"step {step} (base {base}, warm-up {warmup} steps from {ratio} x base, decay x{factor} at "
                    f"{list(boundaries)}): expected {expected:.6g}, got {got!r} (hint: at step 0 the rate is "
                    "ratio x base, not 0; the warm-up ends at warmup_steps)")
    return "3 schedules, steps around the warm-up end and each decay"


# -- 10: inference and Matrix NMS ----------------------------------------------------------------

def check_10a_point_nms(point_nms) -> str:
    """``point_nms(scores (S, S)) -> (S, S)``: keep a score where it is the maximum of itself and
    its neighbours above, to the left and above-left; 0 elsewhere."""
    import tensorflow as tf

    from solo_lib.inference import point_nms as reference

    rng = np.random.default_rng(10)
    grids = [rng.random((s, s)).astype(np.float32) for s in (1, 2, 5, 12)]
    grids.append(np.round(rng.random((6, 6)) * 3).astype(np.float32) / 3)  # many ties: tied maxima all stay
    for grid in grids:
        expected = reference(tf.constant(grid[None, :, :, None])).numpy()[0, :, :, 0]
        got = np.asarray(point_nms(grid.copy()), np.float32)
        _expect(got.shape == grid.shape and np.allclose(got, expected),
                f"a {grid.shape[0]}x{grid.shape[1]} grid: expected\n{np.round(expected, 2)}\ngot\n{np.round(got, 2)}\n"
                "(hint: only the 2x2 window ending at the cell counts, not a 3x3 one around it)")
    return "5 grids, including ties and 1x1"


def check_10b_matrix_nms_decay(decay) -> str:
    """``decay(iou (N, N), sigma) -> (N,)``: Matrix NMS's gaussian decay factor of each mask, for
    masks of one class sorted by score (highest first)."""
    from solo_lib.nms import matrix_nms

    rng = np.random.default_rng(11)
    for count, sigma in ((2, 2.0), (6, 2.0), (9, 0.5), (9, 4.0)):
        masks = _blobs(count, 24, 28, rng)
        flat = masks.reshape(count, -1).astype(np.float64)
        inter = flat @ flat.T
        area = flat.sum(axis=1)
        iou = inter / (area[:, None] + area[None, :] - inter)
        scores = np.sort(rng.uniform(0.2, 1.0, count))[::-1].astype(np.float32)
        decayed, _, _, keep = matrix_nms(masks.astype(bool), np.zeros(count, np.int32), scores, kernel="gaussian",
                                         sigma=sigma)
        expected = np.ones(count)
        expected[np.asarray(keep)] = np.asarray(decayed) / scores[np.asarray(keep)]
        got = np.asarray(decay(iou.copy(), sigma), float)
        _expect(got.shape == (count,) and np.allclose(got, expected, rtol=1e-4, atol=1e-6),
                f"{count} masks, sigma {sigma}: expected {np.round(expected, 4)}, got {np.round(got, 4)} "
                "(hint: a mask is decayed only by higher-scored ones, and each of those is compensated by its "
                "own largest IoU with a mask above it)")
    return "4 sets of overlapping masks, sigma 0.5 to 4"


# -- 11: evaluation ----------------------------------------------------------------------------

def check_11a_mask_iou(mask_iou) -> str:
    """``mask_iou(a (H, W), b (H, W)) -> float``: intersection over union of two binary masks
    (0.0 when both are empty)."""
    rng = np.random.default_rng(12)
    blobs = _blobs(4, 20, 30, rng)
    empty = np.zeros((20, 30), np.uint8)
    pairs = [(blobs[0], blobs[1]), (blobs[2], blobs[2]), (blobs[3], empty), (empty, empty), (blobs[1], blobs[3])]
    for a, b in pairs:
        ra, rb = (mask_utils.encode(np.asfortranarray(m)) for m in (a, b))
        expected = float(mask_utils.iou([ra], [rb], [0])[0, 0])
        got = mask_iou(a.copy(), b.copy())
        _expect(np.isclose(float(got), expected), f"masks of {int(a.sum())} and {int(b.sum())} pixels with "
                f"{int((a & b).sum())} in common: expected {expected:.4f}, got {got!r}")
    return "5 pairs, including identical and empty masks (compared with pycocotools)"


def _coco_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's 101-point interpolated AP of one precision-recall curve (``COCOeval.accumulate``):
    precision made non-increasing from the right, read at recall 0, 0.01, ..., 1 (the first
    detection reaching each recall), 0 where the recall is never reached."""
    if len(precision) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, np.linspace(0.0, 1.0, 101), side="left")
    sampled = np.zeros(101)
    reached = at < len(envelope)
    sampled[reached] = envelope[at[reached]]
    return float(sampled.mean())


def check_11b_coco_ap(coco_ap) -> str:
    """``coco_ap(is_match (D,), num_ground_truth) -> float``: AP of detections sorted by score,
    ``is_match[d]`` True when detection d matched a ground-truth object."""
    rng = np.random.default_rng(13)
    cases = [(np.array([True, True, True]), 3), (np.array([True, False, True, False]), 4),
             (np.array([False, False]), 2), (np.array([], bool), 3), (np.array([False, True, True, True]), 5)]
    for n in (10, 40):
        is_match = rng.random(n) < 0.6
        cases.append((is_match, int(is_match.sum()) + 2))  # two objects never found
    for is_match, num_gt in cases:
        tp = np.cumsum(is_match)
        recall = tp / num_gt
        precision = tp / np.arange(1, len(is_match) + 1)
        expected = _coco_ap(recall, precision)
        got = coco_ap(is_match.copy(), num_gt)
        _expect(np.isclose(float(got), expected, atol=1e-9),
                f"matches {is_match.astype(int).tolist()} with {num_gt} objects: expected {expected:.4f}, got {got!r} "
                "(hint: take the best precision at this recall or any higher one, at 101 recall points)")
    return f"{len(cases)} ranked lists, including none matched and no detections"
