"""Solution to the exercise of notebook 08b."""

import contourpy
import numpy as np


def mask_to_polygon(mask):
    """The outline of a one-piece binary mask as LabelMe points (x, y), every second contour vertex.

    The contour at level 0.5 runs half-way between pixel centres, in array coordinates where pixel
    (row i, column j) is the point (x=j, y=i). LabelMe and COCO put a pixel's corners at integers
    (pixel j covers x from j to j + 1), so the outline moves by half a pixel. Padding by one pixel
    closes the contour of a mask that touches the border.
    """
    lines = contourpy.contour_generator(z=np.pad(np.asarray(mask, np.float64), 1)).lines(0.5)
    outline = max(lines, key=len)[:-1] - 1 + 0.5  # the longest loop, its repeated last point dropped
    return outline[::2]
