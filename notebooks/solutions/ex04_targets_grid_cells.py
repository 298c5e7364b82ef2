"""Solutions to the exercises of notebook 04."""

import math


def cell_of(v, size, grid):
    """The cell of coordinate v on a side of `size` pixels divided into `grid` cells, clipped."""
    return min(max(math.floor(v / size * grid), 0), grid - 1)


def levels_of(w, h, scale_ranges):
    """Every level whose (lo, hi) range holds the object's scale sqrt(w * h), ends included."""
    scale = math.sqrt(w * h)
    return [level for level, (lo, hi) in enumerate(scale_ranges) if lo <= scale <= hi]
