"""``make demo`` / ``python -m solo_lib demo``: the whole course in one headless run.

Trains the tiny preset on the sample training set (the overfit recipe of notebook 08), reports
COCO mask AP on the training images (how well it memorised them) and on the validation images
(how much 12 images teach about new ones: little, honestly), and writes overlay pictures of the
validation predictions to the output folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib.pyplot as plt

from solo_lib import viz
from solo_lib.config import SOLOConfig
from solo_lib.data.coco import load_sample_dataset
from solo_lib.evaluate import evaluate_model
from solo_lib.inference import predict
from solo_lib.train import TrainConfig, train


DRAW_SCORE = 0.3  # the pictures show confident predictions; COCO AP uses them all


def run_demo(out_dir: str | Path = "outputs", epochs: int | None = None) -> dict:
    """Trains, evaluates and draws; returns the train and val ``EvalResult``s."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_set, val_set = load_sample_dataset("train"), load_sample_dataset("val")
    cfg = TrainConfig.overfit_sample() if epochs is None else TrainConfig.overfit_sample(epochs=epochs)
    print(f"training the tiny preset on {len(train_set)} sample images for {cfg.epochs} epochs", flush=True)
    start = time.perf_counter()
    model, _ = train(SOLOConfig.tiny(train_set.num_classes), cfg, train_set, log_every=max(1, cfg.epochs // 10))
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    results = {}
    for name, dataset in (("train", train_set), ("val", val_set)):
        results[name], _ = evaluate_model(model, dataset, model.config, predict)
        print(f"{name:5s} mask AP {results[name].ap:.3f}  AP50 {results[name].ap50:.3f}  AP75 {results[name].ap75:.3f}")
    model.save(out_dir / "demo_model.keras")
    for sample in val_set:
        prediction = predict(model, sample.image)
        fig, axes = plt.subplots(1, 2, figsize=(8, 4))
        viz.draw_instances(axes[0], sample.image, sample.masks, sample.labels, sample.class_names, sample.boxes,
                           title=f"ground truth: {len(sample.labels)} instances")
        shown = int((prediction["scores"] >= DRAW_SCORE).sum())
        viz.draw_predictions(axes[1], sample.image, prediction, sample.class_names, score_thr=DRAW_SCORE,
                             title=f"prediction: {shown} instances with score >= {DRAW_SCORE}")
        path = out_dir / f"val_{sample.image_id:03d}.png"
        fig.savefig(path, bbox_inches="tight", dpi=90)
        plt.close(fig)
    print(f"wrote {len(val_set)} overlay pictures and demo_model.keras to {out_dir}/")
    return results


SAMPLE_MODEL = Path(__file__).resolve().parents[1] / "data" / "sample_model"
# The tiny preset pretrained on 192 synthetic images that are not the sample's (scripts/pretrain_shapes.py):
# notebook 08 fine-tunes it. Load it with TrainConfig(pretrained=...) or solo_lib.checkpoints.load_pretrained.
PRETRAINED_SHAPES = SAMPLE_MODEL.parent / "pretrained" / "tiny_shapes.weights.h5"


def load_sample_model():
    """The course's sample model (tiny preset, overfit on the sample training set by
    ``scripts/train_sample_model.py``) and the facts of its training run.

    Returns:
        ``(model, info)``; ``info`` has the epochs, steps, training time and training-set AP.
    """
    import json

    from solo_lib.model.solov2 import build_model

    info_path = SAMPLE_MODEL / "tiny_sample.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} is missing; run `python scripts/train_sample_model.py` to make it")
    info = json.loads(info_path.read_text())
    model = build_model(SOLOConfig.from_dict(info["config"]), (256, 256))
    model.load_weights(SAMPLE_MODEL / "tiny_sample.weights.h5")
    return model, info
