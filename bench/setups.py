"""The training set-ups the pipeline, train_step, efficiency and profile benchmarks measure.

* ``tiny``: ``SOLOConfig.tiny`` with ``TrainConfig.overfit_sample()`` (notebook 08, ``make demo``):
  the preset's image scale (256, 256), so a 256 x 256 canvas, batch 4, in-memory source, SGD, fixed
  paddings (24 instances, 64 pairs), no XLA.
* ``paper``: ``SOLOConfig.paper_r50`` at the image scale (480, 480) instead of the paper's
  (1333, 800): every image is resized to a long side of 480 on a 480 x 480 canvas (both
  orientations); the paper's ``TrainConfig`` defaults (SGD, momentum, weight decay, clip norm, the
  paper's flip augmentation), batch 2, streaming source.
* ``paper_xla``: ``paper`` with ``jit_compile=True``.
* ``paper_remat``: ``paper`` with gradient checkpointing (``SOLOConfig.remat``, see
  ``solo_lib/model/remat.py``): less memory, some forward work done twice.
* ``paper_accumulate``: ``paper`` with gradient accumulation (``TrainConfig.accumulate_steps=2``):
  the same batch of 2 computed as two micro-batches of 1, one update.

All train on the sample dataset (``data/sample_coco``, train split, 12 images of 256 px or less,
4 classes), through the same pipeline call as ``solo_lib.train.train``.
"""

from __future__ import annotations

SETUPS = ("tiny", "paper", "paper_xla", "paper_remat", "paper_accumulate")
PAPER_SCALE = (480, 480)  # the paper set-ups' image scale: a 480 x 480 canvas for either orientation

DESCRIPTIONS = {
    "tiny": "tiny preset, TrainConfig.overfit_sample(): image scale (256, 256), 256x256 canvas, batch 4, "
            "in-memory, SGD, max_instances 24 / max_positives 64, no XLA",
    "paper": "paper preset (ResNet-50-FPN), image scale (480, 480), 480x480 canvas, batch 2, streaming, SGD, no XLA",
    "paper_xla": "paper preset (ResNet-50-FPN), image scale (480, 480), 480x480 canvas, batch 2, streaming, SGD, XLA",
    "paper_remat": "paper preset (ResNet-50-FPN) with remat=True (gradient checkpointing), image scale (480, 480), "
                   "480x480 canvas, batch 2, streaming, SGD, no XLA",
    "paper_accumulate": "paper preset (ResNet-50-FPN), image scale (480, 480), 480x480 canvas, batch 2 computed as "
                        "2 micro-batches of 1 (accumulate_steps=2), streaming, SGD, no XLA",
}


def training_setup(name: str):
    """``(model_config, train_config, dataset)`` of a set-up (imports TensorFlow)."""
    from solo_lib.config import SOLOConfig
    from solo_lib.data.coco import load_sample_dataset
    from solo_lib.train_config import TrainConfig

    if name not in SETUPS:
        raise ValueError(f"unknown set-up {name!r}; one of {SETUPS}")
    dataset = load_sample_dataset("train")
    if name == "tiny":
        return SOLOConfig.tiny(dataset.num_classes), TrainConfig.overfit_sample(), dataset
    cfg = TrainConfig(batch_size=2, in_memory=False, checkpoint_dir=None, jit_compile=name == "paper_xla",
                      accumulate_steps=2 if name == "paper_accumulate" else 1)
    model_config = SOLOConfig.paper_r50(dataset.num_classes, image_scale=PAPER_SCALE, remat=name == "paper_remat")
    return model_config, cfg, dataset


def training_dataset(model_config, cfg, dataset):
    """The batches ``solo_lib.train.train`` would fit on (the same calls, from epoch 0)."""
    from solo_lib.data import pipeline

    source = (pipeline.in_memory_source if cfg.in_memory else pipeline.streaming_source)(dataset)
    return pipeline.training_dataset(source, model_config, batch_size=cfg.batch_size,
                                     augment=cfg.augment, seed=cfg.seed, start_step=0,
                                     max_instances=cfg.max_instances, max_positives=cfg.max_positives,
                                     short_sides=cfg.short_sides)
