"""What each command of ``python -m solo_lib`` does (the parser is ``solo_lib.__main__``).

Each ``run_*`` function takes the parsed options, checks them, and only then imports the modules
that load TensorFlow, so that a mistyped option or a missing file answers at once. A user's
mistake raises :class:`~solo_lib.errors.ConfigError` (or another ``SoloError``), which
``solo_lib.__main__.main`` prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import warnings
from pathlib import Path

from solo_lib.cli_options import Option, config_from_args, flags, given
from solo_lib.errors import ConfigError

# The train options, generated from the configuration dataclasses (solo_lib.cli_options): one
# line per field, naming its option; type, default and help come from the dataclass.
TRAIN_OPTIONS = [
    Option("epochs", "--epochs"), Option("batch_size", "--batch-size"),
    Option("accumulate_steps", "--accumulate-steps", metavar="K"), Option("steps_per_epoch", "--steps-per-epoch"),
    Option("optimizer", "--optimizer"), Option("learning_rate", "--lr"), Option("momentum", "--momentum"),
    Option("weight_decay", "--weight-decay"), Option("warmup_steps", "--warmup-steps"),
    Option("warmup_ratio", "--warmup-ratio"), Option("decay_epochs", "--decay-epochs", metavar="EPOCH"),
    Option("decay_factor", "--decay-factor"), Option("clip_norm", "--clip-norm"),
    Option("short_sides", "--short-sides", metavar="SIDE"), Option("checkpoint_dir", "--out", metavar="DIR"),
    Option("checkpoint_every", "--checkpoint-every", metavar="EPOCHS"), Option("overwrite", "--overwrite"),
    Option("load_previous_model", "--resume"), Option("model_path", "--model-path", metavar="CHECKPOINT"),
    Option("log_dir", "--log-dir", metavar="DIR"), Option("seed", "--seed"),
    Option("in_memory", "--stream", invert=True), Option("memory_budget_mb", "--memory-budget-mb", metavar="MB"),
    Option("max_instances", "--max-instances", metavar="N"), Option("max_positives", "--max-positives", metavar="N"),
    Option("jit_compile", "--jit"), Option("pretrained", "--pretrained", metavar="WEIGHTS_H5"),
    Option("pretrained_reset", "--pretrained-reset", metavar="LAYER"),
]
AUGMENT_OPTIONS = [
    Option("flip_prob", "--flip-prob", metavar="P"), Option("brightness_delta", "--brightness-delta", metavar="DELTA"),
    Option("scale_range", "--scale-range", metavar=("LOW", "HIGH")),
    Option("crop_size", "--crop-size", metavar=("HEIGHT", "WIDTH")), Option("min_mask_pixels", "--min-mask-pixels"),
]
MODEL_OPTIONS = [Option("image_scale", "--image-scale", metavar=("LONG", "SHORT")),
                 Option("backbone_weights", "--backbone-weights", metavar="WEIGHTS")]


def _with_options(err: Exception, options: list[Option], prefix: str, replacement: str) -> ConfigError:
    """``err`` with the field names in ``options`` replaced by the options the user typed."""
    names = flags(options)
    message = str(err).replace(prefix, replacement).replace("(or None)", "(or none)")
    return ConfigError(re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: names[m.group(1)], message))


def run_convert_labelme(args: argparse.Namespace) -> int:
    from solo_lib.data.labelme import convert_labelme

    # All or nothing: convert_labelme checks every input, and that OUTPUT_JSON is none of them,
    # before it writes embedded images and the COCO file.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coco = convert_labelme(args.input_dir, args.output_json, labels_file=args.labels, image_dir=args.image_dir)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    per_class = collections.Counter(a["category_id"] for a in coco["annotations"])
    names = ", ".join(f"{c['name']}: {per_class[c['id']]}" for c in coco["categories"])
    print(f"wrote {args.output_json}: {len(coco['images'])} images, {len(coco['annotations'])} instances ({names}), "
          f"{len(caught)} warning(s)")
    return 0


def run_to_tfrecord(args: argparse.Namespace) -> int:
    from solo_lib.data.tfrecord import write_tfrecords

    summary = write_tfrecords(_dataset(args.annotations, args.images, "train"), args.out, args.shards,
                              overwrite=args.overwrite)
    print(f"wrote {args.out}: {len(summary.dataset)} images in {len(summary.dataset.files)} shards "
          f"({summary.shards_written} written now, {summary.shards_kept} already complete; "
          f"{summary.images_as_png} of {summary.images_written} images re-encoded as PNG)")
    return 0


def _dataset(annotations, images, split):
    from solo_lib.data.coco import CocoDataset, sample_dataset_paths

    if annotations is None:
        annotations, default_images = sample_dataset_paths(split)
        images = images or default_images
    if images is None:
        raise ConfigError(f"--annotations {annotations} needs --images, the folder its file names are relative to")
    return CocoDataset(annotations, images)


def _training_data(args: argparse.Namespace):
    """The training set: the TFRecord shards of ``--tfrecords``, or the annotation file and images."""
    if args.tfrecords is None:
        return _dataset(args.annotations, args.images, "train")
    if args.annotations is not None or args.images is not None:
        raise ConfigError(f"--tfrecords {args.tfrecords} replaces --annotations and --images (the shards hold the "
                          "images and their instances): give one or the other")
    if args.in_memory is not None:  # --stream given
        raise ConfigError("--stream reads an annotation file's images from disk; TFRecord shards are always read "
                          "as training needs them: leave out --stream")
    from solo_lib.data.tfrecord import ShardedDataset

    return ShardedDataset(args.tfrecords)


def _writable_file(path: str, option: str, what: str) -> None:
    """Fails now, before any work, if ``path`` cannot be written (a missing or read-only folder)."""
    folder = Path(path).resolve().parent
    if Path(path).is_dir():
        raise ConfigError(f"{option} {path} is a folder; give the name of the {what} to write")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {path}: folder {folder} is not writable; choose another path")


def _train_config(args: argparse.Namespace):
    """The TrainConfig of ``args``: the recipe's, with every option given replacing its field."""
    from solo_lib.train_config import RECIPES, TrainConfig

    def named(err: Exception) -> ConfigError:  # name the options the user typed, not the fields
        return _with_options(err, TRAIN_OPTIONS, "invalid TrainConfig: ", "invalid train option: ")

    try:
        # --epochs goes into the recipe, whose decay epochs may follow it (overfit_sample decays after 80%).
        base = RECIPES[args.recipe](**({} if args.epochs is None else {"epochs": args.epochs}))
    except ConfigError as err:
        raise named(err) from None
    if base.checkpoint_dir is None:  # a notebook recipe keeps none; the command line's output is its checkpoints
        base = base.replace(checkpoint_dir=TrainConfig.__dataclass_fields__["checkpoint_dir"].default)
    try:
        augment = config_from_args(base.augment, args, AUGMENT_OPTIONS)
    except ValueError as err:  # AugmentConfig's own check: "AugmentConfig.flip_prob must be ..."
        raise _with_options(err, AUGMENT_OPTIONS, "AugmentConfig.", "invalid augmentation option: ") from None
    try:
        return config_from_args(base.replace(augment=augment), args, TRAIN_OPTIONS)
    except ConfigError as err:
        raise named(err) from None


def run_train(args: argparse.Namespace) -> int:
    cfg = _train_config(args)
    if cfg.model_path and not cfg.load_previous_model:
        raise ConfigError(f"--model-path {cfg.model_path} is the checkpoint to resume from: add --resume")
    if cfg.overwrite and cfg.load_previous_model:
        raise ConfigError("--overwrite deletes the checkpoints in --out, --resume continues from them: choose one")
    _check_tf_config(args.multi_worker)
    from solo_lib.config import SOLOConfig
    from solo_lib.data.pipeline import check_short_sides
    from solo_lib.train import train

    model_options = given(args, MODEL_OPTIONS)
    if cfg.load_previous_model and model_options and args.preset is None:
        raise ConfigError("--image-scale and --backbone-weights describe the model of a fresh run; a resumed run keeps "
                          "its checkpoint's: leave them out with --resume")
    dataset = _training_data(args)
    model_config = None  # resuming: the checkpoint's, unless --preset says otherwise (then train checks they agree)
    try:
        if args.preset is not None or not cfg.load_previous_model:
            model_config = getattr(SOLOConfig, args.preset or "tiny")(dataset.num_classes, **model_options)
            check_short_sides(cfg.short_sides, model_config)  # train checks it too; here the options are known
    except ConfigError as err:
        raise _with_options(err, MODEL_OPTIONS + [Option("short_sides", "--short-sides")], "invalid SOLOConfig: ",
                            "invalid model option: ") from None
    import tensorflow as tf

    from solo_lib.distributed import describe, is_chief, strategy_from_environment
    from solo_lib.errors import TrainingError

    # Once every option is checked (an error after it would leave the other workers waiting), and
    # before any TensorFlow operation, as MultiWorkerMirroredStrategy requires.
    strategy = strategy_from_environment()
    with strategy.scope():
        try:
            model, history = train(model_config, cfg, dataset)
        except tf.errors.UnavailableError as err:  # what the others see when a worker stops (TF's multi-worker guide)
            if not args.multi_worker:
                raise
            reason = re.sub(r"\{\{.*?\}\}\s*", "", str(err).split("\n")[0])[:160]  # no {{function_node ...}}
            raise TrainingError(f"lost contact with another worker ({reason}); its own output says why it stopped: "
                                f"fix that and start every worker again") from None
    done = int(model.epochs_done.numpy())
    if is_chief(strategy):
        where = f"checkpoints in {cfg.checkpoint_dir}" if cfg.checkpoint_dir else "no checkpoints written (--out none)"
        print(f"trained {done} epoch(s); {where}")
    else:
        print(f"trained {done} epoch(s) as {describe(strategy)}; the chief writes the checkpoints")
    return 0


def _check_tf_config(multi_worker: bool) -> None:
    """``train --multi-worker`` needs a valid TF_CONFIG, and TF_CONFIG needs ``--multi-worker``."""
    from solo_lib.distributed import read_tf_config

    tf_config = read_tf_config(os.environ.get("TF_CONFIG"))
    if multi_worker and tf_config is None:
        raise ConfigError("--multi-worker reads the cluster from the TF_CONFIG environment variable, which is not set; "
                          "set it on every worker (README, 'Several machines')")
    if tf_config is not None and not multi_worker:
        raise ConfigError("TF_CONFIG is set: add --multi-worker to train as one of its workers, or unset TF_CONFIG to "
                          "train alone")


def _load(path):
    from solo_lib.checkpoints import load_checkpoint

    return load_checkpoint(path)


def _class_names(model, given: str | None) -> list[str]:
    """The names to print: --class-names, else the checkpoint's, else the label numbers."""
    n = model.config.num_classes
    if given is None:
        return list(model.class_names) if model.class_names is not None else [str(i) for i in range(n)]
    names = [name.strip() for name in given.split(",")]
    if len(names) != n:
        known = f" (it records {list(model.class_names)}; leave out --class-names to use them)" \
            if model.class_names is not None else ""
        raise ConfigError(f"--class-names gives {len(names)} names but {model.checkpoint_path} predicts {n} classes"
                          f"{known}; give exactly {n} comma-separated names, in label order")
    return names


def run_predict(args: argparse.Namespace) -> int:
    from matplotlib.backend_bases import FigureCanvasBase

    if args.score_thr is not None and not 0 <= args.score_thr < 1:
        raise ConfigError(f"--score-thr {args.score_thr} must be in [0, 1): a category score threshold")
    _writable_file(args.out, "--out", "overlay picture")
    suffix = Path(args.out).suffix.lstrip(".").lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix not in formats:
        raise ConfigError(f"--out {args.out}: cannot tell the picture format from its extension; end it with one of "
                          f"{', '.join('.' + f for f in sorted(formats))}")
    # The options are checked: now the modules that import TensorFlow.
    import matplotlib.pyplot as plt

    from solo_lib import viz
    from solo_lib.data.images import load_rgb_image
    from solo_lib.inference import predict

    image = load_rgb_image(Path(args.image))
    model = _load(args.model)
    names = _class_names(model, args.class_names)
    config = model.config if args.score_thr is None else model.config.replace(score_thr=args.score_thr)
    result = predict(model, image, config)
    for mask, label, score in zip(result["masks"], result["labels"], result["scores"]):
        print(f"{names[label]:12s} score {score:.3f}  area {int(mask.sum())} px")
    fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / image.shape[1]))
    viz.draw_predictions(ax, image, result, names, title=f"{len(result['labels'])} instances")
    fig.savefig(args.out, bbox_inches="tight", dpi=100)
    print(f"wrote {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    if args.score_thr is not None and not 0 <= args.score_thr < 1:
        raise ConfigError(f"--score-thr {args.score_thr} must be in [0, 1): a category score threshold")
    if Path(args.out).is_file():
        raise ConfigError(f"--out {args.out} is a file; give the folder to export to")
    from solo_lib.export import FORMATS, export  # TensorFlow: after the checks that need none

    formats = list(FORMATS) if args.format == ["all"] else args.format or ["saved_model"]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"--format {unknown[0]}: unknown; choose from {', '.join(FORMATS)} (or all)")
    model = _load(args.model)
    names = _class_names(model, args.class_names)
    config = model.config if args.score_thr is None else model.config.replace(score_thr=args.score_thr)
    written = export(model, args.out, formats, config=config, class_names=names, overwrite=args.overwrite)
    print(f"exported {', '.join(written)} to {args.out}/ (class names in labels.txt); run one with: "
          f"python {Path(args.out) / 'run_model.py'} {Path(args.out) / next(iter(written.values())).name} IMAGE")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    if args.results:
        _writable_file(args.results, "--results", "results JSON")
    # The options are checked: now the modules that import TensorFlow.
    from solo_lib.evaluate import evaluate_model, write_results_json

    dataset = _dataset(args.annotations, args.images, "val")
    model = _load(args.model)
    result, detections = evaluate_model(model, dataset)  # checks the classes first
    print(result.summary())
    if args.results:
        write_results_json(detections, args.results)
        print(f"wrote {args.results}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from solo_lib.demo import run_demo

    run_demo(args.out, epochs=args.epochs, dataset="real_photos" if args.real else "sample")
    return 0


def run_env(args: argparse.Namespace) -> int:
    from solo_lib.env import environment_report

    print(environment_report())
    return 0
