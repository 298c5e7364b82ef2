"""COCO mask AP: ground truth scores 1, real-COCO-shaped ids and crowd regions, missing instances,
empty results, RLE and JSON round trips."""

import json
import math

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from solo_lib.data.coco import CocoDataset, load_sample_dataset
from solo_lib.data.segmentation import decode_segmentation
from solo_lib.errors import DatasetError, DatasetWarning
from solo_lib.evaluate import (
    encode_masks,
    evaluate_model,
    evaluate_segm,
    predictions_to_coco_results,
    write_results_json,
)


def gt_results(dataset, keep=lambda masks: slice(None), score=1.0):
    """The ground truth of every image, submitted as predictions (crowd regions skipped)."""
    results = []
    for s in dataset:
        masks, labels = s.masks[~s.iscrowd], s.labels[~s.iscrowd]
        k = keep(masks)
        results += predictions_to_coco_results(s.image_id, masks[k], labels[k], np.full(len(labels[k]), score),
                                               dataset.categories)
    return results


@pytest.fixture(scope="module")
def val():
    return load_sample_dataset("val")


# -- the sample dataset --------------------------------------------------------------------

@pytest.mark.parametrize("split", ["val", "train"])
def test_ground_truth_as_predictions_scores_one(split):
    ds = load_sample_dataset(split)
    result = evaluate_segm(ds, gt_results(ds))
    # AP, AP50, AP75, AP_small/medium/large and AR10/AR100 are exactly 1 (up to float sums);
    # AR1 is lower because it keeps one detection per image.
    # pycocotools computes in float64: "exactly 1" up to its sums, ~1e-15; approx's rel 1e-6 is far
    # above that and far below a missed instance (>= 1e-2 of AP). The same for the approx lines below.
    assert result.stats[:6] == pytest.approx([1.0] * 6)
    assert result.stats[7:] == pytest.approx([1.0] * 5)
    assert (result.ap, result.ap50, result.ap75) == (result.stats[0], result.stats[1], result.stats[2])
    assert result.per_class == pytest.approx({name: 1.0 for name in ds.class_names})


def test_val_set_has_an_image_without_annotations(val):
    # the case the previous test covers: an image with no ground truth and no predictions
    assert any(len(val.annotations(i)) == 0 for i in val.image_ids)


def test_dropping_half_the_instances_lowers_recall_and_ap(val):
    result = evaluate_segm(val, gt_results(val, keep=lambda masks: slice(0, None, 2)))
    # precision stays 1, recall about 1/2: AP about 0.5 on 101 recall points
    assert 0.25 < result.ap50 < 0.75
    assert 0.25 < result.stats[8] < 0.75  # AR100
    assert result.ap == pytest.approx(result.ap50)  # kept masks are exact at every IoU threshold


def test_empty_results_score_zero_without_crashing(val, real_shaped, capsys):
    result = evaluate_segm(val, [])
    assert result.stats == [0.0] * 12  # every size range has ground truth in the sample val set
    assert result.per_class == {name: 0.0 for name in val.class_names}
    assert capsys.readouterr().out == ""  # pycocotools' prints are captured
    # the fixture has no large instance (and a class without GT): COCO's -1 / nan stay there
    result = evaluate_segm(real_shaped, [])
    reference = evaluate_segm(real_shaped, gt_results(real_shaped))
    assert -1.0 in reference.stats
    assert result.stats == [-1.0 if r == -1.0 else 0.0 for r in reference.stats]
    assert math.isnan(result.per_class["bottle"]) and result.per_class["dog"] == 0.0


def test_verbose_lets_pycocotools_print(val, capsys):
    evaluate_segm(val, [], verbose=True)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in capsys.readouterr().out


def test_evaluate_model_runs_predict_fn_on_every_image(val, monkeypatch, capsys):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    samples = {s.image.tobytes(): s for s in val}
    calls = []

    def oracle(model, image, config):  # "model" is a lookup table from image to ground truth
        calls.append(config)
        s = model[image.tobytes()]
        return {"masks": s.masks, "labels": s.labels, "scores": np.linspace(1, 0.5, len(s.labels))}

    result, results = evaluate_model(samples, val, "cfg", oracle)
    assert calls == ["cfg"] * len(val)
    assert result.ap == pytest.approx(1.0)
    assert len(results) == sum(len(val.annotations(i)) for i in val.image_ids)
    assert capsys.readouterr().err == ""  # no progress bar
    monkeypatch.setenv("TQDM_DISABLE", "0")
    subset, _ = evaluate_model(samples, val, "cfg", oracle, image_ids=val.image_ids[:2])
    assert subset.ap == pytest.approx(1.0)
    assert "evaluate: 100%" in capsys.readouterr().err

    def wrong_size(model, image, config):
        return {"masks": np.zeros((1, 8, 8), np.uint8), "labels": [0], "scores": [1.0]}

    with pytest.raises(ValueError, match=r"image id \d+: predict_fn returned masks of shape \(1, 8, 8\)"):
        evaluate_model(None, val, None, wrong_size)


def test_evaluate_model_defaults_to_predict_with_the_models_config(val, monkeypatch):
    """``evaluate_model(model, dataset)``: predict_fn is solo_lib.inference.predict, config model.config."""
    import solo_lib.inference

    calls = []

    def recording_predict(model, image, config):
        calls.append((model, config, image.shape))
        return {"masks": np.zeros((0, *image.shape[:2]), np.uint8), "labels": np.zeros(0, np.int32),
                "scores": np.zeros(0, np.float32)}

    class Model:
        config = "the model's config"  # no num_classes: not a SOLOv2, so the classes are not checked

    monkeypatch.setattr(solo_lib.inference, "predict", recording_predict)
    model = Model()
    result, detections = evaluate_model(model, val, progress=False)
    assert calls == [(model, "the model's config", val.load_image(i).shape) for i in val.image_ids]
    assert detections == [] and result.ap == 0
    calls.clear()
    evaluate_model(model, val, "given", progress=False)  # a config given is the one passed on
    assert {config for _, config, _ in calls} == {"given"}


# -- a fixture shaped like real COCO: ids with gaps, a crowd region, a class without GT ------

def uncompressed_rle(mask):
    """COCO's uncompressed RLE: run lengths of the column-major mask, starting with zeros."""
    flat = mask.reshape(-1, order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"counts": np.diff(np.concatenate([[0], change])).tolist(), "size": list(mask.shape)}


def test_uncompressed_rle_helper_matches_pycocotools():
    mask = np.zeros((6, 5), np.uint8)
    mask[1:4, 2:4] = 1
    mask[5, 4] = 1
    decoded = mask_utils.decode(mask_utils.frPyObjects(uncompressed_rle(mask), 6, 5))
    np.testing.assert_array_equal(decoded, mask)


CROWD = (slice(5, 25), slice(20, 38))


@pytest.fixture
def real_shaped(tmp_path):
    crowd = np.zeros((30, 40), np.uint8)
    crowd[CROWD] = 1
    crowd[10:12, 25:27] = 0  # a hole
    brush = np.zeros((20, 20), np.uint8)
    brush[2:9, 3:15] = 1
    brush_rle = mask_utils.encode(np.asfortranarray(brush))
    brush_rle["counts"] = brush_rle["counts"].decode("ascii")

    def poly(x0, y0, x1, y1):
        return [[x0, y0, x1, y0, x1, y1, x0, y1]]

    anns = [
        (1, 7, 1, 0, poly(2, 2, 10, 12)),  # person
        (2, 7, 18, 0, poly(2, 15, 10, 28)),  # dog
        (3, 7, 1, 1, uncompressed_rle(crowd)),  # a crowd of persons
        (4, 3, 90, 0, brush_rle),  # toothbrush
        (5, 3, 18, 0, poly(4, 11, 18, 19)),  # dog
    ]
    sizes = {7: (30, 40), 3: (20, 20), 99: (30, 40)}
    data = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": h, "width": w} for i, (h, w) in sizes.items()],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 44, "name": "bottle"},
                       {"id": 18, "name": "dog"}],
        "annotations": [],
    }
    for ann_id, image_id, cat_id, crowd_flag, segm in anns:
        h, w = sizes[image_id]
        area = float(decode_segmentation(segm, h, w).sum())  # as real COCO files carry it
        data["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": cat_id,
                                    "iscrowd": crowd_flag, "segmentation": segm, "area": area})
    (tmp_path / "images").mkdir()
    for i, (h, w) in sizes.items():
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "instances.json").write_text(json.dumps(data))
    return CocoDataset(tmp_path / "instances.json", tmp_path / "images")


def test_original_category_ids_score_one_and_contiguous_labels_do_not(real_shaped):
    ds = real_shaped
    assert ds.categories.coco_ids == (1, 18, 44, 90)
    right = gt_results(ds, score=0.9)
    assert sorted({r["category_id"] for r in right}) == [1, 18, 90]
    good = evaluate_segm(ds, right)
    assert good.ap == pytest.approx(1.0)
    assert good.per_class == pytest.approx({"person": 1.0, "dog": 1.0, "toothbrush": 1.0, "bottle": math.nan},
                                           nan_ok=True)
    # the classic bug: labels 0..C-1 submitted as category ids
    labels = {id(r): ds.categories.to_label(r["category_id"]) for r in right}
    wrong = [dict(r, category_id=labels[id(r)]) for r in right]
    with pytest.warns(DatasetWarning, match=r"results have category ids not in .*to_coco_id"):
        bad = evaluate_segm(ds, wrong)
    assert bad.ap < 0.5
    assert bad.per_class["dog"] == 0.0 and bad.per_class["toothbrush"] == 0.0
    assert math.isnan(bad.per_class["bottle"])
    # COCO's AP is the mean over classes with ground truth of the per-class AP
    assert np.nanmean(list(bad.per_class.values())) == pytest.approx(bad.ap)


def test_detection_on_a_crowd_region_is_ignored(real_shaped):
    ds = real_shaped
    right = gt_results(ds, score=0.9)

    def extra(rows, cols):
        m = np.zeros((1, 30, 40), np.uint8)
        m[0, rows, cols] = 1
        return predictions_to_coco_results(7, m, [0], [1.0], ds.categories)  # a confident "person"

    base = evaluate_segm(ds, right)
    on_crowd = evaluate_segm(ds, right + extra(slice(13, 24), slice(21, 37)))
    assert on_crowd.stats[:6] == base.stats[:6] and on_crowd.stats[7:] == base.stats[7:]
    assert on_crowd.per_class == base.per_class
    # AR1 (stats[6]) does change: COCOeval keeps each image's top maxDets detections *before*
    # ignoring crowd matches, so the ignored detection uses up image 7's single slot.
    assert on_crowd.stats[6] < base.stats[6]
    # control: the same kind of detection on background is a false positive and costs AP
    on_background = evaluate_segm(ds, right + extra(slice(2, 20), slice(12, 19)))
    assert on_background.ap < base.ap - 0.1


def test_bad_results_are_reported_clearly(real_shaped):
    ds = real_shaped
    good = gt_results(ds)[0]
    with pytest.raises(DatasetError, match=r"results\[0\] has image id 12345, which is not in"):
        evaluate_segm(ds, [dict(good, image_id=12345)])
    small = encode_masks(np.ones((1, 8, 8), np.uint8))[0]
    with pytest.raises(DatasetError, match=r"results\[0\], image id 7: mask size \[8, 8\] differs .* \[30, 40\]"):
        evaluate_segm(ds, [dict(good, segmentation=small)])
    with pytest.raises(DatasetError, match=r"results\[0\] lacks \['score'\]"):
        evaluate_segm(ds, [{k: v for k, v in good.items() if k != "score"}])


def test_ground_truth_without_area_is_reported(real_shaped, tmp_path):
    data = json.loads(real_shaped.annotation_file.read_text())
    del data["annotations"][1]["area"]
    path = tmp_path / "no_area.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"no_area\.json: 1 annotations lack 'area' \(annotation ids \[2\]\)"):
        evaluate_segm(CocoDataset(path, real_shaped.image_dir), [])


# -- RLE and JSON ----------------------------------------------------------------------------

def test_encode_masks_round_trips_through_pycocotools():
    rng = np.random.default_rng(0)
    masks = (rng.random((5, 13, 17)) > 0.6).astype(np.uint8)
    masks[1] = 0
    masks[2] = 1
    rles = encode_masks(masks.astype(bool))
    assert [r["size"] for r in rles] == [[13, 17]] * 5
    assert all(isinstance(r["counts"], str) for r in rles)
    for rle, mask in zip(rles, masks):
        np.testing.assert_array_equal(mask_utils.decode(rle), mask)
        assert mask_utils.area(rle) == mask.sum()
    assert encode_masks(np.zeros((0, 4, 4))) == []
    with pytest.raises(ValueError, match="binary"):
        encode_masks(np.full((1, 4, 4), 0.7))


def test_predictions_restore_coco_ids_and_plain_types(real_shaped):
    masks = np.zeros((3, 30, 40), np.float32)
    masks[:, 3:6, 4:9] = 1
    results = predictions_to_coco_results(np.int64(7), masks, np.array([3, 0, 1]), np.float32([0.5, 0.25, 1]),
                                          real_shaped.categories)
    assert [r["category_id"] for r in results] == [90, 1, 18]
    assert [r["score"] for r in results] == [0.5, 0.25, 1.0]
    assert all(type(r["image_id"]) is int and type(r["score"]) is float for r in results)
    with pytest.raises(ValueError, match="3 masks, 2 labels and 3 scores"):
        predictions_to_coco_results(7, masks, [0, 1], [1, 1, 1], real_shaped.categories)


def test_results_json_is_valid_and_written_atomically(tmp_path, val):
    results = gt_results(val)
    path = tmp_path / "out" / "results.json"
    path.parent.mkdir()
    path.write_text("old")
    assert write_results_json(results, path) == path
    loaded = json.loads(path.read_text())
    assert loaded == results
    assert all(isinstance(r["segmentation"]["counts"], str) for r in loaded)
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary file left
    # the file is what COCO tools read back: it scores the same as the list
    assert evaluate_segm(val, loaded).stats == evaluate_segm(val, results).stats
    # evaluation did not add loadRes's keys (area, bbox, id) to the caller's dicts
    assert set(results[0]) == {"image_id", "category_id", "segmentation", "score"}


@pytest.mark.parametrize("progress, env, shown", [(True, None, True), (False, None, False), (True, "1", False)])
def test_evaluation_progress_bar_follows_the_argument_and_tqdm_disable(monkeypatch, progress, env, shown):
    import solo_lib.evaluate as evaluate_module

    calls = []

    def recording_tqdm(iterable, **kwargs):
        calls.append(kwargs)
        return iterable

    monkeypatch.setattr(evaluate_module, "tqdm", recording_tqdm)
    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    dataset = load_sample_dataset("val")

    def nothing(model, image, config):
        return {"masks": np.zeros((0, *image.shape[:2]), np.uint8), "labels": np.zeros(0, np.int32),
                "scores": np.zeros(0, np.float32)}

    result, detections = evaluate_model(None, dataset, None, nothing, progress=progress)
    assert detections == [] and result.ap == 0
    assert [c["disable"] for c in calls] == [not shown]
