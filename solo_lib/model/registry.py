"""The backbone registry: one entry per backbone, everything the model needs to know about it (notebook 05).

A backbone is a function that builds a functional ``keras.Model`` from an image ``(B, H, W, 3)``
to ``[C2, C3, C4, C5]`` at strides 4, 8, 16 and 32, plus a few facts the rest of the model reads:
the widths of C2-C5 (the FPN's lateral convs), the names of the layers that give C2-C5 and the
pieces gradient checkpointing cuts it into (``solo_lib.model.remat``), the name prefixes of its
stem and stages (``frozen_stages``) and whether it takes pretrained weights. A
:class:`BackboneSpec` holds them; :func:`register_backbone` files it under a name, which is what
``SOLOConfig.backbone`` and ``Backbone(kind)`` take. TF Model Garden does the same with
``register_backbone_builder`` (``official/vision/modeling/backbones/factory.py``): a new backbone
is one builder function plus one registration, and no other module changes.

This module imports neither Keras nor TensorFlow, so a config can be validated without them: the
two built-in backbones (``resnet50``, ``tiny``) are registered here, with builders that import
``solo_lib.model.backbone`` only when a model is built.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from solo_lib.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone.

    Attributes:
        name: the name configs use (``SOLOConfig.backbone``).
        build: ``build(weights, groups, norm_eval, closed_form_gradient) -> keras.Model``, a
            functional model (input ``(None, None, 3)``) whose four outputs are C2-C5, in that
            order. ``weights`` is None unless :attr:`pretrained` (``"imagenet"`` or a file path);
            ``groups`` is ``SOLOConfig.norm_groups``, for GroupNorm layers; ``norm_eval`` asks
            BatchNorm layers to stay in inference mode; ``closed_form_gradient`` is the argument
            of ``solo_lib.model.norm.GroupNormalization`` (off in models built with ``remat``).
            A builder ignores what does not apply to it. Layer names must not depend on the
            arguments: weights files find a layer's weights by them.
        channels: the widths of C2-C5.
        taps: the names of the layers whose outputs are C2-C5.
        segments: gradient checkpointing's pieces (``solo_lib.model.remat``), in order: each a
            tuple of layer names, the model cut after each (a piece replayed as a chain of those
            smaller pieces); the last name of a piece that yields C_k must be C_k's tap. Empty:
            one piece per stage, cut at the taps.
        stem: name prefixes of the stem's layers, which ``frozen_stages >= 0`` freezes (may be
            empty: then 0 freezes nothing).
        stages: name prefixes of the four stages' layers; ``frozen_stages = k`` freezes the first k.
        pretrained: whether ``build`` takes weights (``backbone_weights``); False: only None.
    """

    name: str
    build: Callable
    channels: tuple[int, int, int, int]
    taps: tuple[str, str, str, str]
    stem: tuple[str, ...]
    stages: tuple[str, str, str, str]
    segments: tuple[tuple[str, ...], ...] = ()
    pretrained: bool = False

    def __post_init__(self):
        for field in ("channels", "taps", "stages"):
            if len(getattr(self, field)) != 4:
                raise ValueError(f"backbone {self.name!r}: {field} needs one entry per level C2-C5, "
                                 f"got {getattr(self, field)!r}")
        if not self.segments:
            object.__setattr__(self, "segments", tuple((tap,) for tap in self.taps))
        ends = {piece[-1] for piece in self.segments}
        if not set(self.taps) <= ends:
            raise ValueError(f"backbone {self.name!r}: every tap {self.taps} must end a checkpoint piece, "
                             f"got pieces {self.segments}")

    def frozen_prefixes(self, frozen_stages: int) -> tuple[str, ...]:
        """Name prefixes of the layers that ``frozen_stages`` freezes.

        mmdetection's ``ResNet._freeze_stages`` (the reference's backbone): -1 freezes nothing, 0
        the stem, k >= 1 the stem and the first k stages.

        Raises:
            ValueError: ``frozen_stages`` outside ``-1..4``.
        """
        if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be -1 (none), 0 (the stem) or 1-4, got {frozen_stages!r}")
        return (self.stem if frozen_stages >= 0 else ()) + self.stages[:max(frozen_stages, 0)]


_BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Files ``spec`` under ``spec.name``; returns it.

    Raises:
        ValueError: a backbone of that name is registered already (unregister it first).
    """
    if spec.name in _BACKBONES:
        raise ValueError(f"a backbone named {spec.name!r} is registered already")
    _BACKBONES[spec.name] = spec
    return spec


def unregister_backbone(name: str) -> None:
    """Removes a registered backbone (models built with it can no longer be loaded)."""
    _BACKBONES.pop(name)


def backbone_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_BACKBONES)


def get_backbone(name: str) -> BackboneSpec:
    """The spec registered as ``name``.

    Raises:
        ConfigError: no such backbone; names the registered ones.
    """
    try:
        return _BACKBONES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown backbone {name!r}; registered: {', '.join(map(repr, _BACKBONES))} "
                          f"(solo_lib.model.registry.register_backbone adds one)") from None


# -- the built-in backbones -------------------------------------------------------------------

RESNET50_TAPS = ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out")
# Checkpoint pieces, two levels deep (Chen et al. 2016, §4: recursive checkpointing): the backward
# pass keeps only the stages' outputs (the stem's, C2-C5), and replays a stage as a chain of smaller
# pieces (the blocks of conv2, conv3 and conv4 in halves, conv5 whole), keeping their outputs only
# during that stage's replay. The step's peak is what stays alive through the whole backward pass
# (stage outputs, weight gradients) plus the largest single replay. On the paper preset two levels
# peak lower than the same small pieces in one level (README, Performance).
RESNET50_SEGMENTS = (("pool1_pool",), ("conv2_block1_out", "conv2_block2_out", "conv2_block3_out"),
                     ("conv3_block2_out", "conv3_block4_out"), ("conv4_block3_out", "conv4_block6_out"),
                     ("conv5_block3_out",))
TINY_CHANNELS = (32, 64, 96, 128)
TINY_TAPS = tuple(f"stage{stage}_relu1" for stage in range(4))


def _build_resnet50(weights, groups, norm_eval, closed_form_gradient):
    """``keras.applications.ResNet50``'s stages conv2-conv5 (``solo_lib.model.backbone``); it has
    BatchNorm, no GroupNorm."""
    from solo_lib.model import backbone  # Keras: imported when a model is built, not to check a config

    return backbone._resnet50_features(weights, norm_eval)


def _build_tiny(weights, groups, norm_eval, closed_form_gradient):
    """The course's tiny backbone (``solo_lib.model.backbone``); GroupNorm, no BatchNorm."""
    from solo_lib.model import backbone

    return backbone._tiny_features(groups, closed_form_gradient=closed_form_gradient)


# ResNet-50 (He et al. 2016), the paper's backbone: stem conv1 + pool1, stages conv2_x ... conv5_x.
register_backbone(BackboneSpec(
    name="resnet50", build=_build_resnet50, channels=(256, 512, 1024, 2048), taps=RESNET50_TAPS,
    stem=("conv1_", "pool1_"), stages=("conv2_", "conv3_", "conv4_", "conv5_"), segments=RESNET50_SEGMENTS,
    pretrained=True))
# Four stages of two conv -> GroupNorm -> ReLU blocks; no separate stem (stage 0 halves twice).
register_backbone(BackboneSpec(
    name="tiny", build=_build_tiny, channels=TINY_CHANNELS, taps=TINY_TAPS, stem=(),
    stages=tuple(f"stage{stage}_" for stage in range(4))))
