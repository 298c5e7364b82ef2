"""CocoDataset's bulk reading (solo_lib.data.coco_index, solo_lib.data.polygon_text) against the per-record path.

Every COCO file used to be read with ``json`` and checked record by record; files that msgspec
cannot read (``NaN`` literals) still are. The bulk path (texts split by msgspec, polygons checked
with numpy, only unusual records checked one by one) must give exactly the same: cleaned
annotations, samples, warnings, and, for a bad file, the same error naming the first bad record.
Here both paths read the same generated files, full of the unusual things real files hold.
Speed and memory are the benchmark's (``python -m bench annotations``), not asserted here.
"""

import json
import math
import random
import re
import warnings
from unittest import mock

import msgspec
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from solo_lib.data import coco_index
from solo_lib.data.coco import CocoDataset
from solo_lib.data.polygon_text import _parse_numbers, read_polygon_texts
from solo_lib.data.segmentation import _rle_counts_loop, decode_segmentation, rle_counts_from_string
from solo_lib.errors import DatasetError

CATEGORIES = [{"id": i, "name": f"class {i}"} for i in (1, 2, 5, 90)]


def polygon(rng, h, w):
    """A star-shaped polygon around a random centre, coordinates in the image and around it."""
    n = rng.randint(3, 12)
    cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, max(h, w) / 2)
    pts = []
    for k in range(n):
        a = 2 * math.pi * (k + 0.8 * rng.random()) / n
        pts += [cx + r * rng.uniform(0.5, 1) * math.cos(a), cy + r * rng.uniform(0.5, 1) * math.sin(a)]
    return pts


def segmentation_text(rng, h, w):
    """One annotation's segmentation as JSON text, and whether it is a crowd RLE.

    Mostly COCO-like polygons (two decimals), with the unusual cases the bulk checks must hand
    over or decide exactly as the per-record rules do.
    """
    kind = rng.random()
    polys = [polygon(rng, h, w) for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3))]
    if kind < 0.55:
        return json.dumps([[round(v, 2) for v in p] for p in polys], separators=(",", ":")), False
    if kind < 0.60:  # full-precision floats (longer than 8 characters) and ints, json.dumps spacing
        return json.dumps([[v if i % 3 else int(v) for i, v in enumerate(p)] for p in polys]), False
    if kind < 0.65:  # exactly degenerate: odd length, 2 points, collinear, repeated point
        bad = rng.choice([[1, 1, 5, 5, 9], [1, 1, 5, 5], [0, 0, 5, 5, 10, 10], [3, 3, 3, 3, 3, 3], []])
        return json.dumps([[round(v, 2) for v in polys[0]], bad] if rng.random() < 0.5 else [bad]), False
    if kind < 0.68:  # collinear in decimal, so rounding decides whether the area is exactly 0
        t = [rng.choice([0.1, 0.3, 0.7, 1.1]) * k for k in (1, 3, 7)]
        return json.dumps([[t[0], 2 * t[0], t[1], 2 * t[1], t[2], 2 * t[2]]]), False
    if kind < 0.72:  # exponents, negative zero, integers written as floats
        return "[[1e1, -0, 2.5E0, 3.0, -0.0, 7, 4e-1, 9]]", False
    if kind < 0.75:  # the empty segmentation
        return "[]", False
    if kind < 0.80:  # a crowd region, compressed or uncompressed RLE
        mask = np.zeros((h, w), np.uint8)
        mask[rng.randint(0, h - 1):, rng.randint(0, w - 1):] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        if rng.random() < 0.5:
            return json.dumps({"size": [h, w], "counts": rle["counts"].decode("ascii")}), True
        flat = mask.reshape(-1, order="F")
        change = np.flatnonzero(np.diff(flat)) + 1
        counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
        return json.dumps({"size": [h, w], "counts": ([0] if flat[0] else []) + counts}), True
    # points outside the image, clipped (some far outside)
    return json.dumps([[round(v * rng.choice([1, 1.5, -1]), 2) for v in p] for p in polys]), False


def write_file(tmp_path, n_images=150, n_annotations=2500, seed=0, edits=()):
    """A COCO file with small images (written as PNGs) and varied annotation texts.

    ``edits``: ``(index, text)`` pairs, each replacing annotation ``index``'s text.
    """
    rng = random.Random(seed)
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    images = []
    for i in range(n_images):
        h, w = rng.randint(12, 40), rng.randint(12, 40)
        images.append({"id": 1000 + 7 * i, "file_name": f"im{i}.png", "height": h, "width": w})
        Image.fromarray(np.full((h, w, 3), i % 255, np.uint8)).save(folder / f"im{i}.png")
    texts = []
    for k in range(n_annotations):
        img = rng.choice(images)
        segm, crowd = segmentation_text(rng, img["height"], img["width"])
        ann_id = 2**64 + k if rng.random() < 0.01 else 50_000 - 3 * k  # a few ids beyond int64
        fields = {"id": ann_id, "image_id": img["id"], "category_id": rng.choice(CATEGORIES)["id"],
                  "iscrowd": int(crowd) if rng.random() < 0.8 else bool(crowd), "area": 1.0, "bbox": [0, 0, 1, 1]}
        if not crowd and rng.random() < 0.1:
            del fields["iscrowd"]
        if rng.random() < 0.05:
            fields["attributes"] = {"occluded": rng.random() < 0.5, "note": "a [string] with, brackets"}
        text = json.dumps(fields, separators=(",", ":") if rng.random() < 0.7 else (", ", ": "))
        texts.append(text[:-1] + ',"segmentation":' + segm + "}")
    for index, text in edits:
        texts[index] = text
    path = tmp_path / "instances.json"
    path.write_text('{"info": {"year": 2017}, "images": ' + json.dumps(images) + ',\n "annotations": [\n'
                    + ",\n".join(texts) + '],\n "categories": ' + json.dumps(CATEGORIES) + "}")
    return path, folder


def open_per_record(path, folder):
    """CocoDataset as if msgspec could not read the file: json and the per-record checks."""
    with mock.patch.object(coco_index, "split_top_level", side_effect=coco_index.Unreadable):
        return CocoDataset(path, folder)


def open_both(path, folder):
    """``(bulk, per_record, bulk warnings, per-record warnings, records checked one by one in bulk)``."""
    results = []
    for bulk in (True, False):
        with warnings.catch_warnings(record=True) as caught, \
                mock.patch.object(coco_index, "check_annotation", wraps=coco_index.check_annotation) as spy:
            warnings.simplefilter("always")
            ds = CocoDataset(path, folder) if bulk else open_per_record(path, folder)
        results.append((ds, [str(w.message) for w in caught], spy.call_count))
    (fast, fast_warnings, one_by_one), (slow, slow_warnings, _) = results
    return fast, slow, fast_warnings, slow_warnings, one_by_one


def test_bulk_reading_equals_per_record_reading(tmp_path):
    path, folder = write_file(tmp_path)
    fast, slow, fast_warnings, slow_warnings, one_by_one = open_both(path, folder)
    assert isinstance(fast._store.records[0], msgspec.Raw) and isinstance(slow._store.records[0], dict)
    assert one_by_one < 0.5 * 2500  # most records were checked in bulk (the rest: RLE, exponents, big ids, ...)
    assert len(fast_warnings) == 3 and fast_warnings == slow_warnings  # degenerate, clipped, empty: counts and ids
    assert fast.image_ids == slow.image_ids and fast.class_names == slow.class_names
    total = samples = 0
    for image_id in fast.image_ids:
        anns = fast.annotations(image_id)
        assert anns == slow.annotations(image_id) and fast.num_annotations(image_id) == len(anns)
        assert [list(a) for a in anns] == [list(a) for a in slow.annotations(image_id)]  # key order too
        assert fast.image_info(image_id) == slow.image_info(image_id)
        total += len(anns)
        if any(a["id"] >= 2**63 for a in anns):
            continue  # Sample.annotation_ids is int64: such an image has no sample either way
        a, b = fast.sample(image_id), slow.sample(image_id)
        for field in ("image", "masks", "labels", "boxes", "iscrowd", "annotation_ids"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        samples += 1
    assert 1500 < total < 2500 and samples > 100  # something was dropped (empty and degenerate), most kept
    assert fast.coco.dataset == slow.coco.dataset

    # Masks of the annotations the checks left untouched equal pycocotools' own reading of the file.
    raw = COCO()
    raw.dataset = json.loads(path.read_text())
    raw.createIndex()
    same = 0
    for image_id in fast.image_ids[:60]:
        for ann in fast.annotations(image_id):
            original = raw.anns[ann["id"]]
            if ann["segmentation"] == original["segmentation"]:
                info = fast.image_info(image_id)
                np.testing.assert_array_equal(decode_segmentation(ann["segmentation"], info["height"], info["width"]),
                                              raw.annToMask(original))
                same += 1
    assert same > 100


def test_subset_and_coco_view_of_the_bulk_store(tmp_path):
    path, folder = write_file(tmp_path, n_images=20, n_annotations=300, seed=1)
    fast, slow, *_ = open_both(path, folder)
    ids = fast.image_ids[5:2:-1]
    a, b = fast.subset(ids), slow.subset(ids)
    assert a.image_ids == ids and len(a) == 3
    assert [a.annotations(i) for i in ids] == [b.annotations(i) for i in ids]
    assert a.coco.dataset == b.coco.dataset and {im["id"] for im in a.coco.dataset["images"]} == set(ids)
    with pytest.raises(KeyError):
        a.annotations(fast.image_ids[0])


BAD_RECORDS = {
    "string coordinate": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": [[1, "2", 3, 4, 5, 6]]}',
    "boolean coordinate": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": [[1, 2, true, 4, 5, 6]]}',
    "null coordinate": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": [[1, 2, 3, 4], [1, null]]}',
    "huge coordinate": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": [[1, 2, 3, 1e400, 5, 6]]}',
    "huge integer": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": [[1, 2, 3, ' + "9" * 400 + "]]}",
    "flat polygon": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": [1, 2, 3, 4, 5, 6]}',
    "nested too deep": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": [[[1, 2, 9, 2, 5, 8]]]}',
    "segmentation string": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": "[[1, 2]]"}',
    "rle wrong size": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": {"size": [3, 4], "counts": [12]}}',
    "rle corrupt": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": {"size": [1, 1], "counts": "~"}}',
    "unknown image": '{"id": 7, "image_id": 999, "category_id": 1, "segmentation": [[1, 2, 9, 2, 5, 8]]}',
    "unknown category": '{"id": 7, "image_id": 1000, "category_id": 3, "segmentation": [[1, 2, 9, 2, 5, 8]]}',
    "iscrowd 2": '{"id": 7, "image_id": 1000, "category_id": 1, "iscrowd": 2, "segmentation": [[1, 2, 9, 2, 5, 8]]}',
    "iscrowd 1.0": '{"id": 7, "image_id": 1000, "category_id": 1, "iscrowd": 1.0, "segmentation": []}',
    "id float": '{"id": 7.0, "image_id": 1000, "category_id": 1, "segmentation": [[1, 2, 9, 2, 5, 8]]}',
    "id beyond int64 twice": '{"id": 36893488147419103232, "image_id": 1000, "category_id": 1, "segmentation": []}',
    "duplicated id": '{"id": 49997, "image_id": 1000, "category_id": 1, "segmentation": [[1, 2, 9, 2, 5, 8]]}',
    "no segmentation": '{"id": 7, "image_id": 1000, "category_id": 1}',
    "not a record": '[7]',
    "NaN coordinate": '{"id": 7, "image_id": 1000, "category_id": 1, "segmentation": [[1, 2, NaN, 4, 5, 6]]}',
}


@pytest.mark.parametrize("case", BAD_RECORDS)
def test_first_bad_record_is_named_as_by_the_per_record_checks(tmp_path, case):
    text = BAD_RECORDS[case]
    later = BAD_RECORDS["unknown category" if case != "unknown category" else "unknown image"]
    edits = [(700, text), (900, later)]
    if case == "id beyond int64 twice":
        edits.append((650, text))
    path, folder = write_file(tmp_path, n_images=20, n_annotations=1000, seed=2, edits=edits)
    messages = []
    for open_file in (CocoDataset, open_per_record):
        with pytest.raises(DatasetError) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            open_file(path, folder)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    first = {"duplicated id": "annotation id 49997 appears more than once (annotations[1] and annotations[700])",
             "id beyond int64 twice": "annotations[650] and annotations[700]", "not a record": "annotation id #700",
             "id float": "annotations[700] (annotation id 7.0)", "huge integer": "coordinate 3 is 9999",
             "NaN coordinate": "annotation id 7: polygon 0: coordinate 2 is nan"}
    assert first.get(case, "annotation id 7") in messages[0], messages[0]
    assert "instances.json" in messages[0] and "\n" not in messages[0]


def test_number_reader_equals_float_on_every_form():
    rng = random.Random(3)
    tokens = []
    for _ in range(20000):
        r = rng.random()
        tokens.append(repr(round(rng.uniform(-700, 700), rng.randint(0, 3))) if r < 0.4 else
                      str(rng.randint(-10**9, 10**9)) if r < 0.55 else
                      repr(rng.uniform(-1e4, 1e4)) if r < 0.7 else
                      f"{rng.uniform(-9, 9):.{rng.randint(1, 7)}f}" if r < 0.9 else str(rng.randint(0, 9)))
    text = ",".join(tokens).encode() + bytes(8)
    start = np.cumsum([0] + [len(t) + 1 for t in tokens[:-1]])
    values = _parse_numbers(text, start, np.array([len(t) for t in tokens]))
    expected = np.array([float(t) for t in tokens])
    np.testing.assert_array_equal(values, expected)  # bit-exact: both are correctly rounded
    assert (np.signbit(values) == np.signbit(expected)).all()


def test_polygon_texts_plain_or_not():
    texts = [b"[[1,2,3,4,5,6]]", b"[]", b"[[]]", b"[1,2]", b"[[[1]]]", b"[[1, 2,\n3]]", b'[["a"]]', b"[[1e5]]",
             b"[[true]]", b"[[1.5,-2],[0.25,3,4]]", b"[[1],[]]"]
    read = read_polygon_texts(texts)
    assert read.plain.tolist() == [True, False, False, False, False, True, False, False, False, True, False]
    assert read.polygons.tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0]
    assert read.lengths.tolist() == [6, 3, 2, 3]
    assert read.coords.tolist() == [1, 2, 3, 4, 5, 6, 1, 2, 3, 1.5, -2, 0.25, 3, 4]


def test_rle_counts_reader_equals_the_character_loop():
    rng = random.Random(4)
    alphabet = [chr(c) for c in range(40, 120)] + ["é"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        try:
            expected = _rle_counts_loop(text).tolist()
        except (ValueError, OverflowError) as err:
            expected = err
        if isinstance(expected, Exception):
            with pytest.raises(type(expected), match=re.escape(str(expected))):
                rle_counts_from_string(text)
        else:
            assert rle_counts_from_string(text).tolist() == expected, text
