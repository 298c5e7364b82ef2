"""Trains the course's sample model: the tiny preset, overfit on the 12 sample training images.

Notebooks 10 and 11 load it to show inference and evaluation on a trained model without
training one first (which takes minutes on a CPU). Usage, from the repo root:

    python scripts/train_sample_model.py [EPOCHS]      # default 600 epochs = 1800 steps

Writes ``data/sample_model/tiny_sample.weights.h5`` (model weights only, ~4 MB) and
``tiny_sample.json`` (the SOLOConfig and how it was trained). Training uses XLA and threads, so
a rerun gives a model of the same quality, not the same bytes.
"""

import json
import sys
import time
from pathlib import Path

from solo_lib.config import SOLOConfig
from solo_lib.data.coco import load_sample_dataset
from solo_lib.evaluate import evaluate_model
from solo_lib.inference import predict
from solo_lib.model.solov2 import build_model
from solo_lib.train import TrainConfig, train

OUT = Path(__file__).resolve().parents[1] / "data" / "sample_model"


def main(epochs: int = 600) -> None:
    dataset = load_sample_dataset("train")
    cfg = TrainConfig.overfit_sample(epochs=epochs)
    start = time.perf_counter()
    model, history = train(SOLOConfig.tiny(dataset.num_classes), cfg, dataset, progress=False,
                           log_every=max(1, epochs // 20))
    seconds = time.perf_counter() - start
    result, _ = evaluate_model(model, dataset, model.config, predict)
    OUT.mkdir(parents=True, exist_ok=True)
    weights_only = build_model(model.config, cfg.canvas)  # uncompiled: no optimizer state in the file
    weights_only.set_weights(model.get_weights())
    weights_only.save_weights(OUT / "tiny_sample.weights.h5")
    info = {"config": model.config.to_dict(), "epochs": epochs, "steps": epochs * 3, "train_seconds": round(seconds),
            "final_loss": round(float(history.history["loss"][-1]), 4),
            "train_mask_ap": round(result.ap, 4), "train_mask_ap50": round(result.ap50, 4)}
    (OUT / "tiny_sample.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 600)
