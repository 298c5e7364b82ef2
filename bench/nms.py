"""Benchmark 6: Matrix NMS alone, 500 masks of 120 x 120 and of 200 x 336.

``solo_lib.nms.matrix_nms`` is called as ``solo_lib.inference.postprocess`` calls it: bool masks,
their precomputed areas, the paper's settings (gaussian kernel, sigma 2.0, ``filter_thr`` 0.05,
``nms_pre`` 500, ``max_num`` 100). Inputs are seeded: rotated ellipses
(``bench.common.random_blobs``) with ``sqrt(w * h)`` log-uniform from 1/15 to 2/3 of the shorter
side, 5 labels, scores uniform in [0.05, 1].

The yardstick is the one product Matrix NMS cannot avoid: ``tf.matmul`` of the ``(500, HW)``
float32 masks with their transpose, measured in the same process on the same shapes. Both are
timed eagerly and wrapped in ``tf.function`` (traced during warm-up); the ``tf.function`` ratio is
the fair one (eagerly, each of Matrix NMS's ~40 ops pays Python dispatch). Each call ends by
reading a result back with ``.numpy()``. The two are timed in alternation
(:func:`bench.common.measure_pair`) and the ratio is the median of the per-pair ratios, so a load
change on a shared machine moves both sides of it (timing them one after the other made the
120 x 120 ratio swing from 1.0x to 1.5x between runs).
"""

from __future__ import annotations

from bench.common import Result, Target, measure_pair, random_blobs, repeats

COUNT = 500
SIZES = ((120, 120), (200, 336))
LABELS = 5
TARGET_RATIO = 1.3


def make_inputs(height: int, width: int, seed: int = 0):
    """``(masks (N, H, W) bool, labels (N,) int32, scores (N,) float32, areas (N,) float32)``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    short = min(height, width)
    masks = random_blobs(COUNT, height, width, rng, min_size=short / 15, max_size=short * 2 / 3)
    labels = rng.integers(0, LABELS, COUNT).astype(np.int32)
    scores = rng.uniform(0.05, 1.0, COUNT).astype(np.float32)
    return masks, labels, scores, masks.sum(axis=(1, 2)).astype(np.float32)


def run(ctx) -> list[Result]:
    import numpy as np
    import tensorflow as tf

    from solo_lib.config import SOLOConfig
    from solo_lib.nms import matrix_nms

    c = SOLOConfig.paper_r50(80)
    settings = dict(kernel=c.nms_kernel, sigma=c.nms_sigma, filter_thr=c.update_thr, nms_pre=c.nms_pre,
                    max_num=c.max_per_img)
    timed = repeats(ctx.quick, 20, 5)
    rows = []
    for height, width in SIZES:
        masks, labels, scores, areas = (tf.constant(a) for a in make_inputs(height, width))
        flat = tf.constant(np.reshape(masks.numpy(), (COUNT, height * width)).astype(np.float32))

        def nms(m, lab, s, a):
            return matrix_nms(m, lab, s, mask_area=a, **settings)[3]  # keep_inds

        def gram(x):
            return tf.matmul(x, x, transpose_b=True)

        nms_graph, gram_graph = tf.function(nms), tf.function(gram)
        timings = {
            "eager": measure_pair(lambda: nms(masks, labels, scores, areas).numpy(), lambda: gram(flat)[0, 0].numpy(),
                                  warmup=2, repeats=timed),
            "tf.function": measure_pair(lambda: nms_graph(masks, labels, scores, areas).numpy(),
                                        lambda: gram_graph(flat)[0, 0].numpy(), warmup=2, repeats=timed),
        }
        kept = int(nms_graph(masks, labels, scores, areas).shape[0])
        for mode, (t_nms, t_mm, ratio) in timings.items():
            ms, mm_ms = 1000 * t_nms.median, 1000 * t_mm.median
            fair = mode == "tf.function"
            rows.append(Result(
                "nms", f"{height}x{width}, {mode}",
                f"{COUNT} bool masks {height}x{width}, {LABELS} labels, gaussian sigma 2, nms_pre 500, max_num 100; "
                f"matmul ({COUNT} x {height * width}) @ ({height * width} x {COUNT}) float32",
                f"{ms:.1f} ms = {ratio:.2f}x matmul ({mm_ms:.1f} ms; ratio: median of alternated pairs)",
                {"ms": ms, "matmul_ms": mm_ms, "ratio_to_matmul": ratio},
                Target("ratio_to_matmul", "<=", TARGET_RATIO, f"<= {TARGET_RATIO}x matmul") if fair else None,
                timing=t_nms.to_dict(),
                details={"matmul_timing": t_mm.to_dict(), "kept": kept,
                         "note": "the fair comparison" if fair else "eager: per-op Python dispatch included"}))
    return rows
