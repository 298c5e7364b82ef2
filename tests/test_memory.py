"""solo_lib.memory: giving the heap memory freed by the first step's graph building back."""

import sys

import pytest

from solo_lib import memory
from solo_lib.memory import ReleaseFreedMemory, release_freed_memory


def test_release_returns_a_bool_and_is_a_no_op_off_linux(monkeypatch):
    assert isinstance(release_freed_memory(), bool)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert release_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_gives_back_freed_heap_pages():
    from bench.common import current_rss_mb

    # Many small blocks (below glibc's mmap threshold, so they come from the heap), then free all
    # but the last one, which pins the heap's top: only malloc_trim can return the pages below it.
    blocks = [bytearray(64 * 1024) for _ in range(2000)]  # ~128 MB, touched (zero-filled)
    pin = bytearray(64 * 1024)
    before = current_rss_mb()
    del blocks
    assert release_freed_memory()
    assert current_rss_mb() < before - 64  # MB
    del pin


def test_callback_releases_once_after_the_first_batch(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append(1) or True)
    callback = ReleaseFreedMemory()
    for batch in range(3):
        callback.on_train_batch_end(batch)
    assert calls == [1]


def sgd_step(update_in_turn: bool):
    """One traced SGDL2 step (the paper's optimiser, global-norm clip) on three weights."""
    import keras
    import numpy as np
    import tensorflow as tf

    from solo_lib.memory import one_update_at_a_time
    from solo_lib.optim import SGDL2

    rng = np.random.default_rng(0)
    weights = [keras.Variable(rng.standard_normal(shape).astype("float32")) for shape in ((3, 4), (5,), (2, 2))]
    grads = [tf.constant(rng.standard_normal(w.shape).astype("float32")) for w in weights]
    optimizer = SGDL2(0.1, momentum=0.9, l2=1e-2, global_clipnorm=1.0)
    optimizer.build(weights)

    @tf.function
    def step():
        if update_in_turn:
            with one_update_at_a_time(optimizer):
                optimizer.apply_gradients(zip(grads, weights))
        else:
            optimizer.apply_gradients(zip(grads, weights))

    for _ in range(2):  # the second step uses the momentum of the first
        step()
    graph = step.get_concrete_function().graph
    return [w.numpy() for w in weights], graph, optimizer


def test_updates_in_turn_give_the_same_weights_and_are_chained():
    plain, plain_graph, _ = sgd_step(False)
    chained, graph, optimizer = sgd_step(True)
    from tolerances import assert_close_float32

    for a, b in zip(chained, plain):
        # The same arithmetic, only ordered by control edges: at most a reordered global norm (of
        # 12 + 5 + 4 = 21 gradient entries) over two steps, relative to the largest weight. An update
        # applied twice or skipped would move a weight by lr x gradient ~ 1e-2.
        assert_close_float32(a, b, terms=21, depth=2, what="weights updated in turn")
    assert "update_step" not in vars(optimizer)  # the wrapper is gone after the step

    def gated(g):  # ops waiting for a read of the weight updated before them
        return [op for op in g.get_operations() if any(c.type == "Identity" for c in op.control_inputs)]

    assert not gated(plain_graph)
    assert len({c.name for op in gated(graph) for c in op.control_inputs if c.type == "Identity"}) == 2
