"""The annotations of a COCO file, checked all at once and kept as JSON text (CocoDataset's store).

One module past ~300 lines, because it is one idea: the bulk checks and the one-record rules they
fall back to (:func:`check_annotation`) must give the same verdicts and messages, so they stay side
by side.

``json.load`` of a COCO train2017-sized file (860,001 annotations, about 50 million polygon
coordinates) builds a Python object per number: gigabytes, and most of the time spent opening
it. :class:`~solo_lib.data.coco.CocoDataset` checks every record when it opens a file, but a
training step needs only one image's annotations at a time. So this module:

1. splits the file into the JSON text of each top-level value and of each annotation with
   msgspec (``msgspec.Raw``: a slice of the file's bytes, nothing decoded);
2. decodes the few fields the checks need (``id``, ``image_id``, ``category_id``, ``iscrowd``)
   into typed structs, and checks them as columns: unknown image or category, duplicated id,
   ``iscrowd`` other than 0 or 1;
3. checks polygon segmentations in bulk from their text (:mod:`solo_lib.data.polygon_text`), and
   compressed RLEs with :func:`~solo_lib.data.segmentation.rle_totals`;
4. hands every record that the bulk checks cannot vouch for (a failed check, an uncompressed
   RLE, anything unusual) to :func:`check_annotation`, the one-record rules that name what is
   wrong, in file order, so the first bad record raises exactly the error it always did;
5. keeps each annotation's text; :meth:`AnnotationStore.cleaned` decodes one with ``json`` and
   cleans it by the same rules when its image is asked for.

A file that msgspec does not read (``NaN`` literals, which Python's ``json`` accepts, or broken
JSON) raises :class:`Unreadable`; CocoDataset then reads it with ``json`` and runs
:func:`check_annotation` on every record, which gives the same result and the same messages.
"""

from __future__ import annotations

import codecs
import json
import operator
from typing import Union

import msgspec
import numpy as np

from solo_lib.data.polygon_text import check_polygons, read_polygon_texts
from solo_lib.data.segmentation import _clean_segmentation, is_int, rle_totals
from solo_lib.errors import DatasetError

REQUIRED = ("id", "image_id", "category_id", "segmentation")
_CHUNK = 20_000  # annotations per msgspec call
_POLYGON_CHUNK = 1_000  # segmentations per numpy pass: about 50k numbers, temporaries that stay in cache
_INT64 = (-(2**63), 2**63 - 1)


class Unreadable(Exception):
    """msgspec cannot read the file (or part of it): read it with ``json`` instead."""


class _Fields(msgspec.Struct, gc=False):  # no cycles: not tracked by the garbage collector
    """The fields of an annotation that the bulk checks read; the rest stays text."""

    id: int
    image_id: int
    category_id: int
    segmentation: msgspec.Raw
    iscrowd: Union[bool, int] = 0


def split_top_level(data: bytes) -> dict[str, msgspec.Raw]:
    """The file's top-level keys and the JSON text of their values.

    Raises:
        Unreadable: not UTF-8 (which ``json`` reports), not a JSON object, or not JSON msgspec reads.
    """
    if not data.isascii():  # msgspec does not check the UTF-8 of text it skips
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            for start in range(0, len(data), 1 << 24):
                decoder.decode(data[start:start + (1 << 24)])
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise Unreadable from None
    try:
        return msgspec.json.decode(data, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise Unreadable from None


def loads(text) -> object:
    """``json.loads`` of a JSON text (bytes-like): the very objects ``json.load`` of the file holds."""
    try:
        return json.loads(bytes(text))
    except ValueError:  # e.g. an integer of thousands of digits: read_json names it for the whole file
        raise Unreadable from None


def split_list(text) -> list[msgspec.Raw]:
    """The JSON text of each element of a JSON array."""
    return msgspec.json.decode(text, type=list[msgspec.Raw])


def check_annotation(ann, index: int, src, images: dict, known: set, earlier) -> tuple:
    """One annotation record, checked as CocoDataset always has (the messages are its interface).

    Args:
        ann: the record as ``json`` decodes it.
        index: its position in ``annotations``.
        src: the annotation file, for messages.
        images: image id -> image record.
        known: the category ids.
        earlier: ``earlier(ann_id)``: the index of an earlier annotation with this id, or None.

    Returns:
        ``(cleaned, n_degenerate, clipped)``: the record with its segmentation cleaned (None when
        nothing is left to draw), the number of degenerate polygons dropped, whether points were clipped.

    Raises:
        DatasetError: the first thing wrong with the record.
    """
    ann_id = ann.get("id", f"#{index}") if isinstance(ann, dict) else f"#{index}"
    where = f"{src}: annotation id {ann_id}"
    if not isinstance(ann, dict) or any(k not in ann for k in REQUIRED):
        raise DatasetError(f"{where} needs 'id', 'image_id', 'category_id' and 'segmentation'")
    for key in ("id", "image_id", "category_id"):
        if not is_int(ann[key]):
            raise DatasetError(f"{src}: annotations[{index}] (annotation id {ann_id!r}) has {key} "
                               f"{ann[key]!r}; it must be an integer")
    first = earlier(ann_id)
    if first is not None:
        raise DatasetError(f"{where} appears more than once (annotations[{first}] and "
                           f"annotations[{index}]); give every annotation its own id")
    if ann["image_id"] not in images:
        raise DatasetError(f"{where} points at image id {ann['image_id']}, which is not in 'images'")
    if ann["category_id"] not in known:
        raise DatasetError(f"{where} has category id {ann['category_id']}, which is not in 'categories'")
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1) or not (is_int(iscrowd) or isinstance(iscrowd, bool)):
        raise DatasetError(f"{where}: iscrowd is {iscrowd!r}; it must be 0 (one object) or 1 (a crowd region)")
    return _cleaned(ann, images, where)


def _cleaned(ann: dict, images: dict, where: str) -> tuple:
    """``(cleaned, n_degenerate, clipped)`` of a record whose fields are checked (see :func:`check_annotation`)."""
    img = images[ann["image_id"]]
    segm, n_bad, clipped = _clean_segmentation(ann["segmentation"], img["height"], img["width"], where)
    if segm is None:
        return None, n_bad, clipped
    cleaned = dict(ann, segmentation=segm)
    if "iscrowd" in ann:
        cleaned["iscrowd"] = int(ann["iscrowd"])  # True -> 1, as COCOeval expects
    return cleaned, n_bad, clipped


class AnnotationStore:
    """The annotation records of a file, grouped by image (images in file order, then file order).

    Attributes:
        records: one per annotation, in file order: its JSON text (``msgspec.Raw``) or, for a file
            read with ``json``, the decoded record.
        order: ``(K,)`` indices of the records with something left to draw, image after image.
        starts: ``(num_images + 1,)`` where each image's records begin in ``order``.
        warned: ``{"degenerate", "clipped", "empty"}`` -> the annotation ids to count in warnings.
    """

    def __init__(self, records: list, image_row: np.ndarray, kept: np.ndarray, num_images: int, warned: dict):
        index = np.flatnonzero(kept)
        self.records, self.warned = records, warned
        self.order = index[np.argsort(image_row[index], kind="stable")]
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(image_row[index], minlength=num_images))])

    def indices(self, row: int) -> np.ndarray:
        """Record indices of the image in row ``row``, in file order."""
        return self.order[self.starts[row]:self.starts[row + 1]]

    def cleaned(self, index: int, src, images: dict) -> dict:
        """Record ``index`` decoded, degenerate polygons dropped and points clipped."""
        ann = self.records[index]
        if not isinstance(ann, dict):
            ann = json.loads(bytes(ann))
        return _cleaned(ann, images, f"{src}: annotation id {ann['id']}")[0]


def index_decoded(annotations: list, src, images: dict, known: set) -> AnnotationStore:
    """The store of records decoded by ``json``: :func:`check_annotation` on each, in order."""
    rows = {image_id: row for row, image_id in enumerate(images)}
    image_row, kept = np.zeros(len(annotations), np.int64), np.zeros(len(annotations), bool)
    first_index: dict = {}
    warned: dict = {"degenerate": [], "clipped": [], "empty": []}
    for index, ann in enumerate(annotations):
        cleaned, n_bad, clipped = check_annotation(ann, index, src, images, known, first_index.get)
        first_index.setdefault(ann["id"], index)
        _count(warned, ann["id"], cleaned, n_bad, clipped)
        image_row[index], kept[index] = rows[ann["image_id"]], cleaned is not None
    return AnnotationStore(annotations, image_row, kept, len(images), warned)


def _count(warned: dict, ann_id, cleaned, n_bad: int, clipped: bool) -> None:
    if n_bad:
        warned["degenerate"].append(ann_id)
    if clipped:
        warned["clipped"].append(ann_id)
    if cleaned is None and not n_bad:
        warned["empty"].append(ann_id)


def index_texts(texts: list, src, images: dict, known: set) -> AnnotationStore:
    """The store of annotation texts (steps 2 to 4 of the module docstring).

    Raises:
        DatasetError: from :func:`check_annotation`, for the first bad record.
        Unreadable: a record that ``json`` cannot decode either.
    """
    count = len(texts)
    rows_of = {image_id: row for row, image_id in enumerate(images)}
    keys, rows = _image_table(rows_of)
    sizes = np.array([(img["height"], img["width"]) for img in images.values()], np.float64)
    columns = {name: np.zeros(count, np.int64) for name in ("id", "image_id", "category_id", "iscrowd")}
    slow, checked = np.zeros(count, bool), np.zeros(count, bool)  # checked: segmentation verified in bulk
    degenerate, clipped, kept = np.zeros(count, np.int64), np.zeros(count, bool), np.zeros(count, bool)
    image_row = np.full(count, -1, np.int64)
    for start in range(0, count, _CHUNK):
        stop = min(start + _CHUNK, count)
        segmentations = _fields(texts[start:stop], {k: v[start:stop] for k, v in columns.items()}, slow[start:stop])
        image_row[start:stop] = _lookup(columns["image_id"][start:stop], keys, rows)
        first_byte = np.where(slow[start:stop] | (image_row[start:stop] < 0), 0, _first_bytes(segmentations))
        polygon, rle = start + np.flatnonzero(first_byte == ord("[")), start + np.flatnonzero(first_byte == ord("{"))
        checked[rle] = kept[rle] = _rles_checked([segmentations[j - start] for j in rle], sizes[image_row[rle]])
        for first in range(0, len(polygon), _POLYGON_CHUNK):
            chunk = polygon[first:first + _POLYGON_CHUNK]
            read = read_polygon_texts([segmentations[j - start] for j in chunk])
            size = sizes[image_row[chunk]]
            doubtful, degenerate[chunk], clipped[chunk] = check_polygons(read, size[:, 0], size[:, 1])
            kept[chunk] = read.polygons > degenerate[chunk]
            checked[chunk] = read.plain & ~doubtful

    ids = columns["id"]
    category_ok = np.isin(columns["category_id"], _int64_array(known))
    suspect = ~checked | slow | ~category_ok | ((columns["iscrowd"] != 0) & (columns["iscrowd"] != 1))
    decoded = {j: loads(texts[j]) for j in np.flatnonzero(slow).tolist()}
    has_id = ~slow
    for j, ann in decoded.items():  # ids the typed decoding did not give
        if isinstance(ann, dict) and is_int(ann.get("id")) and _INT64[0] <= ann["id"] <= _INT64[1]:
            ids[j], has_id[j] = ann["id"], True
    duplicated, later = _duplicates(ids, has_id)
    suspect[later] = True

    # one by one, in file order: the first bad record raises as it always did
    first_index, empty, id_of = _FirstIndex(duplicated), np.zeros(count, bool), {}
    for j in np.flatnonzero(suspect).tolist():
        ann = decoded[j] if j in decoded else loads(texts[j])
        cleaned, degenerate[j], clipped[j] = check_annotation(ann, j, src, images, known,
                                                              lambda ann_id: first_index.get(ann_id, j))
        first_index.add(ann["id"], j)
        id_of[j] = ann["id"]
        image_row[j], kept[j] = rows_of[ann["image_id"]], cleaned is not None
        empty[j] = cleaned is None and not degenerate[j]

    def ids_where(mask):
        return [id_of[j] if j in id_of else int(ids[j]) for j in np.flatnonzero(mask).tolist()]

    warned = {"degenerate": ids_where(degenerate > 0), "clipped": ids_where(clipped), "empty": ids_where(empty)}
    return AnnotationStore(texts, image_row, kept, len(images), warned)


def _fields(texts: list, columns: dict, slow: np.ndarray) -> list:
    """Decodes the typed fields of each text into ``columns`` (views, written in place) and
    returns the segmentations' texts; ``slow`` marks the texts that do not decode as
    :class:`_Fields` (a missing key, another type, an integer beyond int64)."""
    decoder = msgspec.json.Decoder(_Fields)
    try:
        fields = list(map(decoder.decode, texts))  # the segmentations stay slices of the file: nothing copied
    except (msgspec.DecodeError, msgspec.ValidationError):
        fields = [_decode(decoder, text) for text in texts]
        slow[:] = [f is None for f in fields]
    for name, column in columns.items():
        get = operator.attrgetter(name)
        values = list(map(get, fields)) if not slow.any() else [get(f) if f is not None else 0 for f in fields]
        try:
            column[:] = values
        except OverflowError:  # an integer beyond int64: that record is checked alone
            for k, value in enumerate(values):
                if not _INT64[0] <= value <= _INT64[1]:
                    values[k], fields[k] = 0, None
                    slow[k] = True
            column[:] = values
    return [f.segmentation if f is not None else b"" for f in fields]


class _Rle(msgspec.Struct, gc=False):
    """A compressed RLE segmentation, as the bulk check reads it."""

    size: tuple[int, int]
    counts: str


def _rles_checked(texts: list, sizes: np.ndarray) -> np.ndarray:
    """Which RLE texts :func:`~solo_lib.data.segmentation.check_rle` accepts for images of ``sizes``
    ``(R, 2)`` (height, width), in bulk: compressed, of the image's size, runs that are not
    negative and add up to it. The others (uncompressed too) are for the per-record check."""
    decoder = msgspec.json.Decoder(_Rle)
    rles = [_decode(decoder, text) for text in texts]
    index = np.array([i for i, r in enumerate(rles) if r is not None and r.counts.isascii()], np.int64)
    readable, total = rle_totals([rles[i].counts.encode("ascii") for i in index])
    size = np.array([rles[i].size for i in index], np.int64).reshape(-1, 2)
    ok = np.zeros(len(texts), bool)
    ok[index] = readable & (size == sizes[index]).all(axis=1) & (total == size[:, 0] * size[:, 1])
    return ok


def _first_bytes(texts: list) -> np.ndarray:
    """The first byte of each text (0 for an empty one)."""
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    joined = np.frombuffer(b"".join(texts) + b"\0", np.uint8)
    return np.where(lengths > 0, joined[np.cumsum(lengths) - lengths], 0)


def _decode(decoder, text):
    try:
        return decoder.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _int64_array(values) -> np.ndarray:
    return np.array([v for v in values if _INT64[0] <= v <= _INT64[1]], np.int64)


def _image_table(rows_of: dict) -> tuple[np.ndarray, np.ndarray]:
    """Sorted image ids (those within int64) and their rows, for :func:`_lookup`."""
    keys = _int64_array(rows_of)
    rows = np.array([rows_of[int(k)] for k in keys], np.int64)
    order = np.argsort(keys)
    return keys[order], rows[order]


def _lookup(values: np.ndarray, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The row of each image id in ``values``; -1 where unknown."""
    if not len(keys):
        return np.full(len(values), -1, np.int64)
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return np.where(keys[at] == values, rows[at], -1)


def _duplicates(ids: np.ndarray, has_id: np.ndarray) -> tuple[dict, np.ndarray]:
    """``({id: index of its first record}, indices of the later records)`` for repeated ids."""
    index = np.flatnonzero(has_id)
    if not len(index):
        return {}, index
    order = index[np.argsort(ids[index], kind="stable")]  # equal ids stay in file order
    same = np.concatenate([[False], ids[order][1:] == ids[order][:-1]])
    run_start = np.maximum.accumulate(np.where(same, 0, np.arange(len(order))))
    later = np.flatnonzero(same)
    return {int(ids[order[p]]): int(order[run_start[p]]) for p in later.tolist()}, order[later]


class _FirstIndex:
    """``get(ann_id, index)``: the index of an earlier record with this id, or None; from the
    duplicates found in bulk, plus ids beyond int64 (only in records checked one by one, in order)."""

    def __init__(self, duplicated: dict):
        self.duplicated, self.other = duplicated, {}

    def get(self, ann_id, index: int):
        if _INT64[0] <= ann_id <= _INT64[1]:
            first = self.duplicated.get(ann_id)
            return first if first is not None and first < index else None
        return self.other.get(ann_id)

    def add(self, ann_id, index: int) -> None:
        if not _INT64[0] <= ann_id <= _INT64[1]:
            self.other.setdefault(ann_id, index)
