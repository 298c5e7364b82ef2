"""LabelMe -> COCO conversion, checked against LabelMe's own rules and Pillow-drawn masks."""

import base64
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from solo_lib.__main__ import main
from solo_lib.data.coco import CocoDataset, sample_dataset_paths
from solo_lib.data.labelme import circle_polygon, convert_labelme_dir, read_labels_file, write_coco_json
from solo_lib.data.segmentation import decode_segmentation
from solo_lib.errors import DatasetError, DatasetWarning

H, W = 60, 80


def shape(label, points, kind="polygon", group_id=None):
    return {"label": label, "points": points, "group_id": group_id, "description": "",
            "shape_type": kind, "flags": {}, "mask": None}


def write_labelme(folder, name, shapes, *, size=(H, W), embed=False, write_image=True, image_path=None):
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.full((*size, 3), 128, np.uint8))
    image_path = image_path or f"{name}.png"
    data = {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": size[0], "imageWidth": size[1]}
    if embed:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data["imageData"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    if write_image:
        image.save(folder / image_path)
    (folder / f"{name}.json").write_text(json.dumps(data))
    return folder / f"{name}.json"


def labels_file(tmp_path, names):
    path = tmp_path / "labels.txt"
    path.write_text("__ignore__\n_background_\n" + "".join(n + "\n" for n in names))
    return path


SHAPES = [
    shape("cat", [[10, 10], [30, 12], [25, 35], [8, 30]]),
    shape("dog", [[40, 5], [70, 25]], "rectangle"),
    shape("dog", [[20, 45], [20, 55]], "circle"),  # r = 10
    shape("cat", [[50, 40], [60, 40], [60, 50]], group_id=3),
    shape("cat", [[65, 40], [75, 40], [75, 50]], group_id=3),  # same instance as the previous one
    shape("dog", [[65, 52], [75, 52], [75, 58]], group_id=3),  # same group id, other label: another instance
    shape("__ignore__", [[0, 0], [5, 0], [5, 5]]),
]


def labelme2coco_reference(shapes):
    """LabelMe's labelme2coco rules, restated from its documentation and source comments:
    shapes keyed by (label, group_id), rectangle -> 4 corners, circle -> n points with
    n = max(int(pi / arccos(1 - 1/r)), 12), x = cx + r sin(2 pi i / n), y = cy + r cos(2 pi i / n);
    labels not in the labels file (here: __ignore__) produce nothing."""
    out = {}
    for i, s in enumerate(shapes):
        if s["label"] == "__ignore__":
            continue
        key = (s["label"], s["group_id"] if s["group_id"] is not None else f"unique{i}")
        (x1, y1), (x2, y2) = s["points"][0], s["points"][1]
        if s["shape_type"] == "rectangle":
            left, top, right, bottom = min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)
            flat = [left, top, right, top, right, bottom, left, bottom]
        elif s["shape_type"] == "circle":
            r = math.dist((x1, y1), (x2, y2))
            n = max(int(math.pi / math.acos(1 - 1 / r)), 12)
            flat = []
            for k in range(n):
                flat += [x1 + r * math.sin(2 * math.pi * k / n), y1 + r * math.cos(2 * math.pi * k / n)]
        else:
            flat = [c for p in s["points"] for c in p]
        out.setdefault(key, []).append(flat)
    return list(out.items())


def pillow_mask(s, size=(H, W)):
    """The mask LabelMe draws for one shape (its utils.shape_to_mask uses Pillow like this)."""
    img = Image.new("L", (size[1], size[0]), 0)
    draw = ImageDraw.Draw(img)
    pts = [tuple(p) for p in s["points"]]
    if s["shape_type"] == "circle":
        (cx, cy), (px, py) = pts
        r = math.dist((cx, cy), (px, py))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    elif s["shape_type"] == "rectangle":
        draw.rectangle(pts, outline=1, fill=1)
    else:
        draw.polygon(pts, outline=1, fill=1)
    return np.asarray(img, bool)


@pytest.fixture
def converted(tmp_path):
    write_labelme(tmp_path / "ann", "img_b", SHAPES)
    write_labelme(tmp_path / "ann", "img_a", [shape("dog", [[1, 1], [20, 1], [20, 20]])])
    coco = convert_labelme_dir(tmp_path / "ann", labels_file(tmp_path, ["dog", "cat"]))
    return tmp_path, coco


def test_structure_ids_and_category_order(converted):
    _, coco = converted
    assert [c["name"] for c in coco["categories"]] == ["dog", "cat"]  # order of the labels file
    assert [c["id"] for c in coco["categories"]] == [1, 2]
    assert [(i["id"], i["file_name"]) for i in coco["images"]] == [(1, "img_a.png"), (2, "img_b.png")]  # sorted
    assert [a["id"] for a in coco["annotations"]] == list(range(1, 7))
    assert all(a["iscrowd"] == 0 for a in coco["annotations"])


def test_masks_agree_with_labelme2coco_rules(converted):
    _, coco = converted
    ours = [a for a in coco["annotations"] if a["image_id"] == 2]
    reference = labelme2coco_reference(SHAPES)
    assert len(ours) == len(reference) == 5  # 7 shapes: one group of two, one ignore region
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for ann, ((label, _), polygons) in zip(ours, reference):
        assert names[ann["category_id"]] == label
        np.testing.assert_array_equal(decode_segmentation(ann["segmentation"], H, W),
                                      decode_segmentation(polygons, H, W))
    grouped = ours[3]
    assert len(grouped["segmentation"]) == 2  # the two shapes of group 3


def test_masks_close_to_what_labelme_draws_with_pillow(converted):
    _, coco = converted
    ours = [a for a in coco["annotations"] if a["image_id"] == 2]
    for ann, s in zip(ours[:3], SHAPES[:3]):  # polygon, rectangle, circle
        a = decode_segmentation(ann["segmentation"], H, W).astype(bool)
        b = pillow_mask(s)
        iou = (a & b).sum() / (a | b).sum()
        assert iou > 0.85, (s["shape_type"], iou)  # they differ only along the outline
        rle = mask_utils.encode(np.asfortranarray(a.astype(np.uint8)))
        assert ann["area"] == float(mask_utils.area(rle))


def test_circle_polygon_follows_the_one_pixel_chord_rule():
    for r in (3.0, 10.0, 40.0, 150.0):
        poly = circle_polygon((0.0, 0.0), (r, 0.0))
        n = len(poly)
        assert n >= 12
        assert np.allclose(np.hypot(poly[:, 0], poly[:, 1]), r, atol=0.01)  # vertices rounded to 1/100 px
        if n > 12:  # the gap between arc and chord is about one pixel: one more vertex keeps it under 1
            assert r * (1 - math.cos(math.pi / (n + 1))) < 1.0 < r * (1 - math.cos(math.pi / (n - 1)))
    assert len(circle_polygon((5, 5), (5.3, 5))) == 12  # tiny radius: no math domain error


def test_labels_file_format(tmp_path):
    assert read_labels_file(labels_file(tmp_path, ["b", "a"])) == ["b", "a"]
    dup = tmp_path / "dup.txt"
    dup.write_text("__ignore__\na\n\nb\na\n")
    with pytest.raises(DatasetError, match=r"dup\.txt: line 5: class 'a' is already listed on line 2"):
        read_labels_file(dup)


def test_label_missing_from_labels_file_is_an_error(tmp_path):
    write_labelme(tmp_path / "ann", "x", [shape("cow", [[1, 1], [9, 1], [9, 9]])])
    with pytest.raises(DatasetError, match=r"x\.json: shape 0 \(polygon 'cow'\): label 'cow' is not in"):
        convert_labelme_dir(tmp_path / "ann", labels_file(tmp_path, ["dog"]))


def test_without_labels_file_categories_are_sorted_labels(tmp_path):
    write_labelme(tmp_path / "ann", "x", [shape("zebra", [[1, 1], [9, 1], [9, 9]]),
                                          shape("ant", [[11, 1], [19, 1], [19, 9]])])
    coco = convert_labelme_dir(tmp_path / "ann")
    assert [c["name"] for c in coco["categories"]] == ["ant", "zebra"]


def test_unsupported_degenerate_and_outside_shapes_warn(tmp_path):
    shapes = [
        shape("dog", [[1, 1], [9, 9]], "line"),
        shape("dog", [[3, 3]], "point"),
        shape("dog", [[1, 1], [9, 9]]),  # 2 points
        shape("dog", [[1, 1], [5, 5], [9, 9]]),  # zero area
        shape("dog", [[-10, -10], [30, -10], [30, 20]]),  # outside: clipped
    ]
    write_labelme(tmp_path / "ann", "x", shapes)
    with pytest.warns(DatasetWarning) as record:
        coco = convert_labelme_dir(tmp_path / "ann", labels_file(tmp_path, ["dog"]))
    messages = [str(w.message) for w in record]
    assert any("x.json: shape 0 (line 'dog'): shape type 'line'" in m for m in messages)
    assert any("x.json: shape 1 (point 'dog'): shape type 'point'" in m for m in messages)
    assert any("x.json: 2 shape(s) with fewer than 3 points or zero area skipped (shape indices [2, 3])" in m
               for m in messages)
    assert any("x.json: 1 shape(s) had points outside the 80x60 image; clipped (shape indices [4])" in m
               for m in messages)
    (ann,) = coco["annotations"]
    assert min(ann["segmentation"][0]) == 0


def test_embedded_image_data_without_file(tmp_path):
    write_labelme(tmp_path / "ann", "emb", [shape("dog", [[1, 1], [9, 1], [9, 9]])], embed=True, write_image=False)
    with pytest.warns(DatasetWarning, match=r"wrote the embedded imageData to .*emb\.png"):
        coco = convert_labelme_dir(tmp_path / "ann", labels_file(tmp_path, ["dog"]))
    assert (tmp_path / "ann" / "emb.png").is_file()
    assert coco["images"][0]["height"] == H and coco["images"][0]["width"] == W


def test_image_path_outside_folder_and_missing_image(tmp_path):
    write_labelme(tmp_path / "ann", "esc", [], image_path="../secret.png", write_image=False)
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    with pytest.raises(DatasetError, match=r"esc\.json: image path '../secret.png' escapes the dataset folder"):
        convert_labelme_dir(tmp_path / "ann")
    write_labelme(tmp_path / "ann2", "gone", [], write_image=False)
    with pytest.raises(DatasetError, match=r"gone\.json: image .*gone\.png not found .* no imageData"):
        convert_labelme_dir(tmp_path / "ann2")


def test_malformed_json_and_size_mismatch(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.json").write_text("{ not json")
    with pytest.raises(DatasetError, match=r"broken\.json: not valid JSON"):
        convert_labelme_dir(tmp_path / "bad")
    path = write_labelme(tmp_path / "size", "s", [])
    data = json.loads(path.read_text())
    data["imageHeight"] = 61
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"s\.json: imageHeight/imageWidth say 61x80 but s\.png is 60x80"):
        convert_labelme_dir(tmp_path / "size")


def test_converted_file_loads_as_coco_dataset(converted):
    tmp_path, coco = converted
    write_coco_json(coco, tmp_path / "out" / "instances.json")
    ds = CocoDataset(tmp_path / "out" / "instances.json", tmp_path / "ann")
    s = ds.sample(2)
    assert s.masks.shape == (5, H, W)
    assert s.labels.tolist() == [1, 0, 0, 1, 0]  # cat, dog, dog, cat (group), dog (group id 3, other label)


def test_cli_writes_the_same_file_and_reports_errors(converted, capsys):
    tmp_path, coco = converted
    out = tmp_path / "cli.json"
    assert main(["convert-labelme", str(tmp_path / "ann"), str(out), "--labels", str(tmp_path / "labels.txt")]) == 0
    write_coco_json(coco, tmp_path / "api.json")
    assert out.read_bytes() == (tmp_path / "api.json").read_bytes()
    assert "2 images, 6 instances (dog: 4, cat: 2)" in capsys.readouterr().out
    assert main(["convert-labelme", str(tmp_path / "nothing"), str(out)]) == 2
    assert "error: " in capsys.readouterr().err


@pytest.mark.parametrize("split", ["train", "val"])
def test_command_reproduces_the_shipped_sample_annotations(tmp_path, split):
    ann_file, image_dir = sample_dataset_paths(split)
    out = tmp_path / "out.json"
    result = subprocess.run(
        [sys.executable, "-m", "solo_lib", "convert-labelme", str(image_dir), str(out),
         "--labels", str(image_dir.parent / "labels.txt")],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == ann_file.read_bytes()
