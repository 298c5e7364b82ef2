"""A COCO instance-segmentation dataset: images and their masks by image id (notebook 01).

:class:`CocoDataset` opens a COCO file with :func:`solo_lib.data.coco_file.read_coco_file`, which
checks every record (a broken file fails when it is opened, naming the file and the record), and
then gives each image with its instances as a :class:`Sample`: the pixels, read with
:func:`solo_lib.data.images.load_rgb_image` as displayed (EXIF orientation applied, so every size,
COCO ``height``/``width``, is that of the oriented image), and one binary mask per annotation,
rasterised by :func:`solo_lib.data.segmentation.decode_segmentation`. Labels are contiguous
(``0..C-1``, :class:`~solo_lib.data.coco_file.CategoryMap`).

Crowd annotations (``iscrowd: 1``) mark regions of many objects. They are kept in each
:class:`Sample` with ``iscrowd=True`` so an evaluator can use them, and training targets skip them.

A file the size of COCO train2017 is not turned into Python objects all at once: the annotations
are checked in bulk and kept as their JSON text (:mod:`solo_lib.data.coco_index`), and an image's
annotations are decoded when they are asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from pathlib import Path

import numpy as np

from solo_lib.data.coco_file import read_coco_file, resolve_inside
from solo_lib.data.images import load_rgb_image
from solo_lib.data.segmentation import decode_segmentation
from solo_lib.errors import DatasetError
from solo_lib.resources import shipped_dataset_dir


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

    The rule of :func:`solo_lib.data.augment.boxes_from_masks`, in numpy. Both stay: a
    ``CocoDataset`` builds its samples without TensorFlow (``coco.py`` runs with no graph), and the
    augmentation needs its tensor version inside ``tf.data``; ``tests/test_viz.py`` and
    ``tests/test_tfrecord.py`` check that the two agree.

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
        # stacklevel=1: the counting warnings (degenerate, clipped, empty) point at this line.
        checked = read_coco_file(self.annotation_file, self.image_dir, check_files=check_files, stacklevel=1)
        self.categories = checked.categories
        self._images = checked.images
        self._rows = {image_id: row for row, image_id in enumerate(self._images)}
        self._all_images = self._images
        self._store = checked.store
        self._dataset = checked.data
        self._coco = None

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


def sample_dataset_paths(split: str, dataset: str = "sample") -> tuple[Path, Path]:
    """Paths ``(annotation_file, image_dir)`` of a dataset shipped in ``data/`` (in an installed
    wheel, ``solo_lib/_data``: see :mod:`solo_lib.resources`).

    Args:
        split: ``"train"`` or ``"val"`` (for ``real_photos``, ``val`` is the held-out photo).
        dataset: ``"sample"`` (``data/sample_coco``) or ``"real_photos"`` (``data/real_photos``).
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    root = shipped_dataset_dir(dataset)
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
