"""Solutions to the exercises of notebook 05."""

import math

import numpy as np


def feature_sizes(h, w):
    """Each stride-2 step with 'same' padding maps n to ceil(n / 2); C2 is two steps in."""
    sizes = []
    for _ in range(2):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    sizes.append((h, w))
    for _ in range(3):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        sizes.append((h, w))
    return sizes


def top_down(laterals):
    """M5 = L5; going down, M_k = L_k + M_{k+1} upsampled x2 (nearest), cropped to L_k's size."""
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
        h, w = lateral.shape[1], lateral.shape[2]
        up = np.repeat(np.repeat(merged[0], 2, axis=1), 2, axis=2)[:, :h, :w]
        merged.insert(0, lateral + up)
    return merged
