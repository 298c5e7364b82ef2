"""Command line: ``python -m solo_lib COMMAND ...`` (``--help`` on each command).

Commands:
    train             train (or resume training of) a SOLOv2 model
    predict           segment one image with a trained model, write an overlay picture
    evaluate          COCO mask AP of a trained model on an annotated dataset
    demo              train the tiny preset on the sample data, evaluate it, write overlays
    convert-labelme   LabelMe JSON folder -> COCO instances JSON
    env               print the environment report (versions, devices)
"""

from __future__ import annotations

import argparse
import collections
import sys
import warnings

from solo_lib.errors import SoloError


def _convert_labelme(args: argparse.Namespace) -> int:
    from solo_lib.data.labelme import convert_labelme_dir, write_coco_json

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coco = convert_labelme_dir(args.input_dir, labels_file=args.labels, image_dir=args.image_dir)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    write_coco_json(coco, args.output_json)
    per_class = collections.Counter(a["category_id"] for a in coco["annotations"])
    names = ", ".join(f"{c['name']}: {per_class[c['id']]}" for c in coco["categories"])
    print(f"wrote {args.output_json}: {len(coco['images'])} images, {len(coco['annotations'])} instances ({names}), "
          f"{len(caught)} warning(s)")
    return 0


def _dataset(annotations, images, split):
    from solo_lib.data.coco import CocoDataset, sample_dataset_paths

    if annotations is None:
        annotations, default_images = sample_dataset_paths(split)
        images = images or default_images
    if images is None:
        raise SystemExit("--images is required with --annotations")
    return CocoDataset(annotations, images)


def _train(args: argparse.Namespace) -> int:
    from solo_lib.config import SOLOConfig
    from solo_lib.train import TrainConfig, train

    dataset = _dataset(args.annotations, args.images, "train")
    preset = SOLOConfig.tiny if args.preset == "tiny" else SOLOConfig.paper_r50
    model_config = preset(dataset.num_classes)
    defaults = TrainConfig()
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, canvas=tuple(args.canvas), steps_per_epoch=args.steps_per_epoch,
        optimizer=args.optimizer, learning_rate=args.lr if args.lr is not None else defaults.learning_rate,
        warmup_steps=args.warmup_steps, decay_epochs=tuple(args.decay_epochs), checkpoint_every=args.checkpoint_every,
        checkpoint_dir=args.out, load_previous_model=args.resume, model_path=args.model_path, log_dir=args.log_dir,
        seed=args.seed, jit_compile=args.jit, pretrained=args.pretrained)
    model, history = train(model_config, cfg, dataset)
    print(f"trained {int(model.epochs_done.numpy())} epoch(s); checkpoints in {args.out}")
    return 0


def _load(path):
    from solo_lib.train import load_checkpoint

    return load_checkpoint(path)


def _predict(args: argparse.Namespace) -> int:
    import matplotlib.pyplot as plt

    from solo_lib import viz
    from solo_lib.data.coco import load_rgb_image
    from solo_lib.inference import predict

    model = _load(args.model)
    image = load_rgb_image(args.image)
    config = model.config.replace(score_thr=args.score_thr)
    result = predict(model, image, config)
    names = args.class_names.split(",") if args.class_names else [str(i) for i in range(model.config.num_classes)]
    for mask, label, score in zip(result["masks"], result["labels"], result["scores"]):
        print(f"{names[label]:12s} score {score:.3f}  area {int(mask.sum())} px")
    fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / image.shape[1]))
    viz.draw_predictions(ax, image, result, names, title=f"{len(result['labels'])} instances")
    fig.savefig(args.out, bbox_inches="tight", dpi=100)
    print(f"wrote {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from solo_lib.evaluate import evaluate_model, write_results_json
    from solo_lib.inference import predict

    dataset = _dataset(args.annotations, args.images, "val")
    model = _load(args.model)
    result, detections = evaluate_model(model, dataset, model.config, predict)
    print(result.summary())
    if args.results:
        write_results_json(detections, args.results)
        print(f"wrote {args.results}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from solo_lib.demo import run_demo

    run_demo(args.out, epochs=args.epochs)
    return 0


def _env(args: argparse.Namespace) -> int:
    from solo_lib.env import environment_report

    print(environment_report())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m solo_lib", description=__doc__.split("\n")[0])
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

    train = commands.add_parser(
        "train", help="train (or resume) a SOLOv2 model on a COCO dataset",
        description="Train SOLOv2 with the paper's defaults (SGD, warm-up, step decay, clipping), or resume.")
    train.add_argument("--annotations", help="COCO instances JSON (default: the sample training set)")
    train.add_argument("--images", help="folder the annotation file names are relative to")
    train.add_argument("--preset", choices=("tiny", "paper_r50"), default="tiny")
    train.add_argument("--epochs", type=int, default=12)
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--canvas", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                       help="batch canvas, multiples of 32 (default 256 256)")
    train.add_argument("--steps-per-epoch", type=int, help="default: one pass over the images")
    train.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    train.add_argument("--lr", type=float, help="learning rate (default 0.01, the paper's for batch 16)")
    train.add_argument("--warmup-steps", type=int, default=500)
    train.add_argument("--decay-epochs", type=int, nargs="*", default=(9, 11))
    train.add_argument("--checkpoint-every", type=int, default=1)
    train.add_argument("--out", default="checkpoints", help="checkpoint folder (epoch_NNNN.keras)")
    train.add_argument("--resume", action="store_true", help="continue from --model-path or the newest checkpoint")
    train.add_argument("--model-path", help="checkpoint to resume from")
    train.add_argument("--log-dir", help="TensorBoard log folder")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--jit", action="store_true", help="compile the training step with XLA")
    train.add_argument("--pretrained", metavar="WEIGHTS_H5",
                       help="start from these weights, all but the class predictor (tiny preset: "
                            "data/pretrained/tiny_shapes.weights.h5, pretrained on synthetic shapes)")
    train.set_defaults(run=_train)

    predict = commands.add_parser("predict", help="segment one image", description="Segment one image.")
    predict.add_argument("--model", required=True, help="a .keras checkpoint")
    predict.add_argument("--image", required=True)
    predict.add_argument("--out", default="prediction.png", help="overlay picture to write")
    predict.add_argument("--score-thr", type=float, default=0.1)
    predict.add_argument("--class-names", help="comma-separated names, in label order")
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser("evaluate", help="COCO mask AP", description="COCO mask AP (pycocotools).")
    evaluate.add_argument("--model", required=True, help="a .keras checkpoint")
    evaluate.add_argument("--annotations", help="COCO instances JSON (default: the sample validation set)")
    evaluate.add_argument("--images", help="folder the annotation file names are relative to")
    evaluate.add_argument("--results", help="also write the detections as a COCO results JSON")
    evaluate.set_defaults(run=_evaluate)

    demo = commands.add_parser("demo", help="train, evaluate and draw, on the sample data",
                               description="Train the tiny preset on the sample training set, evaluate on the "
                                           "validation set, print AP / AP50, write overlays to OUT.")
    demo.add_argument("--out", default="outputs")
    demo.add_argument("--epochs", type=int, default=None, help="default: the overfit recipe of notebook 08")
    demo.set_defaults(run=_demo)

    env = commands.add_parser("env", help="print versions and devices", description="Print the environment report.")
    env.set_defaults(run=_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    # The command line draws to files only. Set here, not in the modules it calls: notebooks import
    # solo_lib.demo and solo_lib.viz and must keep their inline backend.
    matplotlib.use("Agg")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SoloError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
