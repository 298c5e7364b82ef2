"""Checkers of the exercises of notebooks 00-07 (data, targets, model, losses).

Each ``check_NN*`` takes the learner's function, runs it on cases with known answers and returns a
short description of what was checked, or raises :class:`Wrong` naming the first failing case.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from solo_lib.exercises.common import expect as _expect

# -- 00: the sample dataset ------------------------------------------------------------------

def check_00_count_instances(count_instances) -> str:
    """``count_instances(annotation_file, class_name) -> int``: non-crowd instances of a class."""
    from solo_lib.data.coco import sample_dataset_paths

    for split in ("train", "val"):
        path = sample_dataset_paths(split)[0]
        raw = json.loads(Path(path).read_text())
        for cat in raw["categories"]:
            expected = sum(1 for a in raw["annotations"] if a["category_id"] == cat["id"] and not a.get("iscrowd"))
            got = count_instances(path, cat["name"])
            _expect(got == expected, f"{split}, class {cat['name']!r}: expected {expected}, got {got!r}")
    return "both splits, every class"


# -- 01: COCO format -------------------------------------------------------------------------

def _cases_masks():
    rng = np.random.default_rng(7)
    yield np.zeros((3, 4), np.uint8)
    yield np.ones((2, 5), np.uint8)
    yield np.array([[0, 1, 1], [0, 1, 0]], np.uint8)
    for shape in ((6, 9), (11, 4), (16, 16)):
        yield (rng.random(shape) > 0.6).astype(np.uint8)


def check_01a_rle_encode(rle_encode) -> str:
    """``rle_encode(mask) -> {"counts": [int, ...], "size": [h, w]}``: COCO's uncompressed RLE."""
    for k, mask in enumerate(_cases_masks()):
        rle = rle_encode(mask.copy())
        _expect(isinstance(rle, dict) and "counts" in rle and "size" in rle,
                f"case {k}: return a dict with 'counts' and 'size', got {rle!r}")
        _expect(list(rle["size"]) == list(mask.shape),
                f"case {k}: size should be {list(mask.shape)}, got {rle['size']}")
        counts = [int(c) for c in rle["counts"]]
        _expect(sum(counts) == mask.size, f"case {k}: counts must add up to h*w = {mask.size}, got {sum(counts)}")
        decoded = mask_utils.decode(mask_utils.frPyObjects({"counts": counts, "size": list(mask.shape)}, *mask.shape))
        _expect(np.array_equal(decoded, mask), f"case {k}: pycocotools decodes your RLE of\n{mask}\nto\n{decoded}\n"
                                               "(hint: COCO reads pixels column by column, starting with a run of 0s)")
    return "6 masks round-trip through pycocotools"


def check_01b_polygon_area(polygon_area) -> str:
    """``polygon_area([x0, y0, x1, y1, ...]) -> float``: the shoelace formula."""
    cases = [([0, 0, 4, 0, 4, 3, 0, 3], 12.0), ([0, 0, 4, 0, 0, 3], 6.0), ([0, 3, 4, 3, 4, 0, 0, 0], 12.0),
             ([1, 1, 5, 1, 5, 5, 3, 2, 1, 5], 10.0)]
    for flat, expected in cases:
        got = polygon_area(list(flat))
        _expect(got is not None and abs(float(got) - expected) < 1e-9,
                f"polygon {flat}: expected {expected}, got {got!r} (is the area positive whatever the orientation?)")
    return f"{len(cases)} polygons, both orientations, one concave"


# -- 02: LabelMe to COCO ---------------------------------------------------------------------

def check_02a_rectangle_to_polygon(rectangle_to_polygon) -> str:
    """``rectangle_to_polygon([[x1, y1], [x2, y2]]) -> [x, y, ...]``: 4 corners, any corner order in."""
    for p1, p2 in (([2, 3], [10, 8]), ([10, 8], [2, 3]), ([10, 3], [2, 8])):
        flat = [float(v) for v in rectangle_to_polygon([p1, p2])]
        _expect(len(flat) == 8, f"{[p1, p2]}: expected 8 numbers (4 corners), got {len(flat)}")
        got = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([flat], 12, 12)))
        want = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[2, 3, 10, 3, 10, 8, 2, 8]], 12, 12)))
        _expect(np.array_equal(got, want), f"{[p1, p2]}: your corners {flat} do not outline the rectangle")
    return "3 corner orders"


def check_02b_count_instances(count_instances) -> str:
    """``count_instances(shapes) -> int``: shapes grouped by (label, group_id), ``__ignore__`` skipped."""
    cases = [
        ([], 0),
        ([{"label": "a", "group_id": None}, {"label": "a", "group_id": None}], 2),
        ([{"label": "a", "group_id": 1}, {"label": "a", "group_id": 1}], 1),
        ([{"label": "a", "group_id": 1}, {"label": "b", "group_id": 1}], 2),
        ([{"label": "__ignore__", "group_id": None}, {"label": "a", "group_id": 2}], 1),
    ]
    for shapes, expected in cases:
        got = count_instances([dict(s, shape_type="polygon", points=[]) for s in shapes])
        _expect(got == expected, f"shapes {shapes}: expected {expected}, got {got!r}")
    return f"{len(cases)} shape lists"


# -- 03: augmentation ------------------------------------------------------------------------

def _coded_sample():
    """Three instances, each painted in a colour that encodes its index."""
    image = np.zeros((20, 30, 3), np.uint8)
    masks = np.zeros((3, 20, 30), np.uint8)
    for k, (y0, y1, x0, x1) in enumerate(((1, 6, 2, 9), (8, 19, 12, 15), (3, 10, 20, 29))):
        masks[k, y0:y1, x0:x1] = 1
        image[y0:y1, x0:x1] = (50 * (k + 1), 0, 255)
    boxes = np.array([[2, 1, 9, 6], [12, 8, 15, 19], [20, 3, 29, 10]], np.float32)
    return {"image": image, "masks": masks, "labels": np.array([2, 0, 1], np.int32),
            "iscrowd": np.array([False, True, False]), "boxes": boxes}


def check_03a_vertical_flip(vertical_flip) -> str:
    """``vertical_flip(sample) -> sample``: image, masks and boxes flipped top-bottom, together."""
    sample = _coded_sample()
    out = {k: np.asarray(v) for k, v in vertical_flip({k: v.copy() for k, v in sample.items()}).items()}
    _expect(np.array_equal(out["image"], sample["image"][::-1]), "the image is not flipped top-bottom")
    _expect(np.array_equal(out["masks"], sample["masks"][:, ::-1]), "the masks are not flipped like the image")
    _expect(np.array_equal(out["labels"], sample["labels"]) and np.array_equal(out["iscrowd"], sample["iscrowd"]),
            "labels and iscrowd must not change")
    h = sample["image"].shape[0]
    want = sample["boxes"].copy()
    want[:, 1], want[:, 3] = h - sample["boxes"][:, 3], h - sample["boxes"][:, 1]
    _expect(np.allclose(out["boxes"], want), f"boxes should be\n{want}\ngot\n{out['boxes']}\n(hint: y0' = H - y1)")
    for k in range(3):
        colours = out["image"][out["masks"][k].astype(bool)]
        _expect((colours[:, 0] == 50 * (k + 1)).all(), f"instance {k}: its mask no longer covers its pixels")
    return "image, masks, boxes stay aligned"


# -- 05: backbone and FPN --------------------------------------------------------------------

def check_05a_feature_sizes(feature_sizes) -> str:
    """``feature_sizes(h, w) -> [(h2, w2), (h3, w3), (h4, w4), (h5, w5)]``: C2-C5 sizes."""
    import numpy as np

    from solo_lib.model.backbone import Backbone

    backbone = Backbone("tiny")
    for h, w in ((64, 64), (100, 37), (33, 130)):
        expected = [tuple(int(d) for d in c.shape[1:3]) for c in backbone(np.zeros((1, h, w, 3), "float32"))]
        got = [tuple(int(d) for d in pair) for pair in feature_sizes(h, w)]
        _expect(got == expected, f"input {h}x{w}: the backbone gives {expected}, you said {got} "
                                 "(hint: a stride-2 conv with 'same' padding gives ceil(n / 2))")
    return "3 input sizes, including odd ones"


# -- 06: heads and dynamic convolution -------------------------------------------------------

def check_06a_dynamic_conv(dynamic_conv_one_image) -> str:
    """``dynamic_conv_one_image(F (H, W, E), G (K, E)) -> (K, H, W)`` mask logits."""
    rng = np.random.default_rng(6)
    for h, w, e, k in ((4, 5, 3, 2), (7, 3, 8, 5)):
        feature, kernels = rng.normal(size=(h, w, e)), rng.normal(size=(k, e))
        want = np.stack([(feature * g).sum(axis=-1) for g in kernels])
        got = np.asarray(dynamic_conv_one_image(feature, kernels), float)
        _expect(got.shape == want.shape, f"F {feature.shape}, G {kernels.shape}: expected shape {want.shape}, "
                                         f"got {got.shape}")
        _expect(np.allclose(got, want, atol=1e-6), "values differ: mask k at pixel (y, x) is sum_e F[y, x, e] G[k, e]")
    return "2 shapes"


# -- 04: targets -----------------------------------------------------------------------------

def check_04a_cell_of(cell_of) -> str:
    """``cell_of(v, size, S) -> int``: the grid cell of coordinate v on a side of ``size`` pixels."""
    rng = np.random.default_rng(4)
    cases = [(0.0, 256, 24), (255.0, 256, 24), (10.66, 256, 24), (10.67, 256, 24), (128.0, 192, 16), (-1.0, 64, 12),
             (64.5, 64, 12)] + [(float(rng.uniform(0, 300)), 300, int(rng.integers(5, 41))) for _ in range(20)]
    for v, size, grid in cases:
        expected = int(min(max(np.floor(v / size * grid), 0), grid - 1))
        got = cell_of(v, size, grid)
        _expect(got == expected, f"cell_of({v}, {size}, {grid}): expected {expected}, got {got!r}")
    return f"{len(cases)} coordinates, including the edges"


def check_04b_levels_of(levels_of) -> str:
    """``levels_of(w, h, scale_ranges) -> list[int]``: levels whose range holds sqrt(w * h)."""
    from solo_lib.config import SOLOConfig

    ranges = SOLOConfig.paper_r50(80).scale_ranges
    cases = [((10, 10), [0]), ((48, 48), [0, 1]), ((96, 96), [0, 1, 2]), ((97, 97), [1, 2]), ((60, 240), [1, 2]),
             ((1000, 1000), [4]), ((3000, 3000), [])]
    for (w, h), expected in cases:
        got = list(levels_of(w, h, ranges))
        _expect(got == expected, f"w={w}, h={h} (sqrt(w*h) = {np.sqrt(w * h):g}): expected levels {expected}, "
                                 f"got {got} (ranges include both ends)")
    return f"{len(cases)} sizes, at range edges too"


# -- 07: losses ------------------------------------------------------------------------------

def check_07a_dice(dice) -> str:
    """``dice(p, q) -> float``: ``1 - 2 sum(pq) / (sum p^2 + sum q^2 + 1e-3)``."""
    rng = np.random.default_rng(7)
    cases = [(np.ones((4, 4)), np.ones((4, 4))), (np.zeros((3, 3)), np.ones((3, 3))),
             (rng.random((6, 5)), (rng.random((6, 5)) > 0.5).astype(float)), (rng.random((2, 9)), rng.random((2, 9)))]
    for p, q in cases:
        expected = 1 - 2 * (p * q).sum() / ((p ** 2).sum() + (q ** 2).sum() + 1e-3)
        got = float(dice(p, q))
        _expect(abs(got - expected) < 1e-6, f"p, q of shape {p.shape}: expected {expected:.6f}, got {got:.6f}")
    return f"{len(cases)} pairs, hard and soft"


def check_07b_focal(focal) -> str:
    """``focal(p, y, alpha, gamma) -> array``: per-element sigmoid focal loss (RetinaNet Eq. 5)."""
    p = np.array([0.01, 0.3, 0.5, 0.9, 0.99, 0.2])
    y = np.array([0, 1, 0, 1, 0, 1])
    for alpha, gamma in ((0.25, 2.0), (0.5, 0.0), (0.9, 1.0)):
        p_t = np.where(y == 1, p, 1 - p)
        a_t = np.where(y == 1, alpha, 1 - alpha)
        expected = -a_t * (1 - p_t) ** gamma * np.log(p_t)
        got = np.asarray(focal(p.copy(), y.copy(), alpha, gamma), float)
        _expect(got.shape == expected.shape and np.allclose(got, expected, rtol=1e-6),
                f"alpha={alpha}, gamma={gamma}: expected {np.round(expected, 4)}, got {np.round(got, 4)} "
                "(hint: alpha weights the positives, 1 - alpha the negatives)")
    return "3 (alpha, gamma) settings, positives and negatives"
