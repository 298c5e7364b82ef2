"""Training SOLOv2 with ``Model.fit``: paper defaults, checkpoints, resuming (notebooks 08-09).

``train(model_config, train_config, dataset)`` builds (or reloads) the model inside the current
``tf.distribute`` strategy, compiles it with the paper's optimiser, and fits it on the pipeline of
``solo_lib.data.pipeline``. The SOLO-specific step is ``SOLOv2.train_step``; everything else is
Keras: an SGD optimiser with global-norm clipping (``solo_lib.optim``), a ``LearningRateSchedule``,
callbacks.

Checkpoints are whole ``.keras`` files (weights, optimizer state and the epoch counter
``epochs_done``), written to a hidden temporary name and renamed into place, so a run killed
while saving never leaves a half-written checkpoint. Resuming follows the original article's
design: ``TrainConfig(load_previous_model=True, model_path=...)`` (or the newest checkpoint in
``checkpoint_dir`` when ``model_path`` is None).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path

import keras
import numpy as np

from solo_lib.config import SOLOConfig
from solo_lib.data import augment as aug
from solo_lib.data import pipeline
from solo_lib.data.coco import CocoDataset
from solo_lib.errors import SoloError
from solo_lib.evaluate import evaluate_model
from solo_lib.inference import predict
from solo_lib.memory import ReleaseFreedMemory
from solo_lib.model.solov2 import SOLOv2, build_model
from solo_lib.optim import SGDL2, WarmupStepDecay  # noqa: F401  (WarmupStepDecay: re-exported)

CHECKPOINT = re.compile(r"^epoch_(\d{4})\.keras$")
RESETTABLE = ("category_out", "kernel_out")  # the head's two output layers (solo_lib.model.head)


class TrainingError(SoloError, RuntimeError):
    """Training cannot go on (a non-finite loss); the message says where and what to try."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the paper's 1x schedule (SOLOv2 §4; the authors' configs).

    Attributes:
        epochs: epochs in total (12 in the 1x schedule).
        batch_size: global batch (16 in the paper: 2 images on each of 8 GPUs).
        canvas: ``(height, width)`` of the padded batch canvas, multiples of 32.
        steps_per_epoch: batches per epoch; default one pass over the dataset.
        optimizer: ``"sgd"`` (the paper's) or ``"adam"`` (handy for overfitting quickly).
        learning_rate: base learning rate (0.01 for batch 16; scale linearly with the batch).
        momentum: SGD momentum.
        weight_decay: weight decay. With ``"sgd"`` an L2 term in the gradient, as in the paper's
            (PyTorch) SGD (:class:`solo_lib.optim.SGDL2`); with ``"adam"`` AdamW's decoupled decay.
        warmup_steps: linear warm-up length, from ``warmup_ratio * learning_rate``.
        warmup_ratio: starting fraction of the learning rate.
        decay_epochs: epochs after which the learning rate is multiplied by ``decay_factor``.
        decay_factor: step decay factor.
        clip_norm: global gradient-norm clip (35 in the authors' configs); None disables it.
        checkpoint_every: save a checkpoint every this many epochs (and after the last one).
        checkpoint_dir: where ``epoch_NNNN.keras`` files go; None disables checkpoints.
        load_previous_model: resume from ``model_path`` (or the newest checkpoint).
        model_path: the ``.keras`` file to resume from.
        log_dir: TensorBoard log folder; None disables it.
        seed: seeds weights, data order and augmentation.
        augment: augmentation (its crop size is set to the canvas).
        in_memory: decode the dataset once into memory instead of streaming it from disk.
        max_instances: fixed padding of instances per image (see ``pipeline.training_dataset``).
        max_positives: fixed padding of positive pairs per image.
        jit_compile: compile the training step with XLA (best with both fixed paddings set, so
            it is compiled once).
        pretrained: start from these weights (a ``.weights.h5`` file with its ``.json`` beside it,
            such as ``data/pretrained/tiny_shapes``; see :func:`load_pretrained`) instead of a
            random initialisation. Ignored when resuming.
        pretrained_reset: the head's output layers that keep their fresh initialisation instead:
            ``"category_out"`` (the class predictor, whose classes are the dataset's own) and/or
            ``"kernel_out"`` (the mask-kernel predictor).
    """

    epochs: int = 12
    batch_size: int = 16
    canvas: tuple[int, int] = (800, 1216)
    steps_per_epoch: int | None = None
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    warmup_ratio: float = 0.01
    decay_epochs: tuple[int, ...] = (9, 11)
    decay_factor: float = 0.1
    clip_norm: float | None = 35.0
    checkpoint_every: int = 1
    checkpoint_dir: str | None = "checkpoints"
    load_previous_model: bool = False
    model_path: str | None = None
    log_dir: str | None = None
    seed: int = 0
    augment: aug.AugmentConfig = aug.AugmentConfig()
    in_memory: bool = True
    max_instances: int | None = None
    max_positives: int | None = None
    jit_compile: bool = False
    pretrained: str | None = None
    pretrained_reset: tuple[str, ...] = ("category_out",)

    def __post_init__(self):
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.canvas[0] % 32 or self.canvas[1] % 32:
            raise ValueError(f"canvas {self.canvas} must be a multiple of 32 in both dimensions")
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("epochs, batch_size and checkpoint_every must be >= 1")
        if not set(self.pretrained_reset) <= set(RESETTABLE):
            raise ValueError(f"pretrained_reset must name layers among {RESETTABLE}, got {self.pretrained_reset!r}")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def overfit_sample(cls, epochs: int = 300, **overrides) -> "TrainConfig":
        """The recipe of notebook 08 and ``make demo``: memorise the 12 sample training images.

        Overfitting is the first test of a new model (the original article's advice): no
        regularisation (no weight decay, flips only), and fixed paddings so the step is traced
        once. ``max_positives=64`` fits the sample set (at most 53 pairs in one image; a larger
        image fails with a clear message, see ``pipeline.training_dataset``); padding to 192 made
        the mask loss compute 9x the masks it needs. No XLA: with TensorFlow's oneDNN kernels (its
        default on x86) the plain graph is as fast per step on a 2-core CPU and is ready in about
        10 s instead of 20-25 s of XLA compilation. The optimiser is the paper's (SGD, momentum 0.9,
        gradient clipping) at 0.01 for a batch of 4, i.e. 4x the linearly scaled paper rate. On
        this data it learns masks about twice as fast per step as Adam at 3e-3; Adam at higher
        rates, or SGD at 0.02 and above, can kill the masks: the dynamic-conv logits are
        products of two unnormalised outputs, a large step pushes them all far below zero, the
        sigmoid saturates and the dice gradient vanishes (mask loss stuck at 1.0).
        """
        params = dict(epochs=epochs, batch_size=4, canvas=(256, 256), optimizer="sgd", learning_rate=0.01,
                      warmup_steps=20, decay_epochs=(int(epochs * 0.8),), weight_decay=0.0, clip_norm=35.0,
                      augment=aug.AugmentConfig(flip_prob=0.5, brightness_delta=0.0, scale_range=(1.0, 1.0)),
                      checkpoint_dir=None, max_instances=24, max_positives=64, jit_compile=False)
        params.update(overrides)
        return cls(**params)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimiser with its learning-rate schedule and gradient clipping: ``SGDL2`` (the paper's
    SGD, weight decay as L2 in the gradient; ``solo_lib.optim``) or ``AdamW`` (decoupled decay)."""
    schedule = WarmupStepDecay(cfg.learning_rate, cfg.warmup_steps, cfg.warmup_ratio,
                               [e * steps_per_epoch for e in cfg.decay_epochs], cfg.decay_factor)
    if cfg.optimizer == "adam":
        return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, global_clipnorm=cfg.clip_norm)
    return SGDL2(schedule, momentum=cfg.momentum, l2=cfg.weight_decay, global_clipnorm=cfg.clip_norm)


def load_checkpoint(path: str | os.PathLike) -> SOLOv2:
    """Loads a ``.keras`` checkpoint (model, optimizer state, epoch counter) with ``safe_mode=True``.

    Use this rather than ``keras.saving.load_model`` directly: importing this module registers the
    learning-rate schedule the saved optimizer refers to.
    """
    return keras.saving.load_model(path, safe_mode=True)


def pretrained_info(path: str | os.PathLike) -> dict:
    """The JSON written beside pretrained weights ``NAME.weights.h5`` (``NAME.json``): the
    ``SOLOConfig`` of the model that made them (key ``config``) and how it was trained."""
    path = Path(path)
    info_path = path.with_name(path.name.removesuffix(".weights.h5") + ".json")
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path} not found")
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} is missing: pretrained weights need the JSON of the model that made "
                                f"them beside them (scripts/pretrain_shapes.py writes both)")
    return json.loads(info_path.read_text())


def load_pretrained(model: SOLOv2, path: str | os.PathLike, reset: tuple[str, ...] = ("category_out",)) -> int:
    """Copies pretrained weights into ``model``, except those of the head layers in ``reset``.

    Fine-tuning a detector on new data usually works this way (Detectron's and mmdetection's
    ``load_from``): everything is loaded, and the class predictor is re-initialised because its
    classes are the new dataset's. That is also why the pretrained model may have a different
    ``num_classes`` when ``"category_out"`` is reset; every other weight must have the same shape.

    Args:
        model: a built model (``build_model``).
        path: ``NAME.weights.h5``, with ``NAME.json`` beside it (:func:`pretrained_info`).
        reset: names among ``RESETTABLE`` whose weights stay as initialised.

    Returns:
        How many weight tensors were copied.

    Raises:
        FileNotFoundError: the weights or their JSON are missing.
        ValueError: a weight's shape differs (the architectures differ), named with both shapes.
    """
    path = Path(path)
    config = SOLOConfig.from_dict(pretrained_info(path)["config"])
    skipped = [w for name in reset for w in getattr(model.head, name).weights]
    skipped.append(model.epochs_done)  # the epoch counter belongs to the run, not to the weights
    if config.num_classes == model.config.num_classes:
        # Same classes: load into the model itself and put the reset weights back (no second model to build).
        kept = [np.array(w) for w in skipped]
        try:
            model.load_weights(path)
        except ValueError as error:
            raise ValueError(f"{path} does not fit this model; pretrained weights need the same architecture "
                             f"(they were made for {_architecture(config)}, this model is "
                             f"{_architecture(model.config)}): {error}") from None
        for w, value in zip(skipped, kept):
            w.assign(value)
        return len(model.weights) - len(skipped)
    # Other classes: load a model of the pretrained classes and copy all but the reset weights.
    donor = build_model(config, (64, 64))  # any image size makes the same weights
    donor.load_weights(path)
    skipped_ids = {id(w) for w in skipped}
    copied = 0
    for own, theirs in zip(model.weights, donor.weights, strict=True):
        if id(own) in skipped_ids:
            continue
        if tuple(own.shape) != tuple(theirs.shape):
            raise ValueError(f"{path}: weight {theirs.path} has shape {tuple(theirs.shape)}, but this model's "
                             f"{own.path} has {tuple(own.shape)}; pretrained weights need the same architecture"
                             + ("" if "category_out" in reset or "category_out" not in own.path else
                                f" (they have {config.num_classes} classes, this model {model.config.num_classes}: "
                                "reset 'category_out')"))
        own.assign(theirs)
        copied += 1
    return copied


def _architecture(config: SOLOConfig) -> str:
    """The fields that shape a model's weights, in words."""
    fields = ("backbone", "fpn_channels", "num_levels", "head_convs", "head_channels", "norm_groups",
              "mask_feature_channels", "mask_channels")
    return ", ".join(f"{name}={getattr(config, name)}" for name in fields)


def save_weights_only(model: SOLOv2, path: str | os.PathLike) -> None:
    """Saves ``model``'s weights to a ``.weights.h5`` file through an uncompiled copy, so the file
    holds no optimizer state (what ``load_sample_model`` and :func:`load_pretrained` read)."""
    copy = build_model(model.config, (64, 64))  # any image size makes the same weights
    copy.set_weights(model.get_weights())
    copy.save_weights(path)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The ``epoch_NNNN.keras`` file with the highest epoch in ``directory`` (None if none)."""
    found = sorted(p for p in Path(directory).glob("epoch_*.keras") if CHECKPOINT.match(p.name))
    return found[-1] if found else None


def save_atomically(model: keras.Model, path: Path) -> None:
    """Saves to a hidden temporary file in the same folder, then renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one


class EpochCounter(keras.callbacks.Callback):
    """Keeps ``model.epochs_done`` (saved with the weights) equal to the epochs finished."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.epochs_done.assign(epoch + 1)


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes ``epoch_NNNN.keras`` every ``every`` epochs and after the last one (after
    :class:`EpochCounter`, so the file knows its epoch)."""

    def __init__(self, directory: str, every: int, last_epoch: int):
        super().__init__()
        self.directory, self.every, self.last_epoch = Path(directory), every, last_epoch

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every == 0 or done == self.last_epoch:
            save_atomically(self.model, self.directory / f"epoch_{done:04d}.keras")


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, before any checkpoint can save it."""

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
    """A tqdm bar per epoch with the running loss (silenced by ``TQDM_DISABLE=1``)."""

    def __init__(self, steps: int, epochs: int):
        super().__init__()
        self.steps, self.epochs = steps, epochs

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{float(logs.get('loss', 0.0)):.3f}")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()


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
        result, _ = evaluate_model(self.model, self.dataset, self.model.config, predict)
        point = {"epoch": done, "steps": done * self.params["steps"], "train_seconds": round(self.seconds, 1),
                 "loss": round(float(logs["loss"]), 4), "mask_ap": round(result.ap, 4), "mask_ap50": round(result.ap50, 4)}
        self.points.append(point)
        if self.verbose:
            print(f"epoch {done:4d} ({point['steps']} steps): mask AP50 {result.ap50:.3f}, AP {result.ap:.3f}", flush=True)
        if self.stop_at is not None and result.ap50 >= self.stop_at:
            self.reached = point
            self.model.stop_training = True


def train(model_config: SOLOConfig, cfg: TrainConfig, dataset: CocoDataset, *, callbacks=(), log_every: int = 1,
          progress: bool = True):
    """Trains (or resumes training of) a SOLOv2 model.

    Call it inside ``strategy.scope()`` to train on several devices; the dataset's batches are
    split across the replicas by Keras.

    Args:
        model_config: the model to build (ignored when resuming: the checkpoint has its own).
        cfg: how to train.
        dataset: the training images.
        callbacks: extra Keras callbacks.
        log_every: print the epoch line every this many epochs.
        progress: show a progress bar per epoch.

    Returns:
        ``(model, history)``; ``history`` is the Keras ``History`` (per-epoch loss, category_loss,
        mask_loss) of this call.

    Raises:
        TrainingError: a non-finite loss.
        FileNotFoundError: resuming without a checkpoint to resume from.
    """
    steps = cfg.steps_per_epoch or pipeline.steps_per_epoch(dataset, cfg.batch_size)
    initial_epoch = 0
    if cfg.load_previous_model:
        path = Path(cfg.model_path) if cfg.model_path else (latest_checkpoint(cfg.checkpoint_dir or ".") or None)
        if path is None or not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from (model_path={cfg.model_path!r}, "
                                    f"checkpoint_dir={cfg.checkpoint_dir!r})")
        model = load_checkpoint(path)
        initial_epoch = int(model.epochs_done.numpy())
        model_config = model.config
        print(f"resuming from {path.name}: {initial_epoch} epoch(s) done", flush=True)
    else:
        keras.utils.set_random_seed(cfg.seed)
        model = build_model(model_config, cfg.canvas)
        if cfg.pretrained:
            copied = load_pretrained(model, cfg.pretrained, cfg.pretrained_reset)
            reset = ", ".join(cfg.pretrained_reset) or "nothing"
            print(f"starting from {Path(cfg.pretrained).name}: {copied} weight tensors loaded, reset: {reset}", flush=True)
        model.compile(optimizer=make_optimizer(cfg, steps), jit_compile=cfg.jit_compile)
    source = (pipeline.in_memory_source if cfg.in_memory else pipeline.streaming_source)(dataset)
    data = pipeline.training_dataset(source, model_config, canvas=cfg.canvas, batch_size=cfg.batch_size,
                                     augment=cfg.augment, seed=cfg.seed, start_step=initial_epoch * steps,
                                     max_instances=cfg.max_instances, max_positives=cfg.max_positives)
    # ReleaseFreedMemory: the graph building of the first step leaves 150-200 MB of freed heap resident.
    cbs = [NonFiniteLossGuard(), EpochCounter(), EpochLog(cfg.epochs, log_every), ReleaseFreedMemory()]
    if progress:
        cbs.append(ProgressBar(steps, cfg.epochs))
    if cfg.checkpoint_dir:
        cbs.append(EpochCheckpoint(cfg.checkpoint_dir, cfg.checkpoint_every, cfg.epochs))
    if cfg.log_dir:
        cbs.append(keras.callbacks.TensorBoard(cfg.log_dir, update_freq="epoch"))
    history = model.fit(data, epochs=cfg.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                        callbacks=cbs + list(callbacks), verbose=0, shuffle=False)  # tf.data shuffles
    return model, history


def loss_curves(history) -> dict[str, np.ndarray]:
    """Per-epoch loss components from a ``History``, as arrays."""
    return {k: np.asarray(v) for k, v in history.history.items()}
