"""Run an exported SOLOv2 model with its runtime alone: no ``solo_lib``, only numpy and one of
TensorFlow, LiteRT (``ai-edge-litert``, or TensorFlow's ``tf.lite``) or ONNX Runtime.

``solo_lib.export`` copies this file into every export folder as ``run_model.py``, so the folder
is all a phone prototype or a server needs::

    python run_model.py EXPORT_FOLDER/model.tflite photo.jpg        # prints the instances
    python run_model.py EXPORT_FOLDER/saved_model photo.jpg --out instances.npz

In Python::

    from run_model import load_exported
    segment = load_exported("EXPORT_FOLDER/model.onnx")
    result = segment(image)  # (H, W, 3) uint8 RGB -> {"masks": (K, H, W) uint8, "labels", "scores"}

Every format holds the whole of inference (resize, pad, network, point NMS, Matrix NMS, masks at
the original size), so this file only moves arrays in and out; the class names are in
``labels.txt`` beside the model. Reading a picture needs Pillow; a ``.npy`` array needs nothing.
Do not import ``solo_lib`` here: the parity tests run this file with ``solo_lib`` blocked.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

OUTPUTS = ("masks", "labels", "scores")


def _tflite_runner(path: str, xnnpack: bool = True):
    """A LiteRT signature runner on every core; ``xnnpack=False`` runs LiteRT's own kernels
    without its default XNNPACK delegate (slower, but it plans any input size)."""
    try:  # LiteRT, the runtime of phones and small devices
        from ai_edge_litert import interpreter as litert
    except ImportError:  # TensorFlow's own copy of the interpreter
        import tensorflow as tf

        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    else:
        Interpreter, OpResolverType = litert.Interpreter, litert.OpResolverType
    options = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    return Interpreter(model_path=path, num_threads=os.cpu_count() or 1, **options).get_signature_runner()


def load_exported(path):
    """A function ``image -> {"masks", "labels", "scores"}`` for an exported model.

    Args:
        path: a SavedModel folder, a ``.tflite`` file or a ``.onnx`` file.

    Returns:
        ``segment(image)``: ``image`` an ``(H, W, 3)`` uint8 RGB array; returns numpy arrays,
        highest score first: ``masks`` ``(K, H, W)`` uint8, ``labels`` ``(K,)`` int32, ``scores``
        ``(K,)`` float32.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; give a SavedModel folder, a .tflite or a .onnx file")
    if path.is_dir():
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]

        def segment(image):
            out = serve(image=tf.constant(_checked(image)))
            return {k: out[k].numpy() for k in OUTPUTS}
    elif path.suffix == ".tflite":
        state = {"runner": _tflite_runner(str(path))}

        def segment(image):
            image = _checked(image)
            try:
                out = state["runner"](image=image)
            except RuntimeError as err:
                # LiteRT 2.3's XNNPACK delegate cannot plan this graph for some input sizes
                # ("XNNPack delegate failed to reshape runtime"; seen with the paper preset on a
                # portrait image after a landscape one). LiteRT's own kernels run any size: use them
                # for this image, and a fresh XNNPACK interpreter for the next.
                if "XNNPack" not in str(err):
                    raise
                out = _tflite_runner(str(path), xnnpack=False)(image=image)
                state["runner"] = _tflite_runner(str(path))
            return {k: np.array(out[k]) for k in OUTPUTS}

    elif path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        input_name = session.get_inputs()[0].name

        def segment(image):
            return dict(zip(names, session.run(None, {input_name: _checked(image)})))
    else:
        raise ValueError(f"{path}: not an exported model (a SavedModel folder, a .tflite or a .onnx file)")
    return segment


def _checked(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"the model takes one (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def class_names(path) -> list[str]:
    """The class names in ``labels.txt`` beside (or, for a SavedModel, next to) the model."""
    labels = Path(path).resolve().parent / "labels.txt"
    return labels.read_text(encoding="utf-8").splitlines() if labels.is_file() else []


def read_image(path) -> np.ndarray:
    """An image file (with Pillow) or a ``.npy`` array as ``(H, W, 3)`` uint8 RGB, as displayed:
    the EXIF orientation applied (a phone's photo stands upright) and 16-bit images scaled to 8
    bits, as ``solo_lib.data.images.load_rgb_image`` reads images for training and ``predict``."""
    if str(path).endswith(".npy"):
        return np.load(path)
    from PIL import Image, ImageOps

    with Image.open(path) as picture:
        picture = ImageOps.exif_transpose(picture)
        if picture.mode.startswith("I;16") or picture.mode == "I":  # 16-bit: keep the high byte
            gray = (np.clip(np.asarray(picture).astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=2)
        return np.asarray(picture.convert("RGB"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="run_model.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a SavedModel folder, a .tflite or a .onnx file")
    parser.add_argument("image", help="a picture (PNG, JPEG, ...: needs Pillow) or an (H, W, 3) uint8 .npy")
    parser.add_argument("--out", help="also write the instances to this .npz file")
    args = parser.parse_args(argv)
    try:
        segment = load_exported(args.model)
        result = segment(read_image(args.image))
    except ImportError as err:
        print(f"error: {err.name or err} is not installed; pip install it (ai-edge-litert for .tflite, "
              "onnxruntime for .onnx, tensorflow for a SavedModel, pillow for pictures)", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = class_names(args.model)
    for k, (label, score) in enumerate(zip(result["labels"], result["scores"])):
        name = names[label] if 0 <= label < len(names) else f"class {label}"
        print(f"{k:3d}  {name:20s}  score {score:.3f}  {int(result['masks'][k].sum())} pixels")
    print(f"{len(result['scores'])} instances")
    if args.out:
        np.savez_compressed(args.out, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
