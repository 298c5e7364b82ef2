"""The Keras callbacks ``solo_lib.train.train`` fits with (notebooks 08-09).

Each does one thing at the end of a batch or an epoch: keep the epoch counter that checkpoints
carry (:class:`EpochCounter`), write checkpoints (:class:`EpochCheckpoint`), stop at the first
non-finite loss (:class:`NonFiniteLossGuard`), report progress (:class:`ProgressBar`,
:class:`EpochLog`), and measure mask AP for learning curves or to stop once the training images
are memorised (:class:`MaskAPCurve`). Pass extra ones to ``train(..., callbacks=[...])``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras

from solo_lib.checkpoints import save_checkpoint
from solo_lib.data.coco import CocoDataset
from solo_lib.distributed import is_chief
from solo_lib.errors import TrainingError
from solo_lib.evaluate import evaluate_model


class EpochCounter(keras.callbacks.Callback):
    """Keeps ``model.epochs_done`` (saved with the weights) equal to the epochs finished."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.epochs_done.assign(epoch + 1)


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes ``epoch_NNNN.keras`` every ``every`` epochs and after the last one (after
    :class:`EpochCounter`, so the file knows its epoch). In a multi-worker run only the chief
    writes into ``directory``; the other workers save to a temporary folder they delete
    (:func:`solo_lib.checkpoints.save_checkpoint`)."""

    def __init__(self, directory: str, every: int, last_epoch: int):
        super().__init__()
        self.directory, self.every, self.last_epoch = Path(directory), every, last_epoch

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every == 0 or done == self.last_epoch:
            save_checkpoint(self.model, self.directory / f"epoch_{done:04d}.keras",
                            chief=is_chief(self.model.distribute_strategy))


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, before any checkpoint can save it.

    Keras' ``keras.callbacks.TerminateOnNaN`` does the same check, but by default only sets
    ``model.stop_training`` and prints a line: ``fit`` returns as if training had ended, after the
    end-of-epoch callbacks have run, so :class:`EpochCheckpoint` may save the non-finite weights. With
    ``raise_error=True`` it raises a bare ``RuntimeError`` that names only the batch index within
    the epoch. This one raises :class:`~solo_lib.errors.TrainingError`, which the command line
    turns into a one-line error and exit code, naming the epoch, the batch and the optimizer step,
    and saying what to try (a test checks the message).
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            step = int(self.model.optimizer.iterations.numpy())
            raise TrainingError(
                f"non-finite loss ({loss}) at epoch {self.epoch + 1}, batch {batch + 1} of the epoch "
                f"(optimizer step {step}); no checkpoint was written after it. Try a lower learning rate, "
                "a smaller clip_norm, or check that batch's images and masks.")


class ProgressBar(keras.callbacks.Callback):
    """One tqdm bar for the whole run, with the epoch and the running loss (silenced by
    ``TQDM_DISABLE=1``).

    One bar, not one per epoch: a notebook keeps every bar it ever displayed in its saved output,
    so a bar per epoch would leave dozens of frozen bars behind. The bar counts the steps of the
    epochs this run trains (a resumed run starts at its first new epoch) and is closed when
    training ends. When a callback such as :class:`MaskAPCurve` stops training early, the bar ends
    where training ended and says so (a notebook bar closed short of its total is drawn red, as if
    training had failed).

    ``tqdm.keras.TqdmCallback`` (tqdm 4.70) does not do these: it shows one bar over epochs plus
    a batch bar for the current epoch (``verbose=1``, the batch bar reset every epoch) or a new
    batch bar per epoch (``verbose=2``), it creates its bars when it is constructed rather than when
    training starts, and a run stopped early leaves its epoch bar closed short of its total (red in
    a notebook).
    """

    def __init__(self, steps: int, epochs: int):
        super().__init__()
        self.steps, self.epochs, self.bar = steps, epochs, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.bar is None:  # the first epoch of this run tells where a resumed run starts
            from tqdm.auto import tqdm

            self.bar = tqdm(total=(self.epochs - epoch) * self.steps, desc="training", unit="step")
        self.bar.set_description(f"epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{float(logs.get('loss', 0.0)):.3f}")

    def on_train_end(self, logs=None):
        if self.bar is not None:
            # Stopped early on purpose: a finished bar, not a failed one. (A disabled bar, under
            # TQDM_DISABLE=1, counts nothing and has no clock: nothing to redraw.)
            if not self.bar.disable and self.bar.n < self.bar.total:
                done, started = self.bar.n, self.bar.start_t
                self.bar.set_description(f"{self.bar.desc.rstrip(': ')}, stopped early")
                self.bar.reset(total=done)  # reset() also resizes a notebook bar; it zeroes n and the clock
                self.bar.start_t = started
                self.bar.update(done)
            self.bar.close()
            self.bar = None


class EpochLog(keras.callbacks.Callback):
    """One line per epoch: the loss and its components."""

    def __init__(self, epochs: int, every: int = 1):
        super().__init__()
        self.epochs, self.every = epochs, every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs:
            print(f"epoch {epoch + 1:3d}/{self.epochs}: loss {logs['loss']:.3f} "
                  f"(category {logs['category_loss']:.3f}, mask {logs['mask_loss']:.3f})", flush=True)


class MaskAPCurve(keras.callbacks.Callback):
    """COCO mask AP on ``dataset`` every ``every`` epochs and after the last one, for learning
    curves and for training "until it has memorised": ``stop_at`` ends training at the first
    measurement with AP50 at least that. Evaluation time is not counted in ``train_seconds``.

    Attributes:
        points: one dict per measurement: ``epoch``, ``steps``, ``train_seconds``, ``loss``,
            ``mask_ap``, ``mask_ap50``.
        reached: the first point that met ``stop_at``, or None.
    """

    def __init__(self, dataset: CocoDataset, every: int, *, stop_at: float | None = None, verbose: bool = True):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.dataset, self.every, self.stop_at, self.verbose = dataset, every, stop_at, verbose
        self.seconds, self.points, self.reached = 0.0, [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds += time.perf_counter() - self.started
        done = epoch + 1
        if done % self.every and done != self.params["epochs"]:  # params: set by fit (epochs, steps per epoch)
            return
        # No evaluation bar: it would interleave with the training bar and the log.
        result, _ = evaluate_model(self.model, self.dataset, progress=False)  # predict, with the model's config
        point = {"epoch": done, "steps": done * self.params["steps"], "train_seconds": round(self.seconds, 1),
                 "loss": round(float(logs["loss"]), 4), "mask_ap": round(result.ap, 4),
                 "mask_ap50": round(result.ap50, 4)}
        self.points.append(point)
        if self.verbose:
            print(f"epoch {done:4d} ({point['steps']} steps): mask AP50 {result.ap50:.3f}, AP {result.ap:.3f}",
                  flush=True)
        if self.stop_at is not None and result.ap50 >= self.stop_at:
            self.reached = point
            self.model.stop_training = True

