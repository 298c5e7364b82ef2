"""The paper's optimiser in Keras: its learning-rate schedule and SGD with L2 weight decay.

* :class:`WarmupStepDecay`: linear warm-up, then step decay (mmdetection's ``step`` policy with
  ``warmup='linear'``, which the authors' SOLOv2 configs use).
* :class:`SGDL2`: SGD with momentum whose weight decay is an L2 term added to the gradient, as in
  PyTorch's ``torch.optim.SGD(weight_decay=...)``, the optimiser of the authors' code (WXinlong/SOLO
  and AdelaiDet both train with it: momentum 0.9, weight decay 1e-4). Keras' own ``SGD(weight_decay=...)``
  is *decoupled* instead (Loshchilov & Hutter, arXiv 1711.05101): it shrinks each weight by
  ``lr * wd * w`` outside the momentum. The two are not the same regulariser. With momentum
  ``mu`` the L2 term builds up in the momentum buffer, so at a constant learning rate its pull on a
  weight settles at ``lr * wd * w / (1 - mu)``: ten times Keras' decoupled pull at ``mu = 0.9``.
  The paper's ``1e-4`` means the coupled one.

Both are registered Keras objects, so ``.keras`` checkpoints that hold them load with
``safe_mode=True``. TensorFlow ops, no ``keras.ops``, as in the model: training is TensorFlow-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import tensorflow as tf

if TYPE_CHECKING:
    from solo_lib.train_config import TrainConfig


@keras.saving.register_keras_serializable(package="solo_lib")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``ratio * lr`` to ``lr`` over ``warmup_steps``, then ``lr`` times
    ``factor`` after each boundary step (mmdetection's ``step`` policy with linear warm-up)."""

    def __init__(self, learning_rate, warmup_steps, warmup_ratio, boundaries, factor):
        self.learning_rate, self.warmup_steps, self.warmup_ratio = learning_rate, warmup_steps, warmup_ratio
        self.boundaries, self.factor = list(boundaries), factor

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        decays = tf.add_n([tf.cast(step >= b, tf.float32) for b in self.boundaries]) if self.boundaries else 0.0
        lr = self.learning_rate * tf.pow(self.factor, decays)
        progress = tf.minimum(1.0, step / max(1, self.warmup_steps))
        warm = self.warmup_ratio + (1.0 - self.warmup_ratio) * progress
        return lr * tf.where(step < self.warmup_steps, warm, 1.0)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "warmup_ratio": self.warmup_ratio, "boundaries": self.boundaries, "factor": self.factor}


@keras.saving.register_keras_serializable(package="solo_lib")
class SGDL2(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with L2 weight decay in the gradient (PyTorch's SGD convention).

    Each step, for every trainable weight ``w`` with gradient ``g`` (after the global-norm clip,
    as mmcv's ``OptimizerHook`` clips before ``optimizer.step()`` adds the decay)::

        g' = g + l2 * w
        m  = momentum * m - lr * g'
        w  = w + m

    which is PyTorch's ``buf = momentum * buf + g'; w -= lr * buf`` with ``m = -lr * buf`` (equal
    while the learning rate is constant). Every trainable weight is decayed, biases and
    normalisation scales included, as in the authors' configs (no per-parameter exceptions).

    Args:
        learning_rate: a float or a ``LearningRateSchedule``.
        momentum: SGD momentum.
        l2: the weight decay coefficient (1e-4 in the paper); 0 disables it.
        **kwargs: anything else ``keras.optimizers.SGD`` takes (``global_clipnorm``,
            ``nesterov``, ...), except ``weight_decay``, the decoupled decay this class replaces.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2=1e-4, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError("SGDL2 applies its own L2 decay (l2=...); do not also pass Keras' decoupled "
                             "weight_decay")
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = tf.add(tf.cast(gradient, variable.dtype),
                              tf.multiply(tf.cast(self.l2, variable.dtype), tf.convert_to_tensor(variable)))
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The optimiser with its learning-rate schedule and gradient clipping: ``SGDL2`` (the paper's
    SGD, weight decay as L2 in the gradient; ``solo_lib.optim``) or ``AdamW`` (decoupled decay)."""
    schedule = WarmupStepDecay(cfg.learning_rate, cfg.warmup_steps, cfg.warmup_ratio,
                               [e * steps_per_epoch for e in cfg.decay_epochs], cfg.decay_factor)
    if cfg.optimizer == "adam":
        return keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, global_clipnorm=cfg.clip_norm)
    return SGDL2(schedule, momentum=cfg.momentum, l2=cfg.weight_decay, global_clipnorm=cfg.clip_norm)
