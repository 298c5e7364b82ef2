"""Solution to the exercise of notebook 05."""

import math


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
