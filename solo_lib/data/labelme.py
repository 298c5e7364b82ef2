"""LabelMe annotations to COCO (notebook 02).

LabelMe (github.com/wkentaro/labelme) writes one JSON file per image: a list of ``shapes``,
each with a ``label``, a ``shape_type`` and clicked ``points``, plus ``imagePath`` (or the
image itself, base64-encoded, in ``imageData``). The rules below follow LabelMe's own
``examples/instance_segmentation/labelme2coco.py`` so that a dataset converted here gives the
same masks as one converted there:

* shapes with the same ``(label, group_id)`` form one instance (its segmentation is a list of
  polygons); a shape with ``group_id: null`` is an instance of its own;
* ``rectangle`` (two opposite corners) becomes its 4-corner polygon;
* ``circle`` (centre, point on the circle) becomes a polygon of
  ``n = max(int(pi / arccos(1 - 1/r)), 12)`` points, LabelMe's rule for keeping every chord
  about one pixel from the arc;
* the labels file starts with ``__ignore__`` and ``_background_``; shapes labelled
  ``__ignore__`` mark regions nobody could label and do not become instances;
* masks come from rasterising the polygons with pycocotools, as anyone reading the COCO file does.

Where we differ, on purpose: category ids start at 1 (no ``_background_`` category, since SOLO
has no background class), image and annotation ids start at 1, there are no timestamps
(the output is reproducible byte for byte), a label missing from the labels file is an error
rather than silently dropped, and ``area``/``bbox`` come from the pycocotools mask (LabelMe
computes them from a Pillow-drawn mask, which can differ by a pixel along edges). LabelMe's
script, as published, overwrites a rectangle's 4 corners with its 2 raw points (an
``if``/``else`` that should be ``elif``); we write the 4 corners it intends.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from solo_lib.data.coco import polygon_area, resolve_inside
from solo_lib.errors import DatasetError, DatasetWarning

IGNORE_LABEL = "__ignore__"
BACKGROUND_LABEL = "_background_"
SUPPORTED_SHAPES = ("polygon", "rectangle", "circle")


def read_labels_file(path: str | os.PathLike) -> list[str]:
    """Reads a LabelMe labels file: one class name per line, in category order.

    The ``__ignore__`` and ``_background_`` lines of LabelMe's format and blank lines are skipped.

    Raises:
        DatasetError: missing file, or a class name listed twice.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: labels file not found") from None
    names, first_line = [], {}
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or name in (IGNORE_LABEL, BACKGROUND_LABEL):
            continue
        if name in first_line:
            raise DatasetError(f"{path}: line {number}: class {name!r} is already listed on line {first_line[name]}")
        first_line[name] = number
        names.append(name)
    if not names:
        raise DatasetError(f"{path}: no class names (only {IGNORE_LABEL}/{BACKGROUND_LABEL} or blank lines)")
    return names


def circle_polygon(center: tuple[float, float], on_circle: tuple[float, float]) -> np.ndarray:
    """LabelMe's circle as a polygon.

    Args:
        center: ``(cx, cy)``.
        on_circle: a point on the circle.

    Returns:
        ``(n, 2)`` float64 vertices, with ``n = max(int(pi / arccos(1 - 1/r)), 12)``: the largest
        n for which the chord-to-arc gap ``r (1 - cos(pi/n))`` is still about one pixel (``int``
        rounds down, so the gap can exceed 1 px by a hair; LabelMe does the same).
    """
    (cx, cy), (px, py) = center, on_circle
    r = math.hypot(px - cx, py - cy)
    # For r <= 0.5, 1 - 1/r <= -1 and arccos is pi or undefined: fall back to 12 points.
    n = max(int(math.pi / math.acos(1.0 - 1.0 / r)), 12) if r > 0.5 else 12
    angle = 2.0 * math.pi * np.arange(n) / n
    # Rounded to 1/100 px (the precision of clicked points): sin/cos may differ in the last bit
    # between CPUs, and the COCO file must come out byte-identical everywhere.
    return np.round(np.stack([cx + r * np.sin(angle), cy + r * np.cos(angle)], axis=1), 2)


def shape_to_polygon(shape: dict) -> np.ndarray:
    """One LabelMe shape (polygon, rectangle or circle) as ``(n, 2)`` polygon vertices."""
    points = np.asarray(shape["points"], np.float64).reshape(-1, 2)
    kind = shape.get("shape_type") or "polygon"
    if kind == "rectangle":
        (x1, y1), (x2, y2) = points[:2]
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    if kind == "circle":
        return circle_polygon(points[0], points[1])
    return points


def _load_labelme_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DatasetError(f"{path}: not a LabelMe file (no 'shapes' list)")
    if not data.get("imagePath") and not data.get("imageData"):
        raise DatasetError(f"{path}: neither 'imagePath' nor 'imageData' is set, so the image is unknown")
    return data


def _image_record(path: Path, data: dict, image_dir: Path) -> tuple[str, int, int]:
    """Finds the image of one LabelMe file; returns ``(file_name, height, width)``.

    ``file_name`` is relative to ``image_dir``. An image given only as embedded ``imageData``
    is written to ``image_dir`` under the name of ``imagePath`` (or of the JSON file).
    """
    image_path = data.get("imagePath") or (path.stem + ".png")
    target = resolve_inside(image_dir, image_path, start=path.parent, source=str(path))  # relative to the JSON
    if target.is_file():
        try:
            with Image.open(target) as img:
                width, height = img.size
        except OSError as err:
            raise DatasetError(f"{path}: cannot read image {target}: {err}") from None
    elif data.get("imageData"):
        try:
            with Image.open(io.BytesIO(base64.b64decode(data["imageData"]))) as img:
                width, height = img.size
                target.parent.mkdir(parents=True, exist_ok=True)
                img.save(target)
        except (OSError, ValueError) as err:
            raise DatasetError(f"{path}: embedded imageData is not an image: {err}") from None
        warnings.warn(f"{path}: wrote the embedded imageData to {target}", DatasetWarning, stacklevel=3)
    else:
        raise DatasetError(f"{path}: image {target} not found (imagePath {image_path!r}) and no imageData embedded")
    stated = (data.get("imageHeight"), data.get("imageWidth"))
    if None not in stated and stated != (height, width):
        raise DatasetError(f"{path}: imageHeight/imageWidth say {stated[0]}x{stated[1]} but {target.name} "
                           f"is {height}x{width} (HxW)")
    return target.relative_to(image_dir.resolve()).as_posix(), height, width


def convert_labelme_dir(
    input_dir: str | os.PathLike,
    labels_file: str | os.PathLike | None = None,
    *,
    image_dir: str | os.PathLike | None = None,
) -> dict:
    """Converts every LabelMe ``*.json`` in a folder (sorted by name) into one COCO dict.

    Args:
        input_dir: folder of LabelMe JSON files.
        labels_file: optional LabelMe labels file fixing category order (ids 1..C). Without
            it, categories are the labels found, sorted by name.
        image_dir: folder the COCO ``file_name`` entries are relative to; defaults to
            ``input_dir`` (images beside their JSON, as LabelMe saves them).

    Returns:
        A COCO dict with ``info``, ``licenses``, ``images``, ``annotations``, ``categories``.

    Raises:
        DatasetError: malformed JSON, a missing image, an image path escaping ``image_dir``,
            a size mismatch, or a label not in ``labels_file``.

    Warns:
        DatasetWarning: unsupported shape types (naming file and shape), and one summary per
        file of degenerate shapes (fewer than 3 points or zero area) and clipped points.
    """
    input_dir = Path(input_dir)
    image_dir = Path(image_dir) if image_dir is not None else input_dir
    files = sorted(input_dir.glob("*.json"))
    if not files:
        raise DatasetError(f"{input_dir}: no LabelMe *.json files found")
    parsed = [(path, _load_labelme_json(path)) for path in files]
    if labels_file is not None:
        names = read_labels_file(labels_file)
    else:
        names = sorted({s.get("label") for _, d in parsed for s in d["shapes"]} - {IGNORE_LABEL, BACKGROUND_LABEL, None})
    cat_id = {name: i + 1 for i, name in enumerate(names)}

    images, annotations = [], []
    for image_id, (path, data) in enumerate(parsed, start=1):
        file_name, height, width = _image_record(path, data, image_dir)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for label, polygons in _instances(path, data, height, width, cat_id, labels_file):
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": cat_id[label],
                "segmentation": polygons,
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            })
    return {
        "info": {"description": f"Converted from LabelMe by solo_lib ({input_dir.name})", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "object"} for name, i in cat_id.items()],
    }


def _instances(path: Path, data: dict, height: int, width: int, cat_id: dict, labels_file) -> list:
    """Groups one file's shapes into instances: a list of ``(label, [flat polygon, ...])``."""
    groups: dict[tuple, list] = {}
    degenerate, clipped = [], []
    for index, shape in enumerate(data["shapes"]):
        label, kind = shape.get("label"), shape.get("shape_type") or "polygon"
        where = f"{path}: shape {index} ({kind} {label!r})"
        if label == IGNORE_LABEL:
            continue  # a region to ignore, never an instance (LabelMe's rule)
        if kind not in SUPPORTED_SHAPES:
            warnings.warn(f"{where}: shape type {kind!r} is not an instance outline "
                          f"(supported: {', '.join(SUPPORTED_SHAPES)}); skipped", DatasetWarning, stacklevel=3)
            continue
        if label not in cat_id:
            raise DatasetError(f"{where}: label {label!r} is not in {labels_file}; add it there or fix the label")
        try:
            poly = shape_to_polygon(shape)
        except (TypeError, ValueError, IndexError):
            raise DatasetError(f"{where}: points must be a list of [x, y] pairs, got {shape.get('points')!r}") from None
        flat = poly.reshape(-1)
        if len(poly) < 3 or polygon_area(flat) == 0.0:
            degenerate.append(index)
            continue
        inside = np.clip(poly, 0.0, [width, height])
        if not np.array_equal(inside, poly):
            clipped.append(index)
        group = shape.get("group_id")
        key = (label, group) if group is not None else (label, "shape", index)
        groups.setdefault(key, []).append(inside.reshape(-1).tolist())
    if degenerate:
        warnings.warn(f"{path}: {len(degenerate)} shape(s) with fewer than 3 points or zero area skipped "
                      f"(shape indices {degenerate})", DatasetWarning, stacklevel=3)
    if clipped:
        warnings.warn(f"{path}: {len(clipped)} shape(s) had points outside the {width}x{height} image; "
                      f"clipped (shape indices {clipped})", DatasetWarning, stacklevel=3)
    return [(key[0], polys) for key, polys in groups.items()]


def write_coco_json(coco: dict, path: str | os.PathLike) -> None:
    """Writes a COCO dict readably (one record per line) and atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for key, value in coco.items():
        if isinstance(value, list):
            rows = ",\n".join("    " + json.dumps(item, separators=(", ", ": ")) for item in value)
            parts.append(f'  "{key}": [\n{rows}\n  ]' if value else f'  "{key}": []')
        else:
            parts.append(f'  "{key}": ' + json.dumps(value))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("{\n" + ",\n".join(parts) + "\n}\n", encoding="utf-8")
    os.replace(tmp, path)
