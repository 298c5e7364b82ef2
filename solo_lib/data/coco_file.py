"""A COCO annotation file, read and checked: its records before they are a dataset (notebook 01).

A COCO file has three lists: ``images`` (id, file_name, height, width), ``categories``
(id, name) and ``annotations`` (id, image_id, category_id, segmentation, iscrowd, ...).
:func:`read_coco_file` reads one and checks every record, so a broken file fails when it is
opened, naming the file, the record and what to do, rather than mid-epoch; a record that is
repaired or skipped is counted in one :class:`~solo_lib.errors.DatasetWarning`. The images are
checked here, the categories by :meth:`CategoryMap.from_categories` and the annotations by
:mod:`solo_lib.data.coco_index`, which keeps them as their JSON text. What the checked records
become, images and masks by image id, is :class:`solo_lib.data.coco.CocoDataset`.

COCO category ids are not contiguous (1..90 with gaps in COCO 2017); the model predicts
contiguous labels ``0..C-1``. :class:`CategoryMap` maps both ways, in ascending id order.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import warnings
from pathlib import Path

from solo_lib.data import coco_index
from solo_lib.data.segmentation import is_int
from solo_lib.errors import EXAMPLES, DatasetError, DatasetWarning


@dataclasses.dataclass(frozen=True)
class CategoryMap:
    """Maps non-contiguous COCO category ids to contiguous labels ``0..C-1`` and back.

    Labels follow ascending COCO id, the convention of the reference implementations.

    Attributes:
        coco_ids: ``(C,)`` COCO category ids, ascending.
        names: ``(C,)`` category names, in the same order.
    """

    coco_ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_categories(cls, categories: list[dict], source: str = "<categories>") -> "CategoryMap":
        """Builds the map from a COCO ``categories`` list.

        Raises:
            DatasetError: a category without id or name, or a duplicated id.
        """
        if not isinstance(categories, list):
            raise DatasetError(f"{source}: 'categories' must be a list of {{'id', 'name'}} records, "
                               f"got {type(categories).__name__}")
        if not categories:
            raise DatasetError(f"{source}: 'categories' is empty; a dataset without classes cannot be trained or "
                               "evaluated: list each class as {'id': 1, 'name': '...'}")
        pairs = []
        for index, cat in enumerate(categories):
            if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
                raise DatasetError(f"{source}: categories[{index}] needs an 'id' and a 'name', got {cat!r}")
            if not is_int(cat["id"]):
                raise DatasetError(f"{source}: categories[{index}] ({cat['name']!r}) has id {cat['id']!r}; "
                                   "a category id must be an integer")
            if not isinstance(cat["name"], str) or not cat["name"].strip():
                raise DatasetError(f"{source}: category id {cat['id']} has name {cat['name']!r}; "
                                   "a category name must be a non-empty string")
            pairs.append((int(cat["id"]), cat["name"]))
        ids = [cat_id for cat_id, _ in pairs]
        duplicated = sorted({cat_id for cat_id in ids if ids.count(cat_id) > 1})
        if duplicated:
            raise DatasetError(f"{source}: category id(s) {duplicated} appear more than once")
        names = [name for _, name in pairs]
        same_name = sorted({name for name in names if names.count(name) > 1})
        if same_name:
            raise DatasetError(f"{source}: category name(s) {same_name} appear more than once; give each class "
                               "one category (merge them, or rename one)")
        pairs.sort()
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    @property
    def num_classes(self) -> int:
        return len(self.coco_ids)

    def to_label(self, coco_id: int) -> int:
        """COCO category id -> contiguous label. Raises KeyError for an unknown id."""
        return self._label_of[int(coco_id)]

    def to_coco_id(self, label: int) -> int:
        """Contiguous label -> COCO category id."""
        return self.coco_ids[int(label)]

    @functools.cached_property
    def _label_of(self) -> dict[int, int]:
        return {cat_id: label for label, cat_id in enumerate(self.coco_ids)}


def read_json(path: Path, what: str = "annotation file") -> object:
    """Reads a UTF-8 JSON file; every way it can fail is a DatasetError naming ``path``.

    Args:
        path: the file.
        what: what the file is, for the messages ("annotation file", "LabelMe file").
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); repair it "
                           f"there, or write it again with the tool that made it") from None
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text ({err}); save it as UTF-8 JSON") from None
    except ValueError as err:  # e.g. an integer with thousands of digits
        raise DatasetError(f"{path}: cannot parse ({err})") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read the {what}: {err}") from None


def resolve_inside(root: Path, relative: str, *, source: str, start: Path | None = None) -> Path:
    """Resolves ``relative`` (from ``start``, default ``root``) and rejects paths outside ``root``.

    Raises:
        DatasetError: an absolute path, or one that leads outside ``root`` (``../``).
    """
    rel = relative.replace("\\", "/")  # annotations written on Windows
    path = ((start if start is not None else root) / rel).resolve()
    base = root.resolve()
    if Path(rel).is_absolute() or not path.is_relative_to(base):
        raise DatasetError(f"{source}: image path {relative!r} escapes the dataset folder {base}; "
                           "keep images inside it and use a relative path")
    return path


@dataclasses.dataclass(frozen=True)
class CocoFile:
    """The checked records of one COCO file (what :func:`read_coco_file` returns).

    Attributes:
        categories: the file's categories as a :class:`CategoryMap`.
        images: image id -> the image's record as in the file, in file order.
        store: the annotations, kept as text and decoded per image (:mod:`solo_lib.data.coco_index`).
        data: the file's top-level values, with ``annotations`` None (``store`` holds them).
    """

    categories: CategoryMap
    images: dict[int, dict]
    store: coco_index.AnnotationStore
    data: dict


def read_coco_file(annotation_file: Path, image_dir: Path, *, check_files: bool, stacklevel: int = 2) -> CocoFile:
    """Reads a COCO file and checks every record (the module docstring says how).

    Args:
        annotation_file: the COCO JSON file.
        image_dir: the folder that the images' ``file_name`` entries are relative to.
        check_files: verify that every image file exists.
        stacklevel: where the counting warnings point, counted as ``warnings.warn`` would count it
            in the caller of this function (1: the caller's line; 2, the default: its caller's).

    Raises:
        DatasetError: malformed JSON, a record without required fields, duplicated ids, an
            annotation pointing at an unknown image or category, a bad segmentation, an image
            path escaping ``image_dir``, or (with ``check_files``) a missing image file.
    """
    try:
        return _read(annotation_file, image_dir, check_files, fast=True, stacklevel=stacklevel + 2)
    except coco_index.Unreadable:  # e.g. NaN literals: json reads them (and names what is wrong)
        return _read(annotation_file, image_dir, check_files, fast=False, stacklevel=stacklevel + 2)


def _read(annotation_file: Path, image_dir: Path, check_files: bool, fast: bool, stacklevel: int) -> CocoFile:
    """Reads and checks the file: its texts split by msgspec (``fast``), or all of it by ``json``."""
    src = str(annotation_file)
    texts = coco_index.split_top_level(_read_bytes(annotation_file)) if fast else None
    if texts is None:
        data = read_json(annotation_file)
    else:  # every value but the annotations decoded by json, as read_json would
        data = {key: None if key == "annotations" else coco_index.loads(text) for key, text in texts.items()}
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise DatasetError(f"{src}: a COCO file needs top-level 'images' and 'categories' lists")
    categories = CategoryMap.from_categories(data["categories"], src)
    images = _check_images(data["images"], annotation_file, image_dir, check_files)
    known = set(categories.coco_ids)
    if texts is not None and "annotations" in texts and memoryview(texts["annotations"])[0] == 0x5B:  # "["
        store = coco_index.index_texts(coco_index.split_list(texts["annotations"]), src, images, known)
    else:
        annotations = data.get("annotations", []) if texts is None else (
            coco_index.loads(texts["annotations"]) if "annotations" in texts else [])
        if not isinstance(annotations, list):
            raise DatasetError(f"{src}: 'annotations' must be a list (use [] for none), got "
                               f"{json.dumps(annotations) if annotations is None else type(annotations).__name__}")
        store = coco_index.index_decoded(annotations, src, images, known)
        data["annotations"] = None  # the store holds them
    warned = store.warned
    for what, key in (("annotations had polygons with fewer than 3 points or zero area; those polygons were "
                       "skipped", "degenerate"),
                      ("annotations had polygon points outside the image; they were clipped to the image", "clipped"),
                      ("annotations had an empty segmentation ([]); they were skipped", "empty")):
        ids = warned[key]
        if ids:
            shown = ", ".join(str(i) for i in ids[:EXAMPLES]) + (", ..." if len(ids) > EXAMPLES else "")
            warnings.warn(f"{src}: {len(ids)} {what} (annotation ids {shown})", DatasetWarning, stacklevel=stacklevel)
    return CocoFile(categories, images, store, data)


def _read_bytes(annotation_file: Path) -> bytes:
    """The file's bytes; a failure to read is reported by :func:`read_json`'s messages."""
    try:
        return annotation_file.read_bytes()
    except OSError:
        read_json(annotation_file)  # raises the DatasetError naming what went wrong
        raise


def _check_images(images: list, src: Path, image_dir: Path, check_files: bool) -> dict[int, dict]:
    """The ``images`` records by id, each checked (fields, types, unique id, path inside ``image_dir``)."""
    by_id = {}
    if not isinstance(images, list):
        raise DatasetError(f"{src}: 'images' must be a list of image records, got {type(images).__name__}")
    if not images:
        raise DatasetError(f"{src}: 'images' is empty; list each image as "
                           "{'id', 'file_name', 'height', 'width'}")
    folders: dict[str, str | None] = {}
    for index, img in enumerate(images):
        missing = [k for k in ("id", "file_name", "height", "width") if not isinstance(img, dict) or k not in img]
        if missing:
            raise DatasetError(f"{src}: images[{index}] lacks {missing}")
        if not is_int(img["id"]):
            raise DatasetError(f"{src}: images[{index}] has id {img['id']!r}; an image id must be an integer")
        image_id = int(img["id"])
        where = f"{src}: image id {image_id}"
        if image_id in by_id:
            raise DatasetError(f"{src}: image id {image_id} appears more than once")
        for key in ("height", "width"):
            if not is_int(img[key]) or img[key] <= 0:
                raise DatasetError(f"{where}: {key} is {img[key]!r}; it must be a positive integer, the "
                                   "image's size in pixels after EXIF orientation (e.g. 480, not \"480\")")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise DatasetError(f"{where}: file_name is {img['file_name']!r}; it must be the image's path "
                               "relative to the image folder")
        path = _image_path(image_dir, img["file_name"], where, folders)
        if check_files and not os.path.isfile(path):
            raise DatasetError(f"{where}: file {path} not found")
        by_id[image_id] = img
    return by_id


def _image_path(image_dir: Path, file_name: str, where: str, folders: dict) -> str:
    """``resolve_inside(image_dir, file_name)``, resolving each folder once: for a name that is
    not a symbolic link, the resolved path is the resolved folder joined with the name."""
    rel = file_name.replace("\\", "/")
    folder, _, name = rel.rpartition("/")
    if folder not in folders and not rel.startswith("/"):
        real = (image_dir / folder).resolve()
        folders[folder] = str(real) if real.is_relative_to(image_dir.resolve()) else None
    real = folders.get(folder)
    if real is None or rel.startswith("/") or name in ("", ".", ".."):
        return str(resolve_inside(image_dir, file_name, source=where))
    path = os.path.join(real, name)
    return str(resolve_inside(image_dir, file_name, source=where)) if os.path.islink(path) else path
