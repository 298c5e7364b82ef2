"""How strongly the training augmentation changes a sample: :class:`AugmentConfig` (notebook 03).

It lives apart from :mod:`solo_lib.data.augment`, whose transforms are TensorFlow ops, so that the
configurations (this, :class:`solo_lib.train_config.TrainConfig`) and the command line built from
them import without TensorFlow: ``python -m solo_lib train --help`` and an invalid option answer at
once.
"""

import dataclasses
import math
import numbers
from collections.abc import Mapping


def is_int(value):
    """An integer, and not a bool (which Python counts as one)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value):
    """A real number, and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """How strongly :func:`solo_lib.data.augment.augment` changes a sample.

    Attributes:
        flip_prob: Probability of a horizontal flip, in [0, 1].
        brightness_delta: Largest brightness shift, as a fraction of 255, in [0, 1]. The shift is
            drawn uniformly from [-delta, delta] and added to every channel.
        scale_range: ``(low, high)`` bounds of the resize factor, ``0 < low <= high``. The factor
            is drawn log-uniformly, so zooming in by 1.25 is as likely as zooming out by 0.8.
        crop_size: ``(height, width)`` of the random crop window, or ``None`` for no crop. An
            image dimension smaller than the window is not cropped.
        min_mask_pixels: Instances whose mask keeps fewer pixels after the transforms are
            dropped; at least 1, so an empty mask never survives.
        extra: Parameters of augmentations registered outside this class
            (:func:`solo_lib.data.augment_registry.register_augmentation`), by augmentation name:
            ``{"vertical_flip": {"prob": 0.5}}``. Stored as sorted ``(name, ((key, value), ...))``
            pairs so the config stays frozen and hashable; read one with :meth:`params_for`. A
            parameter left out takes the default its registration declares.

    Raises:
        ValueError: If a field is out of range or has the wrong type.
    """

    flip_prob: float = 0.5
    brightness_delta: float = 0.15
    scale_range: tuple[float, float] = (0.8, 1.25)
    crop_size: tuple[int, int] | None = None
    min_mask_pixels: int = 1
    extra: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()

    def __post_init__(self):
        for name in ("flip_prob", "brightness_delta"):
            value = getattr(self, name)
            if not is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a number in [0, 1], got {value!r}")
        scale = tuple(self.scale_range) if isinstance(self.scale_range, (tuple, list)) else ()
        if not (len(scale) == 2 and all(is_real(v) and math.isfinite(v) for v in scale)
                and 0 < scale[0] <= scale[1]):
            raise ValueError("AugmentConfig.scale_range must be (low, high) with 0 < low <= high, "
                             f"got {self.scale_range!r}; use (1.0, 1.0) for no scaling")
        object.__setattr__(self, "scale_range", (float(scale[0]), float(scale[1])))
        if self.crop_size is not None:
            crop = tuple(self.crop_size) if isinstance(self.crop_size, (tuple, list)) else ()
            if not (len(crop) == 2 and all(is_int(v) and v >= 1 for v in crop)):
                raise ValueError("AugmentConfig.crop_size must be None or (height, width) with "
                                 f"positive integers, got {self.crop_size!r}")
            object.__setattr__(self, "crop_size", (int(crop[0]), int(crop[1])))
        if not is_int(self.min_mask_pixels) or self.min_mask_pixels < 1:
            raise ValueError("AugmentConfig.min_mask_pixels must be an integer >= 1, "
                             f"got {self.min_mask_pixels!r}")
        object.__setattr__(self, "extra", _frozen_extra(self.extra))

    def params_for(self, name: str) -> dict:
        """The parameters :attr:`extra` gives the augmentation registered as ``name`` (``{}`` if none)."""
        return dict(dict(self.extra).get(name, ()))

    @classmethod
    def none(cls):
        """Returns a config under which :func:`augment` changes nothing."""
        return cls(flip_prob=0.0, brightness_delta=0.0, scale_range=(1.0, 1.0), crop_size=None)

    @classmethod
    def paper(cls):
        """The paper's training augmentation: a horizontal flip with probability 0.5 and nothing
        else (the authors' 1x configs: ``RandomFlip(flip_ratio=0.5)`` after the resize to the image
        scale; the 3x schedule adds multi-scale training, ``TrainConfig.short_sides``)."""
        return cls(flip_prob=0.5, brightness_delta=0.0, scale_range=(1.0, 1.0), crop_size=None)


def _pairs(value, what):
    """``value`` (a mapping, or ``(key, value)`` pairs as JSON gives back) as a sorted tuple of pairs."""
    items = value.items() if isinstance(value, Mapping) else value
    try:
        pairs = [(k, v) for k, v in items]
    except (TypeError, ValueError):
        raise ValueError(f"AugmentConfig.extra: {what} must be a mapping, got {value!r}") from None
    if not all(isinstance(k, str) for k, _ in pairs) or len({k for k, _ in pairs}) != len(pairs):
        raise ValueError(f"AugmentConfig.extra: {what} must have distinct string keys, got {value!r}")
    return tuple(sorted(pairs))


def _frozen_value(value, where):
    """A parameter value made hashable: a number, bool or string, or a tuple of them (a list becomes one)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen_value(v, where) for v in value)
    if isinstance(value, (numbers.Number, str)):
        return value
    raise ValueError(f"AugmentConfig.extra[{where}] must be a number, string or tuple of them, got {value!r}")


def _frozen_extra(extra):
    """:attr:`AugmentConfig.extra` as sorted, hashable ``(name, ((key, value), ...))`` pairs."""
    return tuple((name, tuple((key, _frozen_value(v, f"{name!r}][{key!r}")) for key, v in _pairs(params, repr(name))))
                 for name, params in _pairs(extra, "extra"))
