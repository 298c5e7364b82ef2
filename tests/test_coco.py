"""COCO parsing: fixtures shaped like real COCO files (ids with gaps, crowd RLE, multi-polygons)."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from solo_lib.data.coco import CocoDataset, boxes_from_masks, load_sample_dataset
from solo_lib.data.coco_file import CategoryMap
from solo_lib.data.segmentation import decode_segmentation
from solo_lib.errors import DatasetError, DatasetWarning


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE written out by hand: run lengths of the column-major
    (Fortran-order) flattened mask, starting with a run of zeros (possibly empty)."""
    flat = mask.reshape(-1, order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return {"counts": counts, "size": list(mask.shape)}


def write_coco(tmp_path, data, images=None):
    (tmp_path / "images").mkdir(exist_ok=True)
    for name, array in (images or {}).items():
        Image.fromarray(array).save(tmp_path / "images" / name)
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    return ann, tmp_path / "images"


@pytest.fixture
def crowd_mask():
    m = np.zeros((30, 40), np.uint8)
    m[5:25, 20:38] = 1
    m[10:12, 25:27] = 0  # a hole, so the RLE has several runs
    return m


@pytest.fixture
def real_shaped(tmp_path, crowd_mask):
    """Three categories with ids 1, 18, 90; four images (RGB, grayscale, RGBA, empty)."""
    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    gray = np.full((20, 20), 77, np.uint8)
    rgba = np.zeros((24, 16, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 128
    compressed_mask = np.zeros((20, 20), np.uint8)
    compressed_mask[2:9, 3:15] = 1
    compressed = mask_utils.encode(np.asfortranarray(compressed_mask))
    compressed["counts"] = compressed["counts"].decode("ascii")  # as stored in JSON
    data = {
        "images": [
            {"id": 7, "file_name": "a.png", "height": 30, "width": 40},
            {"id": 3, "file_name": "gray.png", "height": 20, "width": 20},
            {"id": 12, "file_name": "rgba.png", "height": 24, "width": 16},
            {"id": 99, "file_name": "empty.png", "height": 30, "width": 40},
        ],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            # two polygons, one instance (like a person split by an occluder)
            {"id": 501, "image_id": 7, "category_id": 18, "iscrowd": 0,
             "segmentation": [[2, 2, 10, 2, 10, 8, 2, 8], [2, 15, 10, 15, 10, 25, 2, 25]]},
            {"id": 502, "image_id": 7, "category_id": 1, "iscrowd": 1, "segmentation": uncompressed_rle(crowd_mask)},
            {"id": 900, "image_id": 3, "category_id": 90, "iscrowd": 0, "segmentation": compressed},
        ],
    }
    images = {"a.png": rgb, "gray.png": gray, "rgba.png": rgba, "empty.png": rgb}
    ann, image_dir = write_coco(tmp_path, data, images)
    return ann, image_dir, {"rgb": rgb, "compressed_mask": compressed_mask}


def test_category_ids_with_gaps_map_to_contiguous_labels(real_shaped):
    ds = CocoDataset(*real_shaped[:2])
    assert ds.categories.coco_ids == (1, 18, 90)
    assert ds.class_names == ("person", "dog", "toothbrush")
    assert [ds.categories.to_label(i) for i in (1, 18, 90)] == [0, 1, 2]
    assert [ds.categories.to_coco_id(label) for label in range(3)] == [1, 18, 90]
    with pytest.raises(KeyError):
        ds.categories.to_label(2)


def test_multi_polygon_and_uncompressed_crowd_rle(real_shaped, crowd_mask):
    ann, image_dir, arrays = real_shaped
    s = CocoDataset(ann, image_dir).sample(7)
    assert s.image.shape == (30, 40, 3) and s.image.dtype == np.uint8
    np.testing.assert_array_equal(s.image, arrays["rgb"])
    assert s.masks.shape == (2, 30, 40) and s.masks.dtype == np.uint8
    assert s.labels.tolist() == [1, 0] and s.labels.dtype == np.int32
    assert s.iscrowd.tolist() == [False, True]
    assert s.annotation_ids.tolist() == [501, 502]
    # both polygons of annotation 501 are in its mask, and nothing between them
    m = s.masks[0].astype(bool)
    assert m[2:8, 2:10].all() and m[15:25, 2:10].all() and not m[10:14].any()
    # the crowd region decodes to exactly the mask our hand-written RLE encoded
    np.testing.assert_array_equal(s.masks[1], crowd_mask)
    np.testing.assert_array_equal(s.boxes[1], [20, 5, 38, 25])


def test_compressed_rle_and_grayscale_image(real_shaped):
    ann, image_dir, arrays = real_shaped
    s = CocoDataset(ann, image_dir).sample(3)
    np.testing.assert_array_equal(s.masks[0], arrays["compressed_mask"])
    assert s.labels.tolist() == [2]
    assert s.image.shape == (20, 20, 3)
    assert (s.image == 77).all()


def test_rgba_image_becomes_rgb_and_empty_image_has_no_instances(real_shaped):
    ann, image_dir, _ = real_shaped
    ds = CocoDataset(ann, image_dir)
    rgba = ds.sample(12)
    assert rgba.image.shape == (24, 16, 3)
    assert rgba.image[0, 0].tolist() == [10, 20, 30]  # alpha dropped, colour kept
    empty = ds.sample(99)
    assert empty.masks.shape == (0, 30, 40) and empty.labels.shape == (0,) and empty.boxes.shape == (0, 4)
    assert len(ds) == 4 and ds.image_ids == [7, 3, 12, 99]
    assert [s.image_id for s in ds] == [7, 3, 12, 99]


def test_pycocotools_view_keeps_crowd_for_evaluation(real_shaped):
    coco = CocoDataset(*real_shaped[:2]).coco
    assert sorted(coco.getAnnIds()) == [501, 502, 900]
    assert coco.loadAnns([502])[0]["iscrowd"] == 1


def test_boxes_from_masks_matches_a_slow_loop():
    rng = np.random.default_rng(1)
    masks = (rng.random((20, 13, 17)) > 0.97).astype(np.uint8)
    masks[3] = 0  # an empty mask
    expected = np.zeros((20, 4), np.float32)
    for k, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            expected[k] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    np.testing.assert_array_equal(boxes_from_masks(masks), expected)
    assert boxes_from_masks(np.zeros((0, 5, 5))).shape == (0, 4)


def test_polygon_rasterisation_area_close_to_polygon_area():
    # independent check of the pycocotools call: a 10x6 rectangle covers about 60 pixels
    m = decode_segmentation([[2, 3, 12, 3, 12, 9, 2, 9]], 20, 20)
    assert abs(int(m.sum()) - 60) <= 12


# -- bad input: one exception type, naming the file and the record ---------------------------

def minimal(images=None, annotations=None, categories=None):
    return {
        "images": images if images is not None else [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
        "categories": categories if categories is not None else [{"id": 5, "name": "thing"}],
        "annotations": annotations if annotations is not None else [],
    }


def small_image():
    return {"a.png": np.zeros((8, 8, 3), np.uint8)}


def test_malformed_json_names_file_and_position(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [ {"id": 1,, } ]}')
    with pytest.raises(DatasetError, match=r"broken\.json: not valid JSON \(line 1"):
        CocoDataset(bad, tmp_path)


def test_missing_image_file_names_file_and_image_id(tmp_path):
    ann, image_dir = write_coco(tmp_path, minimal())
    with pytest.raises(DatasetError, match=r"instances\.json: image id 1: file .*a\.png not found"):
        CocoDataset(ann, image_dir)


@pytest.mark.parametrize("field, value, message", [
    ("image_id", 42, r"annotation id 3 points at image id 42"),
    ("category_id", 6, r"annotation id 3 has category id 6"),
])
def test_annotation_pointing_at_unknown_record(tmp_path, field, value, message):
    ann = {"id": 3, "image_id": 1, "category_id": 5, "segmentation": [[0, 0, 4, 0, 4, 4]]}
    ann[field] = value
    path, image_dir = write_coco(tmp_path, minimal(annotations=[ann]), small_image())
    with pytest.raises(DatasetError, match=message):
        CocoDataset(path, image_dir)


def test_degenerate_polygons_are_skipped_with_a_counting_warning(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 5, "segmentation": [[1, 1, 5, 5]]},  # 2 points
        {"id": 2, "image_id": 1, "category_id": 5, "segmentation": [[1, 1, 3, 3, 5, 5]]},  # collinear
        {"id": 3, "image_id": 1, "category_id": 5, "segmentation": [[1, 1, 6, 1, 6, 6], [0, 0, 1, 1]]},  # one of two
    ]
    path, image_dir = write_coco(tmp_path, minimal(annotations=anns), small_image())
    with pytest.warns(DatasetWarning,
                      match=r"3 annotations had polygons with fewer than 3 points or zero area.*1, 2, 3"):
        ds = CocoDataset(path, image_dir)
    s = ds.sample(1)
    assert s.annotation_ids.tolist() == [3]  # 1 and 2 had nothing left; 3 keeps its good polygon
    assert len(ds.annotations(1)[0]["segmentation"]) == 1


def test_coordinates_outside_the_image_are_clipped(tmp_path):
    anns = [{"id": 8, "image_id": 1, "category_id": 5, "segmentation": [[-5, -5, 20, -5, 20, 4, -5, 4]]}]
    path, image_dir = write_coco(tmp_path, minimal(annotations=anns), small_image())
    with pytest.warns(DatasetWarning, match=r"1 annotations had polygon points outside the image.*clipped.*8"):
        ds = CocoDataset(path, image_dir)
    assert max(max(p) for p in ds.annotations(1)[0]["segmentation"]) <= 8
    m = ds.sample(1).masks[0]
    assert m[:3].all() and not m[5:].any()


@pytest.mark.parametrize("file_name", ["../outside.png", "/etc/passwd", "sub/../../outside.png", "..\\outside.png"])
def test_image_path_escaping_the_dataset_folder_is_rejected(tmp_path, file_name):
    data = minimal(images=[{"id": 4, "file_name": file_name, "height": 8, "width": 8}])
    path, image_dir = write_coco(tmp_path, data)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "outside.png")
    with pytest.raises(DatasetError, match=r"image id 4: image path .* escapes the dataset folder"):
        CocoDataset(path, image_dir)


def test_other_structural_errors(tmp_path):
    dup = minimal(images=[{"id": 1, "file_name": "a.png", "height": 8, "width": 8}] * 2)
    path, image_dir = write_coco(tmp_path, dup, small_image())
    with pytest.raises(DatasetError, match="image id 1 appears more than once"):
        CocoDataset(path, image_dir)
    rle = minimal(annotations=[{"id": 2, "image_id": 1, "category_id": 5,
                                "segmentation": {"counts": [64], "size": [4, 16]}}])
    path, image_dir = write_coco(tmp_path, rle, small_image())
    with pytest.raises(DatasetError, match=r"annotation id 2: RLE size \[4, 16\] differs"):
        CocoDataset(path, image_dir)
    path, image_dir = write_coco(tmp_path, {"annotations": []})
    with pytest.raises(DatasetError, match="needs top-level 'images' and 'categories'"):
        CocoDataset(path, image_dir)


def test_image_size_mismatch_is_reported_when_loading(tmp_path):
    data = minimal(images=[{"id": 1, "file_name": "a.png", "height": 9, "width": 8}])
    path, image_dir = write_coco(tmp_path, data, small_image())
    ds = CocoDataset(path, image_dir)
    with pytest.raises(DatasetError, match=r"a\.png: image id 1 is 8x8 \(WxH\) but .* says 8x9"):
        ds.sample(1)


def test_category_map_rejects_duplicates():
    with pytest.raises(DatasetError, match=r"category id\(s\) \[3\]"):
        CategoryMap.from_categories([{"id": 3, "name": "a"}, {"id": 3, "name": "b"}])


def test_sample_dataset_loads():
    ds = load_sample_dataset("train")
    s = ds[0]
    assert s.image.ndim == 3 and s.image.shape[2] == 3
    assert s.masks.shape[1:] == s.image.shape[:2]
    assert len(s.class_names) == ds.num_classes >= 3
