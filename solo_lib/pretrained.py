"""Pretrained weights: starting a run from another model's weights (notebook 08).

Pretrained weights are a ``NAME.weights.h5`` file (weights only, :func:`save_weights_only`) with
``NAME.json`` beside it (:func:`pretrained_info`: the ``SOLOConfig`` that made them).
:func:`load_pretrained` copies all of them but the class predictor, which keeps its fresh
initialisation because its classes are the new dataset's: fine-tuning as Detectron's and
mmdetection's ``load_from`` does it. A run's own checkpoints, which also hold the optimizer state,
are :mod:`solo_lib.checkpoints`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from solo_lib.config import SOLOConfig
from solo_lib.errors import CheckpointError, MissingFileError
from solo_lib.model.solov2 import SOLOv2, build_model


def pretrained_info(path: str | os.PathLike) -> dict:
    """The JSON written beside pretrained weights ``NAME.weights.h5`` (``NAME.json``): the
    ``SOLOConfig`` of the model that made them (key ``config``) and how it was trained."""
    path = Path(path)
    info_path = path.with_name(path.name.removesuffix(".weights.h5") + ".json")
    if not path.is_file():
        raise MissingFileError(f"pretrained weights {path} not found; give a NAME.weights.h5 file "
                               f"(e.g. data/pretrained/tiny_shapes.weights.h5)")
    if not info_path.is_file():
        raise MissingFileError(f"{info_path} is missing: pretrained weights need the JSON of the model that made "
                               f"them beside them (scripts/pretrain_shapes.py writes both)")
    try:
        info = json.loads(info_path.read_text())
        SOLOConfig.from_dict(info["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{info_path}: not the JSON of pretrained weights (it needs a valid 'config' "
                              f"entry, a SOLOConfig): {err}") from None
    return info


def load_pretrained(model: SOLOv2, path: str | os.PathLike, reset: tuple[str, ...] = ("category_out",)) -> int:
    """Copies pretrained weights into ``model``, except those of the head layers in ``reset``.

    Fine-tuning a detector on new data usually works this way (Detectron's and mmdetection's
    ``load_from``): everything is loaded, and the class predictor is re-initialised because its
    classes are the new dataset's. That is also why the pretrained model may have a different
    ``num_classes`` when ``"category_out"`` is reset; every other weight must have the same shape.

    Args:
        model: a built model (``build_model``).
        path: ``NAME.weights.h5``, with ``NAME.json`` beside it (:func:`pretrained_info`).
        reset: names among ``solo_lib.train_config.RESETTABLE`` whose weights stay as initialised.

    Returns:
        How many weight tensors were copied.

    Raises:
        MissingFileError: the weights or their JSON are missing.
        CheckpointError: a weight's shape differs (the architectures differ), named with both shapes.
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
            raise CheckpointError(f"{path} does not fit this model; pretrained weights need the same architecture "
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
            raise CheckpointError(f"{path}: weight {theirs.path} has shape {tuple(theirs.shape)}, but this model's "
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
