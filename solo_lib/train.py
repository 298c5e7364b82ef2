"""Training SOLOv2 with ``Model.fit``: paper defaults, resuming (notebooks 08-09).

``train(model_config, train_config, dataset)`` builds (or reloads) the model inside the current
``tf.distribute`` strategy, compiles it with the paper's optimiser, and fits it on the pipeline of
``solo_lib.data.pipeline``. The SOLO-specific step is ``SOLOv2.train_step``; everything else is
Keras: an SGD optimiser with global-norm clipping (``solo_lib.optim``), a ``LearningRateSchedule``,
the callbacks of ``solo_lib.callbacks``.

Checkpoints, the run folder and pretrained weights are ``solo_lib.checkpoints``. Resuming follows
the original article's design: ``TrainConfig(load_previous_model=True, model_path=...)`` (or the
newest checkpoint in ``checkpoint_dir`` when ``model_path`` is None).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from solo_lib import distributed
from solo_lib.callbacks import EpochCheckpoint, EpochCounter, EpochLog, NonFiniteLossGuard, ProgressBar
from solo_lib.checkpoints import (RESETTABLE, check_free_space, load_checkpoint, load_pretrained, prepare_output_dir,
                                  pretrained_info, refuse_other_run, remove_checkpoints, remove_stale_temporaries,
                                  resume_path)
from solo_lib.config import SOLOConfig
from solo_lib.data import augment as aug
from solo_lib.data import pipeline
from solo_lib.data.coco import CocoDataset
from solo_lib.data.tfrecord import ShardedDataset
from solo_lib.errors import ConfigError
from solo_lib.memory import ReleaseFreedMemory
from solo_lib.model.solov2 import build_model, check_classes
from solo_lib.optim import SGDL2, WarmupStepDecay

# Re-exported: these lived here before solo_lib.checkpoints and solo_lib.callbacks were split off,
# and notebooks, scripts and tests import them from solo_lib.train.
from solo_lib.callbacks import MaskAPCurve  # noqa: F401
from solo_lib.checkpoints import (CHECKPOINT, latest_checkpoint, run_checkpoints, save_atomically,  # noqa: F401
                                  save_weights_only)
from solo_lib.errors import TrainingError  # noqa: F401


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults are the paper's 1x schedule (SOLOv2 §4; the authors' configs).

    Attributes:
        epochs: epochs in total (12 in the 1x schedule).
        batch_size: global batch (16 in the paper: 2 images on each of 8 GPUs).
        accumulate_steps: gradient accumulation: each batch is computed in this many micro-batches
            of ``batch_size / accumulate_steps`` images, one after the other, with one optimiser
            update per batch (``SOLOv2.train_step``). Memory is that of a micro-batch and the
            update that of the whole batch, so one small GPU can follow the paper's batch of 16
            (e.g. ``batch_size=16, accumulate_steps=8``: 2 images at a time). 1: no accumulation.
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
        checkpoint_dir: where ``epoch_NNNN.keras`` files go; None disables checkpoints. A fresh
            run refuses a folder that already holds another run's checkpoints (see ``overwrite``).
        overwrite: on a fresh run, delete the ``epoch_*.keras`` files already in
            ``checkpoint_dir`` first instead of refusing to start (they belong to another run,
            which ``load_previous_model`` could otherwise mix with this one).
        load_previous_model: resume from ``model_path`` (or the newest checkpoint).
        model_path: the ``.keras`` file to resume from.
        log_dir: TensorBoard log folder; None disables it.
        seed: seeds weights, data order and augmentation.
        augment: augmentation after the resize to the image scale; the paper's is a horizontal
            flip (``AugmentConfig.paper()``, the default).
        short_sides: multi-scale training: each image's short side is drawn from these (the
            reference's 3x schedule: 640, 672, ..., 800; see :meth:`paper_3x`); None: every image
            at the model's ``image_scale``. At most the short side of the model's scale.
        in_memory: decode the dataset once into memory instead of streaming it from disk.
        memory_budget_mb: with ``in_memory``, refuse to start when decoding the dataset would take
            more than this many MiB (estimated from the image records, before decoding:
            ``height * width * (3 + instances)`` bytes per image); then stream instead. A fixed
            2048 by default, whatever the machine has, so the same run behaves the same
            everywhere; None: no limit.
        max_instances: fixed padding of instances per image (see ``pipeline.training_dataset``).
        max_positives: fixed padding of positive pairs per image.
        jit_compile: compile the training step with XLA (best with both fixed paddings set, so
            it is compiled once per canvas shape: once for a square image scale, twice otherwise).
        pretrained: start from these weights (a ``.weights.h5`` file with its ``.json`` beside it,
            such as ``data/pretrained/tiny_shapes``; see :func:`load_pretrained`) instead of a
            random initialisation. Ignored when resuming.
        pretrained_reset: the head's output layers that keep their fresh initialisation instead:
            ``"category_out"`` (the class predictor, whose classes are the dataset's own) and/or
            ``"kernel_out"`` (the mask-kernel predictor).
    """

    epochs: int = 12
    batch_size: int = 16
    accumulate_steps: int = 1
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
    augment: aug.AugmentConfig = aug.AugmentConfig.paper()
    short_sides: tuple[int, ...] | None = None
    in_memory: bool = True
    max_instances: int | None = None
    max_positives: int | None = None
    jit_compile: bool = False
    pretrained: str | None = None
    pretrained_reset: tuple[str, ...] = ("category_out",)
    overwrite: bool = False
    memory_budget_mb: float | None = 2048

    def __post_init__(self):
        problems = []
        if self.optimizer not in ("sgd", "adam"):
            problems.append(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.short_sides is not None:
            object.__setattr__(self, "short_sides", tuple(self.short_sides))
            if not self.short_sides or not all(isinstance(v, int) and v >= 32 for v in self.short_sides):
                problems.append(f"short_sides must be integers >= 32 (or None), got {self.short_sides}")
        for name in ("epochs", "batch_size", "checkpoint_every", "accumulate_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.accumulate_steps >= 1 and self.batch_size % self.accumulate_steps:
            problems.append(f"batch_size ({self.batch_size}) must be a multiple of accumulate_steps "
                            f"({self.accumulate_steps}): each batch is split into that many equal micro-batches")
        for name in ("steps_per_epoch", "max_instances", "max_positives"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (or None), got {getattr(self, name)}")
        # 0 is allowed: it keeps the weights as they are (tests/test_pretrained.py relies on it).
        if not self.learning_rate >= 0 or not math.isfinite(self.learning_rate):
            problems.append(f"learning_rate must be >= 0 and finite, got {self.learning_rate}")
        if self.warmup_steps < 0 or not 0 < self.warmup_ratio <= 1:
            problems.append(f"warmup_steps must be >= 0 and warmup_ratio in (0, 1], got {self.warmup_steps} "
                            f"and {self.warmup_ratio}")
        if any(e < 0 for e in self.decay_epochs) or not 0 < self.decay_factor <= 1:
            problems.append(f"decay_epochs must be >= 0 and decay_factor in (0, 1], got {tuple(self.decay_epochs)} "
                            f"and {self.decay_factor}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            problems.append("momentum must be in [0, 1) and weight_decay >= 0, "
                            f"got {self.momentum} and {self.weight_decay}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            problems.append(f"clip_norm must be > 0 (or None), got {self.clip_norm}")
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            problems.append(f"memory_budget_mb must be > 0 (or None), got {self.memory_budget_mb}")
        if not set(self.pretrained_reset) <= set(RESETTABLE):
            problems.append(f"pretrained_reset must name layers among {RESETTABLE}, got {self.pretrained_reset!r}")
        if problems:
            raise ConfigError("invalid TrainConfig: " + "; ".join(problems))

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def paper_3x(cls, **overrides) -> "TrainConfig":
        """The reference's 3x schedule (``solov2_r50_fpn_8gpu_3x``): 36 epochs, decay after 27
        and 33, multi-scale training with the short side drawn from 640, 672, ..., 800 per image."""
        params = dict(epochs=36, decay_epochs=(27, 33), short_sides=(640, 672, 704, 736, 768, 800))
        params.update(overrides)
        return cls(**params)

    @classmethod
    def overfit_sample(cls, epochs: int = 300, **overrides) -> "TrainConfig":
        """The recipe of notebook 08 and ``make demo``: memorise the 12 sample training images.

        Overfitting is the first test of a new model (the original article's advice): no
        regularisation (no weight decay, flips only), and fixed paddings so the step is traced
        once (the tiny preset's square scale gives one canvas). ``max_positives=64`` fits the
        sample set (at most 49 pairs in one image at the tiny preset's scale; a larger image fails
        with a clear message, see ``pipeline.training_dataset``); padding to 192 made
        the mask loss compute 9x the masks it needs. No XLA: with TensorFlow's oneDNN kernels (its
        default on x86) the plain graph is as fast per step on a CPU and needs no compilation
        (README, Performance, "XLA or not"). The optimiser is the paper's (SGD, momentum 0.9,
        gradient clipping) at 0.01 for a batch of 4, i.e. 4x the linearly scaled paper rate. On
        this data it learns masks about twice as fast per step as Adam at 3e-3; Adam at higher
        rates, or SGD at 0.02 and above, can kill the masks: the dynamic-conv logits are
        products of two unnormalised outputs, a large step pushes them all far below zero, the
        sigmoid saturates and the dice gradient vanishes (mask loss stuck at 1.0).
        """
        params = dict(epochs=epochs, batch_size=4, optimizer="sgd", learning_rate=0.01,
                      warmup_steps=20, decay_epochs=(int(epochs * 0.8),), weight_decay=0.0, clip_norm=35.0,
                      augment=aug.AugmentConfig(flip_prob=0.5, brightness_delta=0.0, scale_range=(1.0, 1.0)),
                      checkpoint_dir=None, max_instances=24, max_positives=64, jit_compile=False)
        params.update(overrides)
        return cls(**params)


    @classmethod
    def overfit_real_photos(cls, epochs: int = 100, **overrides) -> "TrainConfig":
        """The recipe of notebook 08b and ``make demo-real``: fine-tune the pretrained tiny model
        (``data/pretrained/tiny_shapes``, class predictor reset) until it memorises the two real
        training photos of ``data/real_photos``.

        It is :meth:`overfit_sample` with four changes for two photos: a batch of 2 (both photos
        in every step); no warm-up (the pretrained network is already stable, and warm-up would
        spend a third of a short run at a tiny rate); the pretrained starting point (from random
        weights two photos are far too few, see notebook 08); and twice the rate, 0.02, divided
        by 10 for the last fifth of the run. The higher rate is safe here because only the class
        predictor starts from scratch. The run is long enough for mask AP50 0.9 on the two photos
        with a margin whatever the seed: dropping the rate before the photos are memorised
        (a 60-step run decaying after 48) leaves some seeds far below the bar.
        """
        from solo_lib.demo import PRETRAINED_SHAPES  # here, not at the top: solo_lib.demo imports this module

        params = dict(batch_size=2, warmup_steps=0, learning_rate=0.02, decay_epochs=(int(epochs * 0.8),),
                      pretrained=str(PRETRAINED_SHAPES))
        params.update(overrides)
        return cls.overfit_sample(epochs=epochs, **params)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimiser with its learning-rate schedule and gradient clipping: ``SGDL2`` (the paper's
    SGD, weight decay as L2 in the gradient; ``solo_lib.optim``) or ``AdamW`` (decoupled decay)."""
    schedule = WarmupStepDecay(cfg.learning_rate, cfg.warmup_steps, cfg.warmup_ratio,
                               [e * steps_per_epoch for e in cfg.decay_epochs], cfg.decay_factor)
    if cfg.optimizer == "adam":
        return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, global_clipnorm=cfg.clip_norm)
    return SGDL2(schedule, momentum=cfg.momentum, l2=cfg.weight_decay, global_clipnorm=cfg.clip_norm)


def train(model_config: SOLOConfig, cfg: TrainConfig, dataset: CocoDataset, *, callbacks=(), log_every: int = 1,
          progress: bool = True):
    """Trains (or resumes training of) a SOLOv2 model.

    Call it inside ``strategy.scope()`` to train on several devices; the dataset's batches are
    split across the replicas by Keras.

    Args:
        model_config: the model to build (ignored when resuming: the checkpoint has its own).
        cfg: how to train.
        dataset: the training images: a ``CocoDataset``, or a ``ShardedDataset`` of TFRecord
            shards (``python -m solo_lib to-tfrecord``; ``in_memory`` does not apply to it).
        callbacks: extra Keras callbacks.
        log_every: print the epoch line every this many epochs.
        progress: show one progress bar for the run (``callbacks.ProgressBar``).

    Returns:
        ``(model, history)``; ``history`` is the Keras ``History`` (per-epoch loss, category_loss,
        mask_loss) of this call.

    Raises:
        TrainingError: a non-finite loss.
        ConfigError: ``model_config`` differs from the resumed checkpoint's; the in-memory dataset
            would exceed ``cfg.memory_budget_mb``.
        CheckpointError: nothing to resume from, a damaged checkpoint, a checkpoint of other
            classes, a fresh run into a folder holding another run's checkpoints (without
            ``cfg.overwrite``), an output folder that cannot be written.

    Everything that can be checked without training is checked before anything is written;
    the resumed run then sees exactly the data order and augmentation the uninterrupted run
    would have (the same seeds, the batches already trained skipped).
    """
    steps = cfg.steps_per_epoch or pipeline.steps_per_epoch(dataset, cfg.batch_size)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync  # the strategy train() is called in
    if cfg.batch_size % (cfg.accumulate_steps * replicas):
        raise ConfigError(f"batch_size {cfg.batch_size} does not split into {replicas} replica(s) x "
                          f"accumulate_steps={cfg.accumulate_steps} equal micro-batches; use a multiple of "
                          f"{cfg.accumulate_steps * replicas}")
    # Seeded on resume too: tf.data's shuffle order depends on the global seed as well as its own.
    keras.utils.set_random_seed(cfg.seed)
    initial_epoch = 0
    if cfg.load_previous_model:
        model = load_checkpoint(resume_path(cfg.model_path, cfg.checkpoint_dir))
        check_classes(model, dataset)
        if model_config is not None and model_config != model.config:
            raise ConfigError(f"{model.checkpoint_path} was made with another model configuration "
                              f"({_differences(model.config, model_config)}); a resumed run keeps its "
                              f"checkpoint's model: pass model_config=None (command line: leave out --preset), "
                              f"or start a fresh run in a new folder")
        initial_epoch = int(model.epochs_done.numpy())
        if initial_epoch >= cfg.epochs:
            raise ConfigError(f"{model.checkpoint_path} has {initial_epoch} epoch(s) done already, and epochs="
                              f"{cfg.epochs}: nothing to resume; ask for more epochs (--epochs)")
        model_config = model.config
    else:
        if cfg.pretrained:
            pretrained_info(cfg.pretrained)
        if cfg.checkpoint_dir and not cfg.overwrite:
            refuse_other_run(cfg.checkpoint_dir)
    pipeline.check_short_sides(cfg.short_sides, model_config)
    sharded = isinstance(dataset, ShardedDataset)  # TFRecord shards: read in parallel, never held in memory
    if cfg.in_memory and not sharded:
        pipeline.check_memory_budget(dataset, cfg.memory_budget_mb)
    if not cfg.load_previous_model:
        model = build_model(model_config, class_names=dataset.class_names)
        if cfg.pretrained:
            copied = load_pretrained(model, cfg.pretrained, cfg.pretrained_reset)
            reset = ", ".join(cfg.pretrained_reset) or "nothing"
            print(f"starting from {Path(cfg.pretrained).name}: {copied} weight tensors loaded, reset: {reset}",
                  flush=True)
        model.compile(optimizer=make_optimizer(cfg, steps), jit_compile=cfg.jit_compile)
    # In a multi-worker run only the chief writes into the run's folders; the other workers save
    # their copies of each checkpoint to a temporary folder and delete it (solo_lib.distributed).
    chief = distributed.is_chief()
    if cfg.checkpoint_dir:
        check_free_space(cfg.checkpoint_dir if chief else tempfile.gettempdir(), model)
    # Every check that writes nothing is done: now the folders are created and test-written, and
    # only when both can be written is anything removed.
    if cfg.checkpoint_dir and chief:
        prepare_output_dir(cfg.checkpoint_dir, "checkpoints", "--out (checkpoint_dir)")
    if cfg.log_dir and chief:
        prepare_output_dir(cfg.log_dir, "TensorBoard logs", "--log-dir (log_dir)")
    if cfg.checkpoint_dir and chief:
        for p in remove_stale_temporaries(cfg.checkpoint_dir):
            print(f"removed {p.name}, a partial checkpoint left by a stopped run", flush=True)
        if not cfg.load_previous_model and cfg.overwrite:
            for p in remove_checkpoints(cfg.checkpoint_dir):
                print(f"overwrite: removed {p}", flush=True)
    if cfg.load_previous_model:
        print(f"resuming from {Path(model.checkpoint_path).name}: {initial_epoch} epoch(s) done", flush=True)
    if sharded:
        # Every worker reads every shard in file order and keeps its slice of each global batch
        # (distributed.shard_by_data), so the batches are those of a single process.
        source = dataset.source()
    elif cfg.in_memory:
        source = pipeline.in_memory_source(dataset)  # its memory budget was checked above, before any write
    else:
        source = pipeline.streaming_source(dataset)
    data = pipeline.training_dataset(source, model_config, batch_size=cfg.batch_size,
                                     augment=cfg.augment, seed=cfg.seed, start_step=initial_epoch * steps,
                                     max_instances=cfg.max_instances, max_positives=cfg.max_positives,
                                     short_sides=cfg.short_sides)
    # ReleaseFreedMemory: the graph building of the first step leaves freed heap resident (solo_lib.memory).
    cbs = [NonFiniteLossGuard(), EpochCounter(), EpochLog(cfg.epochs, log_every), ReleaseFreedMemory()]
    if progress:
        cbs.append(ProgressBar(steps, cfg.epochs))
    if cfg.checkpoint_dir:
        cbs.append(EpochCheckpoint(cfg.checkpoint_dir, cfg.checkpoint_every, cfg.epochs))
    if cfg.log_dir and chief:
        cbs.append(keras.callbacks.TensorBoard(cfg.log_dir, update_freq="epoch"))
    # Read when fit traces the step: a resumed run may accumulate differently from the first one.
    model.accumulate_steps = cfg.accumulate_steps
    if not model.optimizer.built:
        # The optimiser's slot variables now rather than in the first step: a tf.function that
        # creates variables when first called is traced twice (once to create them, once to run),
        # and tracing the SOLOv2 step is most of a short run's fixed cost.
        model.optimizer.build(model.trainable_variables)
    data = distributed.prepare_fit(model, data)  # tf.data sharding; Keras fixes under MultiWorkerMirroredStrategy
    history = model.fit(data, epochs=cfg.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                        callbacks=cbs + list(callbacks), verbose=0, shuffle=False)  # tf.data shuffles
    return model, history


def _differences(ours: SOLOConfig, theirs: SOLOConfig) -> str:
    """The fields in which two configurations differ, in words."""
    a, b = ours.to_dict(), theirs.to_dict()
    return ", ".join(f"{k}: checkpoint {a[k]!r}, given {b[k]!r}" for k in a if a[k] != b[k])


def loss_curves(history) -> dict[str, np.ndarray]:
    """Per-epoch loss components from a ``History``, as arrays."""
    return {k: np.asarray(v) for k, v in history.history.items()}
