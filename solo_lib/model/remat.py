"""Gradient checkpointing (rematerialisation): less memory in the training step, more compute.

Backprop needs, for most ops, some of their forward inputs or outputs ("activations"). By default
TensorFlow keeps every one of them from the forward pass until the backward pass has used it, so
the step's peak memory holds all the activations of the network at once. Gradient checkpointing
(Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost", arXiv 1604.06174) cuts the
network into segments: the forward pass keeps only each segment's inputs, and the backward pass
recomputes ("replays") one segment's activations at a time from them, just before it needs them.
The price is one more forward pass of every checkpointed segment.

Keras 3 has this built in (``keras.remat``, ``keras.RematScope``; on TensorFlow both are
``tf.recompute_grad``). We use the same mechanism, a ``tf.custom_gradient`` whose gradient
function replays the segment under a ``tf.GradientTape``, with three differences:

* **BatchNorm statistics.** In training mode a BatchNormalization layer assigns its moving mean and
  variance every time it is called, so a plain replay would update them a second time per step
  (statistics that decay with momentum^2 instead of momentum). Our replays run inside a
  ``keras.StatelessScope``, which collects variable assignments instead of applying them: the
  replay's are dropped and the forward pass's single update is the one that counts.
  GroupNormalization has no state, so the scope changes nothing for it.
* **When replays run.** TensorFlow's executor runs any op whose inputs are ready. A replay gated
  only on the first of its output gradients (as ``tf.recompute_grad`` does) may start while other
  branches of the backward pass are still running and then hold its activations next to theirs.
  Ours wait for *all* their output gradients, and the segments of a chain (:func:`checkpointed_chain`)
  or of a set of pieces sharing weights (:func:`checkpointed_in_turn`) are replayed one after the
  other, never interleaved.
* **Shared weights.** The head applies the same towers to five levels; :func:`checkpointed_in_turn`
  sums the weight gradients piece by piece instead of holding five copies until the end.

A piece of a chain may itself be a checkpointed chain (recursive checkpointing, Chen et al. 2016,
§4): the backbone keeps only its stages' outputs, and replays a stage block by block.

``tests/test_remat.py`` checks that a checkpointed step gives the same loss, gradients and
BatchNorm statistics as a plain one. The saving is real inside a ``tf.function`` (``Model.fit``,
``model.train_function``): the graph keeps only what the gradient functions refer to. Run eagerly,
an outer ``GradientTape`` also records the segments' ops, so values are the same but little memory
is saved.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf


def _after(tensors, gradients):
    """``tensors``, passed through only once every tensor in ``gradients`` has been computed.

    ``tf.identity`` under a control dependency: no copy. (``tf.recompute_grad`` adds a zero
    computed from the gradient instead, a data dependency that XLA cannot drop but that copies
    every input; under ``jit_compile=True`` XLA schedules memory itself.)
    """
    ready = [g for g in gradients if g is not None]
    with tf.control_dependencies(ready):
        return [tf.identity(t) for t in tensors]


def _replay_gradients(fn, inputs, output_grads, variables):
    """Runs ``fn(*inputs)`` again under a tape; returns the gradients of ``inputs`` (zeros where
    unconnected) and of ``variables`` (None for variables the replay did not use)."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        tape.watch(variables)
        with keras.StatelessScope():  # drops the replay's BatchNorm statistic updates
            outputs = fn(*inputs)
    grads = tape.gradient(outputs, list(inputs) + list(variables), output_gradients=list(output_grads))
    input_grads = [tf.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
    return input_grads, grads[len(inputs):]


def _add(total, grads):
    """Running sum of per-variable gradients (None = no contribution yet)."""
    if total is None:
        return list(grads)
    return [a if b is None else b if a is None else a + b for a, b in zip(total, grads)]


def _custom_gradient_result(input_grads, variable_grads, variables):
    """What a ``tf.custom_gradient`` gradient function returns: ``(inputs, variables)`` when the
    forward pass read variables (zeros for those without a gradient), else just the inputs."""
    if not variables:
        return input_grads
    return input_grads, [tf.zeros_like(v) if g is None else g for v, g in zip(variables, variable_grads)]


def checkpointed(fn):
    """Wraps ``fn`` so that backprop recomputes its activations instead of keeping them.

    Args:
        fn: a function of one or more float tensors (positional) returning a tensor or a flat
            tuple of tensors. It may read Keras variables (their gradients are returned) and
            assign them (applied once, in the forward pass). It must not create variables: call
            it only on built layers.

    Returns:
        A function with the same signature and outputs as ``fn``. Its backward pass starts when
        the gradients of all its outputs exist.
    """

    @tf.custom_gradient
    def wrapped(*inputs):
        def gradient(*output_grads, variables=None):
            variables = list(variables or [])
            input_grads, variable_grads = _replay_gradients(fn, _after(inputs, output_grads), output_grads, variables)
            return _custom_gradient_result(input_grads, variable_grads, variables)

        return fn(*inputs), gradient

    return wrapped


def checkpointed_chain(pieces, taps):
    """Checkpoints a chain ``x -> pieces[0] -> pieces[1] -> ...``, keeping only the boundaries.

    The backward pass starts when the gradients of all the returned outputs exist and replays the
    pieces from the last to the first, one at a time.

    Args:
        pieces: functions of one tensor returning one tensor (e.g. the stages of a backbone).
        taps: indices of the pieces whose outputs are returned (increasing).

    Returns:
        ``wrapped(x)`` -> the list of the tapped pieces' outputs.
    """
    taps = list(taps)

    @tf.custom_gradient
    def wrapped(x):
        boundaries = [x]
        for piece in pieces:
            boundaries.append(piece(boundaries[-1]))

        def gradient(*output_grads, variables=None):
            variables = list(variables or [])
            from_outputs = dict(zip(taps, output_grads))
            variable_grads, grad, wait_for = None, None, list(output_grads)
            for i in reversed(range(len(pieces))):
                # The gradient of piece i's output: from the caller (if tapped) and from piece i + 1.
                tapped = from_outputs.get(i)
                grad = tapped if grad is None else grad if tapped is None else grad + tapped
                (grad,), grads = _replay_gradients(pieces[i], _after([boundaries[i]], wait_for + [grad]), [grad],
                                                   variables)
                variable_grads = _add(variable_grads, grads)
                wait_for = []  # later pieces wait for their input gradient, i.e. for this replay
            return _custom_gradient_result([grad], variable_grads, variables)

        return [boundaries[i + 1] for i in taps], gradient

    return wrapped


def checkpointed_in_turn(fn):
    """Checkpoints independent pieces that may share weights, replayed one at a time.

    ``fn(index, x)`` computes piece ``index`` from its own input (e.g. one pyramid level through
    the head's towers). The backward pass starts when the gradients of all the pieces' outputs
    exist; it replays the pieces from the last to the first, each only once the previous one's
    gradients are computed, and sums the gradients of shared weights as they come. Replayed
    independently, the pieces would run interleaved and the backward pass would hold every
    piece's activations and its own copy of the weight gradients at once.

    Args:
        fn: ``fn(index, x) -> tuple of tensors`` (the same number for every piece).

    Returns:
        ``wrapped(*xs)`` -> a list with the tuple of outputs of each piece.
    """
    counts = []

    @tf.custom_gradient
    def wrapped(*inputs):
        outputs = [tuple(fn(i, x)) for i, x in enumerate(inputs)]
        counts[:] = [len(out) for out in outputs]

        def gradient(*output_grads, variables=None):
            variables = list(variables or [])
            starts = [sum(counts[:i]) for i in range(len(counts))]
            input_grads, variable_grads, done = [None] * len(inputs), None, list(output_grads)
            for i in reversed(range(len(inputs))):
                grads_i = output_grads[starts[i]:starts[i] + counts[i]]
                # Wait for every output gradient (first piece) or for the previous piece.
                (input_grads[i],), grads = _replay_gradients(lambda t, i=i: fn(i, t), _after([inputs[i]], done),
                                                              grads_i, variables)
                variable_grads = _add(variable_grads, grads)
                done = [input_grads[i], *[g for g in variable_grads if g is not None]]
            return _custom_gradient_result(input_grads, variable_grads, variables)

        return [t for out in outputs for t in out], gradient

    def call(*xs):
        flat = wrapped(*xs)
        pieces, start = [], 0
        for n in counts:
            pieces.append(tuple(flat[start:start + n]))
            start += n
        return pieces

    return call


def use_remat(remat: bool, training, *layers) -> bool:
    """Whether to checkpoint now: asked for, in training, and every layer already built (the
    first call, which creates the weights, always runs plainly)."""
    return bool(remat and training and all(layer.built for layer in layers))


@dataclasses.dataclass(frozen=True)
class Segments:
    """Consecutive pieces of a functional model, cut after each named layer.

    Each piece is a ``keras.Model`` view that shares the layers (and so the weights) of the
    original. They are kept in this plain holder rather than in a layer attribute of their own,
    so that neither Keras saving nor ``tf.train.Checkpoint`` sees the same weights twice.
    """

    models: tuple[keras.Model, ...]

    @classmethod
    def of(cls, model: keras.Model, boundaries) -> "Segments":
        """Cuts ``model`` (one input) after each layer in ``boundaries``, in order; the last
        boundary ends the last piece."""
        pieces, start = [], model.input
        for name in boundaries:
            end = model.get_layer(name).output
            pieces.append(keras.Model(start, end, name=f"{model.name}_upto_{name}"))
            start = end
        return cls(tuple(pieces))
