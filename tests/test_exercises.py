"""Every exercise checker accepts its solution, rejects a wrong answer and survives a stub."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from solo_lib.exercises import CHECKERS, check

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def solution(module, name):
    (path,) = SOLUTIONS.glob(f"{module}_*.py")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)



def _centre_cells_unclamped(mask, S, eps):
    """04c with a realistic mistake: the centre region in cells, not kept within 1 cell of the centre cell."""
    ys, xs = np.nonzero(mask)
    cy, cx, h, w = ys.mean(), xs.mean(), np.ptp(ys) + 1, np.ptp(xs) + 1
    rows = [min(max(int(np.floor(v / mask.shape[0] * S)), 0), S - 1) for v in (cy - eps * h / 2, cy + eps * h / 2)]
    cols = [min(max(int(np.floor(v / mask.shape[1] * S)), 0), S - 1) for v in (cx - eps * w / 2, cx + eps * w / 2)]
    return [(i, j) for i in range(rows[0], rows[1] + 1) for j in range(cols[0], cols[1] + 1)]


def _train_step_unweighted(model, optimizer, images, targets):
    """08a with a realistic mistake: category loss + mask loss, without the mask loss weight (3)."""
    from solo_lib.losses import solo_losses

    with tf.GradientTape() as tape:
        losses = solo_losses(model(images, training=True), targets, model.config)
        loss = losses["category"] + losses["mask"]
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss


ANSWERS = {
    "00": ("ex00", "count_instances"),
    "01a": ("ex01", "rle_encode"),
    "01b": ("ex01", "polygon_area"),
    "02a": ("ex02", "rectangle_to_polygon"),
    "02b": ("ex02", "count_instances"),
    "03a": ("ex03", "vertical_flip"),
    "04a": ("ex04", "cell_of"),
    "04b": ("ex04", "levels_of"),
    "04c": ("ex04", "centre_cells"),
    "05a": ("ex05", "feature_sizes"),
    "05b": ("ex05", "top_down"),
    "06a": ("ex06", "dynamic_conv_one_image"),
    "06b": ("ex06", "kernel_branch"),
    "07a": ("ex07", "dice"),
    "07b": ("ex07", "focal"),
    "07c": ("ex07", "mask_loss"),
    "08a": ("ex08", "train_step"),
    "08b-a": ("ex08b", "mask_to_polygon"),
    "09a": ("ex09", "resume_epoch"),
    "09b": ("ex09", "learning_rate"),
    "10a": ("ex10", "point_nms"),
    "10b": ("ex10", "decay"),
    "10c": ("ex10", "matrix_nms_scores"),
    "11a": ("ex11", "mask_iou"),
    "11b": ("ex11", "coco_ap"),
    "11c": ("ex11", "match"),
    "12a": ("ex12", "instance_list"),
}

WRONG = {
    "00": lambda path, name: 3,
    "01a": lambda mask: {"counts": [int(v) for v in np.asarray(mask).reshape(-1)], "size": list(mask.shape)},
    "01b": lambda flat: 0.5 * (sum(flat[0::2] * 0) + 12),  # right for one case only
    "02a": lambda points: [c for p in points for c in p],  # LabelMe's published bug: 2 points, not 4 corners
    "02b": lambda shapes: len(shapes),
    "03a": lambda s: dict(s, image=s["image"][::-1]),  # flips the image only
    "04a": lambda v, size, s: int(round(v / size * s)),  # rounds instead of floor, no clipping
    "04b": lambda w, h, ranges: [i for i, (lo, hi) in enumerate(ranges) if lo < (w * h) ** 0.5 < hi],  # open ends
    "04c": lambda mask, S, eps: _centre_cells_unclamped(mask, S, eps),  # forgets the clamp to +/- 1 cell
    "05a": lambda h, w: [(h // s, w // s) for s in (4, 8, 16, 32)],  # floor instead of ceil
    "05b": lambda laterals: [lat + np.repeat(np.repeat(above, 2, 1), 2, 2)[:, :lat.shape[1], :lat.shape[2]] for lat, above in zip(laterals[:-1], laterals[1:])] + [laterals[-1]],  # adds the lateral above, not the merged map above
    "06a": lambda f, g: np.einsum("hwe,ke->hwk", f, g),  # right numbers, wrong axis order
    "06b": lambda f, s, tower, out: out(tower(tf.concat([tf.image.resize(f, (s, s)), np.broadcast_to(np.stack(np.meshgrid(np.linspace(-1, 1, s), np.linspace(-1, 1, s)), -1), (f.shape[0], s, s, 2)).astype("float32")], -1))),  # coordinates of the S x S grid, added after resizing instead of before
    "07a": lambda p, q: 1 - 2 * (p * q).sum() / (p.sum() + q.sum() + 1e-3),  # sums, not sums of squares
    "07b": lambda p, y, a, g: -a * (1 - np.where(y == 1, p, 1 - p)) ** g * np.log(np.where(y == 1, p, 1 - p)),  # alpha for all
    "07c": lambda logits, t, valid, eps: float((lambda p: 1 - 2 * (p * t).sum((-2, -1)) / ((p * p).sum((-2, -1)) + (t * t).sum((-2, -1)) + eps))(1 / (1 + np.exp(-logits))).mean()),  # averages over padding too
    "08a": lambda model, optimizer, images, targets: _train_step_unweighted(model, optimizer, images, targets),  # forgets the mask loss weight
    "08b-a": lambda mask: solution("ex08b", "mask_to_polygon")(mask) - 0.5,  # pixel centres, not pixel edges
    "09a": lambda names: max([int(n[-10:-6]) for n in names if n.endswith(".keras")], default=0),  # counts .tmp files
    "09b": lambda step, base, warm, ratio, bounds, factor: base * min(1, step / warm) * factor ** sum(step >= b for b in bounds),  # warm-up from 0
    "10a": lambda s: np.where(s == np.max(np.lib.stride_tricks.sliding_window_view(np.pad(s, 1, constant_values=-1), (3, 3)), axis=(-2, -1)), s, 0),  # 3x3
    "10b": lambda iou, sigma: np.exp(-sigma * np.triu(iou, 1) ** 2).min(axis=0),  # no compensation
    "10c": lambda m, l, s, sigma: solution("ex10", "matrix_nms_scores")(m, np.zeros_like(l), s, sigma),  # ignores the classes: decays across them
    "11a": lambda a, b: float((a & b).sum() / max(1, a.sum())),  # over a's area, not the union
    "11b": lambda m, n: float(np.mean((np.cumsum(m) / np.arange(1, len(m) + 1))[m])) if m.any() else 0.0,  # VOC-style, no interpolation
    "11c": lambda iou, thr: (np.asarray(iou) >= thr).any(axis=1),  # an object can be matched twice: duplicates count as hits
    "12a": lambda r, names, t: [(names[l], float(s), int(m.sum())) for m, l, s in zip(r["masks"], r["labels"], r["scores"]) if s > t],  # > instead of >=: drops a score at the threshold
}


def test_every_checker_is_covered():
    assert set(ANSWERS) == set(CHECKERS) == set(WRONG)


@pytest.mark.parametrize("exercise", sorted(CHECKERS))
def test_solution_passes(exercise, capsys):
    check(exercise, solution(*ANSWERS[exercise]))
    assert capsys.readouterr().out.startswith(f"✓ {exercise}")


@pytest.mark.parametrize("exercise", sorted(CHECKERS))
def test_wrong_answer_fails(exercise, capsys):
    check(exercise, WRONG[exercise])
    assert capsys.readouterr().out.startswith(f"✗ {exercise}")


def test_stub_reports_not_attempted(capsys):
    def rle_encode(mask):
        raise NotImplementedError

    check("01a", rle_encode)
    assert capsys.readouterr().out.startswith("… 01a rle_encode: not attempted yet")
