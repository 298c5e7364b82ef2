"""The augmentation registry: name -> random transform, applied by :func:`solo_lib.data.augment.augment`.

An augmentation is one function and one registration. The function is ``op(sample, seed, params)
-> sample``: TensorFlow ops on the sample's tensors (``image``, ``masks``, ``labels``, ``iscrowd``,
``boxes``, see :mod:`solo_lib.data.augment`), drawing every random choice from its own stateless
``(2,)`` ``seed`` and reading its settings from the ``params`` dict. It must keep row ``i`` of every
per-instance array on the same instance (filter them with one keep vector, recompute the boxes).
:func:`register_augmentation` adds it under a name; :func:`~solo_lib.data.augment.augment` applies
the registered augmentations in registration order, each only when it is active for the
:class:`~solo_lib.data.augment_config.AugmentConfig`, and notebook 03's explorer
(:func:`solo_lib.viz.augmentation_view`) lists them. The same idea as TF Model Garden's registries
(``register_backbone_builder``, a name -> builder mapping filled by decorators); written here as a
dict of records.

Parameters come from one of two places, so a config stays one frozen, hashable value:

- the built-ins (flip, brightness, scale, crop) read fields of ``AugmentConfig`` (``fields=``), which
  the command line offers as options;
- an augmentation added elsewhere declares its own parameters with defaults (``defaults=``) and
  takes their values from ``AugmentConfig(extra={name: {...}})``.

Seeds: each registration gets a slot, and its seed is row ``slot`` of
``tf.random.experimental.stateless_split(seed, num)``. The rows of a stateless split do not depend
on ``num`` (Philox is a counter-based generator: row ``k`` is the ``k``-th block of one stream), so
registering another augmentation leaves every earlier one's draws, and the built-ins' results,
unchanged (``tests/test_augment_registry.py`` checks both).

This module imports no TensorFlow: the registry is plain Python data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

# The registry: name -> Augmentation, in registration order (dicts keep insertion order). Module
# state on purpose, as Model Garden's registries: a registration made anywhere is seen by augment().
_REGISTRY: dict[str, Augmentation] = {}


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """One registered augmentation.

    Attributes:
        name: the key in the registry, ``AugmentConfig.extra`` and notebook 03's explorer.
        op: ``op(sample, seed, params) -> sample`` in TensorFlow ops (see the module docstring).
        fields: the ``AugmentConfig`` fields it reads; ``params`` holds them under their own names.
        defaults: its own parameters and their defaults, set through ``AugmentConfig.extra[name]``.
        active: ``active(params) -> bool``; an inactive augmentation is left out of the graph, so it
            costs nothing (e.g. a flip with probability 0).
        slot: the row of the split seed it draws from (see the module docstring).
        preview: ``preview(sample, amount, seed) -> sample``, the transform at strength ``amount`` in
            [0, 1] for notebook 03's explorer; None leaves it out of the explorer.
    """

    name: str
    op: Callable
    fields: tuple[str, ...] = ()
    defaults: tuple[tuple[str, object], ...] = ()
    active: Callable[[dict], bool] = lambda params: True
    slot: int = 0
    preview: Callable | None = None

    def params(self, config) -> dict:
        """The ``params`` dict this augmentation receives under ``config`` (an ``AugmentConfig``).

        Raises:
            ValueError: ``config.extra`` gives it a parameter its registration does not declare.
        """
        given = config.params_for(self.name)
        unknown = sorted(set(given) - {key for key, _ in self.defaults})
        if unknown:
            raise ValueError(f"AugmentConfig.extra[{self.name!r}] sets {unknown}, which the augmentation "
                             f"{self.name!r} does not declare; it declares {[k for k, _ in self.defaults]}")
        params = {field: getattr(config, field) for field in self.fields}
        params.update(self.defaults)
        params.update(given)
        return params


def register_augmentation(name: str, op: Callable, *, fields=(), defaults: Mapping | None = None,
                          active: Callable[[dict], bool] | None = None,
                          preview: Callable | None = None) -> Augmentation:
    """Adds an augmentation, applied after those registered before it.

    Args:
        name: a new name (an identifier, e.g. ``"vertical_flip"``).
        op: ``op(sample, seed, params) -> sample``.
        fields: ``AugmentConfig`` fields it reads (the built-ins).
        defaults: its own parameters with their defaults (set with ``AugmentConfig.extra``).
        active: ``active(params) -> bool``; default: always active.
        preview: ``preview(sample, amount, seed) -> sample`` for notebook 03's explorer.

    Returns:
        The :class:`Augmentation` record.

    Raises:
        ValueError: the name is taken or not an identifier, or a field is not an ``AugmentConfig`` field.
    """
    from solo_lib.data.augment_config import AugmentConfig

    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"an augmentation's name must be an identifier, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"an augmentation named {name!r} is already registered; unregister_augmentation({name!r}) "
                         "first to replace it")
    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise ValueError(f"AugmentConfig has no field {unknown}; put the parameters of an augmentation added "
                         "outside the library in defaults= and set them with AugmentConfig(extra=...)")
    slot = 1 + max((a.slot for a in _REGISTRY.values()), default=-1)
    record = Augmentation(name, op, tuple(fields), tuple(dict(defaults or {}).items()),
                          active or (lambda params: True), slot, preview)
    _REGISTRY[name] = record
    return record


def unregister_augmentation(name: str) -> Augmentation:
    """Removes an augmentation and returns its record (tests register a toy one, then remove it).

    Raises:
        KeyError: no augmentation has that name.
    """
    if name not in _REGISTRY:
        raise KeyError(f"no augmentation named {name!r}; registered: {list(_REGISTRY)}")
    return _REGISTRY.pop(name)


def registered_augmentations() -> tuple[Augmentation, ...]:
    """The registered augmentations, in the order :func:`~solo_lib.data.augment.augment` applies them."""
    return tuple(_REGISTRY.values())


def check_extra(config) -> None:
    """Fails when ``config.extra`` names an augmentation that is not registered.

    Raises:
        ValueError: the message lists the registered names.
    """
    missing = [name for name, _ in config.extra if name not in _REGISTRY]
    if missing:
        raise ValueError(f"AugmentConfig.extra names {missing}, which no augmentation is registered as; "
                         f"registered: {list(_REGISTRY)} (register_augmentation adds one)")
