"""The committed sample dataset (data/sample_coco) and the script that makes it.

Checks that the script regenerates the committed files byte for byte, that the dataset has the
features the course relies on (sizes across FPN levels, occlusion, an empty image, grouped
shapes, an ignore region), and that every annotation outlines its object's visible pixels.
"""

import collections
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "sample_coco"
CLASSES = ["disc", "block", "leaf", "star"]
MIN_IOU = 0.90  # worst instance measured: 0.905 (a partly occluded medium object); mean 0.97


@pytest.fixture(scope="module")
def script():
    """scripts/make_sample_data.py imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "scripts" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def scenes(script):
    """Every image re-rendered in memory, with its per-object visible masks: {name: Scene}."""
    return {spec.name: script.render_scene(spec) for spec in script.TRAIN_SPECS + script.VAL_SPECS}


def generated_files(root):
    """Relative paths of the generated files under ``root`` (everything but the README)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p != root / "README.md")


def labelme_records(split):
    return {p.stem: json.loads(p.read_text()) for p in sorted((DATA / "labelme" / split).glob("*.json"))}


def instances_of(record):
    """Groups a LabelMe record's shapes into instances (lists of shapes), skipping __ignore__."""
    instances = []
    for shape in record["shapes"]:
        if shape["label"] == "__ignore__":
            continue
        group = shape["group_id"]
        if group is not None and instances and instances[-1][0]["group_id"] == group:
            instances[-1].append(shape)
        else:
            instances.append([shape])
    return instances


def shape_polygon(shape):
    """A LabelMe shape as (n, 2) polygon vertices, written independently of solo_lib."""
    points = np.asarray(shape["points"], float)
    if shape["shape_type"] == "rectangle":
        (x1, y1), (x2, y2) = points
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    if shape["shape_type"] == "circle":
        (cx, cy), (px, py) = points
        r, t = math.hypot(px - cx, py - cy), np.linspace(0, 2 * np.pi, 72, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    return points


def sqrt_box_area(shapes):
    points = np.concatenate([shape_polygon(s) for s in shapes])
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return math.sqrt((x1 - x0) * (y1 - y0))


def test_script_regenerates_committed_files_byte_for_byte(script, tmp_path):
    (tmp_path / "README.md").write_text("kept\n")
    script.generate(tmp_path)
    assert (tmp_path / "README.md").read_text() == "kept\n"  # never overwritten
    expected = generated_files(DATA)
    assert generated_files(tmp_path) == expected
    assert len(expected) == 2 + 1 + 2 * (12 + 6)  # COCO files, labels.txt, jpg + json per image
    changed = [name for name in expected if (tmp_path / name).read_bytes() != (DATA / name).read_bytes()]
    assert not changed, f"regenerate with `make data`; files differ: {changed}"


def test_dataset_is_small():
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024


def test_labels_file_lists_the_four_classes_in_order():
    lines = (DATA / "labelme" / "labels.txt").read_text().splitlines()
    assert lines == ["__ignore__", "_background_", *CLASSES]


def test_dataset_statistics():
    train, val = labelme_records("train"), labelme_records("val")
    assert list(train) == [f"train_{i:03d}" for i in range(12)]
    assert list(val) == [f"val_{i:03d}" for i in range(6)]
    records = {**train, **val}
    shapes = [s for r in records.values() for s in r["shapes"]]
    sizes = {(r["imageWidth"], r["imageHeight"]) for r in records.values()}
    assert max(max(s) for s in sizes) <= 256 and any(w != h for w, h in sizes)
    for name, record in records.items():
        assert record["imagePath"] == f"{name}.jpg" and record["imageData"] is None
    assert {s["label"] for s in shapes} == {*CLASSES, "__ignore__"}
    kinds = collections.Counter(s["shape_type"] for s in shapes)
    assert set(kinds) == {"polygon", "rectangle", "circle"}
    assert kinds["rectangle"] >= 2 and kinds["circle"] >= 2
    grouped = [s for s in shapes if s["group_id"] is not None]  # one instance drawn as two polygons
    assert len(grouped) == 2 and len({(s["group_id"], s["label"], s["shape_type"]) for s in grouped}) == 1
    assert isinstance(grouped[0]["group_id"], int) and grouped[0]["shape_type"] == "polygon"
    ignores = [(name, s) for name, r in records.items() for s in r["shapes"] if s["label"] == "__ignore__"]
    assert len(ignores) == 1 and ignores[0][0] in train and ignores[0][1]["shape_type"] == "polygon"

    counts = {name: len(instances_of(r)) for name, r in records.items()}
    assert [name for name, n in counts.items() if n == 0] == ["val_005"]
    assert sum(n >= 15 for n in counts.values()) >= 2
    assert sum(2 <= n <= 5 for n in counts.values()) >= 8
    object_sizes = [sqrt_box_area(inst) for r in records.values() for inst in instances_of(r)]
    assert min(object_sizes) < 8 and sum(s < 16 for s in object_sizes) >= 5
    assert max(object_sizes) > 150

    for split, records in (("train", train), ("val", val)):  # the COCO files hold the same instances
        coco = json.loads((DATA / "annotations" / f"instances_{split}.json").read_text())
        assert [c["name"] for c in coco["categories"]] == CLASSES
        assert len(coco["images"]) == len(records)
        assert len(coco["annotations"]) == sum(len(instances_of(r)) for r in records.values())


def test_annotations_outline_the_visible_pixels(script, scenes):
    ious = []
    for split, specs in (("train", script.TRAIN_SPECS), ("val", script.VAL_SPECS)):
        records = labelme_records(split)
        for spec in specs:
            scene, record = scenes[spec.name], records[spec.name]
            instances = instances_of(record)
            assert [inst[0]["label"] for inst in instances] == [i.label for i in scene.instances]
            for shapes, visible in zip(instances, scene.visible):
                # pycocotools rasterises the polygons exactly as every COCO reader will.
                polygons = [shape_polygon(s).ravel().tolist() for s in shapes]
                rle = mask_utils.merge(mask_utils.frPyObjects(polygons, spec.height, spec.width))
                drawn = mask_utils.decode(rle).astype(bool)
                ious.append((drawn & visible).sum() / (drawn | visible).sum())
                assert ious[-1] >= MIN_IOU, f"{spec.name}: {shapes[0]['label']} IoU {ious[-1]:.3f}"
    assert np.mean(ious) > 0.95


def test_objects_are_occluded_but_stay_one_solid_piece(script, scenes):
    occluded = 0
    for scene in scenes.values():
        for inst, whole, visible in zip(scene.instances, scene.whole, scene.visible):
            assert not (visible & ~whole).any()
            assert visible.sum() >= 0.5 * whole.sum()
            assert len(script.outlines(visible)) == inst.parts
            occluded += not np.array_equal(visible, whole)
    assert occluded >= 10
