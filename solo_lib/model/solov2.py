"""SOLOv2: backbone -> FPN -> (head, mask feature), as one Keras model (notebook 06).

``SOLOv2(config)(images)`` takes RGB images ``(B, H, W, 3)`` with values 0-255, H and W multiples of
32 (the canvas: images resized to ``config.image_scale`` and padded, by the training pipeline or
``solo_lib.inference.preprocess``; see ``solo_lib.geometry``) and returns a dict:

* ``category``: ``(B, sum S^2, C)`` class logits of every grid cell of every level;
* ``kernel``: ``(B, sum S^2, E)`` the dynamic 1x1 kernel of every cell;
* ``mask_feature``: ``(B, H/4, W/4, E)`` the unified mask feature F.

Masks come from ``dynamic_conv(mask_feature, gather_kernels(kernel, cells))`` for the cells that
matter (positives in training, cells that pass the score threshold at inference), never for all
cells. The model saves and loads as a ``.keras`` file with ``safe_mode=True``.

TensorFlow ops throughout, no ``keras.ops``: the training step (``tf.GradientTape``,
``tf.while_loop``, ``tf.distribute``) is TensorFlow-only, so a second vocabulary buys no portability.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from solo_lib.config import SOLOConfig
from solo_lib.errors import CheckpointError, ConfigError
from solo_lib.losses import loss_normalizers, solo_losses
from solo_lib.memory import one_update_at_a_time
from solo_lib.model.backbone import Backbone
from solo_lib.model.fpn import FPN, resize_like
from solo_lib.model.head import SOLOv2Head
from solo_lib.model.mask_feature import MaskFeatureBranch

# keras.applications.resnet.preprocess_input ("caffe"): RGB -> BGR, minus the ImageNet BGR means.
CAFFE_BGR_MEANS = (103.939, 116.779, 123.68)


def normalize_images(images, mode: str):
    """Scales RGB 0-255 images the way the backbone expects.

    Args:
        images: ``(B, H, W, 3)`` RGB, 0-255, any dtype.
        mode: ``"caffe"`` (the ResNet50 ImageNet preprocessing, equal to
            ``keras.applications.resnet.preprocess_input``) or ``"unit"`` (divide by 255).
    """
    x = tf.cast(images, tf.float32)
    if mode == "caffe":
        return x[..., ::-1] - tf.constant(CAFFE_BGR_MEANS, tf.float32)
    if mode == "unit":
        return x / 255.0
    raise ValueError(f"unknown normalization {mode!r}")


def pad_to_multiple(images, multiple: int = 32):
    """Zero-pads ``(B, H, W, C)`` at the bottom and right to a multiple of ``multiple``.

    Annotations keep their coordinates: padding adds pixels after the image, never before.
    """
    shape = tf.shape(images)
    pad_h = (-shape[1]) % multiple
    pad_w = (-shape[2]) % multiple
    return tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])


def split_levels(flat, grid_sizes):
    """``(B, sum S^2, X)`` -> list of ``(B, S, S, X)``, one per level."""
    out, start = [], 0
    for s in grid_sizes:
        out.append(tf.reshape(flat[:, start:start + s * s], (-1, s, s, tf.shape(flat)[-1])))
        start += s * s
    return out


def head_inputs(pyramid, num_levels: int):
    """The FPN maps the head reads, as the reference does: P2 halved (bilinear) to P3's size, P3,
    P4, P5, and P6 resized to P5's size; the first ``num_levels`` of them."""
    p2_half = resize_like(pyramid[0], pyramid[1], method="bilinear")
    levels = [p2_half, pyramid[1], pyramid[2], pyramid[3]]
    if num_levels == 5:
        levels.append(resize_like(pyramid[4], pyramid[3], method="bilinear"))
    return levels[:num_levels]


@keras.saving.register_keras_serializable(package="solo_lib")
class SOLOv2(keras.Model):
    """The whole network. Build it from a :class:`SOLOConfig`.

    Args:
        config: a ``SOLOConfig`` (or its ``to_dict()``).
        class_names: the ``num_classes`` names of the classes it learns, indexed by label (the
            training set's ``class_names``; ``solo_lib.train`` records them). Saved with the
            model, so resuming, evaluating and predicting can check them; None when unknown
            (checkpoints written before they were recorded).
    """

    def __init__(self, config: SOLOConfig | dict, class_names=None, **kwargs):
        super().__init__(**kwargs)
        self.config = config if isinstance(config, SOLOConfig) else SOLOConfig.from_dict(config)
        c = self.config
        self.class_names = check_class_names(class_names, c.num_classes)
        self.backbone = Backbone(c.backbone, c.backbone_weights, c.freeze_backbone, groups=c.norm_groups,
                                 remat=c.remat, frozen_stages=c.frozen_stages, norm_eval=c.norm_eval,
                                 name="backbone")
        self.fpn = FPN(c.fpn_channels, with_p6=c.num_levels == 5, remat=c.remat, name="fpn")
        self.head = SOLOv2Head(c.num_classes, c.grid_sizes, c.head_convs, c.head_channels, c.mask_channels,
                               c.norm_groups, c.prior_prob, remat=c.remat, name="head")
        self.mask_branch = MaskFeatureBranch(c.mask_feature_channels, c.mask_channels, c.norm_groups,
                                             remat=c.remat, name="mask_feature")
        # Saved with the weights, so a checkpoint knows how far training got (see solo_lib.checkpoints).
        self.epochs_done = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False,
                                           name="epochs_done")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "category_loss", "mask_loss")}
        # Gradient accumulation: each batch is split into this many micro-batches, run one after
        # the other (see train_step). Set by solo_lib.train from TrainConfig.accumulate_steps
        # before the training function is traced; not saved with the model.
        self.accumulate_steps = 1

    @property
    def parts(self) -> tuple[keras.layers.Layer, ...]:
        """The four sub-networks: backbone, FPN, head and mask feature branch."""
        return self.backbone, self.fpn, self.head, self.mask_branch

    def call(self, images, training=None):
        x = normalize_images(images, self.config.normalization)
        pyramid = self.fpn(self.backbone(x, training=training), training=training)
        outputs = self.head(head_inputs(pyramid, self.config.num_levels), training=training)
        outputs["mask_feature"] = self.mask_branch(pyramid[:4], training=training)
        return outputs

    @property
    def metrics(self):
        return list(self.trackers.values())

    def train_step(self, data):
        """One optimisation step on ``(images, targets)`` from ``solo_lib.data.pipeline``.

        Under a ``tf.distribute`` strategy this runs once per replica on its share of the batch;
        dividing the loss by the number of replicas makes the all-reduced (summed) gradients those
        of the global batch mean.

        With ``accumulate_steps = k > 1`` the (replica's) batch of B images is split into k
        micro-batches of B / k, run one after the other in a ``tf.while_loop``, so activations
        are held for one micro-batch at a time; their gradients are summed and applied once. The
        loss's normalisers (positive pairs and cells) are counted on the whole batch first
        (``losses.loss_normalizers``, from the targets alone), so the micro-batches' losses add up
        to the whole batch's loss, and the update equals one step on the whole batch wherever
        the network treats images independently (GroupNorm, or BatchNorm frozen as the paper
        preset's ``norm_eval``; BatchNorm in training mode would see B / k images per batch).
        """
        images, targets = data
        if self.accumulate_steps > 1:
            losses, grads = self._accumulated_gradients(images, targets, self.accumulate_steps)
        else:
            with tf.GradientTape() as tape:
                losses = solo_losses(self(images, training=True), targets, self.config)
                scaled = losses["total"] / tf.distribute.get_strategy().num_replicas_in_sync
            grads = tape.gradient(scaled, self.trainable_variables)
        if self.config.remat:
            # Less memory, same values (solo_lib.memory): the update starts once every gradient
            # exists, and updates one weight at a time.
            with tf.control_dependencies([tf.group([g for g in grads if g is not None])]):
                with one_update_at_a_time(self.optimizer):
                    self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        else:
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        for name, key in (("loss", "total"), ("category_loss", "category"), ("mask_loss", "mask")):
            self.trackers[name].update_state(losses[key])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def _accumulated_gradients(self, images, targets, steps: int):
        """The loss and gradients of a batch computed in ``steps`` micro-batches (see train_step).

        Returns:
            ``(losses, grads)``: ``losses`` with ``total``, ``category`` and ``mask`` of the
            whole batch, ``grads`` one per trainable variable (None where the loss does not
            reach it, as in one pass).
        """
        batch = images.shape[0]
        if batch is None or batch % steps:
            raise ConfigError(f"gradient accumulation splits each batch into accumulate_steps={steps} micro-batches, "
                              f"but a replica's batch has {batch} images; use a batch size that is a multiple of "
                              f"accumulate_steps times the number of replicas (and drop_remainder batches)")
        micro = batch // steps
        normalizers = loss_normalizers(targets, self.config)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trainable_variables

        def split(x):  # (B, ...) -> (steps, B / steps, ...), static sizes kept where known
            dims = [x.shape[d] if x.shape[d] is not None else tf.shape(x)[d] for d in range(1, len(x.shape))]
            return tf.reshape(x, [steps, micro, *dims])

        micro_images = split(images)
        micro_targets = {key: split(value) for key, value in targets.items()}

        def body(i, grad_sums, loss_sums):
            part = {key: value[i] for key, value in micro_targets.items()}
            with tf.GradientTape() as tape:
                losses = solo_losses(self(micro_images[i], training=True), part, self.config, normalizers)
                scaled = losses["total"] / replicas
            grads = tape.gradient(scaled, variables)
            unreached[:] = [g is None for g in grads]  # known when the body is traced
            grad_sums = [s if g is None else s + g for s, g in zip(grad_sums, grads)]
            loss_sums = [s + losses[key] for s, key in zip(loss_sums, ("total", "category", "mask"))]
            return i + 1, grad_sums, loss_sums

        unreached = []
        zeros = [tf.zeros_like(v) for v in variables]
        # parallel_iterations=1: one micro-batch's activations at a time, the point of accumulating.
        _, grads, loss_sums = tf.while_loop(
            lambda i, *_: i < steps, body, (tf.constant(0), zeros, [tf.constant(0.0)] * 3), parallel_iterations=1)
        # None where the loss does not reach a variable, as tape.gradient gives in one pass, so the
        # optimiser skips it (no weight decay or momentum step on it) exactly as without accumulating.
        grads = [None if none else g for g, none in zip(grads, unreached)]
        return dict(zip(("total", "category", "mask"), loss_sums)), grads

    def get_config(self):
        names = None if self.class_names is None else list(self.class_names)
        return {**super().get_config(), "config": self.config.to_dict(), "class_names": names}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def check_class_names(class_names, num_classes: int) -> tuple[str, ...] | None:
    """``class_names`` as a tuple of strings (None stays None).

    Raises:
        ConfigError: not exactly ``num_classes`` names.
    """
    if class_names is None:
        return None
    names = tuple(str(n) for n in class_names)
    if len(names) != num_classes:
        raise ConfigError(f"{len(names)} class names {list(names)} for a model of {num_classes} classes; "
                          f"give exactly one name per class")
    return names


def check_classes(model, dataset) -> None:
    """Fails unless ``model`` predicts ``dataset``'s classes, label for label.

    A model's label ``i`` is the i-th class of the data it was trained on (``CocoDataset`` orders
    classes by category id). A model with recorded ``class_names`` must have exactly the
    dataset's names in the same order; one without (older checkpoints, weights files) only the
    same number of classes.

    Args:
        model: a ``SOLOv2`` (``class_names`` may be None; ``checkpoint_path`` names it, if set).
        dataset: a ``CocoDataset`` (``class_names``, ``annotation_file``).

    Raises:
        CheckpointError: other classes, or the same ones in another order; names both lists.
    """
    source = getattr(model, "checkpoint_path", None) or "the model"
    ours, theirs = getattr(model, "class_names", None), tuple(dataset.class_names)
    where = getattr(dataset, "annotation_file", "the dataset")
    if ours is None:
        if model.config.num_classes != len(theirs):
            raise CheckpointError(f"{source} predicts {model.config.num_classes} classes but {where} has "
                                  f"{len(theirs)} {list(theirs)}; use a model trained on these classes")
        return
    if tuple(ours) == theirs:
        return
    if sorted(ours) == sorted(theirs):
        raise CheckpointError(f"{source} was trained on the classes {list(ours)} (label order) but {where} lists the "
                              f"same names in another order {list(theirs)} (by category id); give its categories "
                              f"the ids of the training set, so each label means the same class")
    raise CheckpointError(f"{source} was trained on the classes {list(ours)} but {where} has {list(theirs)}; use a "
                          f"checkpoint trained on these classes (or, for training, a new --out without --resume)")


def build_model(config: SOLOConfig, image_size: tuple[int, int] = (256, 256), class_names=None) -> SOLOv2:
    """A SOLOv2 model with its weights created (one forward pass on zeros of ``image_size``)."""
    model = SOLOv2(config, class_names)
    model(tf.zeros((1, *image_size, 3)))
    return model
