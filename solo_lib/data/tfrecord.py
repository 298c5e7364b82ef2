"""A COCO dataset as sharded TFRecord files, read in parallel by ``tf.data`` (notebook 09).

One module past ~300 lines, because it is one idea, a file format: the writer and the reader share
the record layout (``FEATURES``) and the mask run encoding, and must change together.

Why: the streaming source (``pipeline.streaming_source``) decodes and rasterises in one Python
generator, which cannot use more than one core. Here the Python work (polygons -> masks with
pycocotools) is done once, when the files are written; reading is TensorFlow ops only, which
``tf.data`` spreads over every core (``interleave`` over shards, ``map(num_parallel_calls=AUTOTUNE)``).
The TensorFlow implementation accompanying the original article converts COCO the same way
(``convert_coco_to_tfrecord.py``), as does the Model Garden (``create_coco_tf_record.py``); the
record layout here is our own. One ``tf.train.Example`` per image holds:

* ``image/encoded``: the image file as it is on disk when TensorFlow decodes it to exactly the
  pixels of ``solo_lib.data.images.load_rgb_image`` (checked for every image when written: 8-bit
  RGB JPEG or PNG, no EXIF rotation), else a lossless PNG of those pixels. JPEGs are decoded with
  ``dct_method="INTEGER_ACCURATE"`` (libjpeg's ``JDCT_ISLOW``, Pillow's) and fancy upsampling,
  the settings under which TensorFlow and Pillow agree to the bit;
* ``image/id``, ``image/height``, ``image/width``, ``image/file_name``;
* per instance, in ``CocoDataset.annotations`` order: ``instances/annotation_id``,
  ``instances/label`` (contiguous), ``instances/iscrowd``, and its mask as uncompressed COCO RLE
  (run lengths column by column, from a run of 0s): all instances' runs in one list
  ``instances/runs``, ``instances/num_runs`` per instance, each padded to an even count.

Beside the shards, ``dataset.json`` records the class names, COCO category ids, the shard files and
their image counts, and the source (annotation file, its SHA-256) so an interrupted write resumes
only for the same dataset. Image ``i`` (in the file's order) goes to shard ``i % num_shards``, so
reading every shard round-robin gives back the file's order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from solo_lib.data.coco import CocoDataset
from solo_lib.data.coco_file import CategoryMap, read_json, resolve_inside
from solo_lib.data.images import ORIENTATION_TAG
from solo_lib.errors import ConfigError, DatasetError
from solo_lib.files import write_text_atomically

FORMAT_VERSION = 1
METADATA = "dataset.json"
PARTIAL = ".partial"  # a shard being written; renamed when complete

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/id": tf.io.FixedLenFeature([], tf.int64),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "instances/label": tf.io.RaggedFeature(tf.int64),
    "instances/iscrowd": tf.io.RaggedFeature(tf.int64),
    "instances/runs": tf.io.RaggedFeature(tf.int64),
}


@tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
def decode_image(encoded):
    """``(H, W, 3)`` uint8 from JPEG or PNG bytes, decoded as Pillow decodes them (see module doc)."""
    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
                   lambda: tf.io.decode_png(encoded, channels=3))


def mask_runs(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uncompressed COCO RLE of each mask, padded to an even number of runs.

    Args:
        masks: ``(N, H, W)`` binary masks.

    Returns:
        ``(runs (R,) int64, num_runs (N,) int64)``: every mask's run lengths over its pixels read
        column by column (as COCO's RLE, ``pycocotools.mask.encode``), alternately 0s and 1s from a
        run of 0s (possibly empty), with a zero-length run appended where the count is odd.
    """
    runs, counts = [], []
    for mask in np.asarray(masks, bool):
        flat = mask.T.reshape(-1)  # column-major, as COCO's RLE
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        lengths = np.diff(np.concatenate([[0], edges, [flat.size]]))
        if flat.size and flat[0]:
            lengths = np.concatenate([[0], lengths])
        if lengths.size % 2:
            lengths = np.concatenate([lengths, [0]])
        runs.append(lengths)
        counts.append(lengths.size)
    return (np.concatenate(runs).astype(np.int64) if runs else np.zeros(0, np.int64)), np.asarray(counts, np.int64)


def masks_from_runs(runs, num_masks, height, width):
    """In-graph inverse of :func:`mask_runs`: the masks and their boxes, from the padded runs.

    Run ``j`` of the concatenated list holds 1s exactly when ``j`` is odd (every mask has an even
    number of runs), so ``tf.ragged.range`` over the odd runs lists every pixel set, as
    ``n * H * W + x * H + y`` (column-major within each mask). The masks are one scatter of
    those pixels into zeros (row-major, no transpose) and the boxes their per-mask minima and
    maxima: the work grows with the runs and the pixels set, not with ``N * H * W`` (nor with the
    longest run, as ``tf.repeat`` of alternating 0s and 1s would).

    Returns:
        ``masks (N, H, W)`` uint8 and ``boxes (N, 4)`` float32 ``[x0, y0, x1, y1]``, right and
        bottom exclusive, ``[0, 0, 0, 0]`` for an empty mask (as ``coco.boxes_from_masks``).
    """
    pixels = height * width
    check = tf.debugging.assert_equal(
        tf.reduce_sum(runs), num_masks * pixels, message="TFRecord instance runs do not add up to N*height*width: "
                                                         "a damaged shard; convert again (to-tfrecord --overwrite)")
    with tf.control_dependencies([check]):
        ends = tf.math.cumsum(runs)
    on = tf.ragged.range(ends[::2], ends[1::2]).flat_values  # run 2k+1 goes from end of run 2k to its own end
    instance, column, row = on // pixels, on % pixels // height, on % height
    flat = tf.scatter_nd(((instance * height + row) * width + column)[:, None], tf.ones_like(on, tf.uint8),
                         tf.reshape(num_masks * pixels, [1]))
    masks = tf.reshape(flat, tf.stack([num_masks, height, width]))
    n = tf.cast(num_masks, tf.int32)
    x0, y0 = tf.math.unsorted_segment_min(column, instance, n), tf.math.unsorted_segment_min(row, instance, n)
    x1, y1 = tf.math.unsorted_segment_max(column, instance, n) + 1, tf.math.unsorted_segment_max(row, instance, n) + 1
    boxes = tf.stack([x0, y0, x1, y1], axis=1)  # an empty mask: min = dtype max > max = dtype min
    return masks, tf.cast(tf.where((x1 > x0)[:, None], boxes, 0), tf.float32)


def parse_example(serialized) -> dict:
    """One serialized example -> a sample with the signature of ``pipeline.SAMPLE_SIGNATURE``."""
    f = tf.io.parse_single_example(serialized, FEATURES)
    height, width = f["image/height"], f["image/width"]
    image = decode_image(f["image/encoded"])
    check = tf.debugging.assert_equal(tf.shape(image, tf.int64)[:2], tf.stack([height, width]),
                                      message="a TFRecord image differs from its recorded size")
    with tf.control_dependencies([check]):
        image = tf.identity(image)
    masks, boxes = masks_from_runs(f["instances/runs"], tf.size(f["instances/label"], tf.int64), height, width)
    return {"image": image, "masks": masks, "labels": tf.cast(f["instances/label"], tf.int32), "boxes": boxes,
            "iscrowd": f["instances/iscrowd"] > 0, "image_id": f["image/id"]}


class ShardedDataset:
    """TFRecord shards written by :func:`write_tfrecords`, opened from their folder.

    Attributes:
        folder: the folder of the shards and ``dataset.json``.
        annotation_file: its ``dataset.json`` (named in messages, as ``CocoDataset.annotation_file``).
        categories: the :class:`~solo_lib.data.coco_file.CategoryMap` of the source dataset.
        files: the shard files, in shard order.

    Raises:
        DatasetError: ``dataset.json`` is missing, damaged or of another format version, or a shard
            file is missing (an interrupted write: run it again to finish it).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.annotation_file = self.folder / METADATA
        if not self.annotation_file.is_file():
            raise DatasetError(f"{self.annotation_file}: not found; {self.folder} holds no dataset written by "
                               f"to-tfrecord: write one with python -m solo_lib to-tfrecord --out {self.folder} ...")
        meta = read_json(self.annotation_file, "TFRecord metadata file")
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            found = meta.get("format_version") if isinstance(meta, dict) else None
            raise DatasetError(f"{self.annotation_file}: TFRecord format version {found!r}, this solo_lib reads "
                               f"version {FORMAT_VERSION}; convert the dataset again (to-tfrecord --overwrite)")
        missing = [key for key in ("class_names", "coco_category_ids", "num_images", "shards") if key not in meta]
        if missing:
            raise DatasetError(f"{self.annotation_file}: lacks {missing}; it was not written by to-tfrecord, or was "
                               "edited: convert the dataset again (to-tfrecord --overwrite)")
        self.metadata = meta
        self.categories = CategoryMap(tuple(meta["coco_category_ids"]), tuple(meta["class_names"]))
        self.files = [self.folder / shard["file"] for shard in meta["shards"]]
        missing = [f for f in self.files if not f.is_file()]
        if missing:
            raise DatasetError(f"{missing[0]}: shard missing ({len(missing)} of {len(self.files)}); the conversion was "
                               "interrupted: run to-tfrecord again with the same options to finish it")

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.categories.names

    @property
    def num_classes(self) -> int:
        return self.categories.num_classes

    def __len__(self) -> int:
        return int(self.metadata["num_images"])

    def source(self, input_context: tf.distribute.InputContext | None = None, *, shuffle_files: bool = False,
               seed: int = 0, cycle_length: int | None = None) -> tf.data.Dataset:
        """Samples read from the shards, with the signature of ``pipeline.SAMPLE_SIGNATURE``.

        Args:
            input_context: with ``tf.distribute``, this input pipeline's context: it reads shards
                ``input_pipeline_id``, ``input_pipeline_id + num_input_pipelines``, ... only, so
                workers read disjoint parts (auto-sharding is then turned off).
            shuffle_files: read the shard files in a seeded random order, new every pass.
            seed: the seed of that order.
            cycle_length: shards read at once; default all of this pipeline's, which (without
                ``shuffle_files``) gives back the annotation file's order of images.

        Raises:
            ConfigError: more input pipelines than shards.
        """
        files = [str(f) for f in self.files]
        if input_context is not None:
            count, index = input_context.num_input_pipelines, input_context.input_pipeline_id
            if count > len(files):
                raise ConfigError(f"{self.annotation_file}: {len(files)} shards cannot feed {count} input pipelines "
                                  f"(workers); convert with at least {count} shards (to-tfrecord --shards)")
            files = files[index::count]
        ds = tf.data.Dataset.from_tensor_slices(files)
        if shuffle_files:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=cycle_length or len(files), block_length=1,
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if input_context is not None:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            ds = ds.with_options(options)
        return ds


# -- writing --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WriteSummary:
    """What :func:`write_tfrecords` did: the dataset written, shards written now and kept from an
    earlier run, and how many of the images written now were stored as re-encoded PNG."""

    dataset: ShardedDataset
    shards_written: int
    shards_kept: int
    images_written: int
    images_as_png: int


def shard_names(stem: str, num_shards: int) -> list[str]:
    """``STEM-00000-of-00004.tfrecord``, ... (the annotation file's stem names the shards)."""
    return [f"{stem}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _metadata(dataset: CocoDataset, num_shards: int) -> dict:
    ids = dataset.image_ids
    return {"format": "solo_lib COCO instances as TFRecord", "format_version": FORMAT_VERSION,
            "source": {"annotation_file": str(dataset.annotation_file.resolve()),
                       "annotation_sha256": _sha256(dataset.annotation_file),
                       "image_dir": str(dataset.image_dir.resolve()),
                       "image_ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest()},
            "class_names": list(dataset.class_names), "coco_category_ids": list(dataset.categories.coco_ids),
            "num_images": len(ids),
            "shards": [{"file": name, "images": len(ids[i::num_shards])}
                       for i, name in enumerate(shard_names(dataset.annotation_file.stem, num_shards))]}


def encoded_image(path: Path, pixels: np.ndarray) -> tuple[bytes, bool]:
    """The bytes to store for an image whose pixels (``load_rgb_image``) are ``pixels``.

    Returns:
        ``(bytes, as_png)``: the file as it is when it is an 8-bit RGB JPEG or PNG with no EXIF
        rotation that :func:`decode_image` decodes to exactly ``pixels`` (checked here, so the
        TFRecord never holds other pixels than ``CocoDataset`` reads), else a lossless PNG of ``pixels``.
    """
    raw = path.read_bytes()
    with Image.open(io.BytesIO(raw)) as img:
        as_is = img.format in ("JPEG", "PNG") and img.mode == "RGB" and img.getexif().get(ORIENTATION_TAG, 1) == 1
    if as_is and np.array_equal(decode_image(tf.constant(raw)).numpy(), pixels):
        return raw, False
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue(), True


def _int64s(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def image_example(dataset: CocoDataset, image_id: int) -> tuple[tf.train.Example, bool]:
    """The example of one image (see the module doc) and whether its image was re-encoded as PNG.

    Raises:
        DatasetError: the image cannot be read or differs in size from its record.
    """
    sample = dataset.sample(image_id)  # the same masks, labels and pixels as training reads
    info = dataset.image_info(image_id)
    where = f"{dataset.annotation_file}: image id {image_id}"
    path = resolve_inside(dataset.image_dir, info["file_name"], source=where)
    encoded, as_png = encoded_image(path, sample.image)
    runs, num_runs = mask_runs(sample.masks)
    height, width = sample.image.shape[:2]
    feature = {"image/encoded": _bytes(encoded), "image/id": _int64s([image_id]), "image/height": _int64s([height]),
               "image/width": _int64s([width]), "image/file_name": _bytes(info["file_name"].encode("utf-8")),
               "instances/annotation_id": _int64s(sample.annotation_ids), "instances/label": _int64s(sample.labels),
               "instances/iscrowd": _int64s(sample.iscrowd), "instances/runs": _int64s(runs),
               "instances/num_runs": _int64s(num_runs)}
    return tf.train.Example(features=tf.train.Features(feature=feature)), as_png


def _difference(previous, meta: dict) -> str:
    """What makes an existing ``dataset.json`` another conversion than ``meta``, in words."""
    if not isinstance(previous, dict) or not isinstance(previous.get("source"), dict):
        return "no conversion this version of solo_lib wrote"
    old = previous["source"]
    for key, what in (("annotation_file", "annotation file"), ("image_dir", "image folder"),
                      ("annotation_sha256", "content of the annotation file"),
                      ("image_ids_sha256", "selection of images")):
        if old.get(key) != meta["source"][key]:
            return f"another {what} ({old.get(key)})" if key in ("annotation_file", "image_dir") else f"another {what}"
    if len(previous.get("shards", [])) != len(meta["shards"]):
        return f"{len(previous.get('shards', []))} shards, not {len(meta['shards'])}"
    return "another conversion (another format version or other classes)"


def _prepare_folder(out: Path, meta: dict, overwrite: bool) -> None:
    """Refuses a folder holding other shards (unless ``overwrite``: then deletes every shard), writes
    ``dataset.json`` (atomically) and deletes partial shards of an interrupted run."""
    ours = {shard["file"] for shard in meta["shards"]}
    shards = sorted(p for p in out.iterdir() if p.name.endswith((".tfrecord", ".tfrecord" + PARTIAL)))
    previous = None
    if (out / METADATA).exists():
        try:
            previous = json.loads((out / METADATA).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = "unreadable"
    if previous is not None and previous != meta:
        reason = f"its {METADATA} describes {_difference(previous, meta)}"
    else:
        foreign = [p.name for p in shards if p.name.removesuffix(PARTIAL) not in ours or previous is None]
        reason = f"{foreign[0]} is not a shard of this conversion" if foreign else None
    if reason and not overwrite:
        raise DatasetError(f"{out}: {reason}; choose an empty --out folder, or add --overwrite to delete its "
                           f"*.tfrecord files and {METADATA} first")
    if overwrite:  # start afresh, even over complete shards of this same conversion
        for path in [*shards, out / METADATA]:
            path.unlink(missing_ok=True)
    write_text_atomically(out / METADATA, json.dumps(meta, indent=1) + "\n")
    for path in out.glob("*.tfrecord" + PARTIAL):
        path.unlink()  # a shard an interrupted run did not finish: written again below


def write_tfrecords(dataset: CocoDataset, out_dir: str | os.PathLike, num_shards: int, *, progress: bool = True,
                    overwrite: bool = False) -> WriteSummary:
    """Writes ``dataset`` as ``num_shards`` TFRecord files plus ``dataset.json`` in ``out_dir``.

    Each shard is written under a temporary name and renamed when complete, so a shard file is
    always whole. Run again after an interruption, it keeps the complete shards and writes the
    rest, when ``dataset.json`` shows the same dataset and shard count.

    Args:
        dataset: the images and annotations (cleaned as ``CocoDataset`` cleans them).
        out_dir: the folder (created if needed).
        num_shards: files to spread the images over (image ``i`` to shard ``i % num_shards``);
            at least the number of workers (or input pipelines) that will read them.
        progress: show a tqdm bar over the images (``TQDM_DISABLE`` silences it).
        overwrite: first delete the ``*.tfrecord`` files and ``dataset.json`` in ``out_dir`` (of
            this dataset or another), and write every shard again.

    Raises:
        ConfigError: ``num_shards`` is not in ``[1, len(dataset)]``, or ``out_dir`` is a file.
        DatasetError: ``out_dir`` holds other shards (without ``overwrite``), or an image cannot be read.
    """
    from tqdm.auto import tqdm

    from solo_lib.evaluate import progress_disabled

    count = len(dataset)
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or not 1 <= num_shards <= count:
        raise ConfigError(f"{dataset.annotation_file}: its {count} images cannot be split into {num_shards!r} shards "
                          f"(--shards); choose an integer from 1 to {count}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give the folder to write the TFRecords to")
    out.mkdir(parents=True, exist_ok=True)
    meta = _metadata(dataset, num_shards)
    _prepare_folder(out, meta, overwrite)
    ids = dataset.image_ids
    todo = [i for i, shard in enumerate(meta["shards"]) if not (out / shard["file"]).is_file()]
    total = sum(meta["shards"][i]["images"] for i in todo)
    as_png = 0
    with tqdm(total=total, desc="to-tfrecord", unit="image", disable=not progress or progress_disabled()) as bar:
        for index in todo:
            final = out / meta["shards"][index]["file"]
            partial = final.with_name(final.name + PARTIAL)
            with tf.io.TFRecordWriter(str(partial)) as writer:
                for image_id in ids[index::num_shards]:
                    example, png = image_example(dataset, image_id)
                    writer.write(example.SerializeToString())
                    as_png += png
                    bar.update(1)
            os.replace(partial, final)
    return WriteSummary(ShardedDataset(out), len(todo), num_shards - len(todo), total, as_png)
