"""Benchmark 5: inference on one 480 x 480 image with the paper preset (80 classes, random init) at
the image scale (480, 480), the training benchmarks' (``bench/setups.py``).

Timed end to end: ``solo_lib.inference.predict(model, image, config)``, i.e. ``preprocess``
(resizing to the image scale and padding to the canvas: here the image is already at the scale,
so the canvas is the 480 x 480 image itself), the forward pass (``predict``'s compiled forward),
post-processing, Matrix NMS, resizing the masks back to the image.

A randomly initialised model scores few cells above ``score_thr`` (the category prior is 0.01), so
with the default thresholds post-processing has almost nothing to do. To measure the work a trained
model causes, ``score_thr`` is also lowered until about ``nms_pre`` = 500 candidates reach Matrix
NMS (counted by a recording wrapper around ``matrix_nms`` in one untimed call); ``predict`` and
``postprocess`` alone (on fixed network outputs) are timed at both thresholds. The forward pass
alone (eager, and in a ``tf.function`` as ``predict`` runs it) is in the details.

The image is the first sample validation image resized to 480 x 480 (its content does not matter
to a random model; its size does). The network outputs that ``postprocess`` alone is timed on come
from the canvas ``preprocess`` builds, the one ``predict`` runs on.
"""

from __future__ import annotations

import contextlib

from bench.common import Result, measure, repeats
from bench.setups import PAPER_SCALE

SIZE = PAPER_SCALE  # the image's size and the model's image scale: (480, 480)
NUM_CLASSES = 80


@contextlib.contextmanager
def counting_nms_inputs(counts: list):
    """While active, ``solo_lib.inference``'s calls to ``matrix_nms`` append their mask count."""
    import solo_lib.inference as inference

    original = inference.matrix_nms

    def recording(masks, *args, **kwargs):
        counts.append(int(masks.shape[0]))
        return original(masks, *args, **kwargs)

    inference.matrix_nms = recording
    try:
        yield counts
    finally:
        inference.matrix_nms = original


def nms_inputs(postprocess_once) -> int:
    counts = []
    with counting_nms_inputs(counts):
        postprocess_once()
    return counts[-1]


def threshold_for(outputs, config, image_size, canvas, wanted: int) -> tuple[float, int]:
    """A ``score_thr`` at which about ``wanted`` (at least) candidates reach Matrix NMS.

    Candidates above the threshold can still be dropped as too small before NMS, so the threshold
    is the score of the ``n``-th best cell, with ``n`` raised until enough survive.
    """
    import numpy as np

    from solo_lib.inference import category_scores, postprocess

    scores = np.sort(category_scores(outputs["category"][:1], config.grid_sizes).numpy().ravel())[::-1]
    n, reached, thr = wanted, 0, float(config.score_thr)
    for _ in range(6):
        thr = float(scores[min(n, scores.size - 1)])
        cfg = config.replace(score_thr=thr)
        reached = nms_inputs(lambda: postprocess(outputs, cfg, image_size, canvas))
        if reached >= wanted or n >= scores.size - 1:
            break
        n = int(n * wanted / max(reached, 1) * 1.05) + 1
    return thr, reached


def run(ctx) -> list[Result]:
    import keras
    import numpy as np
    import tensorflow as tf

    from solo_lib.config import SOLOConfig
    from solo_lib.data.coco import load_sample_dataset
    from solo_lib.inference import postprocess, predict, preprocess
    from solo_lib.model.solov2 import build_model

    config = SOLOConfig.paper_r50(NUM_CLASSES, image_scale=SIZE)
    keras.utils.set_random_seed(0)
    model = build_model(config, SIZE)
    image = tf.image.resize(load_sample_dataset("val")[0].image, SIZE).numpy().round().astype(np.uint8)
    canvas, resized = preprocess(image, config)  # (1, 480, 480, 3), the image region 480 x 480
    canvas_size = tuple(canvas.shape[1:3])
    outputs = model(canvas, training=False)
    timed_forward, timed_post = repeats(ctx.quick, 5, 3), repeats(ctx.quick, 10, 3)  # forward: seconds each

    low_thr, low_reached = threshold_for(outputs, config, resized, canvas_size, config.nms_pre)
    low = config.replace(score_thr=low_thr)
    default_reached = nms_inputs(lambda: postprocess(outputs, config, resized, canvas_size))

    forward_eager = measure(lambda: model(canvas, training=False)["kernel"][0, 0, 0].numpy(), warmup=1,
                            repeats=timed_forward)
    graph_forward = tf.function(lambda x: model(x, training=False))
    forward_graph = measure(lambda: graph_forward(canvas)["kernel"][0, 0, 0].numpy(), warmup=2, repeats=timed_forward)
    forward = {"forward_eager_ms": 1000 * forward_eager.median, "forward_tf_function_ms": 1000 * forward_graph.median}

    rows = []
    inputs = (f"paper preset, {NUM_CLASSES} classes, random init, image scale {SIZE[0]}x{SIZE[1]}; "
              f"one {image.shape[0]}x{image.shape[1]} RGB image on a {canvas_size[0]}x{canvas_size[1]} canvas")
    for label, cfg, reached in (("default score_thr", config, default_reached),
                                ("score_thr lowered", low, low_reached)):
        t_predict = measure(lambda: predict(model, image, cfg), warmup=1, repeats=timed_forward)
        t_post = measure(lambda: postprocess(outputs, cfg, resized, canvas_size), warmup=2, repeats=timed_post)
        ms, post_ms = 1000 * t_predict.median, 1000 * t_post.median
        what = f"score_thr {cfg.score_thr:.4g}, {reached} candidates into Matrix NMS"
        rows.append(Result("inference", f"predict, {label}", f"{inputs}; {what}", f"{ms:.0f} ms",
                           {"ms": ms, "postprocess_ms": post_ms, "nms_inputs": reached, **forward},
                           timing=t_predict.to_dict(), details={"score_thr": cfg.score_thr}))
        rows.append(Result("inference", f"postprocess alone, {label}", f"fixed network outputs; {what}",
                           f"{post_ms:.1f} ms", {"ms": post_ms, "nms_inputs": reached},
                           timing=t_post.to_dict(), details={"score_thr": cfg.score_thr}))
    rows[0].details.update(forward_timing={"eager": forward_eager.to_dict(), "tf_function": forward_graph.to_dict()})
    return rows
