"""Benchmark 2: the training input pipeline (decode, augment, targets, batch) in images per second.

The datasets are built exactly as ``solo_lib.train.train`` builds them (``bench/setups.py``), on
the sample dataset's train split: the ``tiny`` set-up (in-memory source, image scale (256, 256) on
a 256 x 256 canvas, batch 4, fixed paddings) and the ``paper`` set-up (streaming source: decoded
from disk on demand, every image enlarged to the image scale (480, 480) on a 480 x 480 canvas,
batch 2). After ``warmup`` batches (the shuffle buffer fills, autotuning settles), each
timed run pulls ``batches`` batches back to back; images/s = images / median run time. The consumer
does nothing, so the prefetch buffer stays empty and the rate is the producer's.

Comparison: the training step's images/s of the same set-up (``bench/train_step.py``, measured in
this run). "The step never waits on data" when the pipeline is faster than the step. Both are
measured alone; in training they share the CPU cores, so a pipeline only a little faster than the
step can still slow it down.
"""

from __future__ import annotations

import time

from bench.common import Result, Target, Timing, repeats

CASES = ("tiny", "paper")


def run(ctx) -> list[Result]:
    from bench import setups

    rows = []
    for case in CASES:
        model_config, cfg, dataset = setups.training_setup(case)
        iterator = iter(setups.training_dataset(model_config, cfg, dataset))
        batches = 4 if ctx.quick else 24
        for _ in range(3 if ctx.quick else 6):  # warm-up
            next(iterator)
        runs = []
        for _ in range(repeats(ctx.quick, 5, 2)):
            start = time.perf_counter()
            for _ in range(batches):
                images, _ = next(iterator)
            runs.append(time.perf_counter() - start)
        del iterator  # stops the pipeline's background threads
        timing = Timing(3 if ctx.quick else 6, runs)
        per_run = batches * cfg.batch_size
        images_per_s = per_run / timing.median
        metrics = {"images_per_s": images_per_s}
        target = None
        try:
            step = ctx.step(case)
            metrics["step_images_per_s"] = step["images_per_s"]
            metrics["pipeline_over_step"] = images_per_s / step["images_per_s"]
            target = Target("pipeline_over_step", ">", 1.0, "> step img/s")
            versus = f" vs step {step['images_per_s']:.3g} img/s"
        except Exception as error:  # the step's own row reports the failure
            versus = f" (no step figure: {type(error).__name__})"
        rows.append(Result(
            "pipeline", f"{case}, {'in-memory' if cfg.in_memory else 'streaming'}",
            f"sample train split (12 images <= 256 px), image scale {model_config.image_scale[0]}x"
            f"{model_config.image_scale[1]}, canvas {images.shape[1]}x{images.shape[2]}, "
            f"batch {cfg.batch_size}, {batches} batches per run",
            f"{images_per_s:.1f} img/s{versus}", metrics, target,
            timing=timing.to_dict(per=per_run),
            details={"timing_unit": "seconds per image", "setup": setups.DESCRIPTIONS[case],
                     "last_batch_shape": list(images.shape)}))
    return rows
