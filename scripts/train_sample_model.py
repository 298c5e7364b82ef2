"""Trains the course's sample model: the tiny preset, overfit on the 12 sample training images.

Notebooks 08, 10 and 11 load it to show a trained model without training one first (which takes
minutes on a CPU). Usage, from the repo root:

    python scripts/train_sample_model.py [EPOCHS]      # default 300 epochs = 900 steps

Writes ``data/sample_model/tiny_sample.weights.h5`` (model weights only, ~4 MB) and
``tiny_sample.json``: the SOLOConfig, how it was trained, and the learning curve (training mask
AP and AP50 every ``EPOCHS // 10`` epochs, with the training seconds spent so far; evaluation time
is not counted). Training uses XLA and threads, so a rerun gives a model of the same quality, not
the same bytes.
"""

import json
import os
import sys
from pathlib import Path

from solo_lib.callbacks import MaskAPCurve
from solo_lib.config import SOLOConfig
from solo_lib.data import pipeline
from solo_lib.data.coco import load_sample_dataset
from solo_lib.pretrained import save_weights_only
from solo_lib.train import train
from solo_lib.train_config import TrainConfig

OUT = Path(__file__).resolve().parents[1] / "data" / "sample_model"


def main(epochs: int = 300) -> None:
    dataset = load_sample_dataset("train")
    cfg = TrainConfig.overfit_sample(epochs=epochs)
    steps_per_epoch = pipeline.steps_per_epoch(dataset, cfg.batch_size)
    curve = MaskAPCurve(dataset, max(1, epochs // 10))  # its clock runs only while training
    model, history = train(SOLOConfig.tiny(dataset.num_classes), cfg, dataset, callbacks=[curve], progress=False,
                           log_every=max(1, epochs // 20))
    OUT.mkdir(parents=True, exist_ok=True)
    save_weights_only(model, OUT / "tiny_sample.weights.h5")
    last = curve.points[-1]
    info = {"config": model.config.to_dict(),
            "recipe": {"optimizer": cfg.optimizer, "learning_rate": cfg.learning_rate, "batch_size": cfg.batch_size,
                       "image_scale": list(model.config.image_scale), "decay_epochs": list(cfg.decay_epochs),
                       "jit_compile": cfg.jit_compile,
                       **({"short_sides": list(cfg.short_sides)} if cfg.short_sides else {})},
            "epochs": epochs, "steps": epochs * steps_per_epoch, "train_seconds": round(curve.seconds),
            "final_loss": round(float(history.history["loss"][-1]), 4),
            "train_mask_ap": last["mask_ap"], "train_mask_ap50": last["mask_ap50"],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],  # seconds are slower on a busy CPU
            "learning_curve": curve.points}
    (OUT / "tiny_sample.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({k: v for k, v in info.items() if k not in ("config", "learning_curve")}, indent=2))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
