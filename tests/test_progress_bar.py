"""``ProgressBar``: one bar for the whole run, because a notebook keeps every bar it displayed."""

import pytest
import tqdm.auto

from solo_lib.callbacks import ProgressBar


class RecordingBar:
    """Stands in for ``tqdm.auto.tqdm`` and records what the callback did with it."""

    made = []

    def __init__(self, total, desc, unit):
        self.total, self.desc, self.unit, self.n, self.closed, self.postfix = total, desc, unit, 0, False, None
        self.start_t, self.disable = 1.0, False
        RecordingBar.made.append(self)

    def set_description(self, desc):
        self.desc = desc

    def update(self, n):
        self.n += n

    def set_postfix(self, **values):
        self.postfix = values

    def reset(self, total=None):
        self.total, self.n, self.start_t = total, 0, None

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", RecordingBar)
    return RecordingBar.made


def fit(callback, first_epoch, last_epoch, steps):
    """Calls the hooks in the order ``Model.fit`` does, for epochs first_epoch..last_epoch - 1."""
    for epoch in range(first_epoch, last_epoch):
        callback.on_epoch_begin(epoch)
        for batch in range(steps):
            callback.on_train_batch_end(batch, {"loss": 1.0 / (batch + 1)})
        callback.on_epoch_end(epoch)
    callback.on_train_end()


def test_one_bar_for_all_epochs_closed_at_the_end(bars):
    fit(ProgressBar(steps=3, epochs=4), 0, 4, 3)
    assert len(bars) == 1
    bar = bars[0]
    assert (bar.total, bar.n, bar.desc, bar.unit, bar.closed) == (12, 12, "epoch 4/4", "step", True)
    assert bar.postfix == {"loss": "0.333"}


def test_a_resumed_run_stopped_early_counts_only_its_own_steps(bars):
    # Resumed after 2 of 5 epochs, stopped (e.g. by MaskAPCurve) after epoch 3: one bar for epochs
    # 3-5 (6 steps) while it runs; it ends complete at the 2 steps done and says it stopped early.
    callback = ProgressBar(steps=2, epochs=5)
    callback.on_epoch_begin(2)
    assert len(bars) == 1 and bars[0].total == 6
    fit(callback, 2, 3, 2)
    assert len(bars) == 1
    assert (bars[0].total, bars[0].n, bars[0].desc, bars[0].closed) == (2, 2, "epoch 3/5, stopped early", True)
    assert bars[0].start_t == 1.0  # the elapsed time still counts from the start of the run



@pytest.mark.parametrize("disabled", [False, True])
def test_real_tqdm_bar_stopped_early_or_silenced(monkeypatch, capsys, disabled):
    # The real tqdm (a terminal bar here). A disabled one (TQDM_DISABLE=1, as in CI and these tests)
    # counts nothing and has no clock, so a run that stops early must not try to redraw it. tqdm
    # reads TQDM_DISABLE once, at import, so the test passes ``disable`` explicitly.
    import tqdm.std

    class Bar(tqdm.std.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, disable=disabled, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    callback = ProgressBar(steps=2, epochs=5)
    fit(callback, 0, 2, 2)  # stopped after 2 of 5 epochs
    assert callback.bar is None
    shown = capsys.readouterr().err
    assert ("stopped early" in shown) is not disabled
