"""Solution to the exercise of notebook 03."""

import numpy as np


def vertical_flip(sample):
    """Flip image and masks top-bottom together; a box [x0, y0, x1, y1) becomes [x0, H-y1, x1, H-y0)."""
    h = sample["image"].shape[0]
    out = dict(sample)
    out["image"] = sample["image"][::-1]
    out["masks"] = sample["masks"][:, ::-1]
    boxes = np.array(sample["boxes"], np.float32)
    boxes[:, [1, 3]] = h - boxes[:, [3, 1]]
    out["boxes"] = boxes
    return out
