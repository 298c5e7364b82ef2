"""Reading image files the one way the course does: as displayed, 8-bit RGB (notebook 01).

Images are seen as displayed: a photo's EXIF orientation tag (0x0112) is applied when it is
opened, as LabelMe does when it shows it to the annotator and as mmcv/OpenCV's ``imread`` do, and
every size (COCO ``height``/``width``, LabelMe ``imageHeight``/``imageWidth``) is that of the
oriented image. 16-bit images are reduced to 8 bits by keeping the high byte (``value >> 8``),
as ``tf.io.decode_png(dtype=tf.uint8)`` and libpng do.

Why: annotations are clicked on the picture the annotator saw. A phone photo is often stored
sideways with a tag that says "rotate me"; read without the tag, its pixels are turned against
the polygons and the masks cover the wrong pixels (a square photo does not even change size, so
no size check catches it). Reading the tag everywhere
(the datasets, both training pipelines, ``predict``, and the LabelMe converter's size checks)
through this one module keeps pixels, sizes and masks aligned. Likewise, a 16-bit image must
become the same 8-bit picture in every reader, or a model sees other pixels at training and at
prediction time.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from solo_lib.errors import DatasetError

ORIENTATION_TAG = 0x0112  # EXIF Orientation; values 5-8 swap width and height


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of an opened image as displayed, after its EXIF orientation.

    Orientations 5-8 (the photo was taken with the camera on its side) swap width and height,
    exactly as ``PIL.ImageOps.exif_transpose`` does; reading the tag does not decode the pixels.
    """
    width, height = img.size
    return (height, width) if img.getexif().get(ORIENTATION_TAG) in (5, 6, 7, 8) else (width, height)


def image_to_rgb8(img: Image.Image, *, source: str = "image") -> np.ndarray:
    """An opened Pillow image as ``(H, W, 3)`` uint8 RGB, without saturating 16-bit images.

    ``Image.convert("RGB")`` clips 16-bit gray (mode ``I;16``) and 32-bit integer (mode ``I``)
    values at 255, which turns most of such a picture white. Those are scaled instead, keeping
    the high byte (``value >> 8``), what ``tf.io.decode_png(dtype=tf.uint8)`` does; Pillow
    already reads 16-bit RGB(A) PNGs that way. Grayscale, palette and RGBA become RGB (alpha
    is dropped, as ``tf.io.decode_image(channels=3)`` drops it).

    Raises:
        DatasetError: a floating-point image, or a 32-bit one with values outside 0..65535.
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img).astype(np.int64)  # I;16*: uint16, I: int32
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DatasetError(f"{source}: 32-bit pixel values {values.min()}..{values.max()} do not fit 16 bits; "
                               "save the image as an 8- or 16-bit PNG")
        gray = (values >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        raise DatasetError(f"{source}: a floating-point image (mode F) has no agreed 0-255 scale; "
                           "save it as an 8- or 16-bit PNG")
    return np.asarray(img.convert("RGB"))


def load_rgb_image(path: str | os.PathLike, *, what: str = "image") -> np.ndarray:
    """Reads an image file as ``(H, W, 3)`` uint8 RGB, as displayed.

    EXIF orientation is applied (as LabelMe does when it shows the image to the annotator, and
    mmcv/OpenCV's ``imread``), so the array's size is the one annotations must use; 16-bit
    images are scaled to 8 bits and other modes become RGB (see :func:`image_to_rgb8`). Every
    reader of images in solo_lib (datasets, both training pipelines, ``predict``) goes through here.

    Raises:
        DatasetError: the file is missing or is not a readable image.
    """
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return image_to_rgb8(img, source=f"{path}: {what}")
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path}: cannot read {what}: {err}; re-save it as PNG or JPEG") from None
