"""Solutions to the exercises of notebook 01."""

import numpy as np


def rle_encode(mask):
    """COCO's uncompressed RLE: lengths of alternating runs of 0s and 1s, reading the mask
    column by column (Fortran order), always starting with a (possibly empty) run of 0s."""
    flat = np.asarray(mask, np.uint8).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1  # where a new run starts
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts  # the first run counts 0s
    return {"counts": counts, "size": list(np.shape(mask))}


def polygon_area(flat_xy):
    """Shoelace formula: half the absolute sum of cross products of consecutive vertices."""
    x, y = np.asarray(flat_xy[0::2], float), np.asarray(flat_xy[1::2], float)
    return 0.5 * abs(np.sum(x * np.roll(y, -1) - y * np.roll(x, -1)))
