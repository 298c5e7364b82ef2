"""Export: the whole of inference as one graph that runs without ``solo_lib`` (notebook 12).

One module past ~300 lines, because it is one idea: writing the graph in each format, and running a
written export in a fresh process to compare it with ``predict`` (:func:`run_standalone`,
:func:`compare_instances`), which is what shows that an export works without ``solo_lib``.

``solo_lib.inference.predict`` runs in Python: it resizes and pads the image in numpy and
TensorFlow, calls the network, then post-processes. A phone or a server wants one self-contained
graph instead, that takes an image and returns instances. :func:`serving_function` is that graph:

    uint8 RGB image (H, W, 3), any size
      -> resize to the model's ``image_scale`` and pad to the canvas (``solo_lib.geometry``)
      -> the network
      -> point NMS, score threshold, dynamic convolution, small-mask filter, maskness,
         Matrix NMS, masks resized back to (H, W)      (``solo_lib.inference.instances``)
      -> ``masks`` (K, H, W) uint8, ``labels`` (K,) int32, ``scores`` (K,) float32

It is the same code as ``predict`` (the same functions, traced instead of run eagerly), so on the
same runtime the two agree to float32 rounding (graph and eager execution may fuse ops
differently); the parity tests (``tests/test_export.py``) load each export in a process that
imports only its runtime.

Formats (:data:`FORMATS`):

* ``saved_model``: TensorFlow's SavedModel (``tf.saved_model.save``) with the graph as its
  ``serving_default`` signature and a second signature, ``class_names``, that returns the names.
  Loads with ``tf.saved_model.load`` alone (TensorFlow Serving reads it as it is).
* ``tflite`` / ``tflite_fp16``: LiteRT (TensorFlow Lite) flatbuffers converted from that
  SavedModel, float32 weights or float16 weights (computed in float32 on a CPU). The names are in
  ``labels.txt`` beside the file.
* ``onnx``: ONNX converted by tf2onnx from the same graph, for ONNX Runtime. Names in ``labels.txt``.

Every format holds the whole graph (LiteRT with its builtin ops only), so nothing is left to a
separate post-processing step. What each format can hold was decided by converting the real graph
and running it; :func:`export` raises :class:`ExportError` with the converter's own message when a
format fails.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from solo_lib.config import SOLOConfig
from solo_lib.data.augment import rescale_size_tensor, resize_image
from solo_lib.errors import SoloError
from solo_lib.geometry import SIZE_DIVISOR, canvas_size_tensor
from solo_lib.inference import instances

FORMATS = ("saved_model", "tflite", "tflite_fp16", "onnx")
# The file each format writes inside the output folder.
FILES = {"saved_model": "saved_model", "tflite": "model.tflite", "tflite_fp16": "model_fp16.tflite",
         "onnx": "model.onnx"}
LABELS_FILE = "labels.txt"
INFO_FILE = "export.json"
ONNX_OPSET = 17


class ExportError(SoloError):
    """A format could not be written (the converter's message says why)."""


def input_canvas(image, config: SOLOConfig):
    """``preprocess`` in graph ops: ``(canvas (1, Hc, Wc, 3) float32, resized (2,) int32)`` of an
    ``(H, W, 3)`` uint8 image tensor whose size is known only at run time."""
    size = tf.shape(image)[:2]
    if config.image_scale is None:  # models saved before the scale existed: no resize
        resized = size
        canvas = (size + SIZE_DIVISOR - 1) // SIZE_DIVISOR * SIZE_DIVISOR
        pixels = image
    else:
        resized = rescale_size_tensor(size, config.image_scale)
        canvas = canvas_size_tensor(size, config.image_scale)
        pixels = resize_image(tf.cast(image, tf.float32), resized)  # float in: LiteRT resizes floats only
    padded = tf.pad(tf.cast(pixels, tf.float32), [[0, canvas[0] - resized[0]], [0, canvas[1] - resized[1]], [0, 0]])
    # The paddings are tensors, so converters cannot tell that 3 channels stay 3; a reshape says it.
    return tf.reshape(padded, tf.stack([1, canvas[0], canvas[1], 3])), resized


def serving_function(model, config: SOLOConfig | None = None):
    """The whole of inference as a ``tf.function`` of one ``(H, W, 3)`` uint8 image of any size.

    Args:
        model: a ``SOLOv2`` model.
        config: its ``SOLOConfig`` (default ``model.config``); its inference thresholds are
            built into the graph.

    Returns:
        A ``tf.function`` with the input signature ``image: (None, None, 3) uint8`` that returns
        ``{"masks": (K, H, W) uint8, "labels": (K,) int32, "scores": (K,) float32}``, highest
        score first, exactly as :func:`solo_lib.inference.predict` does.
    """
    config = model.config if config is None else config

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image")])
    def serve(image):
        canvas, resized = input_canvas(image, config)
        out = model(canvas, training=False)
        return instances(out["category"], out["kernel"], out["mask_feature"], config, resized,
                         tf.shape(image)[:2])

    return serve


def class_names_of(model, config: SOLOConfig) -> list[str]:
    """The model's class names in label order, or ``class 0``, ``class 1``, ... when unrecorded."""
    names = getattr(model, "class_names", None)
    return list(names) if names else [f"class {k}" for k in range(config.num_classes)]


def _write_saved_model(model, serve, names, folder: Path) -> None:
    # tf.saved_model.save on a tf.Module that holds the model's variables and two signatures: the
    # graph as ``serving_default`` and ``class_names`` (no input), so the names travel inside the
    # SavedModel too. Keras' ExportArchive writes the same signatures but traces the network
    # twice more (17 s instead of 8 s for the tiny preset here), and Model.export alone would
    # export model.call, the raw network without pre- and post-processing.
    module = tf.Module()
    module.variables_of_model = [v.value for v in model.variables]  # the tf.Variables under the Keras ones
    module.serve = serve
    module.class_names = tf.function(lambda: {"class_names": tf.constant(names)}, input_signature=[])
    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve,
                                                         "class_names": module.class_names})


def _write_tflite(saved_model: Path, path: Path, fp16: bool) -> None:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])
    # Builtin LiteRT ops only, no TF-ops (Flex) fallback: the graph converts whole without it, and
    # Flex would need the full TensorFlow runtime on the device.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fp16:  # weights stored as float16 (half the file); a CPU dequantises them and computes in float32
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    path.write_bytes(converter.convert())


def _write_onnx(serve, path: Path) -> None:
    try:
        import tf2onnx
    except ImportError as err:
        raise ExportError("ONNX export needs tf2onnx (pip install tf2onnx onnx onnxruntime; "
                          "requirements.txt pins them)") from err
    # tf2onnx deep-copies the whole graph, weights included, before each of its ~50 optimizer
    # passes so that it can undo a failing one; for ResNet-50's 170 MB that is a large part of the
    # conversion time. Its switch TF2ONNX_CATCH_ERRORS=FALSE applies the passes in place (a failing
    # pass then fails the export, which is reported, instead of being skipped). Its other way
    # around the copies, large_model=True, fails with NumPy 2 (tf2onnx 1.17 calls np.product).
    previous = os.environ.get("TF2ONNX_CATCH_ERRORS")
    os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"
    try:
        tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=ONNX_OPSET,
                                      output_path=str(path))
    finally:
        if previous is None:
            del os.environ["TF2ONNX_CATCH_ERRORS"]
        else:
            os.environ["TF2ONNX_CATCH_ERRORS"] = previous


def export(model, out_dir, formats=("saved_model",), *, config: SOLOConfig | None = None, class_names=None,
           overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
    """Writes the whole of inference (:func:`serving_function`) in each of ``formats``.

    The folder gets, besides the models, ``labels.txt`` (the class names, one per line, in label
    order), ``export.json`` (what was exported, from which configuration) and ``run_model.py``
    (:mod:`solo_lib.run_export`: loads any of the formats with its runtime alone). Each format is
    written to a temporary name and renamed into place, so an interrupted export leaves no half
    file; a format that fails is reported, with the converter's message, after the others are
    written.

    Args:
        model: a ``SOLOv2`` model.
        out_dir: the folder to write to (created if needed).
        formats: some of :data:`FORMATS`. The LiteRT formats are converted from the SavedModel,
            which is written to a temporary folder when not asked for.
        config: the ``SOLOConfig`` whose inference thresholds go into the graph (default
            ``model.config``).
        class_names: the names to ship, in label order (default: those the model records, else
            ``class 0``, ``class 1``, ...).
        overwrite: replace files of an earlier export in ``out_dir``; without it such files stop
            the export before anything is written.
        progress: print one line per format written.

    Returns:
        ``{format: path}`` of what was written.

    Raises:
        ExportError: an unknown format, files in the way, or a format the converter could not write.
    """
    config = model.config if config is None else config
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format(s) {unknown or '(none)'}; choose from {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file; give a folder to export to")
    in_the_way = [out_dir / FILES[f] for f in formats if (out_dir / FILES[f]).exists()]
    if in_the_way and not overwrite:
        raise ExportError(f"{in_the_way[0]} exists (an earlier export); add --overwrite to replace it "
                          "or choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(class_names) if class_names is not None else class_names_of(model, config)
    if len(names) != config.num_classes:
        raise ExportError(f"{len(names)} class names for a model of {config.num_classes} classes; give one per class")
    serve = serving_function(model, config)
    written, failed = {}, {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".tmp-export-") as tmp:
        tmp = Path(tmp)
        saved_model = tmp / FILES["saved_model"]
        if "saved_model" in formats or any(f.startswith("tflite") for f in formats):
            try:
                _write_saved_model(model, serve, names, saved_model)
            except Exception as err:  # noqa: BLE001 - reported with the converter's message
                failed["saved_model"] = err
        # The SavedModel is moved into place last: the LiteRT converters read it from tmp.
        for fmt in sorted(formats, key=lambda f: f == "saved_model"):
            target = tmp / FILES[fmt]
            try:
                if fmt == "saved_model":
                    if fmt in failed:
                        continue
                elif fmt.startswith("tflite"):
                    if "saved_model" in failed:
                        raise ExportError("needs the SavedModel, which failed")
                    _write_tflite(saved_model, target, fp16=fmt == "tflite_fp16")
                else:
                    _write_onnx(serve, target)
            except Exception as err:  # noqa: BLE001
                failed[fmt] = err
                continue
            final = out_dir / FILES[fmt]
            if final.is_dir():
                shutil.rmtree(final)
            elif final.exists():
                final.unlink()
            os.replace(target, final)  # tmp lies inside out_dir: a rename, for a file or a folder
            written[fmt] = final
            if progress:
                print(f"wrote {final} ({_size_mb(final):.1f} MB)")
    (out_dir / LABELS_FILE).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    shutil.copyfile(Path(__file__).with_name("run_export.py"), out_dir / "run_model.py")
    info = {"formats": {f: FILES[f] for f in written}, "failed": {f: _first_line(e) for f, e in failed.items()},
            "class_names": names, "config": config.to_dict(), "input": "image: (H, W, 3) uint8 RGB, any size",
            "outputs": {"masks": "(K, H, W) uint8", "labels": "(K,) int32", "scores": "(K,) float32"},
            "tensorflow": tf.__version__}
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if failed:
        raise ExportError("; ".join(f"{f} failed: {_first_line(e)}" for f, e in failed.items())
                          + (f" (written: {', '.join(written)})" if written else ""))
    return written


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


# The runtime each format needs in a process of its own, and the module that must NOT be loaded
# there (a LiteRT process that imported TensorFlow would prove nothing about a phone).
RUNTIMES = {"saved_model": ("tensorflow", ()), "tflite": ("ai_edge_litert", ("tensorflow",)),
            "tflite_fp16": ("ai_edge_litert", ("tensorflow",)), "onnx": ("onnxruntime", ("tensorflow",))}

_STANDALONE = """
import sys
for blocked in {blocked!r}:
    sys.modules[blocked] = None  # importing it now raises ImportError: the export stands alone
import json, numpy as np
sys.path.insert(0, {folder!r})
from run_model import load_exported
segment = load_exported({model!r})
images = np.load({images!r})
results = {{}}
for k in range(len(images.files)):
    out = segment(images[f"image_{{k}}"])
    for key, value in out.items():
        results[f"{{key}}_{{k}}"] = value
np.savez({out!r}, **results)
loaded = sorted({{m.split(".")[0] for m, module in sys.modules.items()
                  if module is not None and m.split(".")[0] in {watched!r}}})
print(json.dumps({{"loaded": loaded}}))
"""


def run_standalone(out_dir, fmt: str, images, *, timeout: float = 600) -> tuple[list[dict], list[str]]:
    """Runs an export in a fresh Python process that imports only its runtime, through the
    folder's own ``run_model.py``. ``solo_lib`` is blocked there (importing it fails), and so is
    TensorFlow for the LiteRT and ONNX formats (:data:`RUNTIMES`).

    Args:
        out_dir: the export folder.
        fmt: one of :data:`FORMATS`.
        images: ``(H, W, 3)`` uint8 images.
        timeout: seconds before the process is stopped.

    Returns:
        ``(results, loaded)``: one ``{"masks", "labels", "scores"}`` dict per image, and which of
        tensorflow / ai_edge_litert / onnxruntime the process had imported.

    Raises:
        ExportError: the process failed (its last lines of output say why).
    """
    import subprocess
    import sys

    out_dir = Path(out_dir).resolve()
    watched = ("tensorflow", "ai_edge_litert", "onnxruntime", "solo_lib")
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "images.npz", **{f"image_{k}": np.asarray(im, np.uint8) for k, im in enumerate(images)})
        blocked = ("solo_lib", *RUNTIMES[fmt][1])
        code = _STANDALONE.format(blocked=blocked, folder=str(out_dir), model=str(out_dir / FILES[fmt]),
                                  images=str(Path(tmp) / "images.npz"), out=str(Path(tmp) / "out.npz"),
                                  watched=watched)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=tmp)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise ExportError(f"{fmt}: the standalone process failed: {tail}")
        loaded = json.loads(done.stdout.strip().splitlines()[-1])["loaded"]
        with np.load(Path(tmp) / "out.npz") as arrays:
            results = [{key: arrays[f"{key}_{k}"] for key in ("masks", "labels", "scores")}
                       for k in range(len(images))]
    return results, loaded


def compare_instances(reference: dict, other: dict) -> dict:
    """How closely two sets of instances of one image agree (``predict`` vs an export).

    Each reference instance, highest score first, is paired with the unpaired instance of the
    same label whose mask overlaps it most.

    Two runtimes may disagree on an instance that scores next to a threshold: its score moves by
    the runtime's rounding (about 1e-5 in float32, 1e-3 with float16 weights, whose file also
    stores the thresholds as float16: ``update_thr`` 0.05 becomes 0.0499878), so one keeps it and
    the other drops it. ``unpaired_max_score`` shows that case: an instance left unpaired on
    either side can only be such a one when its score is within the score noise of
    ``max(score_thr, update_thr)`` (a final score is the category score times maskness times the
    Matrix NMS decay, so it never exceeds the category score that passed ``score_thr``).

    Returns:
        dict: ``count`` (reference, other), ``paired`` (pairs found), ``min_iou`` (the smallest
        mask IoU of a pair; 1.0 with no instance), ``max_score_diff`` (largest |score difference|
        of a pair; 0.0 with none), ``unpaired_max_score`` (the highest score of an instance left
        unpaired on either side; 0.0 with none).
    """
    ref_masks, oth_masks = (np.asarray(r["masks"]).astype(bool).reshape(len(r["scores"]), -1 if len(r["scores"]) else 0)
                            for r in (reference, other))
    free = list(range(len(oth_masks)))
    ious, diffs, unpaired = [], [], []
    for i in np.argsort(-np.asarray(reference["scores"]), kind="stable"):
        same = [j for j in free if other["labels"][j] == reference["labels"][i]]
        if not same:
            unpaired.append(float(reference["scores"][i]))
            continue
        inter = (oth_masks[same] & ref_masks[i]).sum(1)
        union = (oth_masks[same] | ref_masks[i]).sum(1)
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        best = int(np.argmax(iou))
        j = same[best]
        free.remove(j)
        ious.append(float(iou[best]))
        diffs.append(abs(float(reference["scores"][i]) - float(other["scores"][j])))
    unpaired += [float(other["scores"][j]) for j in free]
    return {"count": (len(ref_masks), len(oth_masks)), "paired": len(ious),
            "min_iou": min(ious, default=1.0), "max_score_diff": max(diffs, default=0.0),
            "unpaired_max_score": max(unpaired, default=0.0)}
