"""Benchmark 8: where the training step's time goes, op by op (TensorFlow profiler trace).

Issue 5 asks, for a target out of reach on this machine, for the profile that explains why. For
the ``tiny`` and ``paper`` set-ups (``bench/setups.py``) a worker subprocess
(``python -m bench.profile --worker SETUP``):

1. builds the batch and the compiled model with ``bench.train_step.build_step`` (the same batch and
   model the training-step benchmark times), runs ``warmup`` steps of ``model.train_function``,
   times one more untraced step, then traces ``steps`` steps between
   ``tf.profiler.experimental.start(logdir)`` and ``stop()``, timing each with ``perf_counter``
   (each ends by reading the loss back, as in ``train_step``);
2. reads the ``*.xplane.pb`` the profiler wrote (:func:`read_xspace`) and sums op time
   (:func:`op_events`). What is summed: on the host plane (``/host:CPU``) every event whose
   metadata name is ``"<op name>:<op type>"`` with the op type as its display name, i.e. one
   TensorFlow kernel execution (on the executor's ``tf_Compute`` threads, or on the Python thread
   for eager ops). Runtime events on the same lines (``ExecutorState::Process``, which wraps the
   ops it runs, ``EagerExecute``, the ``one_step_on_data`` function event, thread-pool markers) are
   not ops and are skipped, so the function's outer event and the ops inside it are not both
   counted. An op event nested inside another op event on the same thread (a function-call op
   running its body inline) counts only its own time: the parent's duration minus its children's
   (exclusive time); function-call op types (``PartitionedCall``, ``While``, ...) are skipped
   altogether, since their bodies may run on other threads;
3. groups op types into categories (:func:`category_of`: forward and backward convolutions,
   matmul/einsum, normalisation and elementwise, data movement, optimizer update, other) and op
   names into model parts (:func:`scope_of`: backbone, fpn, head, mask_feature, the loss and
   everything else at the top level, the optimizer), forward and backward separately;
4. counts the step's FLOPs with ``bench.efficiency.count_flops`` and measures the float32 matmul
   peak with ``bench.efficiency.matmul_peak`` in the same process.

Op time is thread time: TensorFlow's executor runs independent ops concurrently on its inter-op
threads, so the summed op time per step can exceed the step's wall time (their ratio,
``parallelism``, is reported; ``busy`` is the fraction of wall time with at least one op running).
Shares are fractions of the summed op time. To compare a category with the matmul peak, it gets
that share of the wall time: ``conv_efficiency = conv FLOPs / (conv share x traced step time) /
matmul peak``, with the graph's ``Conv2D`` + ``Conv2DBackpropInput`` + ``Conv2DBackpropFilter``
FLOPs. The step efficiency on the same traced steps (all graph FLOPs / traced step time / peak) is
reported next to it; the profiler adds a little overhead to the traced steps (compare
``step_s_untraced``).

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
import collections
import re
import tempfile
import time
from pathlib import Path

from bench import setups
from bench.common import Result, apply_env_defaults, error_result, run_worker, worker_reply

CASES = ("tiny", "paper")
TOP_OPS = 12

CATEGORIES = ("conv forward", "conv backward", "matmul/einsum", "norm & elementwise", "data movement",
              "optimizer update", "other")

# Ops whose events wrap a function body (which may run on other threads): not counted.
FUNCTION_OPS = {"PartitionedCall", "StatefulPartitionedCall", "While", "StatelessWhile", "If", "StatelessIf",
                "Case", "StatelessCase", "RemoteCall"}

# GroupNormalization's pieces (moments, rsqrt, scale and shift), activations, losses, reductions
# and their gradients: memory-bound, one pass over a tensor each.
ELEMENTWISE = {
    "Add", "AddV2", "AddN", "Sub", "Mul", "MulNoNan", "Neg", "RealDiv", "Div", "DivNoNan", "Reciprocal",
    "Square", "SquaredDifference", "Sqrt", "Rsqrt", "RsqrtGrad", "SqrtGrad", "Pow", "Exp", "Log", "Log1p",
    "Maximum", "Minimum", "Abs", "Sign", "Relu", "ReluGrad", "Relu6", "Sigmoid", "SigmoidGrad", "Tanh",
    "TanhGrad", "Softplus", "Mean", "Sum", "Prod", "Max", "Min", "BiasAdd", "BiasAddGrad", "FusedBatchNormV3",
    "FusedBatchNormGradV3", "Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual",
    "LogicalAnd", "LogicalOr", "LogicalNot", "Floor", "FloorDiv", "FloorMod", "ClipByValue", "IsFinite",
    "L2Loss", "Erf", "Cos", "Sin",
}

# Resizes, gathers, scatters and copies: data movement with little or no arithmetic.
DATA_MOVEMENT = {
    "Transpose", "ConcatV2", "Concat", "Pad", "PadV2", "MirrorPad", "Slice", "StridedSlice",
    "StridedSliceGrad", "Reshape", "Tile", "Pack", "Unpack", "Split", "SplitV", "Identity", "IdentityN",
    "Cast", "BroadcastTo", "OneHot", "Select", "SelectV2", "Where", "GatherV2", "GatherNd", "ResourceGather",
    "ScatterNd", "TensorScatterUpdate", "TensorScatterAdd", "UnsortedSegmentSum", "ResizeBilinear",
    "ResizeBilinearGrad", "ResizeNearestNeighbor", "ResizeNearestNeighborGrad", "MaxPool", "MaxPoolGrad",
    "AvgPool", "AvgPoolGrad", "Fill", "ZerosLike", "OnesLike", "Range", "ExpandDims", "Squeeze", "Reverse",
    "ReverseV2", "Shape", "ShapeN", "Size", "Rank", "ReadVariableOp", "AssignVariableOp", "ConcatOffset",
}


# ----------------------------------------------------------------------------------------------
# Reading a trace


def read_xspace(logdir):
    """The profiler's ``XSpace`` written under ``logdir`` (the newest ``*.xplane.pb``).

    Raises:
        FileNotFoundError: if the profiler wrote no ``*.xplane.pb`` there.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    found = sorted(Path(logdir).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no *.xplane.pb under {logdir}: did tf.profiler.experimental.stop() run?")
    space = xplane_pb2.XSpace()
    space.ParseFromString(found[-1].read_bytes())
    return space


def op_events(space) -> list[tuple[str, str, int, int, int]]:
    """Every TensorFlow op execution on the host plane, with its exclusive duration.

    Args:
        space: an ``XSpace`` (:func:`read_xspace`).

    Returns:
        ``(op_name, op_type, start_ps, duration_ps, exclusive_ps)`` per op event, ``start_ps`` on the
        plane's common clock; ``exclusive_ps`` is ``duration_ps`` minus that of op events nested
        inside it on the same thread (see the module docstring for what counts as an op event).

    Raises:
        ValueError: if the space has no ``/host:CPU`` plane.
    """
    planes = [plane for plane in space.planes if plane.name == "/host:CPU"]
    if not planes:
        raise ValueError(f"no /host:CPU plane in the trace (planes: {[p.name for p in space.planes]})")
    plane = planes[0]
    kinds = {}  # metadata id -> (op_name, op_type), or None for a runtime event
    for key, meta in plane.event_metadata.items():
        name, op_type = meta.name, meta.display_name
        is_op = op_type and name.endswith(":" + op_type) and op_type not in FUNCTION_OPS
        kinds[key] = (name[: -len(op_type) - 1], op_type) if is_op else None
    out = []
    for line in plane.lines:
        base = line.timestamp_ns * 1000
        events = sorted((e for e in line.events if kinds.get(e.metadata_id)),
                        key=lambda e: (e.offset_ps, -e.duration_ps))  # a parent before its children
        stack = []  # indices into out of the enclosing op events on this thread
        for event in events:
            start = base + event.offset_ps
            while stack and out[stack[-1]][2] + out[stack[-1]][3] <= start:
                stack.pop()
            if stack:  # nested: the parent keeps only its own time
                parent = out[stack[-1]]
                out[stack[-1]] = (*parent[:4], max(0, parent[4] - event.duration_ps))
            name, op_type = kinds[event.metadata_id]
            out.append((name, op_type, start, event.duration_ps, event.duration_ps))
            stack.append(len(out) - 1)
    return out


def busy_ps(events) -> int:
    """Wall time (ps) with at least one op running: the union of the events' intervals."""
    total, current_start, current_end = 0, None, None
    for _, _, start, duration, _ in sorted(events, key=lambda e: e[2]):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, start + duration
        else:
            current_end = max(current_end, start + duration)
    if current_end is not None:
        total += current_end - current_start
    return total


# ----------------------------------------------------------------------------------------------
# Grouping


def _base(part: str) -> str:
    """A name-scope component without Keras' call-count suffix (``head_1`` -> ``head``)."""
    return re.sub(r"_\d+$", "", part)


def scope_of(op_name: str, model_scope: str, optimizer_scope: str) -> tuple[str, str]:
    """``(part, direction)`` of an op from its name.

    Args:
        op_name: e.g. ``"gradient_tape/sol_ov2_1/head_1/kernel_out_5/convolution/Conv2DBackpropInput"``.
        model_scope: the model's name scope (``model.name``, e.g. ``"sol_ov2"``).
        optimizer_scope: the optimizer's (``model.optimizer.name``, compared case-insensitively).

    Returns:
        part: ``"optimizer"``, the model's sub-layer (``"backbone"``, ``"fpn"``, ``"head"``,
        ``"mask_feature"``, or ``"model (other)"`` for ops directly in the model's scope), or
        ``"loss & top level"`` (the loss, metrics, gradient clipping, and grappler-rewritten ops whose
        scope was lost); direction: ``"backward"`` under ``gradient_tape/``, else ``"forward"``
        (``"update"`` for the optimizer).
    """
    backward = op_name.startswith("gradient_tape/")
    parts = op_name.split("/")[1 if backward else 0:]
    direction = "backward" if backward else "forward"
    if _base(parts[0]).lower() == optimizer_scope.lower():
        return "optimizer", "update"
    if _base(parts[0]) == model_scope:
        return (_base(parts[1]) if len(parts) > 2 else "model (other)"), direction
    return "loss & top level", direction


def category_of(op_type: str, part: str = "") -> str:
    """One of :data:`CATEGORIES` for an op type (oneDNN names included, e.g. ``_MklNativeConv2D``).

    Args:
        op_type: the kernel's op type as the trace shows it.
        part: the op's model part (:func:`scope_of`); every non-GEMM op of the ``"optimizer"`` part
            is an optimizer update.
    """
    if "Conv2D" in op_type or "Conv2d" in op_type or "Conv3D" in op_type:
        return "conv backward" if "Backprop" in op_type else "conv forward"
    if "MatMul" in op_type or "Einsum" in op_type:
        return "matmul/einsum"
    if part == "optimizer" or op_type.startswith(("Assign", "ResourceApply", "ApplyGradient")):
        return "optimizer update"
    plain = op_type[len("_Mkl"):] if op_type.startswith("_Mkl") else op_type
    plain = plain[len("Native"):] if plain.startswith("Native") else plain
    if plain in ELEMENTWISE or plain.startswith("_Fused"):
        return "norm & elementwise"
    if plain in DATA_MOVEMENT:
        return "data movement"
    return "other"


def summarize(events, steps: int, model_scope: str = "", optimizer_scope: str = "") -> dict:
    """Op time per step by category, op type and model part.

    Args:
        events: :func:`op_events` of a trace of ``steps`` steps.
        steps: how many steps the trace holds (totals are divided by it).
        model_scope, optimizer_scope: see :func:`scope_of`.

    Returns:
        a dict: ``op_s_per_step`` (summed exclusive op time per step), ``busy_s_per_step``,
        ``categories`` ({category: share}, every category, summing to 1), ``category_s_per_step``,
        ``op_types`` ([{op_type, category, share, count_per_step, s_per_step}] by decreasing time;
        the category of the type itself, wherever it runs),
        ``parts`` ({part: {direction: share}}).
    """
    total = sum(e[4] for e in events) or 1
    by_category = dict.fromkeys(CATEGORIES, 0)
    by_type, counts, parts = collections.Counter(), collections.Counter(), {}
    for name, op_type, _, _, exclusive in events:
        part, direction = scope_of(name, model_scope, optimizer_scope)
        category = category_of(op_type, part)
        by_category[category] += exclusive
        by_type[op_type] += exclusive
        counts[op_type] += 1
        parts.setdefault(part, collections.Counter())[direction] += exclusive
    return {
        "op_s_per_step": total / 1e12 / steps,
        "busy_s_per_step": busy_ps(events) / 1e12 / steps,
        "categories": {c: v / total for c, v in by_category.items()},
        "category_s_per_step": {c: v / 1e12 / steps for c, v in by_category.items()},
        "op_types": [{"op_type": t, "category": category_of(t), "share": v / total,
                      "count_per_step": counts[t] / steps, "s_per_step": v / 1e12 / steps}
                     for t, v in by_type.most_common()],
        "parts": {p: {d: v / total for d, v in c.items()}
                  for p, c in sorted(parts.items(), key=lambda kv: -sum(kv[1].values()))},
    }


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

    summary = summarize(events, steps, model.name, model.optimizer.name)
    flops = efficiency.count_flops(model, batch)
    peak = efficiency.matmul_peak(quick)
    by_op = flops["graph_train_step_by_op"]
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
                         "category and name scope (see bench/profile.py); shares of summed op time; "
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
        warmup = 1 if case == "paper" else 2
        steps = (2 if case == "paper" else 3) if ctx.quick else (3 if case == "paper" else 6)
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
