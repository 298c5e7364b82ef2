"""The benchmark suite (bench/) runs and writes well-formed results.

Functional only: no figure is compared with a target here (benchmarks never fail a build on a slow
machine; ``python -m bench`` reports targets met or missed).
"""

import json
import math
import os
import time

import numpy as np
import pytest

from bench.__main__ import format_table, main
from bench.common import Result, Target, measure, measure_pair, peak_rss_mb, random_blobs


def test_quick_targets_benchmark_writes_results_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["targets", "--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())

    machine = data["machine"]
    assert machine["cpu_count"] >= 1 and machine["cpu_model"]
    for name in ("python", "tensorflow", "keras", "numpy"):
        assert machine["versions"][name], name
    for key in ("date", "git_commit", "load_average_at_start", "env"):
        assert key in machine, key
    assert data["quick"] is True and data["selected"] == ["targets"]

    results = data["results"]
    assert [r["case"] for r in results] == ["paper preset, 4 instances", "paper preset, 20 instances"]
    for r in results:
        assert r["benchmark"] == "targets" and r["inputs"] and r["figure"]
        assert r["metrics"] and all(math.isfinite(v) and v > 0 for v in r["metrics"].values())
        assert r["target"]["metric"] in r["metrics"] and r["met"] in (True, False)
        timing = r["timing"]
        assert timing["repeats"] == len(timing["runs_s"]) >= 1
        assert 0 < timing["min_s"] <= timing["median_s"] <= timing["max_s"]
    assert "paper preset, 20 instances" in capsys.readouterr().out  # the printed table


def test_helpers():
    calls = []
    timing = measure(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(timing.runs) == 3 and timing.median >= 0
    assert peak_rss_mb() > 0

    order = []
    slow_a, fast_b, ratio = measure_pair(lambda: (order.append("a"), time.sleep(0.004)),
                                         lambda: (order.append("b"), time.sleep(0.001)), warmup=1, repeats=3)
    assert order == ["a", "b"] * 4  # alternated, the warm-up pair included
    assert len(slow_a.runs) == len(fast_b.runs) == 3 and ratio > 1.5  # a sleeps 4x longer than b

    target = Target("ms", "<=", 5.0, "<= 5 ms")
    fast = Result("demo", "fast", "n=1", "1 ms", {"ms": 1.0}, target)
    slow = Result("demo", "slow", "n=1", "9 ms", {"ms": 9.0}, target)
    failed = Result("demo", "failed", "n=1", "1 ms", {"ms": 1.0}, target, failed=True)
    untargeted = Result("demo", "info", "n=1", "2 ms", {"ms": 2.0})
    assert [r.met for r in (fast, slow, failed, untargeted)] == [True, False, False, None]
    table = format_table([fast, slow, untargeted]).splitlines()
    assert table[0].split(" | ")[-1] == "met" and [line.split()[-1] for line in table[2:]] == ["yes", "no", "-"]


def test_random_blobs_are_seeded_and_never_empty():
    a = random_blobs(6, 40, 60, np.random.default_rng(3), min_size=4, max_size=30)
    b = random_blobs(6, 40, 60, np.random.default_rng(3), min_size=4, max_size=30)
    assert a.shape == (6, 40, 60) and a.dtype == bool
    np.testing.assert_array_equal(a, b)
    assert (a.sum(axis=(1, 2)) > 0).all()


def test_profile_parser_on_a_traced_function(tmp_path):
    import tensorflow as tf

    from bench.xplane import CATEGORIES, category_of, op_events, read_xspace, summarize

    x, kernel, a = tf.ones((1, 16, 16, 4)), tf.ones((3, 3, 4, 8)), tf.ones((32, 32))

    @tf.function
    def f(x, kernel, a):
        y = tf.nn.conv2d(x, kernel, 1, "SAME")
        return tf.reduce_sum(tf.nn.relu(y)) + tf.reduce_sum(tf.matmul(tf.matmul(a, a), a))

    f(x, kernel, a)  # traced and compiled before the profile
    tf.profiler.experimental.start(str(tmp_path))
    for _ in range(2):
        f(x, kernel, a).numpy()
    tf.profiler.experimental.stop()
    events = op_events(read_xspace(tmp_path))

    by_category = {}
    for name, op_type, start, duration, exclusive in events:
        assert name and op_type and duration >= exclusive >= 0
        by_category.setdefault(category_of(op_type), []).append(duration)
    # two matmuls and one conv per call, whatever the kernels' names (MatMul or oneDNN's _MklMatMul)
    assert len(by_category["matmul/einsum"]) == 4 and len(by_category["conv forward"]) == 2
    assert all(d > 0 for d in by_category["matmul/einsum"] + by_category["conv forward"])

    summary = summarize(events, steps=2)
    assert list(summary["categories"]) == list(CATEGORIES)
    assert abs(sum(summary["categories"].values()) - 1.0) < 1e-9
    assert abs(sum(row["share"] for row in summary["op_types"]) - 1.0) < 1e-9
    assert 0 < summary["busy_s_per_step"] and 0 < summary["op_s_per_step"]


def test_profile_categories_and_scopes():
    from bench.xplane import category_of, scope_of

    assert category_of("_MklNativeConv2DBackpropFilterWithBias") == "conv backward"
    assert category_of("Conv2DBackpropInput") == "conv backward"
    assert category_of("_MklNativeFusedConv2D") == category_of("Conv2D") == "conv forward"
    assert category_of("_MklEinsum") == category_of("BatchMatMulV2") == "matmul/einsum"
    assert category_of("SquaredDifference") == category_of("Rsqrt") == category_of("ReluGrad") == "norm & elementwise"
    assert category_of("ResizeBilinearGrad") == category_of("Transpose") == "data movement"
    assert category_of("Mul", "optimizer") == category_of("AssignSubVariableOp") == "optimizer update"
    assert category_of("SomethingNew") == "other"

    grad = "gradient_tape/sol_ov2_1/head_1/kernel_tower_5/kernel_tower_conv1_1/convolution/Conv2DBackpropInput"
    assert scope_of(grad, "sol_ov2", "SGD") == ("head", "backward")
    assert scope_of("sol_ov2_1/backbone_1/tiny_c2_c5_1/stage0_gn0_1/Neg", "sol_ov2", "SGD") == ("backbone", "forward")
    assert scope_of("sgd/Mul_572", "sol_ov2", "SGD") == ("optimizer", "update")
    assert scope_of("einsum/Einsum", "sol_ov2", "SGD") == ("loss & top level", "forward")


def test_profile_scopes_of_checkpointed_replays():
    from bench.xplane import layer_parts, scope_of
    from solo_lib.config import SOLOConfig
    from solo_lib.model.solov2 import build_model

    model = build_model(SOLOConfig.tiny(4, remat=True), (64, 64))
    layers = layer_parts(model)
    # Op names seen in a traced checkpointed tiny step: replays are named after inner layers only.
    seen = {"gradient_tape/p2_block0_1/p2_block0_conv_1/convolution": "mask_feature",
            "gradient_tape/tiny_c2_c5_upto_stage0_relu1_1/stage0_gn0_1/moments": "backbone",
            "gradient_tape/output_p2_1/convolution/Conv2DBackpropFilter": "fpn",
            "gradient_tape/kernel_tower_5/kernel_tower_conv0_1/convolution": "head"}
    for name, part in seen.items():
        assert scope_of(name, model.name, "SGD", layers) == (part, "backward")
        assert scope_of(name, model.name, "SGD") == ("loss & top level", "backward")  # without the map
    assert scope_of("gradient_tape/einsum/Einsum", model.name, "SGD", layers) == ("loss & top level", "backward")


def test_profile_nested_op_events_are_counted_once():
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from bench.xplane import op_events

    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/host:CPU")
    for key, name, op_type in ((1, "outer:Foo", "Foo"), (2, "outer/inner:MatMul", "MatMul"),
                               (3, "ExecutorState::Process", ""), (4, "f:StatefulPartitionedCall",
                                                                   "StatefulPartitionedCall")):
        plane.event_metadata[key].id = key
        plane.event_metadata[key].name = name
        plane.event_metadata[key].display_name = op_type
    line = plane.lines.add(timestamp_ns=1)
    # runtime event 0-100 wrapping op Foo 10-60, which holds MatMul 20-50; MatMul 70-80 after it
    for key, offset, duration in ((3, 0, 100), (1, 10, 50), (2, 20, 30), (2, 70, 10), (4, 0, 100)):
        line.events.add(metadata_id=key, offset_ps=offset, duration_ps=duration)

    # (name, type, start ps on the plane's clock, duration, exclusive): Foo keeps 50 - 30 ps;
    # the runtime event and the function-call op are not counted
    assert op_events(space) == [("outer", "Foo", 1010, 50, 20), ("outer/inner", "MatMul", 1020, 30, 30),
                                ("outer/inner", "MatMul", 1070, 10, 10)]


def test_export_benchmark_times_every_runtime_on_the_same_work():
    # The tiny case in this process with two formats (all four take over a minute to export);
    # the paper cases and the other runtimes run the same code (python -m bench export).
    from bench.export import rows_for, worker

    data = worker("tiny", quick=True, formats=("saved_model", "tflite"))
    json.dumps(data)  # the worker's reply travels as JSON
    rows = rows_for(data)
    assert [r.case for r in rows] == ["tiny, Keras predict()", "tiny, SavedModel", "tiny, TFLite float32",
                                      "tiny, post-processing share", "tiny, forward pass efficiency"]
    assert all(r.benchmark == "export" and r.inputs and r.figure and not r.failed for r in rows)
    instances = rows[0].metrics["instances"]
    assert instances > 0  # the sample model finds objects on the validation image
    for r in rows[:3]:
        assert math.isfinite(r.metrics["ms"]) and r.metrics["ms"] > 0 and r.figure.endswith(("ms", "s)"))
        assert r.timing["repeats"] == len(r.timing["runs_s"]) == 3
        assert r.metrics["instances"] == instances
    for r in rows[1:3]:  # the exports: a file, its export time, the same instances as predict
        assert r.metrics["file_mb"] > 0.5 and r.metrics["export_s"] > 0 and r.metrics["load_s"] >= 0
        assert r.details["vs_predict"]["paired"] == instances and r.details["vs_predict"]["min_iou"] > 0.9
        assert r.details["export_peak_rss_mb"] > 0

    share, efficiency = rows[3], rows[4]
    assert 0 < share.metrics["postprocess_share"] < 1 and share.metrics["forward_ms"] > 0
    assert efficiency.target is None  # the >= 70% target is the paper preset's
    assert 0 < efficiency.metrics["efficiency"] < 2 and 0 < efficiency.metrics["efficiency_vs_matmul_peak_after"] < 2
    # The profiler's convolution FLOPs are the layers' analytic count (same layers, same shapes).
    flops = efficiency.details["flops"]
    assert flops["graph_by_op"]["Conv2D"] == flops["analytic_layers"] > 1e9

    # A runtime that failed is a row with its error text, not a missing row.
    data["runtimes"]["tflite"] = {"error": "ValueError: no XNNPACK here"}
    broken = {r.case: r for r in rows_for(data)}["tiny, TFLite float32"]
    assert broken.failed and broken.figure == "error: ValueError"
    assert broken.details["error"] == "ValueError: no XNNPACK here"


def test_sources_benchmark_generates_converts_and_measures(tmp_path):
    from bench import sources
    from bench.common import run_worker
    from solo_lib.data.coco import CocoDataset
    from solo_lib.data.tfrecord import write_tfrecords

    path = sources.make_dataset(tmp_path, 2, seed=5)
    (tmp_path / "again").mkdir()
    assert sources.make_dataset(tmp_path / "again", 2, seed=5).read_text() == path.read_text()  # seeded
    coco = json.loads(path.read_text())
    assert [(i["height"], i["width"]) for i in coco["images"]] == [(480, 640)] * 2
    assert len(coco["annotations"]) == 2 * sources.INSTANCES
    assert all(20 <= len(a["segmentation"][0]) // 2 <= 40 for a in coco["annotations"])
    write_tfrecords(CocoDataset(path, tmp_path), tmp_path / "tfrecord", 2, progress=False)

    # The sources alone give samples (the pipelines on top are the worker's, below).
    for source in sources.ALONE:
        ds, per_element = sources._build(source, tmp_path, [])
        sample = next(iter(ds))
        assert per_element == 1 and sample["image"].shape == (480, 640, 3) and sample["masks"].shape[0] == 7

    # One real worker: pinned to one core, the paper-scale TFRecord pipeline, its reply as JSON.
    reply = run_worker("bench.sources", ["tfrecord", "1", str(tmp_path), "--warmup", "1", "--batches", "1",
                                         "--repeats", "1"], timeout=300)
    assert reply["cores"] == sorted(os.sched_getaffinity(0))[:1] and reply["images_per_s"] > 0
    assert 0 < reply["targets_s_per_image"] < reply["cpu_s_per_image"] and 0 < reply["cores_used"] <= 1.05

    # The rows: scaling per source, the per-core comparisons, targets on the TFRecord pipeline only.
    def reply_(rate):
        return {"images_per_s": rate, "timing": {}, "cpu_s_per_image": 0.1, "cores_busy_with_other_work": 0.0,
                "targets_s_per_image": 0.01, "targets_cores": 0.1}

    results = {(s, c): reply_(rate * c) for s, rate in (("streaming", 2.0), ("in_memory", 3.0), ("tfrecord", 5.0),
                                                        ("streaming_source", 20.0)) for c in (1, 2)}
    results["tfrecord", 2], results["streaming", 2] = reply_(8.0), reply_(4.5)
    results["tfrecord_source", 1], results["tfrecord_source", 2] = reply_(100.0), RuntimeError("worker died")
    results["in_memory", 2]["cores_busy_with_other_work"] = 1.3  # another process took most of the 2 cores
    rows = {r.case: r for r in sources.rows_for(results, 2, {"shards": 2})}
    assert rows["tfrecord"].metrics["scaling_2_over_1"] == pytest.approx(1.6) and rows["tfrecord"].met is False
    assert rows["streaming"].target is None and rows["in-memory"].metrics["scaling_2_over_1"] == pytest.approx(2.0)
    assert rows["in-memory"].figure.endswith("DISTURBED: other work on 1.3 of its cores")
    assert "DISTURBED" not in rows["tfrecord"].figure
    assert rows["tfrecord, source alone"].failed and "worker died" in rows["tfrecord, source alone"].details["error"]
    versus = rows["tfrecord vs streaming, per core"]
    assert versus.metrics == pytest.approx({"ratio_1_core": 2.5, "ratio_2_cores": 8.0 / 4.5}) and versus.met is False
    assert "sources alone: tfrecord vs streaming, per core" not in rows  # one of the two failed


def test_synthetic_coco_file_is_coco_shaped(tmp_path):
    from pycocotools import mask as mask_utils

    from bench.annotations import COCO_IDS, write_coco_file

    made = write_coco_file(tmp_path / "a.json", images=300, annotations=3000, seed=1)
    data = json.loads((tmp_path / "a.json").read_text())
    assert len(data["images"]) == made["images"] == 300 and len(data["annotations"]) == made["annotations"] == 3000
    assert sorted(c["id"] for c in data["categories"]) == COCO_IDS and len(COCO_IDS) == 80
    ids = [a["id"] for a in data["annotations"]]
    assert len(set(ids)) == 3000 and {a["image_id"] for a in data["annotations"]} <= {im["id"] for im in data["images"]}
    crowd = [a for a in data["annotations"] if a["iscrowd"]]
    assert len(crowd) == made["crowd"] and 10 <= len(crowd) <= 60  # about 1%
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    for ann in crowd:  # compressed RLE of the image's size that pycocotools decodes to the stated area
        rle = ann["segmentation"]
        assert isinstance(rle["counts"], str) and rle["size"] == list(sizes[ann["image_id"]])
        assert int(mask_utils.area(dict(rle, counts=rle["counts"].encode()))) == ann["area"]
    coords = [v for a in data["annotations"] if not a["iscrowd"] for p in a["segmentation"] for v in p]
    assert len(coords) == 2 * made["vertices"] and all(round(v, 2) == v for v in coords)  # two decimals
    assert 15 < made["vertices"] / made["polygons"] < 35  # COCO-like vertex counts


def test_quick_annotations_benchmark_measures_both_loaders(tmp_path):
    out = tmp_path / "results.json"
    assert main(["annotations", "--quick", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["case"] for r in results] == ["open time, CocoDataset vs pycocotools",
                                            "peak RSS, CocoDataset vs pycocotools"]
    for r in results:
        assert r["benchmark"] == "annotations" and r["inputs"] and r["figure"]
        assert all(math.isfinite(v) and v > 0 for v in r["metrics"].values())
        assert r["target"]["metric"] in r["metrics"] and r["met"] in (True, False)
    rounds = results[0]["details"]["rounds"]
    for loader in ("solo_lib", "pycocotools"):  # each loader read the whole 1/50 file, in its own process
        assert rounds[loader][0]["images"] == 118_287 // 50
        assert rounds[loader][0]["peak_rss_mb"] > rounds[loader][0]["baseline_rss_mb"] > 0
    assert results[1]["metrics"]["rss_ratio"] == (results[1]["metrics"]["solo_lib_peak_rss_mb"]
                                                  / results[1]["metrics"]["pycocotools_peak_rss_mb"])
