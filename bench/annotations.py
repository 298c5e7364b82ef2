"""Benchmark "annotations": opening a COCO train2017-sized annotation file, CocoDataset vs pycocotools.

Issue 19 asks that ``CocoDataset(annotation_file, image_dir, check_files=False)`` open a file the
size of COCO train2017 no slower than ``pycocotools.coco.COCO`` and in at most half its peak memory.

The file is synthetic (:func:`write_coco_file`, seeded, written into a temporary folder and deleted
afterwards): 118,287 images of COCO's usual sizes, 860,001 annotations, about 1% of them crowd
regions as compressed RLE, the rest polygons with COCO-like vertex counts and two-decimal
coordinates, 80 categories with COCO's non-contiguous ids. ``--quick`` writes 1/50 of that.

Each loader runs in a fresh worker subprocess (``python -m bench.annotations --worker LOADER FILE``),
so its peak resident memory (``VmHWM``, the whole process: interpreter, imports and the loaded
annotations) is its own. The worker imports its modules, reads the RSS (the imports' baseline),
then times the constructor alone with ``perf_counter`` (wall; ``process_time``, the CPU time, is
kept too: other work on the machine changes it less). Rounds alternate the two loaders (a, b, a,
b), so both see the same machine load; the figures are medians over the rounds (3; 1 with
``--quick``). ``python -m bench.annotations --generate PATH`` writes the file alone.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from bench.common import Result, Target, current_rss_mb, peak_rss_mb, run_worker, worker_reply

FULL = {"images": 118_287, "annotations": 860_001}  # COCO train2017 (instances_train2017.json)
QUICK_FRACTION = 50
LOADERS = ("solo_lib", "pycocotools")

# COCO 2017's 80 category ids (1..90 with gaps) and names.
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
COCO_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign parking_meter "
    "bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase frisbee "
    "skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard tennis_racket bottle "
    "wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake "
    "chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone microwave oven "
    "toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush").split()
LANDSCAPE_HEIGHTS = (480, 427, 426, 425, 424, 428, 360, 512, 383, 640)  # with width 640, COCO's most common
PORTRAIT_WIDTHS = (480, 427, 426, 425, 424, 428, 360, 512, 383)  # with height 640


def _image_sizes(count: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(heights, widths)``: 68% landscape 640 wide, 27% portrait 640 tall, 5% anything 200..640."""
    kind = rng.choice(3, count, p=[0.68, 0.27, 0.05])
    heights = np.where(kind == 0, rng.choice(LANDSCAPE_HEIGHTS, count), 640)
    widths = np.where(kind == 1, rng.choice(PORTRAIT_WIDTHS, count), 640)
    other = kind == 2
    heights[other], widths[other] = rng.integers(200, 641, (2, int(other.sum())))
    return heights, widths


def _polygons(image_h, image_w, rng):
    """Random star-shaped polygons, several per annotation now and then, two-decimal coordinates.

    Each annotation has 1 polygon (88%) or 2 or more (a geometric count), all around one centre;
    a polygon has ``max(3, lognormal)`` vertices (median 18, mean about 23), at evenly spaced
    angles with jitter (so it does not cross itself) and radii between 55% and 100% of the
    object's size, drawn log-uniformly from 4 px to 45% of the image's short side. Coordinates
    are clipped to the image and kept as integer hundredths. About 1 annotation in 2,000 gets a
    point just outside the image, and 1 in 5,000 an extra 2-point polygon, as real files have.

    Returns:
        ``(xy, vertices_per_polygon, polygons_per_annotation)``: ``(V, 2)`` int64 hundredths.
    """
    n = len(image_h)
    per_ann = 1 + (rng.random(n) < 0.12) * rng.geometric(0.5, n)
    ann_of_poly = np.repeat(np.arange(n), per_ann)
    verts = np.clip(np.rint(rng.lognormal(np.log(18.0), 0.7, len(ann_of_poly))), 3, 400).astype(np.int64)
    degenerate = rng.random(n) < 1 / 5000  # the last polygon of these annotations has 2 points
    verts[np.cumsum(per_ann)[degenerate] - 1] = 2
    short = np.minimum(image_h, image_w)
    size = np.exp(rng.uniform(np.log(4.0), np.log(0.45 * short)))[ann_of_poly]
    cx = (rng.uniform(0, 1, n) * image_w)[ann_of_poly] + rng.normal(0, 0.3, len(ann_of_poly)) * size
    cy = (rng.uniform(0, 1, n) * image_h)[ann_of_poly] + rng.normal(0, 0.3, len(ann_of_poly)) * size
    poly_of_vert = np.repeat(np.arange(len(verts)), verts)
    k = np.arange(len(poly_of_vert)) - np.repeat(np.cumsum(verts) - verts, verts)  # vertex index in its polygon
    angle = 2 * np.pi * (k + 0.8 * rng.random(len(k))) / verts[poly_of_vert]
    radius = size[poly_of_vert] * rng.uniform(0.55, 1.0, len(k))
    w, h = image_w[ann_of_poly][poly_of_vert], image_h[ann_of_poly][poly_of_vert]
    x = np.clip(cx[poly_of_vert] + radius * np.cos(angle), 0, w)
    y = np.clip(cy[poly_of_vert] + radius * np.sin(angle), 0, h)
    xy = np.rint(np.stack([x, y], 1) * 100).astype(np.int64)
    outside = np.flatnonzero(rng.random(n) < 1 / 2000)  # first vertex of the annotation: 0.5 px right of the image
    first_poly = np.cumsum(per_ann)[outside] - per_ann[outside]
    xy[(np.cumsum(verts) - verts)[first_poly], 0] = image_w[outside] * 100 + 50
    return xy, verts, per_ann


def _crowd_rle(h: int, w: int, rng, encode) -> tuple[dict, int, list]:
    """A crowd region as compressed RLE: columns ``x0..x1`` each filled over a smoothly varying
    run of rows. Returns ``(segmentation, area, bbox)``."""
    x0 = int(rng.integers(0, w // 2))
    x1 = int(rng.integers(x0 + 2, w + 1))
    cols = x1 - x0
    mid = h * rng.uniform(0.3, 0.7) + np.cumsum(rng.normal(0, 1.0, cols))
    half = h * rng.uniform(0.05, 0.3) * (0.8 + 0.2 * np.sin(np.linspace(0, 3, cols)))
    top = np.clip(np.rint(mid - half), 0, h - 1).astype(np.int64)
    bottom = np.clip(np.rint(mid + half), top + 1, h).astype(np.int64)
    gaps = np.empty(cols + 1, np.int64)  # zeros before each column's run (and after the last)
    gaps[0] = x0 * h + top[0]
    gaps[1:-1] = (h - bottom[:-1]) + top[1:]
    gaps[-1] = (h - bottom[-1]) + (w - x1) * h
    counts = np.empty(2 * cols + 1, np.int64)
    counts[0::2], counts[1::2] = gaps, bottom - top
    rle = encode({"counts": counts.tolist(), "size": [h, w]}, h, w)
    bbox = [float(x0), float(top.min()), float(cols), float(bottom.max() - top.min())]
    return {"counts": rle["counts"].decode("ascii"), "size": [h, w]}, int((bottom - top).sum()), bbox


def write_coco_file(path: Path, images: int, annotations: int, seed: int = 0) -> dict:
    """Writes a synthetic COCO instances file (see the module docstring); returns its counts.

    Text is made with lookup tables of the two-decimal coordinate strings (``repr`` of
    ``k / 100``, as ``json.dumps`` writes them), in chunks, into a temporary name that is renamed
    when complete. The full train2017 size takes a few tens of seconds.
    """
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    image_ids = rng.choice(581_929, images, replace=False) + 1
    heights, widths = _image_sizes(images, rng)
    weight = rng.gamma(0.9, size=images) * (rng.random(images) > 0.01)  # 1% of images have none
    image_of = rng.choice(images, annotations, p=weight / weight.sum())
    crowd = rng.random(annotations) < 0.01
    category = np.asarray(COCO_IDS)[np.minimum(rng.geometric(0.06, annotations) - 1, 79)]
    ann_ids = rng.choice(2_300_000, annotations, replace=False) + 1
    ann_ids[crowd] = 900_100_000_000 + np.arange(int(crowd.sum()))  # COCO's crowd ids are this large
    offset = 10_000  # hundredths: the table covers -100.00 .. 739.99
    table = [repr((k - offset) / 100) for k in range(84_000)]
    tmp = path.with_name(path.name + ".tmp")
    counts = {"images": images, "annotations": annotations, "crowd": int(crowd.sum()), "polygons": 0, "vertices": 0}
    with open(tmp, "w", encoding="utf-8") as f:
        f.write('{"info":{"description":"synthetic COCO-sized file (bench/annotations.py)","version":"1.0"},'
                '"licenses":[{"url":"http://creativecommons.org/licenses/by/2.0/","id":1,"name":"Attribution"}],'
                '"images":[')
        f.write(",".join(
            f'{{"license":1,"file_name":"{i:012d}.jpg","coco_url":"http://images.cocodataset.org/train2017/'
            f'{i:012d}.jpg","height":{h},"width":{w},"date_captured":"2013-11-14 11:18:45",'
            f'"flickr_url":"http://farm9.staticflickr.com/8186/{i}_4e622c8349_z.jpg","id":{i}}}'
            for i, h, w in zip(image_ids.tolist(), heights.tolist(), widths.tolist())))
        f.write('],"annotations":[')
        for start in range(0, annotations, 50_000):
            stop = min(start + 50_000, annotations)
            idx = np.arange(start, stop)
            poly_idx = idx[~crowd[start:stop]]
            xy, verts, per_ann = _polygons(heights[image_of[poly_idx]], widths[image_of[poly_idx]], rng)
            counts["polygons"] += len(verts)
            counts["vertices"] += len(xy)
            strings = list(map(table.__getitem__, (xy.reshape(-1) + offset).tolist()))
            ends = np.cumsum(2 * verts).tolist()
            polys = [",".join(strings[a:b]) for a, b in zip([0] + ends[:-1], ends)]
            # area (shoelace) and box per annotation, in pixels
            x, y = xy[:, 0] / 100, xy[:, 1] / 100
            first = np.cumsum(verts) - verts
            nxt = np.arange(len(x)) + 1
            nxt[np.cumsum(verts) - 1] = first
            cross = np.add.reduceat(x * y[nxt] - y * x[nxt], first)
            ann_first = np.cumsum(per_ann) - per_ann
            area = np.add.reduceat(np.abs(cross) / 2, ann_first)
            vert_first = first[ann_first]
            lo_x, lo_y = np.minimum.reduceat(x, vert_first), np.minimum.reduceat(y, vert_first)
            hi_x, hi_y = np.maximum.reduceat(x, vert_first), np.maximum.reduceat(y, vert_first)
            poly_rows = iter(zip(per_ann.tolist(), ann_first.tolist(), area.tolist(), lo_x.tolist(), lo_y.tolist(),
                                 (hi_x - lo_x).tolist(), (hi_y - lo_y).tolist()))
            records = []
            for i in idx.tolist():
                img = int(image_of[i])
                if crowd[i]:
                    segm, area_i, bbox = _crowd_rle(int(heights[img]), int(widths[img]), rng, mask_utils.frPyObjects)
                    segm_text, iscrowd = json.dumps(segm, separators=(",", ":")), 1
                else:
                    n, p0, area_i, bx, by, bw, bh = next(poly_rows)
                    segm_text, iscrowd = "[[" + "],[".join(polys[p0:p0 + n]) + "]]", 0
                    bbox = [round(bx, 2), round(by, 2), round(bw, 2), round(bh, 2)]
                records.append(f'{{"segmentation":{segm_text},"area":{area_i!r},"iscrowd":{iscrowd},'
                               f'"image_id":{image_ids[img]},"bbox":{json.dumps(bbox)},'
                               f'"category_id":{category[i]},"id":{ann_ids[i]}}}')
            f.write(("," if start else "") + ",".join(records))
        f.write('],"categories":[')
        f.write(",".join(json.dumps({"supercategory": "thing", "id": i, "name": name.replace("_", " ")})
                         for i, name in zip(COCO_IDS, COCO_NAMES)))
        f.write("]}")
    os.replace(tmp, path)
    counts["mb"] = path.stat().st_size / 1e6
    return counts


def worker(loader: str, annotation_file: str) -> dict:
    """Opens ``annotation_file`` with one loader in this (fresh) process; returns time and memory."""
    if loader == "solo_lib":
        from solo_lib.data.coco import CocoDataset

        def load():
            return CocoDataset(annotation_file, Path(annotation_file).parent / "images", check_files=False)
    else:
        from pycocotools.coco import COCO

        def load():
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
                return COCO(annotation_file)
    baseline = current_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    images = len(loaded) if loader == "solo_lib" else len(loaded.imgs)
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline,
            "rss_after_mb": current_rss_mb(), "images": images, "warnings": [str(w.message)[-120:] for w in caught]}


def run(ctx) -> list[Result]:
    fraction = QUICK_FRACTION if ctx.quick else 1
    images, annotations = FULL["images"] // fraction, FULL["annotations"] // fraction
    rounds = 1 if ctx.quick else 3
    with tempfile.TemporaryDirectory(prefix="coco_bench_") as folder:
        path = Path(folder) / "instances_synthetic.json"
        start = time.perf_counter()
        made = write_coco_file(path, images, annotations)
        made["generate_s"] = time.perf_counter() - start
        print(f"  wrote {made['mb']:.0f} MB in {made['generate_s']:.0f} s", flush=True)
        runs = {loader: [] for loader in LOADERS}
        for _ in range(rounds):
            for loader in LOADERS:
                runs[loader].append(run_worker("bench.annotations", [loader, str(path)]))
    med = {loader: {key: statistics.median(r[key] for r in runs[loader])
                    for key in ("seconds", "cpu_seconds", "peak_rss_mb", "baseline_rss_mb")} for loader in LOADERS}
    ours, ref = med["solo_lib"], med["pycocotools"]
    inputs = (f"synthetic COCO file{'' if fraction == 1 else f' (1/{fraction} of train2017)'}: {images:,} images, "
              f"{annotations:,} annotations ({made['crowd']:,} crowd RLE), {made['vertices']:,} polygon vertices, "
              f"{made['mb']:.0f} MB")
    details = {"file": made, "rounds": runs, "method": "fresh subprocess per loader and round; constructor timed "
               "with perf_counter; peak = VmHWM of the whole process (imports included)"}
    time_ratio, rss_ratio = ours["seconds"] / ref["seconds"], ours["peak_rss_mb"] / ref["peak_rss_mb"]
    return [
        Result("annotations", "open time, CocoDataset vs pycocotools", inputs,
               f"{ours['seconds']:.1f} s vs {ref['seconds']:.1f} s ({time_ratio:.2f}x)",
               {"solo_lib_s": ours["seconds"], "pycocotools_s": ref["seconds"], "time_ratio": time_ratio,
                "solo_lib_cpu_s": ours["cpu_seconds"], "pycocotools_cpu_s": ref["cpu_seconds"]},
               Target("time_ratio", "<=", 1.0, "time <= pycocotools"), details=details),
        Result("annotations", "peak RSS, CocoDataset vs pycocotools", inputs,
               f"{ours['peak_rss_mb']:.0f} MB vs {ref['peak_rss_mb']:.0f} MB ({rss_ratio:.2f}x; imports "
               f"{ours['baseline_rss_mb']:.0f} / {ref['baseline_rss_mb']:.0f} MB)",
               {"solo_lib_peak_rss_mb": ours["peak_rss_mb"], "pycocotools_peak_rss_mb": ref["peak_rss_mb"],
                "solo_lib_baseline_rss_mb": ours["baseline_rss_mb"],
                "pycocotools_baseline_rss_mb": ref["baseline_rss_mb"], "rss_ratio": rss_ratio},
               Target("rss_ratio", "<=", 0.5, "peak RSS <= 0.5 x pycocotools"), details=details),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="annotation-loading worker (run by python -m bench annotations), "
                                     "or --generate PATH [--fraction N] to write the synthetic file only")
    parser.add_argument("--worker", nargs=2, metavar=("LOADER", "FILE"))
    parser.add_argument("--generate", type=Path, metavar="PATH")
    parser.add_argument("--fraction", type=int, default=1, help="with --generate: 1/N of train2017's size")
    args = parser.parse_args(argv)
    if args.generate:
        start = time.perf_counter()
        made = write_coco_file(args.generate, FULL["images"] // args.fraction, FULL["annotations"] // args.fraction)
        print(json.dumps({**made, "seconds": round(time.perf_counter() - start, 1)}))
        return 0
    if not args.worker or args.worker[0] not in LOADERS:
        parser.error(f"--worker LOADER FILE with LOADER in {LOADERS}, or --generate PATH")
    worker_reply(worker(*args.worker))
    return 0


if __name__ == "__main__":
    sys.exit(main())
