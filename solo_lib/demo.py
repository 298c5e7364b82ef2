"""``make demo`` / ``make demo-real`` / ``python -m solo_lib demo [--real]``: the course in one headless run.

``dataset="sample"`` trains the tiny preset on the sample training set (the overfit recipe of
notebook 08), reports COCO mask AP on the training images (how well it memorised them) and on the
validation images (how much 12 images teach about new ones: little, honestly), and writes overlay
pictures of the validation predictions to the output folder.

``dataset="real_photos"`` is a learner's own-data loop (README, "Your own data") on the three real
photographs of ``data/real_photos``: it converts their LabelMe folders to COCO with the course's
converter (printing the ``convert-labelme`` command that does the same), fine-tunes the pretrained
tiny preset on the two training photos (``TrainConfig.overfit_real_photos``, notebook 08b), reports
mask AP on them and on the held-out photo, and draws every photo.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import matplotlib.pyplot as plt

from solo_lib import viz
from solo_lib.config import SOLOConfig
from solo_lib.data.coco import CocoDataset, load_sample_dataset, sample_dataset_paths
from solo_lib.data.labelme import convert_labelme
from solo_lib.evaluate import evaluate_model
from solo_lib.inference import predict
from solo_lib.resources import pretrained_shapes, sample_model_dir
from solo_lib.train import train
from solo_lib.train_config import TrainConfig

DRAW_SCORE = 0.3  # the pictures show confident predictions; COCO AP uses them all


def _shown(path: Path) -> str:
    """``path`` as a command typed here would give it: relative to the working folder if inside it."""
    relative = os.path.relpath(path)
    return str(Path(path).resolve()) if relative.startswith("..") else relative


def _convert_real_photos(out_dir: Path) -> tuple[CocoDataset, CocoDataset]:
    """``data/real_photos/labelme/{train,val}`` -> ``out_dir/instances_{train,val}.json``, as
    ``python -m solo_lib convert-labelme`` does it; returns the training and held-out datasets."""
    datasets = []
    for split in ("train", "val"):
        image_dir = sample_dataset_paths(split, "real_photos")[1]
        labels, out = image_dir.parent / "labels.txt", out_dir / f"instances_{split}.json"
        print(shlex.join(["python", "-m", "solo_lib", "convert-labelme", "--labels", _shown(labels), _shown(image_dir),
                          _shown(out)]), flush=True)
        convert_labelme(image_dir, out, labels)
        datasets.append(CocoDataset(out, image_dir))
    return datasets[0], datasets[1]


def _draw(model, sample, path: Path) -> None:
    """Ground truth | predictions with score >= DRAW_SCORE, side by side, saved to ``path``."""
    prediction = predict(model, sample.image)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    viz.draw_instances(axes[0], sample.image, sample.masks, sample.labels, sample.class_names, sample.boxes,
                       title=f"ground truth: {len(sample.labels)} instances")
    shown = int((prediction["scores"] >= DRAW_SCORE).sum())
    viz.draw_predictions(axes[1], sample.image, prediction, sample.class_names, score_thr=DRAW_SCORE,
                         title=f"prediction: {shown} instances with score >= {DRAW_SCORE}")
    fig.savefig(path, bbox_inches="tight", dpi=90)
    plt.close(fig)


# dataset -> (its training recipe, the name of its validation split, what its images are)
RECIPES = {"sample": (TrainConfig.overfit_sample, "val", "sample images"),
           "real_photos": (TrainConfig.overfit_real_photos, "held-out", "real photos")}


def run_demo(out_dir: str | Path = "outputs", epochs: int | None = None, dataset: str = "sample") -> dict:
    """Trains, evaluates and draws; returns the ``EvalResult``s ``{"train": ..., "val": ...}``.

    Args:
        out_dir: where the model, the overlay pictures (and, for ``real_photos``, the COCO files) go.
        epochs: overrides the recipe's number of epochs.
        dataset: ``"sample"`` (``data/sample_coco``) or ``"real_photos"`` (``data/real_photos``,
            whose ``"val"`` is the held-out photo).
    """
    if dataset not in RECIPES:
        raise ValueError(f"dataset must be one of {sorted(RECIPES)}, got {dataset!r}")
    recipe, val_name, what = RECIPES[dataset]
    cfg = recipe() if epochs is None else recipe(epochs=epochs)  # checked before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dataset == "sample":
        train_set, val_set = load_sample_dataset("train"), load_sample_dataset("val")
        drawn = {"val": val_set}
    else:
        train_set, val_set = _convert_real_photos(out_dir)
        drawn = {"train": train_set, "val": val_set}  # every photo
    print(f"training the tiny preset on {len(train_set)} {what} for {cfg.epochs} epochs", flush=True)
    start = time.perf_counter()
    model, _ = train(SOLOConfig.tiny(train_set.num_classes), cfg, train_set, log_every=max(1, cfg.epochs // 10))
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    results = {}
    width = max(5, len(val_name))
    for key, name, data in (("train", "train", train_set), ("val", val_name, val_set)):
        results[key], _ = evaluate_model(model, data)
        r = results[key]
        print(f"{name:{width}s} mask AP {r.ap:.3f}  AP50 {r.ap50:.3f}  AP75 {r.ap75:.3f}")
    model.save(out_dir / "demo_model.keras")
    for split, data in drawn.items():
        for sample in data:  # sample images by id (val_001.png), photos by name (val_coins_bottom.png)
            name = f"{sample.image_id:03d}" if dataset == "sample" else Path(sample.file_name).stem
            _draw(model, sample, out_dir / f"{split}_{name}.png")
    print(f"wrote {sum(map(len, drawn.values()))} overlay pictures and demo_model.keras to {out_dir}/")
    return results


# data/sample_model, or solo_lib/_data/sample_model in an installed wheel (solo_lib.resources).
SAMPLE_MODEL = sample_model_dir()
# The tiny preset pretrained on 192 synthetic images that are not the sample's (scripts/pretrain_shapes.py):
# notebook 08 fine-tunes it. Load it with TrainConfig(pretrained=...) or solo_lib.pretrained.load_pretrained.
PRETRAINED_SHAPES = pretrained_shapes()


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
