"""Every exercise checker accepts its solution, rejects a wrong answer and survives a stub."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from solo_lib.exercises import CHECKERS, check

SOLUTIONS = Path(__file__).resolve().parents[1] / "notebooks" / "solutions"


def solution(module, name):
    (path,) = SOLUTIONS.glob(f"{module}_*.py")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, name)


ANSWERS = {
    "00": ("ex00", "count_instances"),
    "01a": ("ex01", "rle_encode"),
    "01b": ("ex01", "polygon_area"),
    "02a": ("ex02", "rectangle_to_polygon"),
    "02b": ("ex02", "count_instances"),
    "03a": ("ex03", "vertical_flip"),
    "04a": ("ex04", "cell_of"),
    "04b": ("ex04", "levels_of"),
    "05a": ("ex05", "feature_sizes"),
    "06a": ("ex06", "dynamic_conv_one_image"),
    "07a": ("ex07", "dice"),
    "07b": ("ex07", "focal"),
    "08a": ("ex08", "learning_rate"),
    "09a": ("ex09", "resume_epoch"),
    "10a": ("ex10", "point_nms"),
    "10b": ("ex10", "decay"),
    "11a": ("ex11", "mask_iou"),
    "11b": ("ex11", "coco_ap"),
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
    "05a": lambda h, w: [(h // s, w // s) for s in (4, 8, 16, 32)],  # floor instead of ceil
    "06a": lambda f, g: np.einsum("hwe,ke->hwk", f, g),  # right numbers, wrong axis order
    "07a": lambda p, q: 1 - 2 * (p * q).sum() / (p.sum() + q.sum() + 1e-3),  # sums, not sums of squares
    "07b": lambda p, y, a, g: -a * (1 - np.where(y == 1, p, 1 - p)) ** g * np.log(np.where(y == 1, p, 1 - p)),  # alpha for all
    "08a": lambda step, base, warm, ratio, bounds, factor: base * min(1, step / warm) * factor ** sum(step >= b for b in bounds),  # warm-up from 0
    "09a": lambda names: max([int(n[-10:-6]) for n in names if n.endswith(".keras")], default=0),  # counts .tmp files
    "10a": lambda s: np.where(s == np.max(np.lib.stride_tricks.sliding_window_view(np.pad(s, 1, constant_values=-1), (3, 3)), axis=(-2, -1)), s, 0),  # 3x3
    "10b": lambda iou, sigma: np.exp(-sigma * np.triu(iou, 1) ** 2).min(axis=0),  # no compensation
    "11a": lambda a, b: float((a & b).sum() / max(1, a.sum())),  # over a's area, not the union
    "11b": lambda m, n: float(np.mean((np.cumsum(m) / np.arange(1, len(m) + 1))[m])) if m.any() else 0.0,  # VOC-style, no interpolation
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
