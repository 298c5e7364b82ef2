"""Benchmark 3: the training step: seconds per step, images per second, peak resident memory.

Each set-up (``bench/setups.py``: ``paper``, ``paper_remat``, ``paper_accumulate``, ``paper_xla``,
``tiny``) runs in its own worker subprocess (``python -m bench.train_step --worker SETUP``), so
its memory is its own. The worker:

1. builds the set-up's pipeline exactly as ``solo_lib.train.train`` does and takes its first batch
   (then drops the iterator, so no input thread keeps running while steps are timed);
2. builds the model and compiles it as ``train`` does:
   ``model.compile(optimizer=make_optimizer(cfg, steps), jit_compile=cfg.jit_compile)``;
3. calls ``model.train_function([batch])``, the very step ``Model.fit`` runs (Keras'
   ``one_step_on_data`` tf.function, XLA-compiled when ``jit_compile``), on that one fixed batch:
   the first call (trace + compile + one step) is timed on its own, then ``warmup`` untimed steps,
   then ``repeats`` timed steps; the figure is their median. Each step ends by reading the loss
   back (``float(logs["loss"])``), so the time covers the whole step;
4. reads peak RSS (``VmHWM``) after the first call and after the timed steps, resetting it in
   between (Linux ``/proc/self/clear_refs``), so "steady-state peak" is that of the steps alone
   (the process, with its model, optimizer state and TensorFlow runtime, during the steps).
   Between the two, as ``train`` does after its first batch (``solo_lib.memory``), glibc is asked
   to return the heap memory the first call's graph building freed (``malloc_trim``); the RSS it
   released is reported (``rss_released_after_first_call_mb``);
5. if asked (the efficiency benchmark), counts FLOPs and measures the matmul peak
   (``bench/efficiency.py``).
"""

from __future__ import annotations

import argparse
import time

from bench import setups
from bench.common import (
    Result,
    Target,
    apply_env_defaults,
    current_rss_mb,
    error_result,
    measure,
    peak_rss_mb,
    reset_peak_rss,
    run_worker,
    worker_reply,
)

CASES_FULL = ("paper", "paper_remat", "paper_accumulate", "paper_xla", "tiny")
CASES_QUICK = ("paper", "paper_remat", "paper_accumulate", "tiny")  # XLA-compiling the paper step takes minutes
PAPER_PRESET = ("paper", "paper_remat")  # issue 5's targets are on the paper preset's step


def build_step(case: str):
    """Steps 1 and 2 of the module docstring: one fixed batch and the compiled model of a set-up.

    Args:
        case: a set-up name of ``bench/setups.py``.

    Returns:
        ``(model, batch, images, targets, cfg)``: the compiled model with its train function made,
        ``batch = (images, targets)`` as tensors, the same batch as numpy arrays, and the set-up's
        ``TrainConfig``.
    """
    import keras
    import tensorflow as tf

    from solo_lib.data.pipeline import first_batch, steps_per_epoch
    from solo_lib.model.solov2 import build_model
    from solo_lib.optim import make_optimizer

    model_config, cfg, dataset = setups.training_setup(case)
    images, targets = first_batch(setups.training_dataset(model_config, cfg, dataset))
    batch = (tf.constant(images), {k: tf.constant(v) for k, v in targets.items()})

    keras.utils.set_random_seed(cfg.seed)
    model = build_model(model_config)  # as train builds it; the batch's canvas follows from the image scale
    model.compile(optimizer=make_optimizer(cfg, steps_per_epoch(dataset, cfg.batch_size)), jit_compile=cfg.jit_compile)
    model.accumulate_steps = cfg.accumulate_steps  # as train sets it
    model.optimizer.build(model.trainable_variables)
    model.make_train_function()
    return model, batch, images, targets, cfg


def batch_inputs(images, targets) -> str:
    """The batch in words, e.g. ``"batch 4 x 256x256; per image 24 instance and 64 pair slots (...)"``."""
    b, h, w, _ = images.shape
    valid = int(targets["pos_valid"].sum())
    return (f"batch {b} x {h}x{w}; per image {targets['masks'].shape[1]} instance and "
            f"{targets['pos_cells'].shape[1]} pair slots ({valid} real pairs in the batch)")


def worker(case: str, warmup: int, timed: int, efficiency: bool, quick: bool) -> dict:
    """Runs in the subprocess: measures one set-up (see the module docstring)."""
    from solo_lib.memory import release_freed_memory

    model, batch, images, targets, cfg = build_step(case)

    def step():
        return float(model.train_function([batch])["loss"])

    rss_before = current_rss_mb()
    reset_peak_rss()
    start = time.perf_counter()
    first_loss = step()
    first_call = time.perf_counter() - start
    first_call_peak = peak_rss_mb()
    rss_after_first = current_rss_mb()
    release_freed_memory()  # as solo_lib.train.train does after its first batch (ReleaseFreedMemory)
    rss_released = None if rss_after_first is None else rss_after_first - current_rss_mb()
    reset_ok = reset_peak_rss()
    timing = measure(step, warmup=warmup, repeats=timed)
    step_peak = peak_rss_mb()

    b, h, w, _ = images.shape
    out = {
        "case": case,
        "inputs": batch_inputs(images, targets),
        "batch_size": int(b), "canvas": [int(h), int(w)], "jit_compile": bool(cfg.jit_compile),
        "parameters": int(model.count_params()),
        "first_call_s": first_call,
        "step_s": timing.median,
        "images_per_s": b / timing.median,
        "timing": timing.to_dict(),
        "loss_first": first_loss, "loss_last": step(),
        "rss_before_steps_mb": rss_before,
        "peak_rss_first_call_mb": first_call_peak,
        "rss_released_after_first_call_mb": rss_released,
        "peak_rss_steps_mb": step_peak,
        "peak_rss_reset_supported": reset_ok,
    }
    if efficiency:
        from bench import efficiency as eff

        out["efficiency"] = {"flops": eff.count_flops(model, batch), "matmul_peak": eff.matmul_peak(quick)}
    return out


def measure_case(case: str, ctx) -> dict:
    """Runs the worker for one set-up (called through ``Context.step``, which caches it)."""
    from bench import efficiency

    paper = case.startswith("paper")  # tens of seconds per step on a 2-core CPU
    warmup = 1 if paper or ctx.quick else 2
    timed = (2 if paper else 4) if ctx.quick else (3 if paper else 10)
    args = [case, "--warmup", str(warmup), "--repeats", str(timed)]
    if "efficiency" in ctx.selected and case in efficiency.CASES:
        args.append("--efficiency")
    if ctx.quick:
        args.append("--quick")
    return run_worker("bench.train_step", args)


def rows_for(case: str, step: dict) -> list[Result]:
    metrics = {key: step[key] for key in ("step_s", "images_per_s", "first_call_s", "peak_rss_steps_mb",
                                          "peak_rss_first_call_mb", "rss_before_steps_mb")}
    metrics["compile_s"] = max(0.0, step["first_call_s"] - step["step_s"])
    figure = (f"{step['step_s']:.3g} s/step, {step['images_per_s']:.3g} img/s, "
              f"peak RSS {step['peak_rss_steps_mb']:.0f} MB (first call {step['first_call_s']:.1f} s)")
    details = {k: v for k, v in step.items() if k not in ("timing", "efficiency")}
    details["method"] = ("model.train_function([batch]) on one fixed batch from the real pipeline; "
                         "median of the timed steps after the first call and warm-up; compile_s = first call - median")
    # Issue 5: the paper preset on a 480x480 canvas, batch 2 must peak under 2 GB, with or without gradient
    # checkpointing (no target on the tiny preset or on XLA).
    target = Target("peak_rss_steps_mb", "<", 2000.0, "peak < 2 GB") if case in PAPER_PRESET else None
    return [Result("train_step", case, f"{setups.DESCRIPTIONS[case]}; {step['inputs']}", figure, metrics, target,
                   timing=step["timing"], details=details)]


def run(ctx) -> list[Result]:
    rows = []
    for case in CASES_QUICK if ctx.quick else CASES_FULL:
        try:
            rows += rows_for(case, ctx.step(case))
        except Exception as error:  # e.g. the worker ran out of memory: report it, go on
            rows.append(error_result("train_step", error, case))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="training-step worker (run by python -m bench)")
    parser.add_argument("--worker", choices=setups.SETUPS, required=True)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--efficiency", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    apply_env_defaults()
    worker_reply(worker(args.worker, args.warmup, args.repeats, args.efficiency, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
