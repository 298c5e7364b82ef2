"""Command line: ``python -m solo_lib COMMAND ...`` (``--help`` on each command).

Commands:
    train             train (or resume training of) a SOLOv2 model
    predict           segment one image with a trained model, write an overlay picture
    evaluate          COCO mask AP of a trained model on an annotated dataset
    demo              train the tiny preset on the sample data (--real: on three real photos), evaluate, draw
    export            the whole of inference as one graph: SavedModel, LiteRT (TFLite), ONNX
    convert-labelme   LabelMe JSON folder -> COCO instances JSON
    to-tfrecord       COCO dataset -> sharded TFRecord files, for a parallel input pipeline
    env               print the environment report (versions, devices)

A user's mistake (a missing or damaged file, an invalid option, a checkpoint of other classes)
ends with one ``error: ...`` line and exit status 2; ``--debug`` (or ``SOLO_DEBUG=1``) shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import collections
import errno
import os
import re
import sys
import warnings
from pathlib import Path

from solo_lib import __version__
from solo_lib.errors import ConfigError, SoloError

# TrainConfig fields -> the train options that set them, for error messages.
TRAIN_OPTIONS = {"epochs": "--epochs", "batch_size": "--batch-size", "short_sides": "--short-sides",
                 "steps_per_epoch": "--steps-per-epoch", "optimizer": "--optimizer", "learning_rate": "--lr",
                 "warmup_steps": "--warmup-steps", "decay_epochs": "--decay-epochs",
                 "checkpoint_every": "--checkpoint-every", "memory_budget_mb": "--memory-budget-mb",
                 "accumulate_steps": "--accumulate-steps"}
# SOLOConfig fields (and the short sides checked against them) -> the train options that set them.
MODEL_OPTIONS = {"image_scale": "--image-scale", "backbone_weights": "--backbone-weights",
                 "short_sides": "--short-sides"}


def _with_options(err: ConfigError, options: dict, prefix: str, replacement: str) -> ConfigError:
    """``err`` with the field names in ``options`` replaced by the options the user typed."""
    message = str(err).replace(prefix, replacement)
    return ConfigError(re.sub(r"\b(" + "|".join(options) + r")\b", lambda m: options[m.group(1)], message))


def _convert_labelme(args: argparse.Namespace) -> int:
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


def _to_tfrecord(args: argparse.Namespace) -> int:
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
    if args.stream:
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


def _train(args: argparse.Namespace) -> int:
    if args.model_path and not args.resume:
        raise ConfigError(f"--model-path {args.model_path} is the checkpoint to resume from: add --resume")
    if args.overwrite and args.resume:
        raise ConfigError("--overwrite deletes the checkpoints in --out, --resume continues from them: choose one")
    _check_tf_config(args.multi_worker)
    from solo_lib.config import SOLOConfig
    from solo_lib.data.pipeline import check_short_sides
    from solo_lib.train import train
    from solo_lib.train_config import TrainConfig

    defaults = TrainConfig()
    try:
        cfg = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, accumulate_steps=args.accumulate_steps,
            short_sides=tuple(args.short_sides) if args.short_sides else None,
            steps_per_epoch=args.steps_per_epoch, optimizer=args.optimizer,
            learning_rate=args.lr if args.lr is not None else defaults.learning_rate,
            warmup_steps=args.warmup_steps, decay_epochs=tuple(args.decay_epochs),
            checkpoint_every=args.checkpoint_every, checkpoint_dir=args.out, load_previous_model=args.resume,
            model_path=args.model_path, log_dir=args.log_dir, seed=args.seed, jit_compile=args.jit,
            pretrained=args.pretrained, overwrite=args.overwrite, in_memory=not args.stream,
            memory_budget_mb=args.memory_budget_mb)
    except ConfigError as err:  # name the options the user typed, not the fields
        raise _with_options(err, TRAIN_OPTIONS, "invalid TrainConfig: ", "invalid train option: ") from None
    model_options = {}
    if args.image_scale is not None:
        model_options["image_scale"] = tuple(args.image_scale)
    if args.backbone_weights is not None:
        model_options["backbone_weights"] = args.backbone_weights
    if args.resume and model_options and args.preset is None:
        raise ConfigError("--image-scale and --backbone-weights describe the model of a fresh run; a resumed run keeps "
                          "its checkpoint's: leave them out with --resume")
    dataset = _training_data(args)
    model_config = None  # resuming: the checkpoint's, unless --preset says otherwise (then train checks they agree)
    try:
        if args.preset is not None or not args.resume:
            model_config = getattr(SOLOConfig, args.preset or "tiny")(dataset.num_classes, **model_options)
            check_short_sides(cfg.short_sides, model_config)  # train checks it too; here the options are known
    except ConfigError as err:
        raise _with_options(err, MODEL_OPTIONS, "invalid SOLOConfig: ", "invalid model option: ") from None
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
        print(f"trained {done} epoch(s); checkpoints in {args.out}")
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


def _predict(args: argparse.Namespace) -> int:
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    from solo_lib import viz
    from solo_lib.data.coco import load_rgb_image
    from solo_lib.inference import predict

    if not 0 <= args.score_thr < 1:
        raise ConfigError(f"--score-thr {args.score_thr} must be in [0, 1): a category score threshold")
    _writable_file(args.out, "--out", "overlay picture")
    suffix = Path(args.out).suffix.lstrip(".").lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix not in formats:
        raise ConfigError(f"--out {args.out}: cannot tell the picture format from its extension; end it with one of "
                          f"{', '.join('.' + f for f in sorted(formats))}")
    image = load_rgb_image(Path(args.image))
    model = _load(args.model)
    names = _class_names(model, args.class_names)
    config = model.config.replace(score_thr=args.score_thr)
    result = predict(model, image, config)
    for mask, label, score in zip(result["masks"], result["labels"], result["scores"]):
        print(f"{names[label]:12s} score {score:.3f}  area {int(mask.sum())} px")
    fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / image.shape[1]))
    viz.draw_predictions(ax, image, result, names, title=f"{len(result['labels'])} instances")
    fig.savefig(args.out, bbox_inches="tight", dpi=100)
    print(f"wrote {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from solo_lib.export import FORMATS, export

    formats = list(FORMATS) if args.format == ["all"] else args.format or ["saved_model"]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"--format {unknown[0]}: unknown; choose from {', '.join(FORMATS)} (or all)")
    if args.score_thr is not None and not 0 <= args.score_thr < 1:
        raise ConfigError(f"--score-thr {args.score_thr} must be in [0, 1): a category score threshold")
    if Path(args.out).is_file():
        raise ConfigError(f"--out {args.out} is a file; give the folder to export to")
    model = _load(args.model)
    names = _class_names(model, args.class_names)
    config = model.config if args.score_thr is None else model.config.replace(score_thr=args.score_thr)
    written = export(model, args.out, formats, config=config, class_names=names, overwrite=args.overwrite)
    print(f"exported {', '.join(written)} to {args.out}/ (class names in labels.txt); run one with: "
          f"python {Path(args.out) / 'run_model.py'} {Path(args.out) / next(iter(written.values())).name} IMAGE")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from solo_lib.evaluate import evaluate_model, write_results_json
    from solo_lib.inference import predict

    if args.results:
        _writable_file(args.results, "--results", "results JSON")
    dataset = _dataset(args.annotations, args.images, "val")
    model = _load(args.model)
    result, detections = evaluate_model(model, dataset, model.config, predict)  # checks the classes first
    print(result.summary())
    if args.results:
        write_results_json(detections, args.results)
        print(f"wrote {args.results}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from solo_lib.demo import run_demo

    run_demo(args.out, epochs=args.epochs, dataset="real_photos" if args.real else "sample")
    return 0


def _env(args: argparse.Namespace) -> int:
    from solo_lib.env import environment_report

    print(environment_report())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m solo_lib", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"solo_lib {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: environment variable SOLO_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = commands.add_parser(
        "convert-labelme", help="convert a folder of LabelMe JSON files to one COCO instances file",
        description="Convert every LabelMe *.json in INPUT_DIR (sorted by name) to one COCO instances JSON. "
                    "Masks agree with LabelMe's own labelme2coco example (polygons rasterised by pycocotools).")
    convert.add_argument("input_dir", metavar="INPUT_DIR", help="folder of LabelMe JSON files")
    convert.add_argument("output_json", metavar="OUTPUT_JSON", help="COCO file to write")
    convert.add_argument("--labels", metavar="LABELS_TXT",
                         help="LabelMe labels file (__ignore__, _background_, then one class per line) fixing category "
                              "order; default: the labels found, sorted by name")
    convert.add_argument("--image-dir", metavar="DIR",
                         help="folder the COCO file_name entries are relative to (default: INPUT_DIR)")
    convert.set_defaults(run=_convert_labelme)

    tfrecord = commands.add_parser(
        "to-tfrecord", help="write a COCO dataset as sharded TFRecord files",
        description="Write every image (its encoded bytes) and its instances (label, crowd flag, mask as run "
                    "lengths) as TFRecord shards plus dataset.json, for an input pipeline that reads and decodes "
                    "on every core. Each shard is renamed into place when complete; run again after an "
                    "interruption to write only the missing shards.")
    tfrecord.add_argument("--annotations", required=True, help="COCO instances JSON")
    tfrecord.add_argument("--images", required=True, help="folder the annotation file names are relative to")
    tfrecord.add_argument("--out", required=True, help="folder to write the shards and dataset.json to")
    tfrecord.add_argument("--shards", type=int, required=True, metavar="N",
                          help="number of files (at least the number of workers that will read them)")
    tfrecord.add_argument("--overwrite", action="store_true",
                          help="first delete the *.tfrecord files and dataset.json already in --out")
    tfrecord.set_defaults(run=_to_tfrecord)

    train = commands.add_parser(
        "train", help="train (or resume) a SOLOv2 model on a COCO dataset",
        description="Train SOLOv2 with the paper's defaults (SGD, warm-up, step decay, clipping), or resume. "
                    "Checkpoints record the dataset's class names; resuming checks them against the dataset's.")
    train.add_argument("--annotations", help="COCO instances JSON (default: the sample training set)")
    train.add_argument("--images", help="folder the annotation file names are relative to")
    train.add_argument("--tfrecords", metavar="DIR",
                       help="train from the TFRecord shards that to-tfrecord wrote into DIR (read and decoded in "
                            "parallel, never held in memory) instead of --annotations and --images")
    train.add_argument("--preset", choices=("tiny", "paper_r50"), default=None,
                       help="model size (default: tiny; when resuming: the checkpoint's, and a different "
                            "--preset is an error)")
    train.add_argument("--epochs", type=int, default=12, help="epochs in total, counting those already done")
    train.add_argument("--batch-size", type=int, default=4,
                       help="images per optimiser step, over all devices and workers (default 4; the paper: 16)")
    train.add_argument("--accumulate-steps", type=int, default=1, metavar="K",
                       help="gradient accumulation: compute each batch in K micro-batches of batch-size/K images, "
                            "one optimiser update per batch (e.g. --batch-size 16 --accumulate-steps 8)")
    train.add_argument("--image-scale", type=int, nargs=2, metavar=("LONG", "SHORT"),
                       help="resize every image, keeping its aspect ratio, so that its long side is at most LONG and "
                            "its short side at most SHORT, in training and at inference (default: the preset's, "
                            "tiny 256 256, paper_r50 1333 800)")
    train.add_argument("--short-sides", type=int, nargs="+", metavar="SIDE",
                       help="multi-scale training: draw each image's short side from these (the paper's 3x schedule: "
                            "640 672 704 736 768 800); default: the image scale's")
    train.add_argument("--backbone-weights", metavar="WEIGHTS",
                       help="paper_r50: 'imagenet' (downloaded by Keras) or a ResNet50 weights file; then, as the "
                            "paper, the stem and stage 1 stay frozen and BatchNorm statistics fixed")
    train.add_argument("--steps-per-epoch", type=int, help="default: one pass over the images")
    train.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                       help="sgd: the paper's (momentum 0.9, weight decay 1e-4); adam: for quick experiments")
    train.add_argument("--lr", type=float,
                       help="learning rate (default 0.01, the paper's for its batch of 16; by the linear scaling "
                            "rule 0.0025 suits the default --batch-size 4)")
    train.add_argument("--warmup-steps", type=int, default=500,
                       help="steps of linear warm-up from 1%% of --lr (default 500, the paper's)")
    train.add_argument("--decay-epochs", type=int, nargs="*", default=(9, 11),
                       help="epochs after which the learning rate is divided by 10 (default 9 11, the 1x schedule)")
    train.add_argument("--checkpoint-every", type=int, default=1, metavar="EPOCHS",
                       help="save a checkpoint every this many epochs (default 1); the last epoch is always saved")
    train.add_argument("--out", default="checkpoints",
                       help="checkpoint folder (epoch_NNNN.keras); a fresh run refuses one holding another run's "
                            "checkpoints")
    train.add_argument("--resume", action="store_true", help="continue from --model-path or the newest checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="fresh run: delete the epoch_*.keras files already in --out first")
    train.add_argument("--model-path", help="checkpoint to resume from (with --resume)")
    train.add_argument("--log-dir", help="TensorBoard log folder")
    train.add_argument("--stream", action="store_true",
                       help="read images from disk as training needs them instead of decoding the whole dataset "
                            "into memory first (needed above --memory-budget-mb)")
    train.add_argument("--memory-budget-mb", type=float, default=2048,
                       help="without --stream, refuse to start when the decoded dataset would take more memory "
                            "than this many MB (estimated from the image sizes and instance counts; default 2048)")
    train.add_argument("--seed", type=int, default=0,
                       help="seeds the weights, the data order and the augmentation (default 0)")
    train.add_argument("--jit", action="store_true", help="compile the training step with XLA")
    train.add_argument("--pretrained", metavar="WEIGHTS_H5",
                       help="start from these weights, all but the class predictor (tiny preset: "
                            "data/pretrained/tiny_shapes.weights.h5, pretrained on synthetic shapes)")
    train.add_argument("--multi-worker", action="store_true",
                       help="train as one worker of the cluster the TF_CONFIG environment variable describes "
                            "(tf.distribute.MultiWorkerMirroredStrategy): run the same command on every worker; "
                            "--batch-size is the global batch, split over all workers; only the chief writes to --out")
    train.set_defaults(run=_train)

    predict = commands.add_parser("predict", help="segment one image", description="Segment one image.")
    predict.add_argument("--model", required=True, help="a .keras checkpoint")
    predict.add_argument("--image", required=True, help="the picture to segment (PNG, JPEG, ...)")
    predict.add_argument("--out", default="prediction.png",
                         help="overlay picture to write (its folder must exist; format from the extension)")
    predict.add_argument("--score-thr", type=float, default=0.1, help="category score threshold, in [0, 1)")
    predict.add_argument("--class-names",
                         help="comma-separated names, in label order, one per class (default: the names the "
                              "checkpoint records, else the label numbers)")
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser("evaluate", help="COCO mask AP", description="COCO mask AP (pycocotools).")
    evaluate.add_argument("--model", required=True,
                          help="a .keras checkpoint (its recorded class names must be the dataset's, in order)")
    evaluate.add_argument("--annotations", help="COCO instances JSON (default: the sample validation set)")
    evaluate.add_argument("--images", help="folder the annotation file names are relative to")
    evaluate.add_argument("--results", help="also write the detections as a COCO results JSON")
    evaluate.set_defaults(run=_evaluate)

    demo = commands.add_parser("demo", help="train, evaluate and draw, on the sample data or (--real) real photos",
                               description="Train the tiny preset on the sample training set, evaluate on the "
                                           "validation set, print mask AP / AP50 / AP75, write the model and "
                                           "overlays to OUT. With --real: the own-data loop on the three real "
                                           "photographs of data/real_photos (convert their LabelMe folders to COCO "
                                           "in OUT, fine-tune the pretrained tiny preset on the two training photos, "
                                           "evaluate on them and on the held-out photo, draw every photo).")
    demo.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    demo.add_argument("--real", action="store_true",
                      help="use the real photographs of data/real_photos (the recipe of notebook 08b) instead of "
                           "the sample data")
    demo.add_argument("--epochs", type=int, default=None,
                      help="default: the recipe's (notebook 08's overfit recipe; with --real, notebook 08b's)")
    demo.set_defaults(run=_demo)

    export = commands.add_parser(
        "export", help="export the whole of inference (SavedModel, LiteRT, ONNX)",
        description="Write one self-contained inference graph (image of any size in; masks, labels and scores "
                    "at the image's size out: resize, network, point NMS, Matrix NMS and all) in each format, with "
                    "labels.txt, export.json and run_model.py, which runs any of them without solo_lib.")
    export.add_argument("--model", required=True, help="a .keras checkpoint")
    export.add_argument("--out", required=True, help="folder to write to (created if needed)")
    export.add_argument("--format", nargs="+", metavar="FORMAT",
                        help="saved_model (default), tflite, tflite_fp16, onnx, or all; several may be given")
    export.add_argument("--score-thr", type=float, default=None,
                        help="category score threshold built into the graph (default: the checkpoint's)")
    export.add_argument("--class-names", help="comma-separated names, in label order (default: the checkpoint's)")
    export.add_argument("--overwrite", action="store_true", help="replace the files of an earlier export in --out")
    export.set_defaults(run=_export)

    env = commands.add_parser("env", help="print versions and devices", description="Print the environment report.")
    env.set_defaults(run=_env)
    for command in commands.choices.values():  # --debug also after the command (SUPPRESS: keep the global one)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the full traceback of an error")
    return parser


# Library errors that a user's input causes (a path that is missing, a folder, unwritable, a full disk).
USER_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _user_os_error(err: BaseException) -> bool:
    return isinstance(err, USER_OS_ERRORS) or (isinstance(err, OSError) and err.errno == errno.ENOSPC)


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and not isinstance(err, SoloError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    return " ".join(str(err).split())


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    # The command line draws to files only. Set here, not in the modules it calls: notebooks import
    # solo_lib.demo and solo_lib.viz and must keep their inline backend.
    matplotlib.use("Agg")
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("SOLO_DEBUG", "").strip() not in ("", "0")
    try:
        return args.run(args)
    except Exception as err:
        if debug or not (isinstance(err, SoloError) or _user_os_error(err)):
            raise  # --debug, or a bug: keep the traceback
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
