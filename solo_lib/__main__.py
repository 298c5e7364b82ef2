"""Command line: ``python -m solo_lib COMMAND ...`` (``--help`` on each command).

Commands:
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

    env = commands.add_parser("env", help="print versions and devices", description="Print the environment report.")
    env.set_defaults(run=_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SoloError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
