"""Reading a TensorFlow profiler trace (``*.xplane.pb``) into op time by category and model part.

Used by ``bench/profile.py`` (benchmark 8), which traces training steps; this module only reads
what the profiler wrote:

1. :func:`read_xspace` loads the newest ``*.xplane.pb`` and :func:`op_events` lists its op events.
   What is summed: on the host plane (``/host:CPU``) every event whose
   metadata name is ``"<op name>:<op type>"`` with the op type as its display name, i.e. one
   TensorFlow kernel execution (on the executor's ``tf_Compute`` threads, or on the Python thread
   for eager ops). Runtime events on the same lines (``ExecutorState::Process``, which wraps the
   ops it runs, ``EagerExecute``, the ``one_step_on_data`` function event, thread-pool markers) are
   not ops and are skipped, so the function's outer event and the ops inside it are not both
   counted. An op event nested inside another op event on the same thread (a function-call op
   running its body inline) counts only its own time: the parent's duration minus its children's
   (exclusive time); function-call op types (``PartitionedCall``, ``While``, ...) are skipped
   altogether, since their bodies may run on other threads;
2. :func:`summarize` groups op types into categories (:func:`category_of`: forward and backward convolutions,
   matmul/einsum, normalisation and elementwise, data movement, optimizer update, other) and op
   names into model parts (:func:`scope_of`: backbone, fpn, head, mask_feature, the loss and
   everything else at the top level, the optimizer), forward and backward separately.

Op time is thread time: TensorFlow's executor runs independent ops concurrently on its inter-op
threads, so the summed op time per step can exceed the step's wall time.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

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


def layer_parts(model) -> dict[str, str]:
    """``{layer name: part name}`` for every layer nested in the model's parts (``SOLOv2.parts``,
    and the backbone's checkpoint pieces), for :func:`scope_of`. With ``SOLOConfig.remat`` the backward pass replays
    pieces inside gradient functions, whose ops are named after the innermost layers only
    (``gradient_tape/p2_block0_1/p2_block0_conv_1/convolution``), not after the model and part.
    Names found in two parts are left out."""
    found: dict[str, set[str]] = {}
    for part in model.parts:
        layers = list(part._flatten_layers(include_self=False, recursive=True))
        segments = getattr(part, "segments", None)
        layers += list(segments.models) if segments is not None else []
        for layer in layers:
            found.setdefault(layer.name, set()).add(part.name)
    return {name: owners.pop() for name, owners in found.items() if len(owners) == 1}


def scope_of(op_name: str, model_scope: str, optimizer_scope: str,
             layers: dict[str, str] | None = None) -> tuple[str, str]:
    """``(part, direction)`` of an op from its name.

    Args:
        op_name: e.g. ``"gradient_tape/sol_ov2_1/head_1/kernel_out_5/convolution/Conv2DBackpropInput"``.
        model_scope: the model's name scope (``model.name``, e.g. ``"sol_ov2"``).
        optimizer_scope: the optimizer's (``model.optimizer.name``, compared case-insensitively).
        layers: :func:`layer_parts` of the model: the part of an op whose outer scope is one of its
            layers rather than the model (the replays of a checkpointed step).

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
    if layers and len(parts) > 1 and _base(parts[0]) in layers:
        return layers[_base(parts[0])], direction
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


def summarize(events, steps: int, model_scope: str = "", optimizer_scope: str = "",
              layers: dict[str, str] | None = None) -> dict:
    """Op time per step by category, op type and model part.

    Args:
        events: :func:`op_events` of a trace of ``steps`` steps.
        steps: how many steps the trace holds (totals are divided by it).
        model_scope, optimizer_scope, layers: see :func:`scope_of`.

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
        part, direction = scope_of(name, model_scope, optimizer_scope, layers)
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
