"""Benchmark 8: where the training step's time goes, op by op (TensorFlow profiler trace).

Issue 5 asks, for a target out of reach on this machine, for the profile that explains why. For
the ``tiny`` and ``paper`` set-ups (``bench/setups.py``) a worker subprocess
(``python -m bench.profile --worker SETUP``):

1. builds the batch and the compiled model with ``bench.train_step.build_step`` (the same batch and
   model the training-step benchmark times), runs ``warmup`` steps of ``model.train_function``,
   times one more untraced step, then traces ``steps`` steps between
   ``tf.profiler.experimental.start(logdir)`` and ``stop()``, timing each with ``perf_counter``
   (each ends by reading the loss back, as in ``train_step``);
2. reads the ``*.xplane.pb`` the profiler wrote and sums exclusive op time by category (forward
   and backward convolutions, matmul/einsum, normalisation and elementwise, data movement,
   optimizer update, other) and by model part (backbone, fpn, head, mask_feature, the loss and
   the top level, the optimizer), forward and backward separately (``bench/xplane.py`` says
   exactly which events count);
3. prints the largest op types;
4. counts the step's FLOPs with ``bench.efficiency.count_flops`` and measures the float32 matmul
   peak with ``bench.efficiency.matmul_peak`` in the same process.

Op time is thread time: TensorFlow's executor runs independent ops concurrently on its inter-op
threads, so the summed op time per step can exceed the step's wall time (their ratio,
``parallelism``, is reported; ``busy`` is the fraction of wall time with at least one op running).
Shares are fractions of the summed op time. To compare a category with the matmul peak, it gets
that share of the wall time: ``conv_efficiency = conv FLOPs / (conv share x traced step time) /
matmul peak``, with the graph's ``Conv2D`` + ``Conv2DBackpropInput`` + ``Conv2DBackpropFilter``
FLOPs (as run: with ``remat``, the replayed convolutions too). The step efficiency on the same
traced steps (all graph FLOPs / traced step time / peak; with ``remat``, the FLOPs of the step
without its replays, see ``bench/efficiency.py``) is reported next to it; the profiler adds a little
overhead to the traced steps (compare ``step_s_untraced``).

On a machine shared with other jobs the wall clock of a 0.1 s matmul and of a 20 s step are slowed
down by different amounts, so both efficiencies are also computed per CPU second: the process's
CPU time (``time.process_time``, all threads) over the traced steps, and over the peak's timed
matmuls (``flops_per_cpu_s``). Those ``*_cpu`` figures count the work done per CPU second the
process got, whatever else ran; they are the headline. (Threads spinning while they wait count as
CPU time in both.) ``cpu_utilization`` (CPU seconds per wall second) says how many cores the step
kept busy: below the core count on an idle machine, cores sat idle (waiting, or serial stretches).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from bench import setups
from bench.common import Result, apply_env_defaults, error_result, run_worker, worker_reply
from bench.xplane import layer_parts, op_events, read_xspace, summarize

CASES = ("tiny", "paper", "paper_remat")
TOP_OPS = 12

# ----------------------------------------------------------------------------------------------
# The worker


def worker(case: str, warmup: int, steps: int, quick: bool) -> dict:
    """Runs in the subprocess: profiles one set-up (see the module docstring)."""
    import tensorflow as tf

    from bench import efficiency
    from bench.train_step import batch_inputs, build_step

    model, batch, images, targets, _ = build_step(case)

    def step():
        return float(model.train_function([batch])["loss"])

    for _ in range(1 + warmup):  # the first call traces the function
        step()
    start = time.perf_counter()
    step()
    untraced = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="solo_profile_") as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            runs, cpu_start = [], time.process_time()
            for _ in range(steps):
                start = time.perf_counter()
                step()
                runs.append(time.perf_counter() - start)
            cpu = time.process_time() - cpu_start
        finally:
            tf.profiler.experimental.stop()
        events = op_events(read_xspace(logdir))

    summary = summarize(events, steps, model.name, model.optimizer.name, layer_parts(model))
    flops = efficiency.count_flops(model, batch)
    peak = efficiency.matmul_peak(quick)
    # Convolutions as run (with remat, replayed ones too: kernel speed); the step as useful work.
    by_op = flops["graph_train_step_executed_by_op"]
    return {
        "case": case, "inputs": batch_inputs(images, targets),
        "steps_traced": steps, "step_s_traced": sum(runs) / steps, "step_s_traced_runs": runs,
        "step_s_untraced": untraced, "cpu_s_traced": cpu / steps,
        "summary": summary,
        "conv_flops": sum(by_op.get(op, 0) for op in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")),
        "graph_flops": flops["graph_train_step_total"],
        "matmul_peak_flops_per_s": peak["flops_per_s"], "matmul_peak_flops_per_cpu_s": peak["flops_per_cpu_s"],
    }


# ----------------------------------------------------------------------------------------------
# Rows and tables


def metrics_of(reply: dict) -> dict:
    """The row's numbers from a worker's reply: shares, times, efficiencies."""
    summary, wall, peak = reply["summary"], reply["step_s_traced"], reply["matmul_peak_flops_per_s"]
    cpu, cpu_peak = reply["cpu_s_traced"], reply["matmul_peak_flops_per_cpu_s"]
    shares = summary["categories"]
    conv_share = shares["conv forward"] + shares["conv backward"]
    metrics = {f"share_{c.replace(' & ', '_').replace('/', '_').replace(' ', '_')}": v for c, v in shares.items()}
    metrics.update({
        "step_s_traced": wall, "step_s_untraced": reply["step_s_untraced"],
        "op_s_per_step": summary["op_s_per_step"],
        "parallelism": summary["op_s_per_step"] / wall,
        "busy_fraction": summary["busy_s_per_step"] / wall,
        "share_conv": conv_share,
        "cpu_s_per_step": cpu,
        "cpu_utilization": cpu / wall,  # CPUs the process kept busy on average (at most the core count)
        "step_efficiency": reply["graph_flops"] / wall / peak,
        "conv_efficiency": reply["conv_flops"] / max(1e-12, conv_share * wall) / peak,
        "step_efficiency_cpu": reply["graph_flops"] / cpu / cpu_peak,
        "conv_efficiency_cpu": reply["conv_flops"] / max(1e-12, conv_share * cpu) / cpu_peak,
        "matmul_peak_gflop_per_cpu_s": cpu_peak / 1e9,
        "conv_gflop": reply["conv_flops"] / 1e9,
        "matmul_peak_gflop_per_s": peak / 1e9,
    })
    return metrics


def format_profile(case: str, reply: dict) -> str:
    """A set-up's profile as text: step time, category shares, model parts, the top op types."""
    m, summary = metrics_of(reply), reply["summary"]
    lines = [f"{case}: {m['step_s_traced']:.3f} s per traced step ({m['step_s_untraced']:.3f} s untraced), "
             f"op time {m['op_s_per_step']:.3f} s/step (parallelism {m['parallelism']:.2f}, "
             f"at least one op running {100 * m['busy_fraction']:.0f}% of the time)",
             f"  per CPU second ({m['cpu_s_per_step']:.2f} CPU s/step, {m['cpu_utilization']:.2f} CPUs busy; "
             f"matmul peak {m['matmul_peak_gflop_per_cpu_s']:.1f} GFLOP/CPU s): step "
             f"{100 * m['step_efficiency_cpu']:.1f}% of peak, convolutions alone {100 * m['conv_efficiency_cpu']:.1f}% "
             f"({m['conv_gflop']:.1f} GFLOP in {100 * m['share_conv']:.1f}% of the op time)",
             f"  per wall second (matmul peak {m['matmul_peak_gflop_per_s']:.1f} GFLOP/s): step "
             f"{100 * m['step_efficiency']:.1f}%, convolutions alone {100 * m['conv_efficiency']:.1f}%",
             "  category              share"]
    for category, share in sorted(summary["categories"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {category:<20} {100 * share:6.1f}%")
    lines.append("  model part            forward  backward  update")
    for part, shares in summary["parts"].items():
        cells = "".join(f"{100 * shares.get(d, 0.0):8.1f}%" for d in ("forward", "backward", "update"))
        lines.append(f"  {part:<20}{cells}")
    lines.append(f"  {'top op types':<38} {'share':>6}  ops/step  category")
    for row in summary["op_types"][:TOP_OPS]:
        lines.append(f"  {row['op_type']:<38} {100 * row['share']:5.1f}%  {row['count_per_step']:8.0f}  "
                     f"{row['category']}")
    return "\n".join(lines)


def rows_for(case: str, reply: dict) -> list[Result]:
    metrics = metrics_of(reply)
    shares = reply["summary"]["categories"]
    top = sorted(shares.items(), key=lambda kv: -kv[1])[:3]
    figure = (", ".join(f"{c} {100 * s:.0f}%" for c, s in top) + f" of op time; per CPU s, convs at "
              f"{100 * metrics['conv_efficiency_cpu']:.0f}% of peak, step {100 * metrics['step_efficiency_cpu']:.0f}%")
    details = {"method": "tf.profiler trace of model.train_function steps; exclusive op time summed by op type, "
                         "category and name scope (see bench/xplane.py); shares of summed op time; "
                         "conv_efficiency = graph conv FLOPs / (conv share x traced step time) / matmul peak; "
                         "*_cpu: the same with process CPU time instead of wall time (robust to other jobs)",
               "summary": reply["summary"], "step_s_traced_runs": reply["step_s_traced_runs"],
               "steps_traced": reply["steps_traced"], "conv_flops": reply["conv_flops"],
               "graph_flops": reply["graph_flops"]}
    return [Result("profile", case, f"{setups.DESCRIPTIONS[case]}; {reply['inputs']}; "
                   f"{reply['steps_traced']} traced steps", figure, metrics, details=details)]


def run(ctx) -> list[Result]:
    """Profiles each set-up in its own worker subprocess and prints its tables."""
    rows = []
    for case in CASES:
        paper = case.startswith("paper")
        warmup = 1 if paper else 2
        steps = (2 if paper else 3) if ctx.quick else (3 if paper else 6)
        args = [case, "--warmup", str(warmup), "--steps", str(steps)] + (["--quick"] if ctx.quick else [])
        print(f"  [profile worker: {case}]", flush=True)
        try:
            reply = run_worker("bench.profile", args)
        except Exception as error:
            rows.append(error_result("profile", error, case))
            continue
        print(format_profile(case, reply), flush=True)
        rows += rows_for(case, reply)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="profiling worker (run by python -m bench)")
    parser.add_argument("--worker", choices=setups.SETUPS, required=True)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    apply_env_defaults()
    worker_reply(worker(args.worker, args.warmup, args.steps, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
