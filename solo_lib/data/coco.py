"""COCO instance annotations, parsed on top of pycocotools (notebook 01).

A COCO file has three lists: ``images`` (id, file_name, height, width), ``categories``
(id, name) and ``annotations`` (id, image_id, category_id, segmentation, iscrowd, ...).
A segmentation is a list of polygons or a run-length encoding (RLE);
:mod:`solo_lib.data.segmentation` validates and rasterises it. Images are read with
:func:`solo_lib.data.images.load_rgb_image`, as displayed (EXIF orientation applied), so every
size (COCO ``height``/``width``) is that of the oriented image.

COCO category ids are not contiguous (1..90 with gaps in COCO 2017); the model predicts
contiguous labels ``0..C-1``. :class:`CategoryMap` maps both ways, in ascending id order.

Crowd annotations (``iscrowd: 1``) mark regions of many objects. They are kept in each
:class:`Sample` with ``iscrowd=True`` so an evaluator can use them, and training targets skip them.

Every record is validated when a file is opened; a record that cannot be used raises a
:class:`~solo_lib.errors.DatasetError` naming the file, the record and what to do, and a record
that is repaired or skipped is counted in one :class:`~solo_lib.errors.DatasetWarning`.

A file the size of COCO train2017 is not turned into Python objects all at once: the annotations
are checked in bulk and kept as their JSON text (:mod:`solo_lib.data.coco_index`), and an image's
annotations are decoded when they are asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

# images.py and segmentation.py were split off this module; what callers imported from here
# still imports from here (hence the names this module does not use itself).
from solo_lib.data import coco_index
from solo_lib.data.images import ORIENTATION_TAG, image_to_rgb8, load_rgb_image, oriented_size  # noqa: F401
from solo_lib.data.segmentation import (  # noqa: F401
    _clean_segmentation,
    check_rle,
    decode_segmentation,
    is_finite,
    is_int,
    is_number,
    polygon_area,
    rle_counts_from_string,
)
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


@dataclasses.dataclass(frozen=True)
class Sample:
    """One image and its instances, ready for augmentation and target building.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` uint8 in {0, 1}, one per annotation (crowd included).
        labels: ``(N,)`` int32 contiguous labels in ``[0, C)``.
        boxes: ``(N, 4)`` float32 ``[x0, y0, x1, y1]``: the tight box of each mask, right and
            bottom exclusive (``x1 = max_x + 1``); ``[0, 0, 0, 0]`` for an empty mask.
        iscrowd: ``(N,)`` bool; crowd regions never become training positives.
        annotation_ids: ``(N,)`` int64 COCO annotation ids.
        image_id: the COCO image id.
        file_name: the image path relative to the dataset's image folder.
        class_names: the C class names, indexed by label.
    """

    image: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    iscrowd: np.ndarray
    annotation_ids: np.ndarray
    image_id: int
    file_name: str
    class_names: tuple[str, ...]

    def to_dict(self) -> dict[str, np.ndarray]:
        """The arrays as a dict, the form ``solo_lib.data.augment`` and ``tf.data`` use."""
        return {
            "image": self.image,
            "masks": self.masks,
            "labels": self.labels,
            "boxes": self.boxes,
            "iscrowd": self.iscrowd,
            "image_id": np.int64(self.image_id),
        }


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight boxes of binary masks.

    Args:
        masks: ``(N, H, W)`` binary masks.

    Returns:
        ``(N, 4)`` float32 ``[x0, y0, x1, y1]`` with exclusive right/bottom (``x1 = max_x + 1``),
        ``[0, 0, 0, 0]`` for an empty mask.
    """
    masks = np.asarray(masks).astype(bool)
    boxes = np.zeros((masks.shape[0], 4), np.float32)
    if masks.shape[0] == 0:
        return boxes
    cols, rows = masks.any(axis=1), masks.any(axis=2)  # (N, W), (N, H)
    nonempty = cols.any(axis=1)
    width, height = masks.shape[2], masks.shape[1]
    boxes[:, 0] = cols.argmax(axis=1)
    boxes[:, 1] = rows.argmax(axis=1)
    boxes[:, 2] = width - cols[:, ::-1].argmax(axis=1)
    boxes[:, 3] = height - rows[:, ::-1].argmax(axis=1)
    boxes[~nonempty] = 0
    return boxes


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


def _warn_counted(path: Path, what: str, ids: list) -> None:
    if ids:
        shown = ", ".join(str(i) for i in ids[:EXAMPLES]) + (", ..." if len(ids) > EXAMPLES else "")
        warnings.warn(f"{path}: {len(ids)} {what} (annotation ids {shown})", DatasetWarning, stacklevel=3)


class CocoDataset:
    """A COCO instance-segmentation dataset: images on disk plus one annotation file.

    All records are validated when the dataset is opened, so a broken file fails at once,
    naming the file and the record, rather than mid-epoch. Degenerate polygons (fewer than 3
    points or zero area) are dropped with one warning that counts them; polygon coordinates
    outside the image are clipped, also with a counting warning. The annotations are kept as
    the file's text and decoded per image (:mod:`solo_lib.data.coco_index`), so a COCO-sized
    file takes about its own size in memory.

    Args:
        annotation_file: path of the COCO JSON file.
        image_dir: folder that the images' ``file_name`` entries are relative to.
        check_files: verify up front that every image file exists.

    Raises:
        DatasetError: malformed JSON, a record without required fields, duplicated ids, an
            annotation pointing at an unknown image or category, a bad segmentation, an image
            path escaping ``image_dir``, or (with ``check_files``) a missing image file.
    """

    def __init__(self, annotation_file: str | os.PathLike, image_dir: str | os.PathLike, *, check_files: bool = True):
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        try:
            self._open(check_files, fast=True)
        except coco_index.Unreadable:  # e.g. NaN literals: json reads them (and names what is wrong)
            self._open(check_files, fast=False)
        self._coco = None

    def _open(self, check_files: bool, fast: bool) -> None:
        """Reads and checks the file: its texts split by msgspec (``fast``), or all of it by ``json``."""
        src = str(self.annotation_file)
        texts = coco_index.split_top_level(self._read_bytes()) if fast else None
        if texts is None:
            data = read_json(self.annotation_file)
        else:  # every value but the annotations decoded by json, as read_json would
            data = {key: None if key == "annotations" else coco_index.loads(text) for key, text in texts.items()}
        if not isinstance(data, dict) or "images" not in data or "categories" not in data:
            raise DatasetError(f"{src}: a COCO file needs top-level 'images' and 'categories' lists")
        self.categories = CategoryMap.from_categories(data["categories"], src)
        self._images = self._check_images(data["images"], check_files)
        self._rows = {image_id: row for row, image_id in enumerate(self._images)}
        self._all_images = self._images
        known = set(self.categories.coco_ids)
        if texts is not None and "annotations" in texts and memoryview(texts["annotations"])[0] == 0x5B:  # "["
            self._store = coco_index.index_texts(coco_index.split_list(texts["annotations"]), src, self._images, known)
        else:
            annotations = data.get("annotations", []) if texts is None else (
                coco_index.loads(texts["annotations"]) if "annotations" in texts else [])
            if not isinstance(annotations, list):
                raise DatasetError(f"{src}: 'annotations' must be a list (use [] for none), got "
                                   f"{json.dumps(annotations) if annotations is None else type(annotations).__name__}")
            self._store = coco_index.index_decoded(annotations, src, self._images, known)
            data["annotations"] = None  # the store holds them
        warned = self._store.warned
        _warn_counted(src, "annotations had polygons with fewer than 3 points or zero area; those polygons were "
                      "skipped", warned["degenerate"])
        _warn_counted(src, "annotations had polygon points outside the image; they were clipped to the image",
                      warned["clipped"])
        _warn_counted(src, "annotations had an empty segmentation ([]); they were skipped", warned["empty"])
        self._dataset = data

    def _read_bytes(self) -> bytes:
        """The file's bytes; a failure to read is reported by :func:`read_json`'s messages."""
        try:
            return self.annotation_file.read_bytes()
        except OSError:
            read_json(self.annotation_file)  # raises the DatasetError naming what went wrong
            raise

    # -- validation -------------------------------------------------------------------------

    def _check_images(self, images: list, check_files: bool) -> dict[int, dict]:
        src, by_id = self.annotation_file, {}
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
            path = self._image_path(img["file_name"], where, folders)
            if check_files and not os.path.isfile(path):
                raise DatasetError(f"{where}: file {path} not found")
            by_id[image_id] = img
        return by_id

    def _image_path(self, file_name: str, where: str, folders: dict) -> str:
        """``resolve_inside(image_dir, file_name)``, resolving each folder once: for a name that is
        not a symbolic link, the resolved path is the resolved folder joined with the name."""
        rel = file_name.replace("\\", "/")
        folder, _, name = rel.rpartition("/")
        if folder not in folders and not rel.startswith("/"):
            real = (self.image_dir / folder).resolve()
            folders[folder] = str(real) if real.is_relative_to(self.image_dir.resolve()) else None
        real = folders.get(folder)
        if real is None or rel.startswith("/") or name in ("", ".", ".."):
            return str(resolve_inside(self.image_dir, file_name, source=where))
        path = os.path.join(real, name)
        return str(resolve_inside(self.image_dir, file_name, source=where)) if os.path.islink(path) else path

    # -- access -----------------------------------------------------------------------------

    @property
    def image_ids(self) -> list[int]:
        """Image ids in file order."""
        return list(self._images)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.categories.names

    @property
    def num_classes(self) -> int:
        return self.categories.num_classes

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Sample:
        return self.sample(self.image_ids[index])

    def __iter__(self):
        return (self.sample(image_id) for image_id in self.image_ids)

    def subset(self, image_ids) -> "CocoDataset":
        """A view of some images (same files, categories and validation), e.g. to overfit a few."""
        missing = [i for i in image_ids if i not in self._images]
        if missing:
            raise KeyError(f"image ids {missing} are not in {self.annotation_file}")
        view = object.__new__(CocoDataset)
        view.__dict__.update(self.__dict__)
        view._images = {i: self._images[i] for i in image_ids}
        keep = set(image_ids)
        view._dataset = dict(self._dataset, images=[im for im in self._dataset["images"] if im["id"] in keep])
        view._coco = None
        return view

    def image_info(self, image_id: int) -> dict:
        """The image record (id, file_name, height, width, ...) as in the file."""
        return {k: v for k, v in self._images[image_id].items() if k != "_path"}

    def annotations(self, image_id: int) -> list[dict]:
        """The image's annotations, with degenerate polygons removed and points clipped (decoded
        from the file's text on each call: new dicts every time)."""
        return [self._store.cleaned(j, self.annotation_file, self._all_images) for j in self._indices(image_id)]

    def num_annotations(self, image_id: int) -> int:
        """``len(self.annotations(image_id))``, without decoding them."""
        return len(self._indices(image_id))

    def _indices(self, image_id: int):
        if image_id not in self._images:
            raise KeyError(image_id)
        return self._store.indices(self._rows[image_id])

    def load_image(self, image_id: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB. Raises DatasetError when the file is missing or its size
        differs from the ``height``/``width`` of its record."""
        info = self._images[image_id]
        path = resolve_inside(self.image_dir, info["file_name"], source=f"{self.annotation_file}: image id {image_id}")
        image = load_rgb_image(path, what=f"image id {image_id}")
        if image.shape[:2] != (info["height"], info["width"]):
            hint = ("; after its EXIF orientation: COCO height/width must be those of the image as displayed"
                    if image.shape[:2] == (info["width"], info["height"]) else "")
            raise DatasetError(f"{path}: image id {image_id} is {image.shape[1]}x{image.shape[0]} (WxH)"
                               f"{hint} but {self.annotation_file} says {info['width']}x{info['height']}; "
                               "fix the record or the file")
        return image

    def sample(self, image_id: int) -> Sample:
        """Decodes one image with all its instances (see :class:`Sample`)."""
        info = self._images[image_id]
        anns = self.annotations(image_id)
        h, w = info["height"], info["width"]
        masks = np.zeros((len(anns), h, w), np.uint8)
        for k, ann in enumerate(anns):
            masks[k] = decode_segmentation(ann["segmentation"], h, w)
        return Sample(
            image=self.load_image(image_id),
            masks=masks,
            labels=np.array([self.categories.to_label(a["category_id"]) for a in anns], np.int32),
            boxes=boxes_from_masks(masks),
            iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
            annotation_ids=np.array([a["id"] for a in anns], np.int64),
            image_id=int(image_id),
            file_name=info["file_name"],
            class_names=self.class_names,
        )

    @property
    def coco(self):
        """The same annotations as a ``pycocotools.coco.COCO`` object (for ``COCOeval``)."""
        if self._coco is None:
            from pycocotools.coco import COCO

            coco = COCO()
            # The cleaned annotations (degenerate polygons dropped, points clipped), so COCOeval's
            # ground truth is exactly what Sample.masks shows.
            cleaned = [ann for image_id in self._images for ann in self.annotations(image_id)]
            coco.dataset = dict(self._dataset, annotations=cleaned)
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                coco.createIndex()
            self._coco = coco
        return self._coco


# The datasets shipped in data/: name -> folder. "sample" is drawn by a program
# (scripts/make_sample_data.py); "real_photos" is three real photographs (notebook 08b).
SHIPPED_DATASETS = {"sample": "sample_coco", "real_photos": "real_photos"}


def sample_dataset_paths(split: str, dataset: str = "sample") -> tuple[Path, Path]:
    """Paths ``(annotation_file, image_dir)`` of a dataset shipped in ``data/``.

    Args:
        split: ``"train"`` or ``"val"`` (for ``real_photos``, ``val`` is the held-out photo).
        dataset: ``"sample"`` (``data/sample_coco``) or ``"real_photos"`` (``data/real_photos``).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if dataset not in SHIPPED_DATASETS:
        raise ValueError(f"dataset must be one of {sorted(SHIPPED_DATASETS)}, got {dataset!r}")
    root = Path(__file__).resolve().parents[2] / "data" / SHIPPED_DATASETS[dataset]
    return root / "annotations" / f"instances_{split}.json", root / "labelme" / split


def load_sample_dataset(split: str = "train") -> CocoDataset:
    """The course's tiny sample dataset (``data/sample_coco``) as a :class:`CocoDataset`."""
    ann, images = sample_dataset_paths(split)
    return CocoDataset(ann, images)


def load_real_photos(split: str = "train") -> CocoDataset:
    """The course's real photographs (``data/real_photos``, notebook 08b) as a :class:`CocoDataset`:
    ``"train"`` holds ``coins_top`` and ``coffee``, ``"val"`` the held-out ``coins_bottom``."""
    ann, images = sample_dataset_paths(split, "real_photos")
    return CocoDataset(ann, images)
