"""The three real photographs (data/real_photos) and the learner's own-data loop on them.

The committed COCO files are what the course's converter writes from the LabelMe files; what is in
them is what data/real_photos/README.md says (classes, the spoon in two pieces, one ignore region,
coins that do not overlap); the command line runs the whole loop on them (convert, train, predict,
evaluate); a broken annotation ends with one clear line; and ``demo --real`` (``make demo-real``) runs.
"""

import collections
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from solo_lib.__main__ import main
from solo_lib.config import SOLOConfig
from solo_lib.demo import PRETRAINED_SHAPES

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "data" / "real_photos"
LABELME = REAL / "labelme"
CLASSES = ["coin", "cup", "saucer", "spoon"]
PHOTOS = {"train": ["coffee.jpg", "coins_top.png"], "val": ["coins_bottom.png"]}
COUNTS = {"train": {"coin": 12, "cup": 1, "saucer": 1, "spoon": 1}, "val": {"coin": 12}}


def coco(split):
    return json.loads((REAL / "annotations" / f"instances_{split}.json").read_text())


def labelme(split):
    """{json file name: LabelMe record} of one split."""
    return {p.name: json.loads(p.read_text()) for p in sorted((LABELME / split).glob("*.json"))}


def photo_size(path):
    """(width, height) of a photo as LabelMe shows it (after its EXIF orientation), read by Pillow."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).size


def polygon_mask(flat, height, width):
    """One polygon rasterised by pycocotools, as every COCO reader does: (H, W) uint8."""
    return mask_utils.decode(mask_utils.frPyObjects([flat], height, width))[:, :, 0]


def snapshot(root):
    """{relative path: sha256} of every file under ``root``."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- the data ----------------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "val"])
def test_converter_reproduces_the_committed_annotations(tmp_path, split, capsys):
    """The README's convert-labelme command writes the committed file byte for byte, warning-free
    (no point clipped to the image, no degenerate shape skipped)."""
    out = tmp_path / "instances.json"
    assert main(["convert-labelme", "--labels", str(LABELME / "labels.txt"), str(LABELME / split), str(out)]) == 0
    assert "0 warning(s)" in capsys.readouterr().out
    assert out.read_bytes() == (REAL / "annotations" / f"instances_{split}.json").read_bytes(), \
        "re-run the convert-labelme commands of data/real_photos/README.md"


def test_labels_file_fixes_the_category_order():
    assert (LABELME / "labels.txt").read_text().splitlines() == ["__ignore__", "_background_", *CLASSES]
    for split in ("train", "val"):
        assert [(c["id"], c["name"]) for c in coco(split)["categories"]] == list(enumerate(CLASSES, start=1))


@pytest.mark.parametrize("split", ["train", "val"])
def test_image_sizes_are_those_of_the_photo_files(split):
    images = coco(split)["images"]
    assert sorted(i["file_name"] for i in images) == PHOTOS[split]
    assert sorted(p.name for p in (LABELME / split).iterdir() if p.suffix != ".json") == PHOTOS[split]
    records = {r["imagePath"]: r for r in labelme(split).values()}
    for image in images:
        width, height = photo_size(LABELME / split / image["file_name"])
        assert (image["width"], image["height"]) == (width, height), image
        record = records[image["file_name"]]
        assert (record["imageWidth"], record["imageHeight"]) == (width, height), image["file_name"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_every_polygon_lies_inside_its_image(split):
    """Checked on the clicked LabelMe points, before the converter's clipping could hide a stray point."""
    for name, record in labelme(split).items():
        width, height = photo_size(LABELME / split / record["imagePath"])
        for index, shape in enumerate(record["shapes"]):
            points = np.asarray(shape["points"], float)
            assert shape["shape_type"] == "polygon" and len(points) >= 3, (name, index)
            assert (points >= 0).all() and (points <= [width, height]).all(), (name, index)
    data = coco(split)
    sizes = {i["id"]: (i["width"], i["height"]) for i in data["images"]}
    for ann in data["annotations"]:
        for polygon in ann["segmentation"]:
            points = np.asarray(polygon, float).reshape(-1, 2)
            assert (points >= 0).all() and (points <= sizes[ann["image_id"]]).all(), ann["id"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_class_counts(split):
    data = coco(split)
    names = {c["id"]: c["name"] for c in data["categories"]}
    assert collections.Counter(names[a["category_id"]] for a in data["annotations"]) == COUNTS[split]
    assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in data["annotations"])


def test_spoon_is_one_instance_of_two_polygons():
    """The spoon passes behind the cup: two LabelMe polygons with one group_id, one COCO instance
    whose mask is both pieces."""
    shapes = [s for s in labelme("train")["coffee.json"]["shapes"] if s["label"] == "spoon"]
    assert len(shapes) == 2 and isinstance(shapes[0]["group_id"], int)
    assert shapes[0]["group_id"] == shapes[1]["group_id"]
    data = coco("train")
    spoons = [a for a in data["annotations"] if a["category_id"] == CLASSES.index("spoon") + 1]
    assert len(spoons) == 1 and len(spoons[0]["segmentation"]) == 2
    width, height = photo_size(LABELME / "train" / "coffee.jpg")
    pieces = [polygon_mask(p, height, width) for p in spoons[0]["segmentation"]]
    assert all(p.sum() > 0 for p in pieces)
    assert spoons[0]["area"] == np.logical_or(*pieces).sum()  # the instance is the union of its pieces
    assert not np.logical_and(*pieces).any()  # two separate pieces, not one drawn twice


def test_ignore_region_is_not_an_instance():
    records = labelme("train") | labelme("val")
    ignored = [(name, s) for name, r in records.items() for s in r["shapes"] if s["label"] == "__ignore__"]
    assert len(ignored) == 1 and ignored[0][0] == "coffee.json"
    data = coco("train")
    coffee_id = next(i["id"] for i in data["images"] if i["file_name"] == "coffee.jpg")
    on_coffee = [a for a in data["annotations"] if a["image_id"] == coffee_id]
    assert sorted(CLASSES[a["category_id"] - 1] for a in on_coffee) == ["cup", "saucer", "spoon"]
    ignore_polygon = np.ravel(ignored[0][1]["points"]).tolist()
    assert all(ignore_polygon not in a["segmentation"] for a in on_coffee)


def test_readme_names_each_photo_and_its_licence():
    text = (REAL / "README.md").read_text()
    assert re.search(r"^#+ .*licen[cs]e", text, re.IGNORECASE | re.MULTILINE), "no licence section"
    for split, names in PHOTOS.items():
        for name in names:
            assert f"`{name}`" in text, f"README.md does not name {name}"


@pytest.mark.parametrize("split", ["train", "val"])
def test_no_two_coin_masks_overlap(split):
    data = coco(split)
    for image in data["images"]:
        coins = [a for a in data["annotations"] if a["image_id"] == image["id"] and a["category_id"] == 1]
        if not coins:
            continue
        masks = np.stack([polygon_mask(a["segmentation"][0], image["height"], image["width"]) for a in coins])
        assert [len(a["segmentation"]) for a in coins] == [1] * len(coins)  # a coin is one disc
        assert masks.sum(axis=0).max() == 1, f"coins overlap in {image['file_name']}"


# -- the command line: convert, train, predict, evaluate -----------------------------------------

def cli(*args, cwd):
    """``python -m solo_lib ARGS`` in a subprocess, as a learner types it."""
    return subprocess.run([sys.executable, "-m", "solo_lib", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_cli_loop_on_the_real_photos(tmp_path):
    """README's "Your own data" steps on the real photos, one subprocess each, kept short: a
    128-pixel scale and ten steps of Adam at 3e-3 from the pretrained weights (the steps cost
    little next to starting TensorFlow and tracing the step). The class predictor starts from
    its prior (scores about 0.01); ten steps lift some scores clear of inference's thresholds
    (0.1 before Matrix NMS, 0.05 after; measured: best score 0.27, where six steps reach 0.18
    and three none), so predict and evaluate have masks to show."""
    for split in ("train", "val"):
        converted = cli("convert-labelme", "--labels", LABELME / "labels.txt", LABELME / split,
                        tmp_path / f"{split}.json", cwd=tmp_path)
        assert converted.returncode == 0, converted.stderr
        committed = REAL / "annotations" / f"instances_{split}.json"
        assert (tmp_path / f"{split}.json").read_bytes() == committed.read_bytes()

    trained = cli("train", "--annotations", tmp_path / "train.json", "--images", LABELME / "train",
                  "--epochs", 1, "--steps-per-epoch", 10, "--batch-size", 2, "--image-scale", 128, 128,
                  "--optimizer", "adam", "--lr", 0.003, "--warmup-steps", 0, "--out", tmp_path / "ckpt",
                  "--pretrained", PRETRAINED_SHAPES, cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "reset: category_out" in trained.stdout and "trained 1 epoch(s)" in trained.stdout
    model = tmp_path / "ckpt" / "epoch_0001.keras"
    assert model.is_file()

    photo = LABELME / "val" / "coins_bottom.png"
    width, height = photo_size(photo)
    predicted = cli("predict", "--model", model, "--image", photo, "--out", tmp_path / "coins.png", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    rows = re.findall(r"^(\S+) +score (\d\.\d{3})  area (\d+) px$", predicted.stdout, re.MULTILINE)
    assert rows, predicted.stdout
    update_thr = SOLOConfig.tiny(len(CLASSES)).update_thr  # the lowest score Matrix NMS lets through
    for name, score, area in rows:  # names: the checkpoint recorded the classes of labels.txt
        assert name in CLASSES and update_thr <= float(score) <= 1 and 0 <= int(area) <= width * height
    assert any(int(area) > 0 for _, _, area in rows)
    with Image.open(tmp_path / "coins.png") as overlay:
        assert overlay.format == "PNG" and np.asarray(overlay.convert("L")).std() > 10  # a picture, not a blank

    evaluated = cli("evaluate", "--model", model, "--annotations", tmp_path / "val.json", "--images", LABELME / "val",
                    "--results", tmp_path / "results.json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    stats = dict(re.findall(r"^ *(\S+) +(-?\d\.\d{3}|nan)$", evaluated.stdout, re.MULTILINE))
    for name in ("AP", "AP50", "AP75", "AP_medium", "AR100", "coin"):
        assert 0 <= float(stats[name]) <= 1, (name, evaluated.stdout)
    # COCO's -1: no held-out coin is small (< 32^2 px) or large (>= 96^2 px); nan: no cup, saucer or spoon there.
    assert stats["AP_small"] == stats["AP_large"] == "-1.000"
    assert stats["cup"] == stats["saucer"] == stats["spoon"] == "nan"
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) >= 1
    for res in results:  # masks at the photo's own size, not the 128-pixel canvas
        assert res["image_id"] == 1 and res["category_id"] in (1, 2, 3, 4)
        assert res["segmentation"]["size"] == [height, width]
    assert mask_utils.decode(results[0]["segmentation"]).shape == (height, width)


# -- broken annotations: one clear line, nothing written -------------------------------------------

def unknown_label(record, text):
    record["shapes"][0]["label"] = "mug"  # a class the labels file does not list
    return json.dumps(record)


def missing_image(record, text):
    record["imagePath"] = "coffee.jpeg"  # the photo is coffee.jpg
    return json.dumps(record)


def truncated(record, text):
    return text[: len(text) // 2]  # a copy or a save cut off half-way


BROKEN = {
    "unknown_label": (unknown_label, ["coffee.json: shape 0 (polygon 'mug'): label 'mug' is not in",
                                      "labels.txt; add it there or fix the label"]),
    "missing_image": (missing_image, ["coffee.json: image", "coffee.jpeg not found (imagePath 'coffee.jpeg')",
                                      "put the image there or fix imagePath"]),
    "invalid_json": (truncated, ["coffee.json: not valid JSON (line ", "repair it there, or write it again"]),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_annotation_is_one_clear_line(tmp_path, case):
    edit, parts = BROKEN[case]
    folder = tmp_path / "train"
    shutil.copytree(LABELME / "train", folder)
    path = folder / "coffee.json"
    path.write_text(edit(json.loads(path.read_text()), path.read_text()))
    before = snapshot(tmp_path)
    out = tmp_path / "instances.json"
    result = cli("convert-labelme", "--labels", LABELME / "labels.txt", folder, out, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for part in parts:
        assert part in result.stderr, (part, result.stderr)
    assert not out.exists() and snapshot(tmp_path) == before


def test_two_point_polygon_is_skipped_with_one_warning_line(tmp_path):
    """A polygon with two points outlines nothing: as README's "Your own data" says, the converter
    reports it (file and shape index) and converts the rest; here the spoon keeps its other piece."""
    folder = tmp_path / "train"
    shutil.copytree(LABELME / "train", folder)
    path = folder / "coffee.json"
    record = json.loads(path.read_text())
    spoon_pieces = [i for i, s in enumerate(record["shapes"]) if s["label"] == "spoon"]
    record["shapes"][spoon_pieces[1]]["points"] = record["shapes"][spoon_pieces[1]]["points"][:2]
    path.write_text(json.dumps(record))
    out = tmp_path / "instances.json"
    result = cli("convert-labelme", "--labels", LABELME / "labels.txt", folder, out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"warning: {path}: 1 shape(s) with fewer than 3 points or zero area skipped "
                             f"(shape indices [{spoon_pieces[1]}])\n")
    assert "15 instances" in result.stdout and "1 warning(s)" in result.stdout
    spoons = [a for a in json.loads(out.read_text())["annotations"] if a["category_id"] == CLASSES.index("spoon") + 1]
    assert len(spoons) == 1 and len(spoons[0]["segmentation"]) == 1


# -- make demo-real ----------------------------------------------------------------------------------

def test_demo_real_converts_trains_evaluates_and_draws_every_photo(tmp_path, capsys, monkeypatch):
    """``python -m solo_lib demo --real`` for one epoch (one step: both photos in one batch), in-process."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--real", "--out", "out", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["demo_model.keras", "instances_train.json", "instances_val.json",
                     "train_coffee.png", "train_coins_top.png", "val_coins_bottom.png"]
    for split in ("train", "val"):
        assert (tmp_path / "out" / f"instances_{split}.json").read_bytes() == \
            (REAL / "annotations" / f"instances_{split}.json").read_bytes()
    assert re.search(r"^train +mask AP \d\.\d{3}  AP50 \d\.\d{3}  AP75 \d\.\d{3}$", out, re.MULTILINE), out
    held_out = re.findall(r"^held-out mask AP (\d\.\d{3})  AP50 (\d\.\d{3})  AP75 (\d\.\d{3})$", out, re.MULTILINE)
    assert len(held_out) == 1 and all(0 <= float(v) <= 1 for v in held_out[0]), out
    assert "on 2 real photos for 1 epochs" in out
    with Image.open(tmp_path / "out" / "val_coins_bottom.png") as picture:
        assert picture.width > 1.5 * picture.height  # ground truth | prediction, side by side

    # The printed commands are the command line's equivalent: run as printed, they write the same files.
    commands = [line for line in out.splitlines() if line.startswith("python -m solo_lib convert-labelme")]
    assert len(commands) == 2
    for command in commands:
        argv = shlex.split(command)[3:]
        written = tmp_path / argv[-1]
        expected = written.read_bytes()
        written.unlink()
        assert main(argv) == 0 and written.read_bytes() == expected


def test_demo_real_with_a_bad_option_writes_nothing(tmp_path, capsys):
    assert main(["demo", "--real", "--out", str(tmp_path / "out"), "--epochs", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "error: invalid TrainConfig: epochs must be >= 1, got 0\n"
    assert not (tmp_path / "out").exists()
