"""LabelMe annotations to COCO (notebook 02).

One module past ~300 lines, because it is one idea: one conversion, LabelMe to COCO; most of the
length is the checks that name a bad file, shape or image (embedded images, EXIF orientation, paths)
before anything is written.

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

Images are seen as LabelMe shows them: LabelMe applies a photo's EXIF orientation when it loads
it, so its points, ``imageHeight`` and ``imageWidth`` refer to the oriented image. The COCO
``height``/``width`` written here are those oriented sizes too, and
``solo_lib.data.images.load_rgb_image`` applies the same orientation, so masks and pixels stay aligned.

Nothing is written until everything has been read and checked: an image embedded as
``imageData`` is saved only once every file converted, and :func:`convert_labelme` (the
command line) refuses an output path that is one of its inputs.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pycocotools import mask as mask_utils

from solo_lib.data.coco_file import read_json, resolve_inside
from solo_lib.data.images import image_to_rgb8, oriented_size
from solo_lib.data.segmentation import is_finite, is_int, is_number, polygon_area
from solo_lib.errors import DatasetError, DatasetWarning
from solo_lib.files import write_text_atomically

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
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: labels file is not UTF-8 text ({err}); save it as UTF-8") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the labels file: {err}") from None
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
    """One LabelMe shape (polygon, rectangle or circle) as ``(n, 2)`` polygon vertices.

    Raises:
        ValueError: a rectangle or circle without its two points.
    """
    points = np.asarray(shape["points"], np.float64).reshape(-1, 2)
    kind = shape.get("shape_type") or "polygon"
    if kind in ("rectangle", "circle") and len(points) < 2:
        raise ValueError(f"a {kind} needs 2 points, got {len(points)}")
    if kind == "rectangle":
        (x1, y1), (x2, y2) = points[:2]
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    if kind == "circle":
        return circle_polygon(points[0], points[1])
    return points


def _load_labelme_json(path: Path) -> dict:
    """Reads one LabelMe file and checks the fields the converter uses."""
    data = read_json(path, "LabelMe file")
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        raise DatasetError(f"{path}: this is a COCO file (perhaps an earlier output of the converter), not a "
                           "LabelMe file; move it out of the LabelMe folder")
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DatasetError(f"{path}: not a LabelMe file (no 'shapes' list)")
    for key in ("imagePath", "imageData"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise DatasetError(f"{path}: {key} is a {type(data[key]).__name__}; it must be a string or null")
    if not data.get("imagePath") and not data.get("imageData"):
        raise DatasetError(f"{path}: neither 'imagePath' nor 'imageData' is set, so the image is unknown")
    for key in ("imageHeight", "imageWidth"):
        value = data.get(key)
        if value is not None and (not is_int(value) or value <= 0):
            raise DatasetError(f"{path}: {key} is {value!r}; it must be a positive integer (pixels) or null")
    for index, shape in enumerate(data["shapes"]):
        if not isinstance(shape, dict):
            raise DatasetError(f"{path}: shape {index} is a {type(shape).__name__}, not a shape record")
        label = shape.get("label")
        if not isinstance(label, str) or not label:
            raise DatasetError(f"{path}: shape {index} has label {label!r}; a label must be a non-empty string")
        if shape.get("group_id") is not None and not is_int(shape["group_id"]):
            raise DatasetError(f"{path}: shape {index} ({label!r}) has group_id {shape['group_id']!r}; "
                               "it must be an integer or null")
    return data


def _check_points(shape: dict, where: str) -> None:
    """Every point of a shape is a pair of finite numbers (NaN would pass every comparison and
    make pycocotools allocate a mask of billions of pixels)."""
    points = shape.get("points")
    if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
        raise DatasetError(f"{where}: points must be a list of [x, y] pairs, got {points!r}")
    for i, point in enumerate(points):
        for v in point:
            if not is_number(v):
                raise DatasetError(f"{where}: point {i} is {point!r}; coordinates must be numbers")
            if not is_finite(v):
                raise DatasetError(f"{where}: point {i} is {point!r}; every coordinate must be a finite number: "
                                   "fix or delete that point in LabelMe")


@dataclasses.dataclass
class _Plan:
    """What a conversion read and would write: checked in full before anything is written."""

    inputs: dict[Path, str] = dataclasses.field(default_factory=dict)  # resolved path -> what it is
    images: dict[Path, tuple[bytes, str, str]] = dataclasses.field(default_factory=dict)
    # embedded images to write: resolved target -> (file bytes, the JSON embedding it, a note on re-encoding)


def _embedded_image(path: Path, data: dict, target: Path) -> tuple[bytes, int, int, str]:
    """Decodes ``imageData``; returns ``(bytes to write at target, height, width, note)``.

    The bytes are written as embedded when they already are in the format ``target``'s
    extension names (lossless; an EXIF orientation tag stays, and readers apply it). Otherwise
    the oriented image is re-encoded in that format, as RGB for JPEG (which cannot hold alpha):
    the COCO ``file_name`` stays LabelMe's ``imagePath``.
    """
    try:
        raw = base64.b64decode(data["imageData"])
        with Image.open(io.BytesIO(raw)) as img:
            width, height = oriented_size(img)
            wanted = Image.registered_extensions().get(target.suffix.lower())
            if wanted is None or wanted == img.format:
                return raw, height, width, ""
            oriented = ImageOps.exif_transpose(img)
            if wanted == "JPEG" and oriented.mode not in ("RGB", "L"):
                oriented = Image.fromarray(image_to_rgb8(oriented, source=f"{path}: imageData"))
            buffer = io.BytesIO()
            oriented.save(buffer, format=wanted, **({"quality": 95} if wanted == "JPEG" else {}))
            return buffer.getvalue(), height, width, f" (re-encoded from {img.format} {img.mode} to {wanted})"
    except DatasetError:
        raise
    except UnidentifiedImageError:
        raise DatasetError(f"{path}: embedded imageData is not an image in a format Pillow reads; re-save the "
                           "file in LabelMe or set imagePath to the image file") from None
    except (OSError, ValueError, SyntaxError, KeyError) as err:  # binascii.Error is a ValueError
        raise DatasetError(f"{path}: embedded imageData is not an image ({err}); re-save the file in LabelMe "
                           "or set imagePath to the image file") from None


def _image_record(path: Path, data: dict, image_dir: Path, plan: _Plan) -> tuple[str, int, int]:
    """Finds the image of one LabelMe file; returns ``(file_name, height, width)``.

    ``file_name`` is relative to ``image_dir``; height and width are those of the image after
    its EXIF orientation (see the module docstring). An image given only as embedded
    ``imageData`` is added to ``plan`` to be written to ``image_dir`` under the name of
    ``imagePath`` (or of the JSON file); nothing is written here.
    """
    image_path = data.get("imagePath") or (path.stem + ".png")
    target = resolve_inside(image_dir, image_path, start=path.parent, source=str(path))  # relative to the JSON
    if target.is_file():
        try:
            with Image.open(target) as img:
                width, height = oriented_size(img)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DatasetError(f"{path}: cannot read image {target}: {err}") from None
        plan.inputs.setdefault(target, f"the image of {path.name}")
    elif target.exists():
        raise DatasetError(f"{path}: image path {target} is not a file; fix imagePath")
    elif data.get("imageData"):
        raw, height, width, note = _embedded_image(path, data, target)
        if target in plan.images and plan.images[target][0] != raw:
            raise DatasetError(f"{path}: embeds an image for {target} that differs from the one embedded by "
                               f"{plan.images[target][1]}; give each image its own imagePath")
        plan.images.setdefault(target, (raw, str(path), note))
        plan.inputs.setdefault(target, f"the image embedded in {path.name}")
    else:
        raise DatasetError(f"{path}: image {target} not found (imagePath {image_path!r}) and no imageData embedded; "
                           "put the image there or fix imagePath (relative to the JSON file's folder)")
    stated = (data.get("imageHeight"), data.get("imageWidth"))
    if None not in stated and stated != (height, width):
        hint = ""
        if stated == (width, height):
            hint = ("; the image's EXIF orientation turns it, and LabelMe's sizes and points refer to the turned "
                    "image: re-open the file in LabelMe, or remove the orientation tag if the points were "
                    "drawn on the unturned pixels")
        raise DatasetError(f"{path}: imageHeight/imageWidth say {stated[0]}x{stated[1]} but {target.name} "
                           f"is {height}x{width} (HxW){hint}")
    return target.relative_to(image_dir.resolve()).as_posix(), height, width


def _convert(input_dir: Path, labels_file, image_dir: Path) -> tuple[dict, _Plan]:
    """Reads and checks everything; returns the COCO dict and what writing it involves."""
    plan = _Plan()
    files = sorted(p for p in input_dir.glob("*.json") if p.is_file())
    if not files:
        raise DatasetError(f"{input_dir}: no LabelMe *.json files found")
    plan.inputs.update({p.resolve(): "a LabelMe file it reads" for p in files})
    parsed = [(path, _load_labelme_json(path)) for path in files]
    if labels_file is not None:
        names = read_labels_file(labels_file)
        plan.inputs[Path(labels_file).resolve()] = "the labels file"
    else:
        names = sorted({s["label"] for _, d in parsed for s in d["shapes"]} - {IGNORE_LABEL, BACKGROUND_LABEL})
    cat_id = {name: i + 1 for i, name in enumerate(names)}

    images, annotations = [], []
    for image_id, (path, data) in enumerate(parsed, start=1):
        file_name, height, width = _image_record(path, data, image_dir, plan)
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
    coco = {
        "info": {"description": f"Converted from LabelMe by solo_lib ({input_dir.name})", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "object"} for name, i in cat_id.items()],
    }
    return coco, plan


def _write_images(plan: _Plan) -> list[Path]:
    """Writes the embedded images of ``plan`` (a warning each); on failure removes what it wrote."""
    written: list[Path] = []
    for target, (raw, source, note) in plan.images.items():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(raw)
        except OSError as err:
            _remove(written + [target])
            raise DatasetError(f"{target}: cannot write the image embedded in {source}: {err}; "
                               "nothing was written") from None
        written.append(target)
        warnings.warn(f"{source}: wrote the embedded imageData to {target}{note}", DatasetWarning, stacklevel=3)
    return written


def _remove(paths: list[Path]) -> None:
    for written in paths:
        written.unlink(missing_ok=True)


def convert_labelme_dir(
    input_dir: str | os.PathLike,
    labels_file: str | os.PathLike | None = None,
    *,
    image_dir: str | os.PathLike | None = None,
) -> dict:
    """Converts every LabelMe ``*.json`` in a folder (sorted by name) into one COCO dict.

    Every file is read and checked before anything is written; images embedded as
    ``imageData`` (without an image file) are then written beside their JSON.

    Args:
        input_dir: folder of LabelMe JSON files.
        labels_file: optional LabelMe labels file fixing category order (ids 1..C). Without
            it, categories are the labels found, sorted by name.
        image_dir: folder the COCO ``file_name`` entries are relative to; defaults to
            ``input_dir`` (images beside their JSON, as LabelMe saves them).

    Returns:
        A COCO dict with ``info``, ``licenses``, ``images``, ``annotations``, ``categories``.

    Raises:
        DatasetError: malformed JSON or fields, a missing image, an image path escaping
            ``image_dir``, a size mismatch, a non-finite point, or a label not in ``labels_file``.

    Warns:
        DatasetWarning: unsupported shape types (naming file and shape), one summary per file
        of degenerate shapes (fewer than 3 points or zero area) and clipped points, and each
        embedded image written.
    """
    input_dir = Path(input_dir)
    coco, plan = _convert(input_dir, labels_file, Path(image_dir) if image_dir is not None else input_dir)
    _write_images(plan)
    return coco


def convert_labelme(
    input_dir: str | os.PathLike,
    output_json: str | os.PathLike,
    labels_file: str | os.PathLike | None = None,
    *,
    image_dir: str | os.PathLike | None = None,
) -> dict:
    """:func:`convert_labelme_dir`, then :func:`write_coco_json`, all or nothing (the command line).

    Raises:
        DatasetError: as :func:`convert_labelme_dir`; or ``output_json`` is one of the inputs
            (a LabelMe file, the labels file, an image) or a folder; or it cannot be written.
            Nothing on disk has changed when it raises.
    """
    input_dir, output = Path(input_dir), Path(output_json)
    if output.is_dir():
        raise DatasetError(f"{output}: is a folder; give the path of the COCO JSON file to write")
    coco, plan = _convert(input_dir, labels_file, Path(image_dir) if image_dir is not None else input_dir)
    for path, what in plan.inputs.items():
        if output.resolve() == path or (output.exists() and path.exists() and os.path.samefile(output, path)):
            raise DatasetError(f"{output}: refusing to overwrite {what}: it is an input of this conversion; "
                               "choose another OUTPUT_JSON (e.g. outside the LabelMe folder); nothing was written")
    written = _write_images(plan)
    try:
        write_coco_json(coco, output)
    except OSError as err:
        _remove(written)
        raise DatasetError(f"{output}: cannot write the COCO file: {err}; nothing was written") from None
    return coco


def _instances(path: Path, data: dict, height: int, width: int, cat_id: dict, labels_file) -> list:
    """Groups one file's shapes into instances: a list of ``(label, [flat polygon, ...])``."""
    groups: dict[tuple, list] = {}
    degenerate, clipped = [], []
    for index, shape in enumerate(data["shapes"]):
        label, kind = shape["label"], shape.get("shape_type") or "polygon"
        where = f"{path}: shape {index} ({kind} {label!r})"
        if label == IGNORE_LABEL:
            continue  # a region to ignore, never an instance (LabelMe's rule)
        if kind not in SUPPORTED_SHAPES:
            warnings.warn(f"{where}: shape type {kind!r} is not an instance outline "
                          f"(supported: {', '.join(SUPPORTED_SHAPES)}); skipped", DatasetWarning, stacklevel=4)
            continue
        if label not in cat_id:
            raise DatasetError(f"{where}: label {label!r} is not in {labels_file}; add it there or fix the label")
        _check_points(shape, where)
        try:
            poly = shape_to_polygon(shape)
        except ValueError as err:
            raise DatasetError(f"{where}: {err}; fix the shape in LabelMe") from None
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
                      f"(shape indices {degenerate})", DatasetWarning, stacklevel=4)
    if clipped:
        warnings.warn(f"{path}: {len(clipped)} shape(s) had points outside the {width}x{height} image; "
                      f"clipped (shape indices {clipped})", DatasetWarning, stacklevel=4)
    return [(key[0], polys) for key, polys in groups.items()]


def write_coco_json(coco: dict, path: str | os.PathLike) -> None:
    """Writes a COCO dict readably (one record per line) and atomically."""
    parts = []
    for key, value in coco.items():
        if isinstance(value, list):
            rows = ",\n".join("    " + json.dumps(item, separators=(", ", ": ")) for item in value)
            parts.append(f'  "{key}": [\n{rows}\n  ]' if value else f'  "{key}": []')
        else:
            parts.append(f'  "{key}": ' + json.dumps(value))
    write_text_atomically(path, "{\n" + ",\n".join(parts) + "\n}\n")
