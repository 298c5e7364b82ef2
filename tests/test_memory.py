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
