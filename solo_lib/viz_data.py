"""Pictures of notebooks 00-02: the sample dataset's object sizes, a COCO polygon over its mask,
and a LabelMe circle as the polygon COCO stores.

Each function draws numbers it is given or computes with :mod:`solo_lib.data`, and
``tests/test_viz_data.py`` checks that what is drawn equals them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from solo_lib.viz import PALETTE, class_color


def object_sizes(datasets) -> np.ndarray:
    """Every object's size ``sqrt(w * h)`` of its tight box, in pixels.

    SOLO assigns an object to a pyramid level by this size (arXiv 1912.04488, §3.2; notebook 04).

    Args:
        datasets: iterables of samples with ``boxes`` ``(N, 4)`` as ``[x0, y0, x1, y1]``
            (``CocoDataset``s).

    Returns:
        ``(total objects,)`` float array, dataset by dataset, sample by sample.
    """
    sizes = [np.sqrt((s.boxes[:, 2] - s.boxes[:, 0]) * (s.boxes[:, 3] - s.boxes[:, 1]))
             for ds in datasets for s in ds]
    return np.concatenate(sizes).astype(float) if sizes else np.zeros((0,))


def object_size_histogram(datasets, *, bins=None, title: str = "Object sizes"):
    """A histogram of object sizes (:func:`object_sizes`) on a log scale.

    Args:
        datasets: iterables of samples with ``boxes`` (``CocoDataset``s).
        bins: bin edges in pixels; by default 18 bins evenly spaced in log from 4 to 256 px.
        title: the axes' title (say which datasets are counted).

    Returns:
        ``(figure, sizes)``: the figure (one bar per bin, integer counts on y) and the ``(total objects,)`` sizes.
    """
    sizes = object_sizes(datasets)
    bins = np.geomspace(4, 256, 19) if bins is None else np.asarray(bins, float)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(sizes, bins=bins, color=PALETTE[0])
    ax.set_xscale("log")
    ax.set_xlabel("object size sqrt(w*h) in pixels (log scale)")
    ax.set_ylabel("objects")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 2.5 objects
    ax.set_title(title)
    fig.tight_layout()
    return fig, sizes


def polygons_over_mask(mask, segmentation, bbox, *, margin: float = 3.0, label: int = 0):
    """A COCO polygon annotation drawn over the mask it rasterises to, zoomed on its ``bbox``.

    Args:
        mask: ``(H, W)`` binary mask (``decode_segmentation`` of ``segmentation``).
        segmentation: COCO polygons, a list of flat ``[x0, y0, x1, y1, ...]`` lists.
        bbox: COCO ``[x, y, width, height]``.
        margin: pixels shown around the box.
        label: the class whose colour draws the vertices.

    Returns:
        The matplotlib figure: the mask as an image, then one closed line per polygon (its
        first vertex repeated at the end); the view is the box plus ``margin``, y pointing down.
    """
    x0, y0, width, height = bbox
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(mask, cmap="gray")
    for poly in segmentation:
        xy = np.asarray(poly, float).reshape(-1, 2)
        ax.plot(*np.vstack([xy, xy[:1]]).T, "o-", color=class_color(label), ms=3)
    ax.set_xlim(x0 - margin, x0 + width + margin)
    ax.set_ylim(y0 + height + margin, y0 - margin)  # image rows grow downwards
    ax.set_title("polygon vertices over the rasterised mask")
    return fig


def circle_as_polygon(cx: float, cy: float, r: float, *, label: int = 0):
    """A LabelMe circle (centre and one point on it) next to the polygon COCO stores for it.

    The polygon is :func:`solo_lib.data.labelme.shape_to_polygon`'s: LabelMe's regular polygon
    with ``max(int(pi / arccos(1 - 1/r)), 12)`` vertices.

    Args:
        cx: the centre's x in pixels.
        cy: the centre's y in pixels.
        r: the radius in pixels.
        label: the class whose colour draws the polygon.

    Returns:
        ``(figure, polygon)``: the figure (the true circle in gray, then the closed polygon) and
        the ``(n, 2)`` polygon vertices.
    """
    from solo_lib.data.labelme import shape_to_polygon

    poly = np.asarray(shape_to_polygon({"shape_type": "circle", "points": [[cx, cy], [cx + r, cy]]}), float)
    fig, ax = plt.subplots(figsize=(4, 4))
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(cx + r * np.cos(t), cy + r * np.sin(t), color="0.6", label=f"true circle, r = {r:g} px")
    ax.plot(*np.vstack([poly, poly[:1]]).T, "o-", ms=3, color=class_color(label), label=f"{len(poly)}-gon")
    ax.set_aspect("equal")
    ax.invert_yaxis()  # image coordinates: y grows downwards
    ax.legend()
    ax.set_title("A LabelMe circle as a COCO polygon")
    return fig, poly
