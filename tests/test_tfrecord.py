"""Sharded TFRecords (solo_lib/data/tfrecord.py): what is read back is what CocoDataset reads.

The reference everywhere is ``CocoDataset.sample`` (Pillow + pycocotools); the TFRecord reader
is TensorFlow ops only, so every check compares two independent formulations.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools import mask as mask_utils

from solo_lib import __main__ as cli
from solo_lib.config import SOLOConfig
from solo_lib.data import pipeline
from solo_lib.data.coco import CocoDataset, boxes_from_masks, load_real_photos, load_sample_dataset
from solo_lib.data.images import load_rgb_image
from solo_lib.data.segmentation import rle_counts_from_string
from solo_lib.data.tfrecord import ShardedDataset, decode_image, mask_runs, masks_from_runs, write_tfrecords
from solo_lib.errors import ConfigError, DatasetError


def assert_same_samples(sharded: ShardedDataset, dataset: CocoDataset, source=None):
    """Every sample read from the shards equals CocoDataset's, in the annotation file's order."""
    source = source if source is not None else sharded.source()
    assert source.element_spec == pipeline.SAMPLE_SIGNATURE
    read = list(source.as_numpy_iterator())
    assert [int(s["image_id"]) for s in read] == dataset.image_ids
    for got in read:
        want = dataset.sample(int(got["image_id"])).to_dict()
        for key, value in want.items():
            assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
            np.testing.assert_array_equal(got[key], value, err_msg=f"image {got['image_id']}: {key}")


@pytest.mark.parametrize("name, load, shards, as_png", [("sample", load_sample_dataset, 3, 0),
                                                        ("real_photos", load_real_photos, 2, 1)])
def test_shipped_datasets_round_trip(tmp_path, name, load, shards, as_png):
    dataset = load("train")
    summary = write_tfrecords(dataset, tmp_path / name, shards, progress=False)
    sharded = ShardedDataset(tmp_path / name)
    assert (summary.shards_written, summary.shards_kept, summary.images_written) == (shards, 0, len(dataset))
    # The RGB JPEGs are stored as they are (TensorFlow decodes them as Pillow does); the real
    # photos' coins_top.png is grayscale, so it is stored as an RGB PNG of what CocoDataset reads.
    assert summary.images_as_png == as_png
    assert len(sharded) == len(dataset) and sharded.class_names == dataset.class_names
    assert sharded.categories == dataset.categories and len(sharded.files) == shards
    # image i in shard i % shards
    meta = json.loads((tmp_path / name / "dataset.json").read_text())
    assert [s["images"] for s in meta["shards"]] == [len(dataset.image_ids[i::shards]) for i in range(shards)]
    assert_same_samples(sharded, dataset)


# -- a small COCO file with every case: crowd RLE, no instances, EXIF rotation, non-RGB images ----

SQUARE = [2.0, 3.0, 13.5, 3.0, 13.5, 11.0, 2.0, 11.0]


def _exif_jpeg(path, pixels, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())


@pytest.fixture(scope="module")
def edge_cases(tmp_path_factory):
    """``(dataset, file names)``: JPEG with polygons + crowd RLEs, PNG with no instances, an EXIF-rotated
    JPEG, a gray PNG and a palette PNG."""
    root = tmp_path_factory.mktemp("edge")
    rng = np.random.default_rng(0)
    h, w = 20, 28
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(root / "plain.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(root / "empty.png")
    _exif_jpeg(root / "rotated.jpg", rng.integers(0, 256, (w, h, 3), np.uint8), 6)  # displayed h x w
    Image.fromarray(rng.integers(0, 256, (h, w), np.uint8)).save(root / "gray.png")
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).convert("P").save(root / "palette.png")
    crowd = np.zeros((h, w), np.uint8, order="F")
    crowd[5:15, 0:9] = 1
    crowd[-1, -1] = 1  # the last pixel set: the runs end with a run of 1s
    compressed = mask_utils.encode(np.asfortranarray(crowd))
    uncompressed = rle_counts_from_string(compressed["counts"]).tolist()
    names = ["plain.jpg", "empty.png", "rotated.jpg", "gray.png", "palette.png"]
    coco = {"images": [{"id": 10 * (i + 1), "file_name": n, "height": h, "width": w} for i, n in enumerate(names)],
            "categories": [{"id": 7, "name": "a"}, {"id": 3, "name": "b"}],
            "annotations": [
                {"id": 1, "image_id": 10, "category_id": 7, "segmentation": [SQUARE]},
                {"id": 2, "image_id": 10, "category_id": 3, "iscrowd": 1,
                 "segmentation": {"size": [h, w], "counts": uncompressed}},
                {"id": 3, "image_id": 10, "category_id": 7, "iscrowd": 1,
                 "segmentation": {"size": [h, w], "counts": compressed["counts"].decode()}},
                {"id": 4, "image_id": 30, "category_id": 3, "segmentation": [[0, 0, 27, 0, 27, 19, 0, 19]]},
                {"id": 5, "image_id": 40, "category_id": 3, "segmentation": [[20, 1, 26, 18, 14, 18]]},
                {"id": 6, "image_id": 50, "category_id": 7, "segmentation": [SQUARE, [16, 12, 26, 12, 26, 18]]}]}
    (root / "instances.json").write_text(json.dumps(coco))
    return CocoDataset(root / "instances.json", root), names


def test_crowd_empty_rotated_and_non_rgb_images_round_trip(tmp_path, edge_cases):
    dataset, names = edge_cases
    sample = dataset.sample(10)
    assert sample.iscrowd.tolist() == [False, True, True] and len(dataset.sample(20).labels) == 0
    summary = write_tfrecords(dataset, tmp_path / "out", 2, progress=False)
    # Rotated, gray and palette images are stored as PNGs of their pixels; the others as they are.
    assert summary.images_as_png == 3
    assert_same_samples(ShardedDataset(tmp_path / "out"), dataset)

    records = {}
    for record in tf.data.TFRecordDataset([str(f) for f in ShardedDataset(tmp_path / "out").files]):
        example = tf.train.Example.FromString(record.numpy())
        feature = example.features.feature
        records[feature["image/file_name"].bytes_list.value[0].decode()] = feature
    for name in names:
        encoded = records[name]["image/encoded"].bytes_list.value[0]
        on_disk = (dataset.image_dir / name).read_bytes()
        assert (encoded == on_disk) == (name in ("plain.jpg", "empty.png")), name
        assert encoded[:4] == (b"\xff\xd8\xff\xe0" if name == "plain.jpg" else b"\x89PNG"), name
    assert list(records["plain.jpg"]["instances/annotation_id"].int64_list.value) == [1, 2, 3]


def test_jpeg_is_decoded_as_pillow_decodes_it():
    """The reader's JPEG settings give Pillow's pixels to the bit on the shipped photos."""
    dataset = load_sample_dataset("train")
    for image_id in dataset.image_ids[:4]:
        path = dataset.image_dir / dataset.image_info(image_id)["file_name"]
        np.testing.assert_array_equal(decode_image(tf.constant(path.read_bytes())).numpy(), load_rgb_image(path))


def test_runs_are_coco_rle_and_decode_in_graph():
    rng = np.random.default_rng(1)
    h, w = 7, 9
    masks = (rng.random((6, h, w)) < 0.4).astype(np.uint8)
    masks[1] = 0  # empty
    masks[2] = 1  # full
    masks[3, 0, 0], masks[4, -1, -1] = 1, 1  # first / last pixel set
    runs, num_runs = mask_runs(masks)
    assert (num_runs % 2 == 0).all() and num_runs.sum() == runs.size
    start = 0
    for mask, count in zip(masks, num_runs):
        coco = rle_counts_from_string(mask_utils.encode(np.asfortranarray(mask))["counts"])
        mine = runs[start:start + count]
        start += count
        assert mine[:coco.size].tolist() == coco.tolist() and not mine[coco.size:].any()  # padded with 0
    decoded, boxes = masks_from_runs(tf.constant(runs), tf.constant(6, tf.int64), tf.constant(h, tf.int64),
                                     tf.constant(w, tf.int64))
    np.testing.assert_array_equal(decoded.numpy(), masks)
    np.testing.assert_array_equal(boxes.numpy(), boxes_from_masks(masks))
    with pytest.raises(tf.errors.InvalidArgumentError, match="damaged shard"):
        masks_from_runs(tf.constant(runs[:-2]), tf.constant(6, tf.int64), tf.constant(h, tf.int64),
                        tf.constant(w, tf.int64))


def test_workers_read_disjoint_shards_covering_the_dataset(tmp_path):
    dataset = load_sample_dataset("train")
    sharded = write_tfrecords(dataset, tmp_path, 5, progress=False).dataset
    seen = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker)
        seen.append({int(s["image_id"]) for s in sharded.source(context).as_numpy_iterator()})
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(dataset.image_ids)
    ids = dataset.image_ids  # worker 0 reads shards 0, 2, 4
    assert seen[0] == {ids[i] for i in range(len(ids)) if i % 5 in (0, 2, 4)}
    with pytest.raises(ConfigError, match="5 shards cannot feed 6 input pipelines"):
        sharded.source(tf.distribute.InputContext(num_input_pipelines=6, input_pipeline_id=0))
    shuffled = [int(s["image_id"]) for s in sharded.source(shuffle_files=True, seed=3).as_numpy_iterator()]
    assert sorted(shuffled) == sorted(ids)


def test_resume_writes_only_the_missing_shards(tmp_path):
    dataset = load_sample_dataset("train")
    write_tfrecords(dataset, tmp_path, 4, progress=False)
    files = ShardedDataset(tmp_path).files
    for path in files:  # an old time, so a rewrite is visible whatever the clock's resolution
        os.utime(path, ns=(10**18, 10**18))
    files[2].unlink()  # as if interrupted: one shard missing, another half-written
    partial = files[1].with_name(files[1].name + ".partial")
    partial.write_bytes(b"half a shard")
    with pytest.raises(DatasetError, match="shard missing.*run to-tfrecord again"):
        ShardedDataset(tmp_path)
    summary = write_tfrecords(dataset, tmp_path, 4, progress=False)
    assert (summary.shards_written, summary.shards_kept, summary.images_written) == (1, 3, 3)
    assert [f.stat().st_mtime_ns == 10**18 for f in files] == [True, True, False, True]
    assert not partial.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f.name for f in files] + ["dataset.json"])
    assert_same_samples(ShardedDataset(tmp_path), dataset)


def test_refuses_other_shards_unless_overwrite(tmp_path):
    sample, photos = load_sample_dataset("train"), load_real_photos("train")
    write_tfrecords(sample, tmp_path, 3, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    for dataset, shards, reason in ((photos, 2, "another annotation file"), (sample, 4, "3 shards, not 4"),
                                    (sample.subset(sample.image_ids[:6]), 3, "another selection of images")):
        with pytest.raises(DatasetError, match=f"{tmp_path}: its dataset.json describes {reason}.*--overwrite"):
            write_tfrecords(dataset, tmp_path, shards, progress=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    (tmp_path / "dataset.json").unlink()  # shards without their metadata: not ours either
    with pytest.raises(DatasetError, match="is not a shard of this conversion"):
        write_tfrecords(sample, tmp_path, 3, progress=False)
    summary = write_tfrecords(photos, tmp_path, 2, progress=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["notes.txt", "dataset.json"] + [f.name for f in summary.dataset.files])
    assert_same_samples(summary.dataset, photos)


@pytest.mark.parametrize("shards", [0, 13, True, 2.0])
def test_bad_shard_counts(tmp_path, shards):
    with pytest.raises(ConfigError, match=r"instances_train.json: its 12 images cannot be split .* from 1 to 12"):
        write_tfrecords(load_sample_dataset("train"), tmp_path, shards, progress=False)
    assert not any(tmp_path.iterdir())


def test_metadata_errors(tmp_path):
    with pytest.raises(DatasetError,
                       match="dataset.json: not found; .* holds no dataset written by to-tfrecord: write one with"):
        ShardedDataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(DatasetError, match="format version 99.*convert the dataset again"):
        ShardedDataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format_version": 1, "shards": []}))
    with pytest.raises(DatasetError, match=r"lacks \['class_names', 'coco_category_ids', 'num_images'\]"):
        ShardedDataset(tmp_path)


def test_cli_writes_and_fails_in_one_line(tmp_path, capsys):
    dataset = load_sample_dataset("train")
    args = ["to-tfrecord", "--annotations", str(dataset.annotation_file), "--images", str(dataset.image_dir)]
    assert cli.main([*args, "--out", str(tmp_path / "ok"), "--shards", "2"]) == 0
    assert "12 images in 2 shards (2 written now, 0 already complete" in capsys.readouterr().out
    assert len(ShardedDataset(tmp_path / "ok")) == 12

    # train --tfrecords trains from them; it replaces --annotations/--images and --stream.
    run = ["train", "--tfrecords", str(tmp_path / "ok"), "--epochs", "1", "--steps-per-epoch", "1",
           "--batch-size", "2", "--image-scale", "64", "64", "--warmup-steps", "0"]
    assert cli.main([*run, "--out", str(tmp_path / "run")]) == 0
    assert "trained 1 epoch(s)" in capsys.readouterr().out and (tmp_path / "run" / "epoch_0001.keras").is_file()
    for extra, says in ((["--annotations", str(dataset.annotation_file)], "replaces --annotations and --images"),
                        (["--stream"], "leave out --stream")):
        assert cli.main([*run, *extra, "--out", str(tmp_path / "refused")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err and not (tmp_path / "refused").exists()
    assert cli.main(["train", "--tfrecords", str(tmp_path / "nowhere"), "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset.json" in err and not (tmp_path / "refused").exists()

    assert cli.main([*args, "--out", str(tmp_path / "bad"), "--shards", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "choose an integer from 1 to 12" in err

    # An image that cannot be read: the error names it; the complete shards stay for a rerun.
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("train_000.jpg", "train_001.jpg", "train_002.jpg"):
        (broken / name).write_bytes((dataset.image_dir / name).read_bytes())
    (broken / "train_002.jpg").write_bytes(b"not a jpeg")
    coco = json.loads(dataset.annotation_file.read_text())
    coco["images"] = coco["images"][:3]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in {i["id"] for i in coco["images"]}]
    (broken / "coco.json").write_text(json.dumps(coco))
    out = tmp_path / "partial"
    assert cli.main(["to-tfrecord", "--annotations", str(broken / "coco.json"), "--images", str(broken),
                     "--out", str(out), "--shards", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train_002.jpg: cannot read image id 3" in err
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tfrecord") == ["coco-00000-of-00003.tfrecord",
                                                                               "coco-00001-of-00003.tfrecord"]


def test_training_batches_equal_the_in_memory_sources(tmp_path):
    """The pipeline fed by the TFRecord source gives the first batch the in-memory source gives."""
    dataset = load_sample_dataset("train")
    sharded = write_tfrecords(dataset, tmp_path, 3, progress=False).dataset
    config = SOLOConfig.tiny(dataset.num_classes, image_scale=(128, 128))
    batches = [pipeline.first_batch(pipeline.training_dataset(source, config, batch_size=4, seed=7))
               for source in (sharded.source(), pipeline.in_memory_source(dataset))]
    (images_a, targets_a), (images_b, targets_b) = batches
    np.testing.assert_array_equal(images_a, images_b)
    assert targets_a.keys() == targets_b.keys()
    for key in targets_a:
        np.testing.assert_array_equal(targets_a[key], targets_b[key], err_msg=key)



def test_train_reads_shards_as_it_reads_the_annotation_file(tmp_path):
    """train() on TFRecord shards makes the same updates as on the CocoDataset they came from: same
    samples in the same order, so the same batches (the in-memory memory budget does not apply)."""
    from solo_lib.train import train
    from solo_lib.train_config import TrainConfig

    dataset = load_sample_dataset("train")
    sharded = write_tfrecords(dataset, tmp_path, 3, progress=False).dataset
    config = SOLOConfig.tiny(dataset.num_classes, image_scale=(64, 64))
    cfg = TrainConfig(epochs=1, batch_size=2, steps_per_epoch=2, optimizer="sgd", learning_rate=0.01,
                      warmup_steps=0, decay_epochs=(), checkpoint_dir=None, memory_budget_mb=1e-6)
    from_shards, history_shards = train(config, cfg, sharded, progress=False)
    from_file, history_file = train(config, cfg.replace(memory_budget_mb=None), dataset, progress=False)
    assert from_shards.class_names == from_file.class_names == dataset.class_names
    # Same batches and same initial weights: the same arithmetic, so equal to the last bit in practice;
    # 1e-5 relative leaves room for a kernel choosing another summation order between two runs.
    np.testing.assert_allclose(history_shards.history["loss"], history_file.history["loss"], rtol=1e-5)
    for a, b in zip(from_shards.get_weights(), from_file.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
