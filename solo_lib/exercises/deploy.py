"""Checker of notebook 12's exercise (deploy): reading what an exported model returns.

Every export (and ``run_model.py``) answers with ``{"masks": (K, H, W) uint8, "labels": (K,) int32,
"scores": (K,) float32}``, highest score first, and ships the class names in ``labels.txt``. 12a
turns that into the list an application shows. The cases are rectangles whose areas are known from
how they were drawn, so the expected answers are not computed by the code under test's method.
"""

from __future__ import annotations

import numpy as np

from solo_lib.exercises.common import expect as _expect


def _case(boxes, labels, scores, size=(40, 48)):
    """A result of rectangles ``(top, left, height, width)``; returns it and each one's area."""
    masks = np.zeros((len(boxes), *size), np.uint8)
    for k, (top, left, h, w) in enumerate(boxes):
        masks[k, top:top + h, left:left + w] = 1
    result = {"masks": masks, "labels": np.asarray(labels, np.int32), "scores": np.asarray(scores, np.float32)}
    return result, [h * w for _, _, h, w in boxes]


def check_12a_instance_list(instance_list) -> str:
    """``instance_list(result, class_names, min_score) -> [(name, score, area), ...]``: the instances
    with ``score >= min_score``, in the result's order (highest score first), each with its class
    name, its score as a float and its mask's pixel count as an int."""
    names = ["disc", "block", "leaf", "star"]
    rng = np.random.default_rng(12)
    cases = []
    result, areas = _case([(2, 3, 10, 12), (20, 25, 6, 20), (1, 30, 15, 4)], [2, 0, 2], [0.9, 0.5, 0.2])
    cases.append(("three instances, threshold 0.3", result, 0.3, [0, 1], areas))
    cases.append(("a score exactly at the threshold (0.5) is kept", result, 0.5, [0, 1], areas))
    cases.append(("every score below the threshold", result, 0.95, [], areas))
    empty, _ = _case([], [], [])
    cases.append(("no instance at all (K = 0)", empty, 0.1, [], []))
    boxes = [(int(rng.integers(0, 20)), int(rng.integers(0, 24)), int(rng.integers(1, 20)), int(rng.integers(1, 24)))
             for _ in range(8)]
    scores = np.sort(rng.uniform(0.05, 0.95, 8))[::-1]
    result, areas = _case(boxes, rng.integers(0, 4, 8), scores)
    cases.append(("eight random instances, threshold 0.25", result, 0.25,
                  [k for k in range(8) if np.float32(scores[k]) >= 0.25], areas))
    for name, result, min_score, kept, areas in cases:
        got = instance_list({k: v.copy() for k, v in result.items()}, list(names), min_score)
        expected = [(names[int(result["labels"][k])], float(result["scores"][k]), areas[k]) for k in kept]
        got = [tuple(item) for item in got]
        _expect(len(got) == len(expected), f"{name}: expected {len(expected)} instances, got {len(got)} "
                "(hint: keep those whose score is >= min_score)")
        for k, (g, e) in enumerate(zip(got, expected)):
            _expect(len(g) == 3 and g[0] == e[0] and isinstance(g[2], (int, np.integer)) and int(g[2]) == e[2]
                    and abs(float(g[1]) - e[1]) < 1e-6,
                    f"{name}: instance {k} should be {(e[0], round(e[1], 4), e[2])}, got {g} (hint: the name is "
                    "class_names[label]; the area is the mask's pixel count, an int)")
    return f"{len(cases)} results, with a score at the threshold and no instance at all"
