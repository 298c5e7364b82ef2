"""Benchmark 9: end-to-end latency per image of the exported model in every runtime (issue 18).

Cases (:data:`CASES`), each measured in a worker subprocess of its own
(``python -m bench.export --worker CASE``), so its memory, thread pools and matmul peak are its own:

* ``tiny``: the course's sample model (``solo_lib.demo.load_sample_model``, tiny preset, 4 classes,
  image scale (256, 256)) on the first sample validation image (256 x 256), its default
  thresholds: a trained model on a real image.
* ``paper 1333x800``: ``SOLOConfig.paper_r50(80, image_scale=(1333, 800))``, random init
  (``keras.utils.set_random_seed(0)``), on a 480 x 640 (H x W) image, a COCO-like size: the graph
  resizes it to 800 x 1067 and pads it to an 800 x 1344 canvas.
* ``paper 768x448``: the same at the Light scale (768, 448): 448 x 597 on a 448 x 768 canvas.

The paper cases' image is the first sample validation image resized to 480 x 640 (a random model
does not care what it shows). A random model scores every cell near the 0.01 prior, so
``score_thr`` is lowered until about ``nms_pre`` = 500 candidates reach Matrix NMS
(``bench.inference.threshold_for``) and the model is exported with that configuration, so
post-processing does the work a trained model would cause.

Each case exports every format of ``solo_lib.export.FORMATS`` (``export(..., config=cfg)``) to a
temporary folder, timing each format's writer and the process's peak RSS while it runs (the
SavedModel's time includes tracing the graph; each LiteRT file is converted from it). Then, on the
same uint8 image, end to end:

* ``predict``: ``solo_lib.inference.predict(model, image, cfg)``;
* ``saved_model``, ``tflite``, ``tflite_fp16``, ``onnx``: ``solo_lib.run_export.load_exported``
  (the export folder's ``run_model.py``) in this process: ``tf.saved_model.load``; LiteRT's
  interpreter (``ai_edge_litert``) with ``num_threads`` = the CPU count and its default XNNPACK
  delegate, through its signature runner; an ONNX Runtime session on the CPU provider with its
  default threads. The parity tests of ``tests/test_export.py`` prove that each runs without
  ``solo_lib``; here only the time counts.

Every runtime is loaded (load time) and called once (first-call time: tracing, allocation), and
its instances are compared with ``predict``'s (``solo_lib.export.compare_instances``), so a
runtime that does less work shows up. Then all are timed in rounds, one call of each per round
(:func:`round_robin`), so that all see the same load on a shared machine; each figure is the
median over the rounds. The rounds also time ``postprocess`` alone (on fixed network outputs),
the forward pass alone (``compiled_forward(model)(canvas)``, what ``predict`` runs) and, right after
it, ``bench.efficiency.matmul_peak``'s matmul (2048 x 2048 float32).

Post-processing share: the median over rounds of ``postprocess`` time / ``predict`` time (and,
for the SavedModel, of (its time - the forward pass) / its time).

Forward efficiency: its FLOPs (``bench.efficiency``: TensorFlow's profiler on a ``tf.function`` of
``model(x, training=False)`` traced at the canvas shape, ``graph_flops``, the headline; and the
analytic 2 x MACs of every Conv2D / Dense layer call, ``recording_layer_flops``, which equals the
graph's Conv2D count) over its time, over the matmul's FLOP rate: the median over rounds of that
ratio, the matmul and the forward pass timed side by side. Also in the metrics: the same against
``bench.efficiency.matmul_peak()`` measured right after the rounds, and per CPU second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import (
    Result,
    Target,
    Timing,
    apply_env_defaults,
    error_result,
    peak_rss_mb,
    reset_peak_rss,
    run_worker,
    worker_reply,
)
from bench.efficiency import MATMUL_N

CASES = ("tiny", "paper 1333x800", "paper 768x448")
CASES_QUICK = ("tiny",)
PAPER_SCALES = {"paper 1333x800": (1333, 800), "paper 768x448": (768, 448)}
PAPER_IMAGE = (480, 640)  # H x W of the paper cases' image: a landscape COCO-sized photo
NUM_CLASSES = 80
RUNTIMES = ("predict", "saved_model", "tflite", "tflite_fp16", "onnx")
RUNTIME_NAMES = {"predict": "Keras predict()", "saved_model": "SavedModel", "tflite": "TFLite float32",
                 "tflite_fp16": "TFLite float16", "onnx": "ONNX Runtime"}
EFFICIENCY_TARGET = 0.7


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def size_mb(path: Path) -> float:
    """A file's size, or the total of a folder's files, in MB (2^20 bytes)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


@contextlib.contextmanager
def timing_writers(seconds: dict, peaks: dict):
    """While active, each format writer of ``solo_lib.export`` records its time in ``seconds`` and
    the process's peak RSS while it ran in ``peaks`` (MB, by format), also when it fails."""
    import solo_lib.export as module

    names = ("_write_saved_model", "_write_tflite", "_write_onnx")
    originals = {name: getattr(module, name) for name in names}

    def timed(name):
        original = originals[name]

        def writer(*args, **kwargs):
            fmt = {"_write_saved_model": "saved_model", "_write_onnx": "onnx"}.get(name)
            fmt = fmt or ("tflite_fp16" if kwargs.get("fp16") else "tflite")
            reset_peak_rss()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[fmt] = time.perf_counter() - start
                peaks[fmt] = peak_rss_mb()

        return writer

    try:
        for name in names:
            setattr(module, name, timed(name))
        yield seconds
    finally:
        for name, original in originals.items():
            setattr(module, name, original)


def case_setup(case: str):
    """``(model, config, image, description)`` of a case (see the module docstring)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from solo_lib.data.coco import CocoDataset, sample_dataset_paths

    sample = CocoDataset(*sample_dataset_paths("val"))[0].image
    if case == "tiny":
        from solo_lib.demo import load_sample_model

        model, _ = load_sample_model()
        return model, model.config, np.asarray(sample, np.uint8), "sample model (tiny preset, 4 classes, trained)"
    from solo_lib.config import SOLOConfig
    from solo_lib.geometry import canvas_size
    from solo_lib.model.solov2 import build_model

    config = SOLOConfig.paper_r50(NUM_CLASSES, image_scale=PAPER_SCALES[case])
    keras.utils.set_random_seed(0)
    model = build_model(config, canvas_size(*PAPER_IMAGE, config.image_scale))
    image = tf.image.resize(sample, PAPER_IMAGE).numpy().round().clip(0, 255).astype(np.uint8)
    return model, config, image, f"paper preset, {NUM_CLASSES} classes, random init"


def round_robin(calls: dict, extra: int, repeats: int) -> dict:
    """Times several callables in turn, one call of each per round, so all see the same machine load
    (other jobs on a shared machine come and go; timing one runtime after another would compare
    different loads). Each callable has been called once already (its first call); ``extra``
    untimed rounds follow, then ``repeats`` timed ones.

    Returns:
        ``{name: Timing}`` (``warmup`` counts the first call).
    """
    for _ in range(extra):
        for fn in calls.values():
            fn()
    runs = {name: [] for name in calls}
    for _ in range(max(1, repeats)):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return {name: Timing(1 + extra, r) for name, r in runs.items()}


def first_call(fn) -> float:
    """Seconds of one call (the first: it traces, allocates or plans)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def forward_flops(model, canvas) -> dict:
    """Graph (profiler) and analytic FLOPs of the inference forward pass on ``canvas``'s shape."""
    import tensorflow as tf

    from bench.efficiency import GEMM_OPS, graph_flops, recording_layer_flops

    records = []
    with recording_layer_flops(records):
        traced = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec(canvas.shape, tf.float32))
    by_op = graph_flops(traced.graph)
    return {"graph_total": sum(by_op.values()), "graph_gemm": sum(v for op, v in by_op.items() if op in GEMM_OPS),
            "analytic_layers": sum(flops for _, flops in records), "layer_calls": len(records), "graph_by_op": by_op}


def worker(case: str, quick: bool, formats=None) -> dict:
    """Runs in the subprocess: exports one case and times every runtime (module docstring).

    Args:
        case: one of :data:`CASES`.
        quick: fewer repeats.
        formats: the formats to export (default all of ``solo_lib.export.FORMATS``); runtimes of
            formats left out are not timed (the unit test exports two to stay fast).

    Returns:
        A JSON-ready dict; a runtime or format that failed has its error text instead of figures.
    """
    import gc

    from bench.efficiency import matmul_peak
    from bench.inference import nms_inputs, threshold_for
    from solo_lib import export as export_module
    from solo_lib.export import compare_instances
    from solo_lib.inference import compiled_forward, postprocess, predict, preprocess
    from solo_lib.memory import release_freed_memory
    from solo_lib.run_export import load_exported

    formats = tuple(export_module.FORMATS if formats is None else formats)
    paper = case != "tiny"
    # Warm-up: each callable's first call (timed on its own), then `extra` untimed rounds.
    extra, repeats = (0, 3) if quick or paper else (1, 10)
    cores = usable_cores()
    model, config, image, model_text = case_setup(case)

    # Network outputs on the canvas predict builds, for the threshold and postprocess alone.
    canvas, resized = preprocess(image, config)
    canvas_hw = tuple(int(v) for v in canvas.shape[1:3])
    forward = compiled_forward(model)
    outputs = forward(canvas)
    if paper:
        thr, reached = threshold_for(outputs, config, resized, canvas_hw, config.nms_pre)
        cfg = config.replace(score_thr=thr)
    else:
        cfg = config
        reached = nms_inputs(lambda: postprocess(outputs, cfg, resized, canvas_hw, original_size=image.shape[:2]))

    out = {"case": case, "model": model_text, "image": list(image.shape[:2]), "resized": list(resized),
           "canvas": list(canvas_hw), "image_scale": list(cfg.image_scale), "score_thr": float(cfg.score_thr),
           "score_thr_lowered": paper, "nms_inputs": reached, "parameters": int(model.count_params()),
           "cores": cores, "warmup": 1 + extra, "repeats": repeats, "runtimes": {}}

    # 1. Export every format, timing each writer.
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        seconds, peaks = {}, {}
        start = time.perf_counter()
        with timing_writers(seconds, peaks):
            try:
                export_module.export(model, folder, formats, config=cfg, overwrite=True, progress=False)
                failed = {}
            except Exception as error:  # export() writes the others; export.json names each failure
                info = folder / export_module.INFO_FILE
                named = json.loads(info.read_text())["failed"] if info.is_file() else {}
                failed = {fmt: named.get(fmt, f"{type(error).__name__}: {error}") for fmt in formats
                          if not (folder / export_module.FILES[fmt]).exists()}
        out.update(export_total_s=time.perf_counter() - start, export_s=seconds, export_peak_rss_mb=peaks,
                   export_failed=failed)
        out["file_mb"] = {fmt: size_mb(folder / export_module.FILES[fmt]) for fmt in formats
                          if (folder / export_module.FILES[fmt]).exists()}
        gc.collect()
        release_freed_memory()  # the converters' freed heap (GBs for ONNX), so the peak below is the runtimes'

        # 2. Every runtime loaded, its first call timed (it traces, allocates or plans).
        reference = predict(model, image, cfg)
        matmul = matmul_call()
        calls = {"predict": lambda: predict(model, image, cfg),
                 "postprocess": lambda: postprocess(outputs, cfg, resized, canvas_hw, original_size=image.shape[:2]),
                 "forward": lambda: forward(canvas)["kernel"][0, 0, 0].numpy(),
                 "matmul": matmul}
        first = {name: first_call(fn) for name, fn in calls.items()}
        out["runtimes"]["predict"] = {"first_call_s": first["predict"], "instances": len(reference["scores"])}
        reset_peak_rss()
        for fmt in ("saved_model", "tflite", "tflite_fp16", "onnx"):
            if fmt not in formats:
                continue
            if fmt in failed:
                out["runtimes"][fmt] = {"error": f"export failed: {failed[fmt]}"}
                continue
            try:
                start = time.perf_counter()
                segment = load_exported(folder / export_module.FILES[fmt])
                load_s = time.perf_counter() - start
                start = time.perf_counter()
                result = segment(image)
                out["runtimes"][fmt] = {"load_s": load_s, "first_call_s": time.perf_counter() - start,
                                        "threads": threads_of(fmt), "instances": len(result["scores"]),
                                        "vs_predict": compare_instances(reference, result)}
                calls[fmt] = lambda segment=segment: segment(image)
            except Exception as error:  # report it in the row, go on with the others
                out["runtimes"][fmt] = {"error": f"{type(error).__name__}: {error}"}

        # 3. All of them in turn, round after round; the forward pass and the matmul side by side.
        cpu = {}

        def cpu_timed(name, fn):
            def call():
                start = time.process_time()
                fn()
                cpu[name] = cpu.get(name, 0.0) + time.process_time() - start
            return call

        calls["forward"], calls["matmul"] = cpu_timed("forward", calls["forward"]), cpu_timed("matmul", calls["matmul"])
        timings = round_robin(calls, extra, repeats)
        out["runtimes_peak_rss_mb"] = peak_rss_mb()
        for name, timing in timings.items():
            if name in out["runtimes"]:
                out["runtimes"][name]["timing"] = timing.to_dict()

        def pairs(a, b):  # per round: a's time over b's
            return [x / y for x, y in zip(timings[a].runs, timings[b].runs)]

        out["postprocess_timing"] = timings["postprocess"].to_dict()
        out["postprocess_share"] = statistics.median(pairs("postprocess", "predict"))
        out["forward_timing"] = timings["forward"].to_dict()
        out["matmul_timing"] = timings["matmul"].to_dict()
        out["matmul_over_forward"] = statistics.median(pairs("matmul", "forward"))
        out["cpu_s_per_run"] = {name: seconds / (extra + repeats) for name, seconds in cpu.items()}
        out["matmul_flops"] = 2.0 * MATMUL_N ** 3
        out["matmul_peak"] = matmul_peak(quick)  # bench.efficiency's own measurement, right after the rounds
        out["flops"] = forward_flops(model, canvas)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def matmul_call():
    """``bench.efficiency.matmul_peak``'s work, one call: ``(2048, 2048) @ (2048, 2048)`` float32."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((MATMUL_N, MATMUL_N), np.float32))
    b = tf.constant(rng.standard_normal((MATMUL_N, MATMUL_N), np.float32))
    return lambda: tf.matmul(a, b)[0, 0].numpy()


def threads_of(fmt: str) -> str:
    """How many threads a runtime of ``run_export.load_exported`` uses (recorded with its row)."""
    return {"saved_model": "TensorFlow default (one per core)", "onnx": "ONNX Runtime default (one per physical core)"
            }.get(fmt, f"LiteRT num_threads=os.cpu_count()={os.cpu_count()}, XNNPACK delegate (run_model.py)")


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def rows_for(data: dict) -> list[Result]:
    """The case's rows: one per runtime, then post-processing and the forward pass's efficiency."""
    case = data["case"]
    inputs = (f"{data['model']}; one {data['image'][0]}x{data['image'][1]} uint8 image -> "
              f"{data['resized'][0]}x{data['resized'][1]} on a {data['canvas'][0]}x{data['canvas'][1]} canvas; "
              f"score_thr {data['score_thr']:.3g}{' (lowered)' if data['score_thr_lowered'] else ''}: "
              f"{data['nms_inputs']} into Matrix NMS")
    common = {k: data[k] for k in ("model", "image", "resized", "canvas", "image_scale", "score_thr",
                                   "score_thr_lowered", "nms_inputs", "parameters", "cores")}
    rows = []
    predict_s = None
    for runtime in RUNTIMES:
        if runtime not in data["runtimes"]:
            continue
        got = data["runtimes"][runtime]
        name = f"{case}, {RUNTIME_NAMES[runtime]}"
        details = {**common, "file_mb": data["file_mb"].get(runtime), "export_s": data["export_s"].get(runtime),
                   "export_peak_rss_mb": data["export_peak_rss_mb"].get(runtime),
                   "runtimes_peak_rss_mb": data.get("runtimes_peak_rss_mb"),
                   **{k: v for k, v in got.items() if k != "timing"}}
        if "error" in got:
            rows.append(Result("export", name, inputs, f"error: {got['error'].split(':')[0]}", {}, failed=True,
                               details=details))
            continue
        seconds = got["timing"]["median_s"]
        metrics = {"ms": 1000 * seconds, "first_call_s": got["first_call_s"], "instances": got["instances"]}
        figure = _ms(seconds)
        if runtime == "predict":
            predict_s = seconds
        else:
            export_s = data["export_s"].get(runtime, float("nan"))
            metrics.update(load_s=got["load_s"], file_mb=data["file_mb"][runtime], export_s=export_s)
            figure += f" ({data['file_mb'][runtime]:.1f} MB, export {export_s:.0f} s)"
            if predict_s:
                metrics["time_vs_predict"] = seconds / predict_s
        rows.append(Result("export", name, inputs, figure, metrics, timing=got["timing"], details=details))

    if predict_s and "flops" in data:
        rows += summary_rows(data, inputs)
    return rows


def summary_rows(data: dict, inputs: str) -> list[Result]:
    """The post-processing share and the forward pass's efficiency, each from the same rounds."""
    case, runtimes = data["case"], data["runtimes"]
    post_s, forward_s = data["postprocess_timing"]["median_s"], data["forward_timing"]["median_s"]
    predict_s = runtimes["predict"]["timing"]["median_s"]
    metrics = {"postprocess_share": data["postprocess_share"], "postprocess_ms": 1000 * post_s,
               "forward_ms": 1000 * forward_s, "predict_ms": 1000 * predict_s}
    if "timing" in runtimes.get("saved_model", {}):  # the SavedModel's time that is not the forward pass
        metrics["saved_model_non_forward_share"] = statistics.median(
            (s - f) / s for s, f in zip(runtimes["saved_model"]["timing"]["runs_s"], data["forward_timing"]["runs_s"]))
    rows = [Result(
        "export", f"{case}, post-processing share", inputs,
        f"{_ms(post_s)} = {100 * data['postprocess_share']:.0f}% of predict (forward {_ms(forward_s)})",
        metrics, timing=data["postprocess_timing"],
        details={"method": "postprocess() alone on fixed network outputs (eager, as predict runs it) over "
                           "predict(), the median over rounds of their ratio; forward = "
                           "compiled_forward(model)(canvas); saved_model_non_forward_share: the median over "
                           "rounds of (SavedModel - forward) / SavedModel",
                 "forward_timing": data["forward_timing"]})]

    flops, peak = data["flops"], data["matmul_peak"]
    paired_peak = data["matmul_flops"] / data["matmul_timing"]["median_s"]
    efficiency = flops["graph_total"] / data["matmul_flops"] * data["matmul_over_forward"]
    cpu = data["cpu_s_per_run"]
    metrics = {
        "efficiency": efficiency,
        "efficiency_analytic": flops["analytic_layers"] / data["matmul_flops"] * data["matmul_over_forward"],
        "efficiency_vs_matmul_peak_after": flops["graph_total"] / forward_s / peak["flops_per_s"],
        "efficiency_per_cpu_s": (flops["graph_total"] / cpu["forward"]) / (data["matmul_flops"] / cpu["matmul"]),
        "forward_gflop_graph": flops["graph_total"] / 1e9,
        "forward_gflop_analytic": flops["analytic_layers"] / 1e9,
        "achieved_gflop_per_s": flops["graph_total"] / forward_s / 1e9,
        "matmul_gflop_per_s_in_rounds": paired_peak / 1e9,
        "matmul_peak_gflop_per_s_after": peak["flops_per_s"] / 1e9,
        "forward_ms": 1000 * forward_s,
    }
    # Issue 18: the paper preset's forward pass at >= 70% of the matmul peak (none for the tiny preset,
    # whose small convolutions and GroupNorm cannot fill the cores, as in the training-step efficiency).
    target = None if case == "tiny" else Target("efficiency", ">", EFFICIENCY_TARGET,
                                                f"> {100 * EFFICIENCY_TARGET:.0f}% of peak")
    figure = (f"{100 * efficiency:.0f}% of the matmul peak: {flops['graph_total'] / 1e9:.1f} GFLOP in "
              f"{_ms(forward_s)} = {metrics['achieved_gflop_per_s']:.1f} of {paired_peak / 1e9:.1f} GFLOP/s")
    rows.append(Result(
        "export", f"{case}, forward pass efficiency",
        f"{inputs}; compiled_forward on the canvas; peak: tf.matmul {MATMUL_N}x{MATMUL_N} float32 in the same rounds",
        figure, metrics, target,
        timing=data["forward_timing"],
        details={"method": "FLOPs: TF profiler float_operation() on tf.function(model(x, training=False))'s graph at "
                           "the canvas shape (analytic: 2 x MACs of Conv2D/Dense layer calls); efficiency: the median "
                           "over rounds of (FLOPs / forward time) / (matmul FLOPs / the same round's matmul time); "
                           "also vs bench.efficiency.matmul_peak() measured right after the rounds, and per CPU "
                           "second (both over the process's CPU time)",
                 "flops": flops, "crosscheck_gemm_graph_over_analytic":
                     flops["graph_gemm"] / max(1, flops["analytic_layers"]),
                 "matmul_timing_in_rounds": data["matmul_timing"], "cpu_s_per_run": cpu, "matmul_peak_after": peak}))
    return rows


def run(ctx) -> list[Result]:
    """Runs each case's worker in turn (the paper cases take minutes: exporting is most of it)."""
    rows = []
    for case in CASES_QUICK if ctx.quick else CASES:
        print(f"  [export worker: {case}]", flush=True)
        try:
            rows += rows_for(run_worker("bench.export", [case] + (["--quick"] if ctx.quick else [])))
        except Exception as error:
            rows.append(error_result("export", error, case))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="export benchmark worker (run by python -m bench)")
    parser.add_argument("--worker", choices=CASES, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    apply_env_defaults()
    worker_reply(worker(args.worker, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
