"""Giving freed memory back to the operating system after the first training step.

The first call of a ``tf.function`` traces the Python code into a graph, optimises it (Grappler)
and builds its executor: hundreds of megabytes of short-lived C++ objects (graph copies,
protobufs) allocated with ``malloc``. Once freed, glibc's allocator keeps most of that memory:
it only returns the free space at the very top of its heap to the operating system (see
``mallopt(3)``, ``M_TRIM_THRESHOLD``), and the space freed in the middle of the heap stays part of
the process's resident memory although nothing uses it. On the paper preset that is about 150 MB
of a training process's 2 GB (measured with ``bench/train_step.py``; ``/proc/self/smaps``, the
``[heap]`` mapping). ``malloc_trim(0)`` (``malloc_trim(3)``) hands those free pages back.

Training tensors do not come from this heap: TensorFlow's CPU allocator (a BFC pool when oneDNN is
on) keeps its own memory and reuses it step after step, so there is nothing to trim after later
steps, and :class:`ReleaseFreedMemory` trims once, after the first training batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import keras


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
