"""Bad inputs to the data layer: each ends as a clear DatasetError or as correct behaviour.

One table per module (COCO files, LabelMe folders, image files, evaluation inputs). Every error
case checks the exception type, that the message names the file, the record and what to do,
and that nothing on disk changed (a snapshot of names, sizes and sha256 before and after).
"""

import base64
import hashlib
import io
import json
import math
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from solo_lib.__main__ import main
from solo_lib.data.coco import CocoDataset
from solo_lib.data.images import load_rgb_image
from solo_lib.data.labelme import convert_labelme, convert_labelme_dir, read_labels_file, write_coco_json
from solo_lib.data.segmentation import check_rle, rle_counts_from_string
from solo_lib.errors import DatasetError, DatasetWarning
from solo_lib.evaluate import encode_masks, evaluate_segm

NAN, INF = float("nan"), float("inf")


# -- helpers -----------------------------------------------------------------------------------

def snapshot(root):
    """{relative path: (size, sha256)} of every file under ``root``."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_clear_error(root, call, *parts):
    """``call()`` raises DatasetError whose message contains every part; files under root unchanged."""
    before = snapshot(root)
    with pytest.raises(DatasetError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert snapshot(root) == before, "files changed on disk"
    return message


def png16(array):
    """A 16-bit PNG written by hand (gray if 2-D, RGB if (H, W, 3)), so Pillow's writer is not trusted."""
    h, w = array.shape[:2]
    color_type = 0 if array.ndim == 2 else 2
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# -- COCO files --------------------------------------------------------------------------------

SQUARE = [2, 2, 12, 2, 12, 12, 2, 12]


def coco_base():
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 16, "width": 16}],
        "categories": [{"id": 5, "name": "thing"}],
        "annotations": [{"id": 3, "image_id": 1, "category_id": 5, "iscrowd": 0, "segmentation": [SQUARE],
                         "area": 100.0}],
    }


def write_coco(tmp_path, data):
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))  # json writes NaN and Infinity as JavaScript literals, as some tools do
    return path, tmp_path / "images"


def ann_field(key, value):
    def edit(d):
        d["annotations"][0][key] = value
    return edit


def img_field(key, value):
    def edit(d):
        d["images"][0][key] = value
    return edit


def top(key, value):
    def edit(d):
        d[key] = value
    return edit


def rle(counts, size=(16, 16)):
    return ann_field("segmentation", {"size": list(size), "counts": counts})


def duplicate_annotation(d):
    d["annotations"].append(dict(d["annotations"][0]))


COCO_CASES = {
    # finding 1: non-finite and non-numeric polygon coordinates
    "nan_coordinate": (ann_field("segmentation", [[10, 10, NAN, 10, 50, 50, 10, 50]]),
                       ["annotation id 3", "polygon 0", "coordinate 2 is nan", "finite", "fix or delete"]),
    "inf_coordinate": (ann_field("segmentation", [[10, 10, 12, INF, 5, 5]]),
                       ["annotation id 3", "coordinate 3 is inf"]),
    "string_coordinate": (ann_field("segmentation", [[10, "10", 12, 2, 5, 5]]),
                          ["annotation id 3", "coordinate 1 is '10'", "flat list of numbers"]),
    "bool_coordinate": (ann_field("segmentation", [[True, 1, 12, 2, 5, 5]]),
                        ["annotation id 3", "coordinate 0 is True"]),
    "none_coordinate": (ann_field("segmentation", [SQUARE, [1, None, 12, 2, 5, 5]]),
                        ["annotation id 3", "polygon 1", "coordinate 1 is None"]),
    "flat_polygon": (ann_field("segmentation", SQUARE), ["annotation id 3", "wrap it in another list"]),
    "polygon_not_a_list": (ann_field("segmentation", ["abc"]), ["annotation id 3", "polygon 0 must be a flat list"]),
    # finding 2: RLE
    "rle_counts_0": (rle("0"), ["annotation id 3", "compressed RLE counts sum to 0", "256", "re-encode"]),
    "rle_bad_character": (rle("0~~"), ["annotation id 3", "corrupt", "'~'", "re-encode"]),
    "rle_cut_in_a_number": (rle("0" + chr(48 + 0x20)), ["annotation id 3", "ends in the middle of a number"]),
    "rle_negative_run": (rle("O" + "4"), ["annotation id 3", "negative run length", "re-encode"]),
    "rle_non_ascii": (rle("0é"), ["annotation id 3", "corrupt"]),
    "rle_counts_number": (rle(256), ["annotation id 3", "must be a string", "or a list of integers"]),
    "rle_size_strings": (rle([256], ("16", 16)), ["annotation id 3", "two positive integers"]),
    "rle_size_zero": (rle([], (0, 0)), ["annotation id 3", "two positive integers"]),
    "rle_size_three": (rle([256], (16, 16, 1)), ["annotation id 3", "[height, width]"]),
    "rle_negative_uncompressed": (rle([-10, 266]), ["annotation id 3", "non-negative integers, found -10"]),
    "rle_float_uncompressed": (rle([128.5, 127.5]), ["annotation id 3", "non-negative integers, found 128.5"]),
    "rle_missing_size": (ann_field("segmentation", {"counts": "0"}), ["annotation id 3", "needs 'counts' and 'size'"]),
    # finding 5: ground truth silently corrupted
    "duplicate_annotation_id": (duplicate_annotation,
                                ["annotation id 3 appears more than once", "annotations[0] and annotations[1]",
                                 "its own id"]),
    "iscrowd_no": (ann_field("iscrowd", "no"), ["annotation id 3", "iscrowd is 'no'", "0 (one object) or 1"]),
    "iscrowd_2": (ann_field("iscrowd", 2), ["annotation id 3", "iscrowd is 2"]),
    "iscrowd_float": (ann_field("iscrowd", 1.0), ["annotation id 3", "iscrowd is 1.0"]),
    # finding 7: structure and types
    "annotations_null": (top("annotations", None), ["'annotations' must be a list (use [] for none), got null"]),
    "annotations_dict": (top("annotations", {}), ["'annotations' must be a list", "got dict"]),
    "images_dict": (top("images", {"1": {}}), ["'images' must be a list"]),
    "images_empty": (top("images", []), ["'images' is empty"]),
    "categories_empty": (top("categories", []), ["'categories' is empty", "cannot be trained", "list each class"]),
    "categories_string": (top("categories", "thing"), ["'categories' must be a list"]),
    "category_id_string": (top("categories", [{"id": "5", "name": "thing"}]),
                           ["categories[0] ('thing') has id '5'", "must be an integer"]),
    "category_name_none": (top("categories", [{"id": 5, "name": None}]), ["category id 5 has name None", "non-empty"]),
    "category_name_twice": (top("categories", [{"id": 5, "name": "thing"}, {"id": 6, "name": "thing"}]),
                            ["category name(s) ['thing'] appear more than once", "merge them"]),
    "height_string_digits": (img_field("height", "16"), ["image id 1", "height is '16'", "positive integer"]),
    "height_string_text": (img_field("height", "abc"), ["image id 1", "height is 'abc'"]),
    "height_float": (img_field("height", 16.0), ["image id 1", "height is 16.0"]),
    "width_zero": (img_field("width", 0), ["image id 1", "width is 0", "positive integer"]),
    "width_negative": (img_field("width", -16), ["image id 1", "width is -16"]),
    "image_id_bool": (img_field("id", True), ["images[0] has id True", "must be an integer"]),
    "image_id_float": (img_field("id", 1.0), ["images[0] has id 1.0"]),
    "file_name_number": (img_field("file_name", 7), ["image id 1", "file_name is 7"]),
    "annotation_id_bool": (ann_field("id", True), ["annotations[0]", "has id True", "must be an integer"]),
    "annotation_id_float": (ann_field("id", 3.5), ["annotations[0]", "has id 3.5"]),
    "annotation_image_id_string": (ann_field("image_id", "1"), ["annotation id 3", "image_id '1'", "integer"]),
    "annotation_category_bool": (ann_field("category_id", True), ["annotation id 3", "category_id True"]),
    "annotation_not_a_dict": (top("annotations", ["oops"]), ["annotation id #0 needs 'id'"]),
}


@pytest.mark.parametrize("case", COCO_CASES)
def test_bad_coco_file(tmp_path, case):
    edit, parts = COCO_CASES[case]
    data = coco_base()
    edit(data)
    path, image_dir = write_coco(tmp_path, data)
    assert_clear_error(tmp_path, lambda: CocoDataset(path, image_dir), "instances.json", *parts)


def test_empty_segmentation_is_skipped_with_a_counting_warning(tmp_path):
    data = coco_base()
    data["annotations"] += [dict(data["annotations"][0], id=4, segmentation=[]),
                            dict(data["annotations"][0], id=6, segmentation=[], iscrowd=True)]
    path, image_dir = write_coco(tmp_path, data)
    with pytest.warns(DatasetWarning, match=r"instances\.json: 2 annotations had an empty segmentation.*ids 4, 6"):
        ds = CocoDataset(path, image_dir)
    assert ds.sample(1).annotation_ids.tolist() == [3]
    assert sorted(ds.coco.getAnnIds()) == [3]  # COCOeval's ground truth is the cleaned one


def test_boolean_iscrowd_is_accepted_and_normalised_for_cocoeval(tmp_path):
    data = coco_base()
    data["annotations"][0]["iscrowd"] = True
    path, image_dir = write_coco(tmp_path, data)
    ds = CocoDataset(path, image_dir)
    assert ds.sample(1).iscrowd.tolist() == [True]
    assert ds.coco.loadAnns([3])[0]["iscrowd"] == 1 and type(ds.coco.loadAnns([3])[0]["iscrowd"]) is int


def test_rle_string_decoder_round_trips_pycocotools_encoder():
    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        if trial % 3 == 0:  # long runs: multi-character numbers and large deltas
            mask = np.zeros((h, w), np.uint8)
            mask[rng.integers(0, h):, rng.integers(0, w):] = 1
        else:
            mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        encoded = mask_utils.encode(np.asfortranarray(mask))["counts"]
        runs = rle_counts_from_string(encoded)
        # independent reading of the runs: alternate 0s and 1s, column-major
        flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
        assert flat.size == h * w, trial
        np.testing.assert_array_equal(flat.reshape(w, h).T, mask)
        check_rle({"size": [h, w], "counts": encoded.decode("ascii")}, "test", h, w)  # accepted


def test_rle_string_decoder_on_crafted_strings():
    assert rle_counts_from_string("0").tolist() == [0]
    assert rle_counts_from_string("O").tolist() == [-1]  # 0x1F: sign bit set in the only group
    assert rle_counts_from_string(chr(48 + 0x20 + 1) + "1").tolist() == [1 + (1 << 5)]  # two groups
    # from the fourth run on (index 3), each number is a delta from the run two before: 5, 6, 7, then 6 + 2
    assert rle_counts_from_string("5672").tolist() == [5, 6, 7, 8]
    for bad in ("0~", "0 ", "0" + chr(48 + 0x20)):
        with pytest.raises(ValueError):
            rle_counts_from_string(bad)


# -- LabelMe folders ---------------------------------------------------------------------------

H, W = 20, 30


def lm_shape(label="cat", points=((2, 2), (12, 2), (12, 12)), kind="polygon", group_id=None):
    points = [list(p) for p in points] if isinstance(points, (list, tuple)) else points
    return {"label": label, "points": points, "group_id": group_id, "shape_type": kind, "flags": {}}


def labelme_folder(tmp_path, shapes, **fields):
    folder = tmp_path / "ann"
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(folder / "x.png")
    data = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": "x.png", "imageData": None,
            "imageHeight": H, "imageWidth": W}
    data.update(fields)
    (folder / "x.json").write_text(json.dumps(data))
    (tmp_path / "labels.txt").write_text("__ignore__\n_background_\ncat\n")
    return folder


def points_case(points, kind="polygon"):
    return lambda tmp_path: labelme_folder(tmp_path, [lm_shape(points=points, kind=kind)])


def fields_case(shapes=None, **fields):
    return lambda tmp_path: labelme_folder(tmp_path, shapes if shapes is not None else [lm_shape()], **fields)


def embedded(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def not_utf8(tmp_path):
    folder = labelme_folder(tmp_path, [lm_shape()])
    (folder / "x.json").write_bytes(b'{"shapes": [], "imagePath": "x.png", "label": "\xff"}')
    return folder


def coco_file_in_folder(tmp_path):
    folder = labelme_folder(tmp_path, [lm_shape()])
    (folder / "y.json").write_text(json.dumps(coco_base()))
    return folder


def bad_then_embedded(tmp_path):
    """a.json embeds an image (written only on success), x.json then fails: nothing may be written."""
    folder = labelme_folder(tmp_path, [lm_shape(points=[[1, 1], [NAN, 1], [5, 5]])])
    data = {"shapes": [lm_shape()], "imagePath": "a.png", "imageData": embedded(np.zeros((H, W, 3), np.uint8)),
            "imageHeight": H, "imageWidth": W}
    (folder / "a.json").write_text(json.dumps(data))
    return folder


def two_different_embeddings(tmp_path):
    folder = labelme_folder(tmp_path, [lm_shape()], imagePath="new.png",
                            imageData=embedded(np.zeros((H, W, 3), np.uint8)))
    data = {"shapes": [], "imagePath": "new.png", "imageData": embedded(np.ones((H, W, 3), np.uint8))}
    (folder / "y.json").write_text(json.dumps(data))
    return folder


LABELME_CASES = {
    # finding 1: points
    "nan_point": (points_case([[10, 10], [NAN, 10], [50, 50]]),
                  ["x.json", "shape 0 (polygon 'cat')", "point 1", "finite", "fix or delete"]),
    "inf_point": (points_case([[10, 10], [20, -INF], [5, 15]]), ["x.json", "shape 0", "point 1"]),
    "nan_rectangle": (points_case([[NAN, 1], [5, 5]], "rectangle"), ["x.json", "shape 0 (rectangle 'cat')", "point 0"]),
    "nan_circle": (points_case([[5, 5], [5, NAN]], "circle"), ["x.json", "shape 0 (circle 'cat')", "point 1"]),
    "string_point": (points_case([["10", 10], [20, 10], [5, 15]]), ["x.json", "shape 0", "point 0", "must be numbers"]),
    "none_point": (points_case([[10, None], [20, 10], [5, 15]]), ["x.json", "shape 0", "point 0"]),
    "bool_point": (points_case([[True, 1], [20, 10], [5, 15]]), ["x.json", "shape 0", "point 0"]),
    "three_coordinates": (points_case([[1, 2, 3], [20, 10], [5, 15]]), ["x.json", "shape 0", "list of [x, y] pairs"]),
    "points_missing": (points_case(None), ["x.json", "shape 0", "list of [x, y] pairs"]),
    "rectangle_one_point": (points_case([[1, 1]], "rectangle"), ["x.json", "shape 0", "a rectangle needs 2 points"]),
    # finding 7: fields
    "label_none": (fields_case([lm_shape(label=None)]), ["x.json", "shape 0 has label None", "non-empty string"]),
    "label_number": (fields_case([lm_shape(label=7)]), ["x.json", "shape 0 has label 7"]),
    "shape_not_a_dict": (fields_case(["cat"]), ["x.json", "shape 0 is a str"]),
    "group_id_list": (fields_case([lm_shape(group_id=[1])]), ["x.json", "shape 0 ('cat') has group_id [1]", "integer"]),
    "image_height_string": (fields_case(imageHeight="20"), ["x.json", "imageHeight is '20'", "positive integer"]),
    "image_width_zero": (fields_case(imageWidth=0), ["x.json", "imageWidth is 0"]),
    "image_path_number": (fields_case(imagePath=5), ["x.json", "imagePath is a int", "string or null"]),
    "image_data_not_an_image": (fields_case(imagePath="gone.png", imageData=base64.b64encode(b"hello").decode()),
                                ["x.json", "embedded imageData is not an image", "set imagePath"]),
    "image_size_mismatch": (fields_case(imageHeight=21), ["x.json", "say 21x30 but x.png is 20x30"]),
    "not_utf8": (not_utf8, ["x.json", "not UTF-8"]),
    "coco_file_in_folder": (coco_file_in_folder, ["y.json", "this is a COCO file", "move it out"]),
    # finding 3: nothing is written when a later file fails
    "embedded_then_failure": (bad_then_embedded, ["x.json", "point 1"]),
    "two_different_embeddings": (two_different_embeddings, ["y.json", "new.png", "differs from the one embedded by",
                                                            "x.json", "its own imagePath"]),
}


@pytest.mark.parametrize("api", ["convert_labelme_dir", "convert_labelme"])
@pytest.mark.parametrize("case", LABELME_CASES)
def test_bad_labelme_folder(tmp_path, case, api):
    build, parts = LABELME_CASES[case]
    folder = build(tmp_path)
    labels = tmp_path / "labels.txt"
    if api == "convert_labelme":
        call = lambda: convert_labelme(folder, tmp_path / "out.json", labels)  # noqa: E731
    else:
        call = lambda: convert_labelme_dir(folder, labels)  # noqa: E731
    assert_clear_error(tmp_path, call, *parts)


@pytest.mark.parametrize("content, parts", [
    (b"__ignore__\ncat\xff\n", ["labels.txt", "not UTF-8", "save it as UTF-8"]),
    (None, ["labels.txt", "cannot read the labels file"]),  # a folder
])
def test_bad_labels_file(tmp_path, content, parts):
    path = tmp_path / "labels.txt"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert_clear_error(tmp_path, lambda: read_labels_file(path), *parts)


@pytest.mark.parametrize("target, what", [
    ("ann/x.json", "a LabelMe file it reads"),
    ("labels.txt", "the labels file"),
    ("ann/x.png", "the image of x.json"),
    ("ann/emb.png", "the image embedded in y.json"),
])
def test_converter_refuses_to_overwrite_its_inputs(tmp_path, target, what):
    folder = labelme_folder(tmp_path, [lm_shape()])
    data = {"shapes": [], "imagePath": "emb.png", "imageData": embedded(np.zeros((4, 4, 3), np.uint8))}
    (folder / "y.json").write_text(json.dumps(data))
    out = tmp_path / target
    assert_clear_error(tmp_path, lambda: convert_labelme(folder, out, tmp_path / "labels.txt"),
                       str(out), f"refusing to overwrite {what}", "choose another OUTPUT_JSON", "nothing was written")
    assert not (folder / "emb.png").exists()


def test_converter_refuses_a_folder_as_output_and_an_alias_of_an_input(tmp_path):
    folder = labelme_folder(tmp_path, [lm_shape()])
    assert_clear_error(tmp_path, lambda: convert_labelme(folder, folder), "is a folder")
    alias = tmp_path / "alias"
    alias.symlink_to(folder)
    assert_clear_error(tmp_path, lambda: convert_labelme(folder, alias / "x.json"), "refusing to overwrite")


def test_cli_refuses_to_overwrite_an_input(tmp_path, capsys):
    folder = labelme_folder(tmp_path, [lm_shape()])
    before = snapshot(tmp_path)
    status = main(["convert-labelme", str(folder), str(folder / "x.json")])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and "refusing to overwrite a LabelMe file it reads" in captured.err
    assert snapshot(tmp_path) == before


def test_cli_subprocess_nan_point_is_one_line_error(tmp_path):
    folder = labelme_folder(tmp_path, [lm_shape(points=[[10, 10], [NAN, 10], [5, 15]])])
    before = snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-m", "solo_lib", "convert-labelme", str(folder),
                             str(tmp_path / "o.json")], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "x.json: shape 0 (polygon 'cat'): point 1 is [nan, 10]" in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.filterwarnings("ignore::solo_lib.errors.DatasetWarning")  # "wrote ...", then removed
def test_failed_output_write_removes_the_embedded_images(tmp_path, monkeypatch):
    import solo_lib.data.labelme as labelme

    folder = labelme_folder(tmp_path, [lm_shape()], imagePath="emb.png",
                            imageData=embedded(np.zeros((H, W, 3), np.uint8)))
    before = snapshot(tmp_path)

    def full_disk(coco, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(labelme, "write_coco_json", full_disk)
    assert_clear_error(tmp_path, lambda: convert_labelme(folder, tmp_path / "out.json"),
                       "out.json", "No space left", "nothing was written")
    assert snapshot(tmp_path) == before and not (folder / "emb.png").exists()


def test_rgba_image_data_with_jpg_path_becomes_a_real_rgb_jpeg(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 128
    folder = labelme_folder(tmp_path, [lm_shape()], imagePath="photo.jpg", imageData=embedded(rgba))
    with pytest.warns(DatasetWarning,
                      match=r"wrote the embedded imageData to .*photo\.jpg \(re-encoded from PNG RGBA to JPEG\)"):
        coco = convert_labelme_dir(folder)
    assert coco["images"][0]["file_name"] == "photo.jpg"
    with Image.open(folder / "photo.jpg") as img:
        assert img.format == "JPEG" and img.mode == "RGB"
    write_coco_json(coco, tmp_path / "coco.json")
    image = CocoDataset(tmp_path / "coco.json", folder).sample(1).image
    assert np.abs(image.astype(int) - [200, 100, 50]).max() <= 3  # the colour, alpha dropped


# -- EXIF orientation (finding 4) ----------------------------------------------------------------

def displayed_picture():
    """An asymmetric (H, W, 3) picture: a bright block near the top left, dark elsewhere."""
    image = np.full((H, W, 3), 20, np.uint8)
    image[3:9, 4:14] = 230
    return image


BLOCK = [[4, 3], [14, 3], [14, 9], [4, 9]]  # the block's outline in displayed (x, y) coordinates


def stored_pixels(displayed, orientation):
    """The pixels a camera stores so that a viewer following the EXIF spec displays ``displayed``.

    The spec, independently of Pillow: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate
    90 clockwise to display, 7 transverse, 8 rotate 90 counter-clockwise to display.
    """
    d = displayed
    return {1: d, 2: d[:, ::-1], 3: d[::-1, ::-1], 4: d[::-1], 5: d.transpose(1, 0, 2),
            6: np.rot90(d, 1), 7: d.transpose(1, 0, 2)[::-1, ::-1], 8: np.rot90(d, -1)}[orientation]


def save_photo(path, orientation, fmt):
    img = Image.fromarray(np.ascontiguousarray(stored_pixels(displayed_picture(), orientation)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, format=fmt, exif=exif.tobytes(), **({"quality": 98} if fmt == "JPEG" else {}))


def assert_aligned(image, mask, exact):
    expected = displayed_picture()
    assert image.shape == (H, W, 3)
    if exact:
        np.testing.assert_array_equal(image, expected)
    assert image[mask.astype(bool)].mean() > 200 and image[~mask.astype(bool)].mean() < 50


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("with_size", [True, False])
def test_rotated_photo_keeps_mask_and_image_aligned(tmp_path, orientation, fmt, with_size):
    folder = tmp_path / "ann"
    folder.mkdir()
    name = "photo.png" if fmt == "PNG" else "photo.jpg"
    save_photo(folder / name, orientation, fmt)
    np.testing.assert_array_equal(load_rgb_image(folder / name)[:, :, 0] > 128, displayed_picture()[:, :, 0] > 128)
    # a genuine LabelMe file: size and points of the image as LabelMe displayed it
    data = {"shapes": [lm_shape(points=BLOCK)], "imagePath": name, "imageData": None}
    if with_size:
        data.update(imageHeight=H, imageWidth=W)
    (folder / "photo.json").write_text(json.dumps(data))
    with _no_dataset_warning():
        coco = convert_labelme_dir(folder)
    assert (coco["images"][0]["height"], coco["images"][0]["width"]) == (H, W)
    assert coco["annotations"][0]["segmentation"] == [[c for p in BLOCK for c in p]]  # nothing clipped
    write_coco_json(coco, tmp_path / "coco.json")
    sample = CocoDataset(tmp_path / "coco.json", folder).sample(1)
    assert_aligned(sample.image, sample.masks[0], exact=fmt == "PNG")


class _no_dataset_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", DatasetWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def test_embedded_rotated_photo_is_written_as_is_and_read_oriented(tmp_path):
    buffer = io.BytesIO()
    save_photo(buffer, 6, "JPEG")
    folder = tmp_path / "ann"
    folder.mkdir()
    data = {"shapes": [lm_shape(points=BLOCK)], "imagePath": "photo.jpg", "imageHeight": H, "imageWidth": W,
            "imageData": base64.b64encode(buffer.getvalue()).decode("ascii")}
    (folder / "photo.json").write_text(json.dumps(data))
    with pytest.warns(DatasetWarning, match="wrote the embedded imageData"):
        coco = convert_labelme_dir(folder)
    assert (folder / "photo.jpg").read_bytes() == buffer.getvalue()  # lossless: not re-encoded
    write_coco_json(coco, tmp_path / "coco.json")
    sample = CocoDataset(tmp_path / "coco.json", folder).sample(1)
    assert_aligned(sample.image, sample.masks[0], exact=False)


def test_size_of_the_unrotated_pixels_is_an_error_that_explains_exif(tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    save_photo(folder / "photo.png", 6, "PNG")
    data = {"shapes": [lm_shape(points=BLOCK)], "imagePath": "photo.png", "imageHeight": W, "imageWidth": H}
    (folder / "photo.json").write_text(json.dumps(data))
    assert_clear_error(tmp_path, lambda: convert_labelme_dir(folder), "photo.json", "say 30x20 but photo.png is 20x30",
                       "EXIF orientation")
    coco = coco_base()
    coco["images"][0].update(file_name="photo.png", height=W, width=H)
    coco["annotations"] = []
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    ds = CocoDataset(tmp_path / "coco.json", folder)
    assert_clear_error(tmp_path, lambda: ds.sample(1), "photo.png", "image id 1", "EXIF orientation",
                       "coco.json says 20x30")


# -- image files (findings 6, 7) -----------------------------------------------------------------

def text_as_png(path):
    path.write_text("not an image")


def truncated_png(path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[:300])


def float_tiff(path):
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(path, format="TIFF")


def int32_tiff(path):
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(path, format="TIFF")


def folder(path):
    path.mkdir()


IMAGE_CASES = {
    "text_file": (text_as_png, ["x.png", "image id 9", "cannot read", "re-save it as PNG or JPEG"]),
    "truncated": (truncated_png, ["x.png", "image id 9", "cannot read"]),
    "missing": (lambda path: None, ["x.png", "image id 9 file not found"]),
    "folder": (folder, ["x.png", "image id 9", "cannot read"]),
    "float_image": (float_tiff, ["x.png", "image id 9", "floating-point", "save it as an 8- or 16-bit PNG"]),
    "int32_beyond_16_bits": (int32_tiff, ["x.png", "image id 9", "do not fit 16 bits", "save the image"]),
}


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_bad_image_file(tmp_path, case):
    write, parts = IMAGE_CASES[case]
    path = tmp_path / "x.png"
    write(path)
    assert_clear_error(tmp_path, lambda: load_rgb_image(path, what="image id 9"), *parts)


def test_16_bit_gray_png_is_scaled_not_saturated(tmp_path):
    values = (np.arange(12 * 10).reshape(12, 10) * 546).astype(np.uint16)  # 0 .. 64974
    (tmp_path / "g.png").write_bytes(png16(values))
    Image.fromarray(values).save(tmp_path / "pillow.png")  # Pillow's own 16-bit (I;16) writer
    expected = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2)
    for name in ("g.png", "pillow.png"):
        np.testing.assert_array_equal(load_rgb_image(tmp_path / name), expected)
    int_image = Image.fromarray(values.astype(np.int32))  # mode I, 32-bit, 16-bit values
    int_image.save(tmp_path / "i.tif")
    np.testing.assert_array_equal(load_rgb_image(tmp_path / "i.tif"), expected)


def test_16_bit_rgb_png_keeps_the_high_byte(tmp_path):
    values = np.random.default_rng(1).integers(0, 65536, (6, 5, 3)).astype(np.uint16)
    (tmp_path / "rgb.png").write_bytes(png16(values))
    np.testing.assert_array_equal(load_rgb_image(tmp_path / "rgb.png"), (values >> 8).astype(np.uint8))


def test_16_bit_png_agrees_with_tensorflow_decode_png(tmp_path):
    tf = pytest.importorskip("tensorflow")
    gray = (np.arange(64).reshape(8, 8) * 1000 + 7).astype(np.uint16)
    rgb = np.random.default_rng(2).integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    for name, values in (("g.png", gray), ("rgb.png", rgb)):
        data = png16(values)
        (tmp_path / name).write_bytes(data)
        decoded = tf.io.decode_png(data, channels=3, dtype=tf.uint8).numpy()
        np.testing.assert_array_equal(load_rgb_image(tmp_path / name), decoded)


def test_16_bit_image_in_a_labelme_folder_converts_and_loads(tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    values = np.full((H, W), 40000, np.uint16)
    (folder / "deep.png").write_bytes(png16(values))
    data = {"shapes": [lm_shape()], "imagePath": "deep.png", "imageHeight": H, "imageWidth": W}
    (folder / "deep.json").write_text(json.dumps(data))
    write_coco_json(convert_labelme_dir(folder), tmp_path / "coco.json")
    assert (CocoDataset(tmp_path / "coco.json", folder).sample(1).image == 40000 >> 8).all()


# -- evaluation inputs (finding 5, 7) ------------------------------------------------------------

@pytest.fixture
def gt(tmp_path):
    path, image_dir = write_coco(tmp_path, coco_base())
    return CocoDataset(path, image_dir)


def good_result():
    mask = np.zeros((1, 16, 16), np.uint8)
    mask[0, 2:12, 2:12] = 1
    return {"image_id": 1, "category_id": 5, "segmentation": encode_masks(mask)[0], "score": 0.9}


def result_with(**fields):
    return lambda: [dict(good_result(), **fields)]


EVALUATE_RESULT_CASES = {
    "nan_score": (result_with(score=NAN), ["results[0], image id 1", "score nan is not a finite number"]),
    "inf_score": (result_with(score=INF), ["results[0], image id 1", "score inf"]),
    "string_score": (result_with(score="0.9"), ["results[0], image id 1", "score '0.9'"]),
    "bool_image_id": (result_with(image_id=True), ["results[0] has image id True", "integer"]),
    "string_category": (result_with(category_id="5"), ["results[0], image id 1", "category id '5'", "to_coco_id"]),
    "polygon_segmentation": (result_with(segmentation=[SQUARE]), ["results[0], image id 1", "compressed RLE"]),
    "wrong_mask_size": (result_with(segmentation=encode_masks(np.ones((1, 8, 8), np.uint8))[0]),
                        ["results[0], image id 1", "mask size [8, 8] differs", "resize predicted masks"]),
    "corrupt_counts": (result_with(segmentation={"size": [16, 16], "counts": "0"}),
                       ["results[0], image id 1", "compressed RLE counts sum to 0", "re-encode"]),
    "entry_not_a_dict": (lambda: ["oops"], ["results[0] must be a dict"]),
    "results_not_a_list": (lambda: {"image_id": 1}, ["results must be a list"]),
}


@pytest.mark.parametrize("case", EVALUATE_RESULT_CASES)
def test_bad_results(gt, tmp_path, case):
    make, parts = EVALUATE_RESULT_CASES[case]
    assert_clear_error(tmp_path, lambda: evaluate_segm(gt, make()), *parts)


EVALUATE_AREA_CASES = {
    "zero": (0, ["annotation id: area 3: 0", "not a positive number", "pycocotools.mask.area"]),
    "negative": (-4.0, ["area 3: -4.0"]),
    "nan": (NAN, ["area 3: nan"]),
    "string": ("100", ["area 3: '100'"]),
    "none": (None, ["area 3: None"]),
}


@pytest.mark.parametrize("case", EVALUATE_AREA_CASES)
def test_bad_ground_truth_area(tmp_path, case):
    value, parts = EVALUATE_AREA_CASES[case]
    data = coco_base()
    data["annotations"][0]["area"] = value
    path, image_dir = write_coco(tmp_path, data)
    ds = CocoDataset(path, image_dir)  # training does not read 'area'; evaluation does
    assert_clear_error(tmp_path, lambda: evaluate_segm(ds, [good_result()]), "instances.json", *parts)


def test_good_result_still_scores_one(gt):
    assert evaluate_segm(gt, [good_result()]).ap == pytest.approx(1.0)
    assert math.isclose(evaluate_segm(gt, [dict(good_result(), score=1)]).ap, 1.0)  # an int score is fine
