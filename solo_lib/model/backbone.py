"""Backbones giving C2-C5, the feature maps at strides 4, 8, 16 and 32 (notebook 05).

* ``resnet50``: ``keras.applications.ResNet50`` (He et al. 2016), the paper's backbone. Random
  init by default (nothing is downloaded); ``weights="imagenet"`` or a local ``.weights.h5`` /
  ``.h5`` file for users who have one. C2-C5 are the outputs of its stages conv2-conv5
  (256, 512, 1024, 2048 channels).
* ``tiny``: four small stages of two 3x3 conv -> GroupNorm -> ReLU blocks (32, 64, 96, 128
  channels), enough for the 256-px sample dataset on a CPU.

Fine-tuning a pretrained ResNet the way the reference does (WXinlong/SOLO's configs, through
mmdetection's ``ResNet``) takes two more arguments:

* ``frozen_stages``: the stem and the first stages keep their weights (``trainable = False``: the
  optimiser never sees them, and Keras runs a non-trainable BatchNormalization in inference mode).
  Early layers learn generic edges and textures that ImageNet already taught them.
* ``norm_eval``: every BatchNormalization runs in inference mode, using and keeping its moving
  statistics, while its scale and offset still train. Statistics of a batch of two images per
  device are too noisy to replace ImageNet's.

Both are Keras layers that save and load with ``safe_mode=True``. With ``remat=True`` a training
call checkpoints the backbone piece by piece (``solo_lib.model.remat``), keeping only the pieces'
outputs for the backward pass: ResNet-50's stem and stages, each stage replayed as a chain of
smaller pieces (``solo_lib.model.registry.RESNET50_SEGMENTS``), or each stage of the tiny backbone.

:class:`Backbone` builds whichever backbone ``solo_lib.model.registry`` has under its ``kind``: the
two above are registered there, with their channels, taps, checkpoint pieces and stages; another
is one builder function and one ``register_backbone`` call.
"""

from __future__ import annotations

import os

import keras

from solo_lib.model.blocks import conv_gn_relu
from solo_lib.model.registry import RESNET50_TAPS, TINY_CHANNELS, get_backbone
from solo_lib.model.remat import Segments, checkpointed_chain, use_remat


@keras.saving.register_keras_serializable(package="solo_lib")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that can stay in inference mode in training calls.

    Keras passes a model's ``training`` flag to every layer inside it, and its BatchNormalization
    leaves inference mode only by ``trainable = False``, which also freezes the scale and offset.
    ``norm_eval=True`` keeps the layer in inference mode (normalise with the moving statistics,
    never update them) while ``gamma`` and ``beta`` stay trainable: PyTorch's ``module.eval()``
    on a BatchNorm whose parameters still require gradients, as mmdetection's ``norm_eval`` does.

    It keeps Keras' class name on purpose, as :class:`solo_lib.model.norm.GroupNormalization`
    does: weights files name a layer's weights after its class, so weights saved with or without
    ``norm_eval`` load into either.

    Args:
        norm_eval: always run in inference mode.
        **kwargs: ``keras.layers.BatchNormalization``'s arguments.
    """

    def __init__(self, *args, norm_eval=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm_eval = norm_eval

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False if self.norm_eval else training, mask=mask)

    def get_config(self):
        return {**super().get_config(), "norm_eval": self.norm_eval}


def _with_norm_eval(model: keras.Model) -> keras.Model:
    """A copy of ``model`` (same layer names and weights) whose BatchNormalization layers are
    :class:`BatchNormalization` with ``norm_eval=True``."""
    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return BatchNormalization.from_config({**layer.get_config(), "norm_eval": True})
        return layer.__class__.from_config(layer.get_config())

    evaluated = keras.models.clone_model(model, clone_function=clone)
    evaluated.set_weights(model.get_weights())
    return evaluated


def _resnet50_features(weights: str | None, norm_eval: bool = False) -> keras.Model:
    """ResNet50 without its classifier, returning ``[C2, C3, C4, C5]``."""
    local = weights is not None and weights != "imagenet"
    if local and not os.path.isfile(weights):
        raise FileNotFoundError(f"backbone weights file {weights!r} not found")
    base = keras.applications.ResNet50(include_top=False, weights=None if local else weights,
                                       input_shape=(None, None, 3))
    if local:
        base.load_weights(weights)
    if norm_eval:
        base = _with_norm_eval(base)
    return keras.Model(base.input, [base.get_layer(name).output for name in RESNET50_TAPS], name="resnet50_c2_c5")


def _tiny_features(groups: int, closed_form_gradient: bool = True) -> keras.Model:
    """The tiny backbone as a functional model returning ``[C2, C3, C4, C5]``."""
    inputs = keras.Input((None, None, 3))
    x, outputs = inputs, []
    for stage, channels in enumerate(TINY_CHANNELS):
        # Stage 0 halves twice (stem + stage) to reach stride 4, later stages halve once.
        for block, stride in enumerate((2, 2) if stage == 0 else (2, 1)):
            for layer in conv_gn_relu(channels, 3, groups, f"stage{stage}", block, strides=stride,
                                      closed_form_gradient=closed_form_gradient):
                x = layer(x)
        outputs.append(x)
    return keras.Model(inputs, outputs, name="tiny_c2_c5")


@keras.saving.register_keras_serializable(package="solo_lib")
class Backbone(keras.layers.Layer):
    """C2-C5 feature extractor: the backbone registered as ``kind`` (``solo_lib.model.registry``).

    Args:
        kind: a registered name: ``"resnet50"``, ``"tiny"`` or one added with ``register_backbone``.
        weights: ``None`` (random init), ``"imagenet"`` or a local weights file (backbones with
            pretrained weights only: resnet50).
        freeze: keep all the weights fixed (``trainable = False``).
        groups: GroupNorm groups (the tiny backbone's; resnet50 has none).
        remat: checkpoint the backbone in training calls (see the module docstring).
        frozen_stages: keep the stem and the first stages fixed
            (``solo_lib.model.registry.BackboneSpec.frozen_prefixes``).
        norm_eval: run every BatchNormalization in inference mode, its scale and offset still
            trainable (see :class:`BatchNormalization`); the tiny backbone has none.

    Call:
        images ``(B, H, W, 3)`` normalised -> ``[C2, C3, C4, C5]`` at strides 4, 8, 16, 32
        (sizes ``ceil(H / stride)``).

    Raises:
        ConfigError: ``kind`` is not registered.
        ValueError: ``weights`` for a backbone without pretrained weights, a bad ``frozen_stages``,
            or a builder whose outputs do not match its registration.
    """

    def __init__(self, kind: str = "resnet50", weights: str | None = None, freeze: bool = False, groups: int = 16,
                 remat: bool = False, frozen_stages: int = -1, norm_eval: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.weights_source, self.freeze, self.groups, self.remat = kind, weights, freeze, groups, remat
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        spec = get_backbone(kind)
        frozen = spec.frozen_prefixes(frozen_stages)
        if weights is not None and not spec.pretrained:
            raise ValueError(f"the {kind} backbone has no pretrained weights; use weights=None")
        self.features = spec.build(weights=weights, groups=groups, norm_eval=norm_eval,
                                   closed_form_gradient=not remat)
        _check_outputs(self.features, spec)
        self.features.trainable = not freeze
        for layer in self.features.layers:
            if layer.name.startswith(frozen):
                layer.trainable = False
        self.channels, self.taps, self.groups_of_pieces = spec.channels, spec.taps, spec.segments
        self.segments = (Segments.of(self.features, [name for group in spec.segments for name in group])
                         if remat else None)

    def call(self, images, training=None):
        if not use_remat(self.remat, training, self.features):
            return self.features(images, training=training)
        fine = [lambda t, piece=piece: piece(t, training=training) for piece in self.segments.models]
        pieces, start = [], 0
        for group in self.groups_of_pieces:  # one piece per group, itself a chain of its fine pieces
            chain = fine[start:start + len(group)]
            start += len(group)
            pieces.append(chain[0] if len(chain) == 1 else
                          lambda t, inner=checkpointed_chain(chain, [len(chain) - 1]): inner(t)[0])
        taps = [i for i, group in enumerate(self.groups_of_pieces) if group[-1] in self.taps]
        return checkpointed_chain(pieces, taps)(images)

    def get_config(self):
        # A saved model restores its trained weights from the file itself: never re-download.
        return {**super().get_config(), "kind": self.kind, "weights": None, "freeze": self.freeze,
                "groups": self.groups, "remat": self.remat, "frozen_stages": self.frozen_stages,
                "norm_eval": self.norm_eval}


def _check_outputs(features: keras.Model, spec) -> None:
    """Fails unless ``features`` gives four maps of ``spec.channels`` channels, from the layers
    ``spec.taps`` names: a registration that does not match its builder fails here, when the model
    is built, rather than as a shape error in the FPN or a wrong piece in a checkpointed step."""
    got = [output.shape[-1] for output in features.outputs]
    if got != list(spec.channels):
        raise ValueError(f"backbone {spec.name!r}: its builder gives maps of {got} channels, its registration says "
                         f"{list(spec.channels)}")
    names = [layer.name for layer in features.layers]
    missing = [tap for group in spec.segments for tap in group if tap not in names]
    if missing:
        raise ValueError(f"backbone {spec.name!r}: no layers named {missing} (its taps or checkpoint pieces)")
