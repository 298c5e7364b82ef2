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

Exit status, the same for every command:
    0    done
    1    a bug: Python's traceback (please report it)
    2    a user's mistake (a missing or damaged file, an invalid option, a checkpoint of other
         classes): one ``error: ...`` line, as argparse's own usage errors; ``--debug`` (or
         ``SOLO_DEBUG=1``) shows the traceback instead
    130  interrupted (Ctrl-C): one line (checkpoints, COCO files and TFRecord shards are renamed
         into place only when written in full, so none is left half written)

This module is the parser and the error handling; what each command does is
``solo_lib.commands``. The options of ``train`` are generated from the configuration dataclasses
(``solo_lib.cli_options``).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from solo_lib import __version__, commands
from solo_lib.cli_options import add_options, flags
from solo_lib.errors import SoloError


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The command line: ``prog`` is the name help and errors call it by (``solo`` when run as the
    installed script, else ``python -m solo_lib``)."""
    from solo_lib.config import SOLOConfig
    from solo_lib.data.augment_config import AugmentConfig
    from solo_lib.train_config import RECIPES, TrainConfig

    if prog is None:
        prog = "solo" if Path(sys.argv[0]).name in ("solo", "solo.exe") else "python -m solo_lib"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"solo_lib {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: environment variable SOLO_DEBUG=1)")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = subcommands.add_parser(
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
    convert.set_defaults(run=commands.run_convert_labelme)

    tfrecord = subcommands.add_parser(
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
    tfrecord.set_defaults(run=commands.run_to_tfrecord)

    train = subcommands.add_parser(
        "train", help="train (or resume) a SOLOv2 model on a COCO dataset",
        description="Train SOLOv2, or resume. Every training option is a field of solo_lib's TrainConfig, "
                    "AugmentConfig or SOLOConfig, described as there; the defaults shown are the paper's 1x "
                    "schedule (TrainConfig()), and --recipe starts from another of the course's recipes, which "
                    "the options given then override. A value 'none' turns off an optional setting (e.g. "
                    "--clip-norm none). Checkpoints record the dataset's class names; resuming checks them "
                    "against the dataset's.")
    data = train.add_argument_group("data")
    data.add_argument("--annotations", help="COCO instances JSON (default: the sample training set)")
    data.add_argument("--images", help="folder the annotation file names are relative to")
    data.add_argument("--tfrecords", metavar="DIR",
                      help="train from the TFRecord shards that to-tfrecord wrote into DIR (read and decoded in "
                           "parallel, never held in memory) instead of --annotations and --images")
    model = train.add_argument_group("model (SOLOConfig)")
    model.add_argument("--preset", choices=("tiny", "paper_r50"), default=None,
                       help="the model: SOLOConfig.tiny (the default: it trains on a laptop CPU) or "
                            "SOLOConfig.paper_r50 (the paper's ResNet-50-FPN); when resuming: the checkpoint's, "
                            "and a different --preset is an error")
    # The help of an option names other options, not their fields.
    everything = flags(commands.TRAIN_OPTIONS + commands.AUGMENT_OPTIONS + commands.MODEL_OPTIONS)
    add_options(model, SOLOConfig, commands.MODEL_OPTIONS, default_note="the preset's", rename=everything)
    schedule = train.add_argument_group("training (TrainConfig)")
    schedule.add_argument("--recipe", choices=tuple(RECIPES), default="paper_1x",
                          help="the configuration the options below override: paper_1x (TrainConfig(), the "
                               "default), paper_3x, overfit_sample (notebook 08 and make demo), "
                               "overfit_real_photos (notebook 08b); see solo_lib/train_config.py")
    add_options(schedule, TrainConfig, commands.TRAIN_OPTIONS, defaults=TrainConfig(), rename=everything)
    add_options(train.add_argument_group("augmentation (AugmentConfig, after the resize to the image scale)"),
                AugmentConfig, commands.AUGMENT_OPTIONS, defaults=TrainConfig().augment, rename=everything)
    train.add_argument("--multi-worker", action="store_true",
                       help="train as one worker of the cluster the TF_CONFIG environment variable describes "
                            "(tf.distribute.MultiWorkerMirroredStrategy): run the same command on every worker; "
                            "--batch-size is the global batch, split over all workers; only the chief writes to --out")
    train.set_defaults(run=commands.run_train)

    predict = subcommands.add_parser("predict", help="segment one image", description="Segment one image.")
    predict.add_argument("--model", required=True, help="a .keras checkpoint")
    predict.add_argument("--image", required=True, help="the picture to segment (PNG, JPEG, ...)")
    predict.add_argument("--out", default="prediction.png",
                         help="overlay picture to write (its folder must exist; format from the extension)")
    predict.add_argument("--score-thr", type=float, default=None,
                         help="category score threshold, in [0, 1) (default: the checkpoint's, SOLOConfig.score_thr)")
    predict.add_argument("--class-names",
                         help="comma-separated names, in label order, one per class (default: the names the "
                              "checkpoint records, else the label numbers)")
    predict.set_defaults(run=commands.run_predict)

    evaluate = subcommands.add_parser("evaluate", help="COCO mask AP", description="COCO mask AP (pycocotools).")
    evaluate.add_argument("--model", required=True,
                          help="a .keras checkpoint (its recorded class names must be the dataset's, in order)")
    evaluate.add_argument("--annotations", help="COCO instances JSON (default: the sample validation set)")
    evaluate.add_argument("--images", help="folder the annotation file names are relative to")
    evaluate.add_argument("--results", help="also write the detections as a COCO results JSON")
    evaluate.set_defaults(run=commands.run_evaluate)

    demo = subcommands.add_parser("demo", help="train, evaluate and draw, on the sample data or (--real) real photos",
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
    demo.set_defaults(run=commands.run_demo)

    export = subcommands.add_parser(
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
    export.set_defaults(run=commands.run_export)

    env = subcommands.add_parser("env", help="print versions and devices", description="Print the environment report.")
    env.set_defaults(run=commands.run_env)
    for command in subcommands.choices.values():  # --debug also after the command (SUPPRESS: keep the global one)
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
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not (isinstance(err, SoloError) or _user_os_error(err)):
            raise  # --debug, or a bug: keep the traceback
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
