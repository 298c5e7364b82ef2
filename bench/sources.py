"""Benchmark: the training input pipeline's images/s at the paper's scale, per source, on 1 and 2 cores.

Data: a COCO-like synthetic dataset generated here (seeded, in a temporary folder, never
committed): 640 x 480 JPEGs (quality 90, a shaded background with noise) with 7 polygon
instances each (star-shaped polygons of 20-40 vertices, ``sqrt(area)`` log-uniform in 24-240 px,
5 classes with COCO-style non-contiguous ids), converted to TFRecords (8 shards) with
``solo_lib.data.tfrecord.write_tfrecords``.

Pipeline: ``pipeline.training_dataset`` with the paper preset (``SOLOConfig.paper_r50``, image scale
(1333, 800): every image enlarged to a short side of 800, flipped, padded to its canvas, SOLO
targets built), batch 2, fed by ``streaming`` (``pipeline.streaming_source``: one Python generator
decodes and rasterises), ``in-memory`` (``pipeline.in_memory_source``, decoded before timing) or
``tfrecord`` (``ShardedDataset.source()``: parallel interleave over shards, parse, decode and
rasterise in-graph). The two non-cached sources are also timed alone (``source alone``: decode,
rasterise, boxes, no pipeline) to tell a source's own speed and scaling from the pipeline's.

Cores: each measurement runs in its own worker subprocess pinned to 1 or 2 cores
(``os.sched_setaffinity``) before TensorFlow starts, with TensorFlow's intra- and inter-op threads
and ``tf.data``'s private thread pool set to the same count. After a warm-up, each timed run pulls
a fixed number of batches; images/s = images / median run. Every worker runs ``rounds`` times, in
alternation with the others, and the round with the most images/s is kept (the one least slowed
by other work on a shared machine); each worker also reports the CPU time it used per image,
how many of its cores other processes kept busy meanwhile (``/proc/stat``), and the time spent
in target building (``image_targets``, a ``tf.numpy_function`` that holds Python's GIL), which
would cap the scaling if it approached one core's worth.

Targets (issue 19): the TFRecord pipeline scales by at least 1.7x from 1 to 2 cores, and per
core (images/s over the cores used, so on equal cores the ratio of the rates) it is at least
twice the streaming source on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.common import Result, Target, Timing, apply_env_defaults, error_result, run_worker, worker_reply

IMAGE_SIZE = (480, 640)  # (H, W), COCO's most common size
INSTANCES = 7
CATEGORY_IDS = (1, 3, 7, 18, 44)
SHARDS = 8
BATCH = 2
CORES = (1, 2)
SOURCES = {"streaming": "streaming", "in_memory": "in-memory", "tfrecord": "tfrecord",
           "streaming_source": "streaming, source alone", "tfrecord_source": "tfrecord, source alone"}
ALONE = ("streaming_source", "tfrecord_source")  # no pipeline: one image per element
DISTURBED = 0.2  # cores that other processes kept busy during a measurement, above which the figure says so


def make_dataset(folder: Path, count: int, seed: int = 0) -> Path:
    """Writes ``count`` seeded synthetic JPEGs and their COCO file into ``folder``; returns the file."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    height, width = IMAGE_SIZE
    images, annotations = [], []
    yy, xx = np.mgrid[:height, :width]
    for image_id in range(1, count + 1):
        top, bottom = rng.uniform(40, 215, (2, 3))
        shade = top + (bottom - top) * (yy / height)[..., None] + 4.0 * (xx / width)[..., None]
        pixels = np.clip(shade + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
        picture = Image.fromarray(pixels)
        draw = ImageDraw.Draw(picture)
        for _ in range(INSTANCES):
            size = np.exp(rng.uniform(np.log(24), np.log(240)))
            vertices = int(rng.integers(20, 41))
            angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
            radii = 0.5 * size * rng.uniform(0.6, 1.0, vertices)
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            xy = np.stack([np.clip(cx + radii * np.cos(angles), 0, width),
                           np.clip(cy + radii * np.sin(angles), 0, height)], axis=1).round(2)
            draw.polygon([tuple(p) for p in xy], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0,
                                "category_id": int(rng.choice(CATEGORY_IDS)),
                                "segmentation": [xy.reshape(-1).tolist()]})
        name = f"{image_id:06d}.jpg"
        picture.save(folder / name, quality=90)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
    categories = [{"id": c, "name": f"class_{c}"} for c in CATEGORY_IDS]
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _pin(cores: int):
    """Pins this process to ``cores`` cores and sizes TensorFlow's thread pools to match."""
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    return options


def _busy_seconds(cores) -> float:
    """CPU seconds spent so far, by any process, on these cores (``/proc/stat``: all but idle and iowait)."""
    tick = os.sysconf("SC_CLK_TCK")
    busy = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                ticks = [int(v) for v in values[:8]]
                busy += sum(ticks) - ticks[3] - ticks[4]
    return busy / tick


def _build(source: str, folder: Path, targets_time: list):
    """``(dataset, images per element)`` for one source; target building adds its seconds to ``targets_time``."""
    from solo_lib.config import SOLOConfig
    from solo_lib.data import pipeline
    from solo_lib.data.coco import CocoDataset
    from solo_lib.data.tfrecord import ShardedDataset

    if source.startswith("tfrecord"):
        sharded = ShardedDataset(folder / "tfrecord")
        samples, num_classes = sharded.source(), sharded.num_classes
    else:
        dataset = CocoDataset(folder / "instances.json", folder)
        samples = (pipeline.in_memory_source if source == "in_memory" else pipeline.streaming_source)(dataset)
        num_classes = dataset.num_classes
    if source in ALONE:
        return samples.repeat(), 1
    build_targets = pipeline._targets_numpy

    def timed_targets(*args):  # the same work, timed (this worker process only)
        start = time.perf_counter()
        out = build_targets(*args)
        targets_time.append(time.perf_counter() - start)
        return out

    pipeline._targets_numpy = timed_targets
    return pipeline.training_dataset(samples, SOLOConfig.paper_r50(num_classes), batch_size=BATCH), BATCH


def worker(source: str, cores: int, folder: Path, warmup: int, batches: int, timed: int) -> dict:
    """Images/s of one source on ``cores`` cores (runs in its own pinned process)."""
    options = _pin(cores)
    targets_time = []
    ds, per_element = _build(source, folder, targets_time)
    iterator = iter(ds.with_options(options))
    for _ in range(warmup):
        next(iterator)
    pinned = os.sched_getaffinity(0)
    del targets_time[:]
    cpu, busy, runs = time.process_time(), _busy_seconds(pinned), []
    for _ in range(timed):
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        runs.append(time.perf_counter() - start)
    cpu, busy, wall = time.process_time() - cpu, _busy_seconds(pinned) - busy, sum(runs)
    timing = Timing(warmup, runs)
    images = batches * per_element
    return {"images_per_s": images / timing.median, "timing": timing.to_dict(per=images),
            "cpu_s_per_image": cpu / (images * timed), "cores_used": cpu / wall,
            "cores_busy_with_other_work": max(0.0, busy - cpu) / wall,
            "targets_s_per_image": sum(targets_time) / (images * timed) if targets_time else None,
            "targets_cores": sum(targets_time) / wall, "cores": sorted(pinned),
            "load_average": list(os.getloadavg())}


def run(ctx) -> list[Result]:
    from solo_lib.data.coco import CocoDataset
    from solo_lib.data.tfrecord import write_tfrecords

    count, rounds = (16, 1) if ctx.quick else (64, 2)
    with tempfile.TemporaryDirectory(prefix="bench_sources_") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        annotations = make_dataset(folder, count)
        generate_s = time.perf_counter() - start
        start = time.perf_counter()
        summary = write_tfrecords(CocoDataset(annotations, folder), folder / "tfrecord", SHARDS, progress=False)
        convert_s = time.perf_counter() - start
        replies = {}
        for round_ in range(rounds):
            for source in SOURCES:
                for cores in CORES:
                    # About 2-4 s per run on an idle machine; the sources alone are ~10x faster.
                    batches = (2 if ctx.quick else 8) * (8 if source in ALONE else 1) * cores
                    args = [source, str(cores), str(folder), "--warmup", str(2 if ctx.quick else 4),
                            "--batches", str(batches), "--repeats", str(2 if ctx.quick else 3)]
                    print(f"  [worker: {source}, {cores} core(s), round {round_ + 1} of {rounds}]", flush=True)
                    try:
                        reply = run_worker("bench.sources", args)
                    except Exception as error:
                        reply = error
                    replies.setdefault((source, cores), []).append(reply)
    results = {}
    for key, tries in replies.items():
        good = [r for r in tries if not isinstance(r, Exception)]
        results[key] = dict(max(good, key=lambda r: r["images_per_s"]), rounds=good) if good else tries[0]
    return rows_for(results, count, {"generate_s": generate_s, "convert_s": convert_s,
                                     "images_as_png": summary.images_as_png, "shards": SHARDS})


def rows_for(results: dict, count: int, conversion: dict) -> list[Result]:
    """One row per source (both core counts and the scaling ratio), then the per-core comparisons.

    Args:
        results: ``(source, cores)`` -> a worker's reply (the best round), or the exception it raised.
        count: images in the synthetic dataset.
        conversion: details of the TFRecord conversion, kept in the ``tfrecord`` row.
    """
    inputs = (f"{count} synthetic 640x480 JPEGs, {INSTANCES} polygon instances each (20-40 vertices); paper preset, "
              f"image scale (1333, 800), batch {BATCH}; pinned to 1 and 2 cores")
    alone = (f"{count} synthetic 640x480 JPEGs, {INSTANCES} polygon instances each; the source alone: decode, "
             f"rasterise, boxes; pinned to 1 and 2 cores")
    rows, rate = [], {}
    for source, label in SOURCES.items():
        one, two = results.get((source, 1)), results.get((source, 2))
        failed = next((r for r in (one, two) if isinstance(r, Exception) or r is None), False)
        if failed is not False:
            rows.append(error_result("sources", failed or RuntimeError("not measured"), label))
            continue
        rate[source] = (one["images_per_s"], two["images_per_s"])
        scaling = two["images_per_s"] / one["images_per_s"]
        metrics = {"images_per_s_1_core": one["images_per_s"], "images_per_s_2_cores": two["images_per_s"],
                   "scaling_2_over_1": scaling, "cpu_ms_per_image_1_core": 1000 * one["cpu_s_per_image"],
                   "cpu_ms_per_image_2_cores": 1000 * two["cpu_s_per_image"],
                   "other_work_cores_1_core": one["cores_busy_with_other_work"],
                   "other_work_cores_2_cores": two["cores_busy_with_other_work"]}
        if two.get("targets_s_per_image") is not None:
            metrics["targets_ms_per_image"] = 1000 * one["targets_s_per_image"]
            metrics["targets_cores_2_cores"] = two["targets_cores"]
        target = Target("scaling_2_over_1", ">", 1.7, ">= 1.7x from 1 to 2 cores") if source == "tfrecord" else None
        details = {"workers": {"1": one, "2": two}, **(conversion if source == "tfrecord" else {})}
        others = max(one["cores_busy_with_other_work"], two["cores_busy_with_other_work"])
        disturbed = f"; DISTURBED: other work on {others:.1f} of its cores" if others > DISTURBED else ""
        rows.append(Result("sources", label, alone if source in ALONE else inputs,
                           f"{one['images_per_s']:.1f} img/s on 1 core, {two['images_per_s']:.1f} on 2 "
                           f"({scaling:.2f}x){disturbed}", metrics, target, timing=two["timing"], details=details))
    for a, b, label in (("tfrecord", "streaming", "tfrecord vs streaming, per core"),
                        ("tfrecord_source", "streaming_source", "sources alone: tfrecord vs streaming, per core")):
        if a in rate and b in rate:
            ratio = [rate[a][k] / rate[b][k] for k in range(2)]
            rows.append(Result("sources", label, inputs if a == "tfrecord" else alone,
                               f"{ratio[0]:.2f}x on 1 core, {ratio[1]:.2f}x on 2",
                               {"ratio_1_core": ratio[0], "ratio_2_cores": ratio[1]},
                               Target("ratio_2_cores", ">", 2.0, ">= 2x streaming per core") if a == "tfrecord"
                               else None))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="input-source worker (run by python -m bench)")
    parser.add_argument("--worker", nargs=3, metavar=("SOURCE", "CORES", "FOLDER"), required=True)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    source, cores, folder = args.worker
    if source not in SOURCES:
        parser.error(f"unknown source {source!r}; one of {list(SOURCES)}")
    apply_env_defaults()
    worker_reply(worker(source, int(cores), Path(folder), args.warmup, args.batches, args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
