"""Pictures of notebooks 00-02 and 08b: the sample dataset's object sizes, a COCO polygon over its
mask, a LabelMe circle as the polygon COCO stores, and a LabelMe file drawn over its photo.

Each function draws numbers it is given or computes with :mod:`solo_lib.data`, and
``tests/test_viz_data.py`` checks that what is drawn equals them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Polygon
from matplotlib.ticker import MaxNLocator

from solo_lib.viz_style import PALETTE, class_color


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


IGNORE_COLOR = (1.0, 0.85, 0.0)  # __ignore__ regions: yellow, hatched


def draw_labelme_file(ax, json_path, class_names, *, region=None) -> list[dict]:
    """A LabelMe file drawn over its photo, as the LabelMe window shows it (notebook 08b).

    Each shape is its polygon (rectangles and circles as the polygons the converter makes of
    them) outlined in its class colour and lightly filled; shapes that share a ``group_id`` (one
    object seen in pieces) carry the same "label, group_id N" tag; ``__ignore__`` regions are yellow
    and hatched. The photo is read with EXIF orientation applied, as LabelMe and the converter read it.

    Args:
        ax: the matplotlib axes.
        json_path: the LabelMe ``.json``; its ``imagePath`` is relative to its folder.
        class_names: the classes in category order (``labels.txt`` without ``__ignore__`` and
            ``_background_``), so colours match the course's other pictures.
        region: ``(x0, y0, x1, y1)`` in image pixels to zoom on (tags are placed for the shapes
            inside it); None: the whole photo.

    Returns:
        One dict per shape, in file order: ``label``, ``group_id``, ``points`` ``(P, 2)`` (x, y) as
        drawn, ``patch`` (the matplotlib Polygon) and ``tag`` (the text drawn beside it).
    """
    from solo_lib.data.coco_file import read_json
    from solo_lib.data.images import load_rgb_image
    from solo_lib.data.labelme import IGNORE_LABEL, shape_to_polygon

    path = Path(json_path)
    doc = read_json(path, "LabelMe file")
    image = load_rgb_image(path.parent / doc["imagePath"])
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    x0, y0, x1, y1 = (0, 0, image.shape[1], image.shape[0]) if region is None else region
    drawn = []
    for shape in doc["shapes"]:
        points = np.asarray(shape_to_polygon(shape), np.float64).reshape(-1, 2)
        label, group = shape["label"], shape.get("group_id")
        ignore = label == IGNORE_LABEL
        colour = IGNORE_COLOR if ignore else class_color(class_names.index(label))
        # LabelMe's points are in pixel-edge coordinates (0 is the image's left edge), imshow's
        # pixel centres are at integers: shift by half a pixel so outlines sit on the edges.
        patch = Polygon(points - 0.5, closed=True, facecolor=(*colour, 0.25), edgecolor=colour, linewidth=1.4,
                        hatch="////" if ignore else None)
        ax.add_patch(patch)
        tag = label if group is None else f"{label}, group_id {group}"
        if ignore or group is not None:
            # just above the shape, starting at its left edge (inside the view when the shape is)
            ax.text(max(points[:, 0].min(), x0), points[:, 1].min() - 2, tag, color="black", fontsize=7, va="bottom",
                    ha="left", clip_on=True, bbox=dict(facecolor=(*colour, 0.8), edgecolor="none", pad=1))
        drawn.append({"label": label, "group_id": group, "points": points, "patch": patch, "tag": tag})
    ax.set_xlim(x0 - 0.5, x1 - 0.5)
    ax.set_ylim(y1 - 0.5, y0 - 0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    return drawn


def labelme_gallery(json_paths, class_names, *, width: float = 12.0):
    """Every photo of a LabelMe folder with its polygons, one panel per file (:func:`draw_labelme_file`),
    titled with the file name and its objects per class (pieces with one ``group_id`` count once).

    Returns:
        ``(fig, shapes)``: ``shapes[name]`` is :func:`draw_labelme_file`'s list for that file.
    """
    paths = [Path(p) for p in json_paths]
    fig, axes = plt.subplots(1, len(paths), figsize=(width, width / len(paths) * 0.75), squeeze=False,
                             layout="constrained")
    shapes = {}
    for ax, path in zip(axes[0], paths):
        drawn = draw_labelme_file(ax, path, class_names)
        objects = {}
        for shape in drawn:
            if shape["label"] != "__ignore__":
                key = id(shape) if shape["group_id"] is None else shape["group_id"]
                objects.setdefault(shape["label"], set()).add(key)
        counts = ", ".join(f"{len(v)} {k}" for k, v in objects.items())
        ignored = sum(s["label"] == "__ignore__" for s in drawn)
        ax.set_title(f"{path.name}: {counts}" + (f", {ignored} ignored region" if ignored else ""), fontsize=9)
        shapes[path.name] = drawn
    handles = [Polygon([[0, 0]], facecolor=(*class_color(i), 0.25), edgecolor=class_color(i), label=name)
               for i, name in enumerate(class_names)]
    handles.append(Polygon([[0, 0]], facecolor=(*IGNORE_COLOR, 0.25), edgecolor=IGNORE_COLOR, hatch="////",
                           label="__ignore__"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig, shapes
