"""Solutions to the exercises of notebook 04."""

import math


def cell_of(v, size, grid):
    """The cell of coordinate v on a side of `size` pixels divided into `grid` cells, clipped."""
    return min(max(math.floor(v / size * grid), 0), grid - 1)


def levels_of(w, h, scale_ranges):
    """Every level whose (lo, hi) range holds the object's scale sqrt(w * h), ends included."""
    scale = math.sqrt(w * h)
    return [level for level, (lo, hi) in enumerate(scale_ranges) if lo <= scale <= hi]


def centre_cells(mask, S, eps):
    """The (row, col) cells that are positive for one instance (SOLO §3.3.1, "Label Assignment").

    The centre region is the centre of mass +/- eps * (w, h) / 2 (w, h: the tight box), turned into
    cells and kept within one cell of the centre cell, so at most 3 x 3 cells.
    """
    import numpy as np

    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()  # centre of mass, not the box centre
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    half_h, half_w = 0.5 * eps * h, 0.5 * eps * w

    def cell(v, size):
        return min(max(math.floor(v / size * S), 0), S - 1)

    ci, cj = cell(cy, height), cell(cx, width)
    top, bottom = max(cell(cy - half_h, height), ci - 1), min(cell(cy + half_h, height), ci + 1)
    left, right = max(cell(cx - half_w, width), cj - 1), min(cell(cx + half_w, width), cj + 1)
    return [(i, j) for i in range(top, bottom + 1) for j in range(left, right + 1)]
