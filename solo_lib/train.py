"""Training SOLOv2 with ``Model.fit``: paper defaults, resuming (notebooks 08-09).

``train(model_config, train_config, dataset)`` builds (or reloads) the model inside the current
``tf.distribute`` strategy, compiles it with the paper's optimiser, and fits it on the pipeline of
``solo_lib.data.pipeline``. The SOLO-specific step is ``SOLOv2.train_step``; everything else is
Keras: an SGD optimiser with global-norm clipping (``solo_lib.optim``), a ``LearningRateSchedule``,
the callbacks of ``solo_lib.callbacks``.

How to train is :class:`solo_lib.train_config.TrainConfig`; the optimiser is built by
``solo_lib.optim.make_optimizer``. Checkpoints and the run folder are ``solo_lib.checkpoints``,
pretrained weights ``solo_lib.pretrained``. Resuming follows
the original article's design: ``TrainConfig(load_previous_model=True, model_path=...)`` (or the
newest checkpoint in ``checkpoint_dir`` when ``model_path`` is None).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from solo_lib import distributed
from solo_lib.callbacks import EpochCheckpoint, EpochCounter, EpochLog, NonFiniteLossGuard, ProgressBar
from solo_lib.checkpoints import (
    check_free_space,
    load_checkpoint,
    prepare_output_dir,
    refuse_other_run,
    remove_checkpoints,
    remove_stale_temporaries,
    resume_path,
)
from solo_lib.config import SOLOConfig
from solo_lib.data import pipeline
from solo_lib.data.coco import CocoDataset
from solo_lib.data.tfrecord import ShardedDataset
from solo_lib.errors import ConfigError
from solo_lib.memory import ReleaseFreedMemory
from solo_lib.model.solov2 import build_model, check_classes
from solo_lib.optim import make_optimizer
from solo_lib.pretrained import load_pretrained, pretrained_info
from solo_lib.train_config import TrainConfig


def train(model_config: SOLOConfig | None, cfg: TrainConfig, dataset: CocoDataset, *, callbacks=(), log_every: int = 1,
          progress: bool = True):
    """Trains (or resumes training of) a SOLOv2 model.

    Call it inside ``strategy.scope()`` to train on several devices; the dataset's batches are
    split across the replicas by Keras.

    Args:
        model_config: the model to build. When resuming (``cfg.load_previous_model``), the
            checkpoint's own configuration is used: pass None, or that same configuration
            (anything else raises ConfigError rather than being silently ignored). A fresh run needs one.
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
        ConfigError: ``model_config`` differs from the resumed checkpoint's, or is None for a fresh
            run; the in-memory dataset would exceed ``cfg.memory_budget_mb``.
        CheckpointError: nothing to resume from, a damaged checkpoint, a checkpoint of other
            classes, a fresh run into a folder holding another run's checkpoints (without
            ``cfg.overwrite``), an output folder that cannot be written.

    Everything that can be checked without training is checked before anything is written;
    the resumed run then sees exactly the data order and augmentation the uninterrupted run
    would have (the same seeds, the batches already trained skipped).
    """
    if model_config is None and not cfg.load_previous_model:
        raise ConfigError("model_config is None, but a fresh run builds a model from it: pass a SOLOConfig "
                          "(e.g. SOLOConfig.tiny(dataset.num_classes)), or resume with load_previous_model=True")
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
