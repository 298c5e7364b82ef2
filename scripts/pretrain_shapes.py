"""Pretrains the tiny preset on synthetic shapes that are not the sample images: the starting
point of notebook 08's fine-tuning, ``data/pretrained/tiny_shapes.weights.h5``.

The paper starts from an ImageNet-pretrained ResNet; nothing can be downloaded here, and ImageNet
weights would not fit the tiny backbone anyway. So the course makes its own pretraining set with
the generator of the sample dataset (``scripts/make_sample_data.py``): ``COUNT`` random scenes of
the same four classes, with seeds from 1000 on, disjoint from the sample's (100-111, 200-205), so
the pretrained model has never seen a sample image, training or validation. The images are
written to a temporary folder and deleted afterwards; the same script run again makes the same
images.

Usage, from the repo root (about 14 minutes on a 2-core CPU):

    python scripts/pretrain_shapes.py [COUNT] [EPOCHS]      # default 192 images, 60 epochs

Writes ``tiny_shapes.weights.h5`` (weights only, ~4 MB) and ``tiny_shapes.json``: the SOLOConfig,
the recipe, the pretraining set and its loss curve, and the model's mask AP on the sample
training images as it is (it knows the classes, so this measures how far pretraining alone goes).
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from make_sample_data import PRETRAINING_FIRST_SEED, pretraining_specs, write_split

from solo_lib.config import SOLOConfig
from solo_lib.data import augment as aug
from solo_lib.data.coco import CocoDataset, load_sample_dataset
from solo_lib.evaluate import evaluate_model
from solo_lib.inference import predict
from solo_lib.pretrained import save_weights_only
from solo_lib.train import loss_curves, train
from solo_lib.train_config import TrainConfig

OUT = Path(__file__).resolve().parents[1] / "data" / "pretrained"


def main(count: int = 192, epochs: int = 60) -> None:
    # A wider recipe than the overfit one: scale jitter and crops, so the features are not tied to
    # one size; more pair slots, since the crowded scenes have more objects than the sample's.
    cfg = TrainConfig.overfit_sample(
        epochs=epochs, max_instances=32, max_positives=128,
        augment=aug.AugmentConfig(flip_prob=0.5, brightness_delta=0.0, scale_range=(0.8, 1.25), crop_size=(256, 256)))
    with tempfile.TemporaryDirectory() as tmp:
        images, annotations = Path(tmp) / "labelme" / "train", Path(tmp) / "instances_train.json"
        write_split(pretraining_specs(count), images, annotations)
        dataset = CocoDataset(annotations, images)
        instances = sum(len(sample.labels) for sample in dataset)
        start = time.perf_counter()
        model, history = train(SOLOConfig.tiny(dataset.num_classes), cfg, dataset, progress=False,
                               log_every=max(1, epochs // 20))
        seconds = time.perf_counter() - start
    OUT.mkdir(parents=True, exist_ok=True)
    save_weights_only(model, OUT / "tiny_shapes.weights.h5")
    as_is, _ = evaluate_model(model, load_sample_dataset("train"), model.config, predict)
    curves = loss_curves(history)
    info = {"config": model.config.to_dict(),
            "pretraining_set": {"images": count, "instances": instances,
                                "seeds": [PRETRAINING_FIRST_SEED, PRETRAINING_FIRST_SEED + count - 1],
                                "made_by": "scripts/make_sample_data.py pretraining_specs()"},
            "recipe": {"optimizer": cfg.optimizer, "learning_rate": cfg.learning_rate, "batch_size": cfg.batch_size,
                       "image_scale": list(model.config.image_scale), "decay_epochs": list(cfg.decay_epochs),
                       "scale_range": list(cfg.augment.scale_range),
                       **({"short_sides": list(cfg.short_sides)} if cfg.short_sides else {})},
            "epochs": epochs, "steps": int(model.optimizer.iterations.numpy()), "train_seconds": round(seconds),
            "loss_every_epoch": [round(float(x), 4) for x in curves["loss"]],
            "sample_train_as_is": {"mask_ap": round(as_is.ap, 4), "mask_ap50": round(as_is.ap50, 4)}}
    (OUT / "tiny_shapes.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({k: v for k, v in info.items() if k not in ("config", "loss_every_epoch")}, indent=2))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
