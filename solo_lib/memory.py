"""Memory of a training step beyond its activations: the optimizer update, and freed heap.

**One update at a time.** TensorFlow's executor runs every op whose inputs are ready, in no set
order. The optimizer's update of a weight ``w`` with gradient ``g`` (SGD with momentum and L2
decay, ``solo_lib.optim.SGDL2``) makes temporaries as large as ``w`` (``l2 * w``, ``g + l2 * w``,
``lr * g'``, ``momentum * m``), and the terms that do not need ``g`` are ready from the start of
the step. Left alone, the executor computes them for all weights at once: on the paper preset
(47 M weights, 187 MB) that is two more copies of the weights at the end of the step, and, while
the backward pass still reads a weight, an update also copies it (a resource variable copies its
buffer on write while a reader holds it). :func:`one_update_at_a_time`, used by a checkpointed
step (``SOLOConfig.remat``), starts each weight's update after the previous one's, once all
gradients exist: the same arithmetic, at most one weight's temporaries alive.

**Freed heap.**
The first call of a ``tf.function`` traces the Python code into a graph, optimises it (Grappler)
and builds its executor: hundreds of megabytes of short-lived C++ objects (graph copies,
protobufs) allocated with ``malloc``. Once freed, glibc's allocator keeps most of that memory:
it only returns the free space at the very top of its heap to the operating system (see
``mallopt(3)``, ``M_TRIM_THRESHOLD``), and the space freed in the middle of the heap stays part of
the process's resident memory although nothing uses it (``/proc/self/smaps``, the ``[heap]``
mapping; the README's Performance section gives the amount). ``malloc_trim(0)``
(``malloc_trim(3)``) hands those free pages back.

Training tensors do not come from this heap: TensorFlow's CPU allocator (a BFC pool when oneDNN is
on) keeps its own memory and reuses it step after step, so there is nothing to trim after later
steps, and :class:`ReleaseFreedMemory` trims once, after the first training batch.

**Why not a public API.** Neither job has one, so both reach past Keras, each in one place:

* Keras orders nothing between the per-weight updates of ``Optimizer.apply``, and offers no hook
  to. Calling ``apply_gradients`` once per weight would advance ``iterations`` (and so the learning
  rate schedule) once per weight and clip each gradient alone; overriding ``update_step`` in a
  subclass, its documented extension point, would take one subclass per optimiser
  (``solo_lib.optim``) and change the optimiser class that checkpoints record. So
  :func:`one_update_at_a_time` wraps the instance's ``update_step`` while one ``apply_gradients``
  is traced. It relies on Keras' TensorFlow backend calling ``update_step(gradient, variable,
  learning_rate)`` once per weight (``TFOptimizer._distributed_tf_update_step``). Were that to
  change, the weights would still be right but the updates unordered (or a ``TypeError`` when
  traced); ``tests/test_memory.py::test_updates_in_turn_give_the_same_weights_and_are_chained``
  counts the ordering edges in the traced graph and fails then.
* Neither Python, TensorFlow nor Keras returns free heap pages to the system; glibc's
  ``malloc_trim`` is reached through ``ctypes``, and :func:`release_freed_memory` is a no-op
  without glibc. (glibc's own setting, ``M_TRIM_THRESHOLD``, governs only the top of the heap,
  not the pages freed below it, and as ``GLIBC_TUNABLES`` must be set before the process starts.)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys

import keras
import tensorflow as tf


@contextlib.contextmanager
def one_update_at_a_time(optimizer):
    """While active, ``optimizer.apply_gradients`` (traced in a ``tf.function``) updates the weights
    one after the other: each weight's update ops run after the previous weight is written.

    Wraps the optimizer's ``update_step``, the per-weight update Keras' TensorFlow backend calls in
    turn, under ``tf.control_dependencies`` on a read of the weight updated before (automatic
    control dependencies order that read after the writes to the same variable).

    Args:
        optimizer: a built ``keras.optimizers.Optimizer``.
    """
    original = optimizer.update_step  # the bound method
    previous = []

    def update_step(gradient, variable, learning_rate):
        with tf.control_dependencies(previous):
            original(gradient, variable, learning_rate)
            previous[:] = [tf.identity(variable)]

    optimizer.update_step = update_step  # an instance attribute, found before the class's method
    try:
        yield optimizer
    finally:
        del optimizer.update_step


def release_freed_memory() -> bool:
    """Asks glibc to return the free pages of its heaps to the operating system.

    Returns:
        True if memory was released; False if none was, or where there is no glibc (macOS,
        Windows, musl): a no-op there.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))


class ReleaseFreedMemory(keras.callbacks.Callback):
    """Calls :func:`release_freed_memory` once, after the first training batch (when the step's
    graph has been traced, optimised and run)."""

    def __init__(self):
        super().__init__()
        self.done = False

    def on_train_batch_end(self, batch, logs=None):
        if not self.done:
            self.done = True
            release_freed_memory()
