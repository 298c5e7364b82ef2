"""How to train: :class:`TrainConfig`, the paper's schedule and the course's recipes (notebooks 08-09).

One place for every training default. ``solo_lib.train.train`` reads it, and the command line's
``train`` options are generated from its fields, their types and the descriptions below
(``solo_lib.cli_options``). It imports without TensorFlow, so the command line answers ``--help``
and an invalid option at once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, get_args

from solo_lib.data.augment_config import AugmentConfig
from solo_lib.errors import ConfigError
from solo_lib.resources import pretrained_shapes

RESETTABLE = ("category_out", "kernel_out")  # the head's two output layers (solo_lib.model.head)
Optimizer = Literal["sgd", "adam"]


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
    optimizer: Optimizer = "sgd"
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
    augment: AugmentConfig = AugmentConfig.paper()
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
        if self.optimizer not in get_args(Optimizer):
            problems.append(f"optimizer must be one of {', '.join(get_args(Optimizer))}, got {self.optimizer!r}")
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
                      augment=AugmentConfig(flip_prob=0.5, brightness_delta=0.0, scale_range=(1.0, 1.0)),
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

        params = dict(batch_size=2, warmup_steps=0, learning_rate=0.02, decay_epochs=(int(epochs * 0.8),),
                      pretrained=str(pretrained_shapes()))
        params.update(overrides)
        return cls.overfit_sample(epochs=epochs, **params)


# The named recipes, for ``python -m solo_lib train --recipe NAME``: each returns the full
# configuration that its options then override.
RECIPES = {
    "paper_1x": TrainConfig,
    "paper_3x": TrainConfig.paper_3x,
    "overfit_sample": TrainConfig.overfit_sample,
    "overfit_real_photos": TrainConfig.overfit_real_photos,
}
