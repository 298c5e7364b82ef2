"""COCO segmentations: polygons and RLE, their validation and rasterisation (notebook 01).

One module past ~300 lines, because it is one idea: the three forms of a COCO segmentation and the
checks each needs before pycocotools rasterises it; most of the length is the compressed-RLE format
and its vectorised checks.

A COCO annotation's ``segmentation`` takes one of three forms:

* **polygons**, ``[[x0, y0, x1, y1, ...], ...]``: one flat list of pixel coordinates per part
  of the object (an occluded object can have several); the mask is their union;
* **uncompressed RLE**, ``{"counts": [int, ...], "size": [h, w]}``: run lengths over the
  mask read column by column (Fortran order), alternating 0s and 1s and starting with 0s, so
  the first count may be 0; COCO uses it for crowd regions;
* **compressed RLE**, ``{"counts": "string", "size": [h, w]}``: the same runs packed into
  ASCII, 5 bits per character, the form pycocotools writes (see
  :func:`rle_counts_from_string` for the format).

pycocotools turns all three into one compressed RLE and then into a binary mask; we use it
for exactly that (:func:`decode_segmentation`). But pycocotools trusts its input, so every
segmentation is checked first; each check turns a silent or far-away failure into an error
(or a counted warning) that names the record:

* a coordinate must be a finite number: pycocotools rasterises ``"12"`` or ``null`` without
  a word, into whatever it makes of them, and NaN passes every comparison and is rasterised
  into a mask of billions of pixels;
* one flat list of numbers instead of a list of polygons is a common slip; it is named so;
* a polygon with an odd number of coordinates, fewer than 3 points or zero area draws
  nothing: it is dropped and counted; points outside the image are clipped (and counted), as
  the rasteriser cuts them anyway;
* an RLE must have ``counts`` and ``size``, a size equal to the image's (else its mask does
  not fit the picture), and runs that are non-negative and add up to ``h * w``: with runs that
  do not, pycocotools decodes uninitialised memory into the mask.

:func:`is_int`, :func:`is_number` and :func:`is_finite` tell JSON values apart (a bool is not
a number, and an integer too large for a float is not finite); every reader of annotation or
result files in solo_lib validates its numbers with them.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from pycocotools import mask as mask_utils

from solo_lib.errors import DatasetError


def is_int(value) -> bool:
    """True for an integer (JSON number without fraction), False for bools, floats and strings."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    """True for an int or a float (finite or not), False for bools, strings and None."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_finite(value) -> bool:
    """True for a number that is neither NaN nor infinite and fits a float."""
    try:
        return is_number(value) and math.isfinite(value)
    except OverflowError:  # an integer beyond float range
        return False


def polygon_area(flat_xy: np.ndarray) -> float:
    """Area of a polygon given as ``[x0, y0, x1, y1, ...]`` (shoelace formula)."""
    x, y = flat_xy[0::2], flat_xy[1::2]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clean_segmentation(segm, height: int, width: int, where: str):
    """Validates one segmentation; returns ``(cleaned, n_degenerate_polygons, clipped)``.

    ``cleaned`` is None when nothing is left to draw (every polygon degenerate, or ``[]``).

    Raises:
        DatasetError: a segmentation that is neither polygons nor RLE, a polygon coordinate that
            is not a finite number, or an RLE that is malformed or of another size than the image.
    """
    if isinstance(segm, dict):
        return check_rle(segm, where, height, width), 0, False
    if not isinstance(segm, list):
        raise DatasetError(f"{where}: segmentation must be a list of polygons or an RLE dict, "
                           f"got {type(segm).__name__}")
    if segm and all(is_number(v) for v in segm):
        raise DatasetError(f"{where}: segmentation is one flat list of numbers; COCO wants a list of polygons: "
                           "wrap it in another list, [[x0, y0, x1, y1, ...]]")
    kept, bad, clipped = [], 0, False
    for k, poly in enumerate(segm):
        xy = _polygon_array(poly, f"{where}: polygon {k}")
        if xy.size % 2 or xy.size < 6 or polygon_area(xy) == 0.0:
            bad += 1
            continue
        lo, hi = np.zeros_like(xy), np.tile([width, height], xy.size // 2).astype(np.float64)
        if np.any(xy < lo) or np.any(xy > hi):
            clipped = True
            xy = np.clip(xy, lo, hi)
        kept.append(xy.tolist())
    return (kept or None), bad, clipped


def _polygon_array(poly, where: str) -> np.ndarray:
    """A flat polygon ``[x0, y0, x1, y1, ...]`` as float64, checking every coordinate.

    NaN must be caught here: comparisons with NaN are all false, so it would pass every later
    check, and pycocotools then rasterises it into a mask of billions of pixels.
    """
    if not isinstance(poly, list):
        raise DatasetError(f"{where} must be a flat list of numbers [x0, y0, x1, y1, ...], got {poly!r}")
    # Fast path for what JSON gives for a good polygon (plain ints and floats; bool is another type),
    # as every polygon of a COCO-sized file passes here; the loop below only names the bad value.
    if all(type(v) is float or type(v) is int for v in poly):
        try:
            xy = np.array(poly, np.float64)
        except OverflowError:  # an integer beyond float range: named below
            xy = None
        if xy is not None and np.isfinite(xy).all():
            return xy.reshape(-1)
    for i, v in enumerate(poly):
        if not is_number(v):
            raise DatasetError(f"{where}: coordinate {i} is {v!r}; a polygon must be a flat list of numbers "
                               "[x0, y0, x1, y1, ...]")
        if not is_finite(v):
            raise DatasetError(f"{where}: coordinate {i} is {v!r}; every coordinate must be a finite number: "
                               "fix or delete that point")
    return np.asarray(poly, np.float64).reshape(-1)


def rle_counts_from_string(counts: str | bytes) -> np.ndarray:
    """Decodes the counts of a compressed COCO RLE, without pycocotools.

    The string packs each run length in groups of 5 bits, least significant group first; each
    group is one character, ``chr(48 + group)``, with bit 0x20 set when another group follows.
    In the last group of a number, bit 0x10 is its sign (two's complement). From the fourth run
    on (index 3), the number written is the difference from the run two places before, which
    is small because runs of zeros and of ones alternate.

    pycocotools trusts this string: with runs that do not add up to the mask size it decodes
    uninitialised memory. Checking with this independent reading is what keeps that out.

    The reading is vectorised (a crowd region of a COCO-sized file has thousands of characters);
    :func:`_rle_counts_loop` is the same rule one character at a time, for numbers too long for
    int64 arithmetic.

    Args:
        counts: the ``counts`` string (``str`` or ASCII ``bytes``).

    Returns:
        ``(m,)`` int64 run lengths, alternating 0s and 1s, starting with 0s; not yet checked
        for sign or total.

    Raises:
        ValueError: a character outside ``'0'..'o'``, or a string that ends inside a number.
    """
    text = counts.decode("ascii") if isinstance(counts, bytes) else counts
    if text.isascii():
        group = np.frombuffer(text.encode("ascii"), np.uint8).astype(np.int64) - 48
    else:  # one code point each
        group = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.int64) - 48
    outside = np.flatnonzero((group < 0) | (group >= 64))
    if outside.size:
        position = int(outside[0])
        raise ValueError(f"character {text[position]!r} at position {position} is not in '0'..'o'")
    if not group.size:
        return np.zeros(0, np.int64)
    last = (group & 0x20) == 0  # the last group of a number
    if not last[-1]:
        raise ValueError("the string ends in the middle of a number")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    width = ends - starts + 1  # groups per number
    if width.max() > 8:  # beyond 40 bits: Python integers, one character at a time
        return _rle_counts_loop(text)
    shift = 5 * (np.arange(group.size) - np.repeat(starts, width))
    values = np.add.reduceat((group & 0x1F) << shift, starts)
    values -= np.where(group[ends] & 0x10, 1 << (5 * width), 0)  # sign-extend the last group
    runs = values.copy()
    runs[3::2] += np.cumsum(values[3::2]) - values[3::2] + (values[1] if len(values) > 3 else 0)
    runs[4::2] += np.cumsum(values[4::2]) - values[4::2] + (values[2] if len(values) > 4 else 0)
    return runs


def _rle_counts_loop(text: str) -> np.ndarray:
    """:func:`rle_counts_from_string`, one character at a time with Python integers."""
    runs: list[int] = []
    value, shift, more = 0, 0, False
    for position, char in enumerate(text):
        group = ord(char) - 48
        if not 0 <= group < 64:
            raise ValueError(f"character {char!r} at position {position} is not in '0'..'o'")
        value |= (group & 0x1F) << shift
        shift += 5
        more = bool(group & 0x20)
        if more:
            continue
        if group & 0x10:
            value -= 1 << shift  # sign-extend the last group
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value, shift = 0, 0
    if more:
        raise ValueError("the string ends in the middle of a number")
    return np.asarray(runs, np.int64)


def rle_totals(counts: list) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rle_counts_from_string` on many ASCII strings at once, as far as :func:`check_rle` needs.

    Args:
        counts: ``(S,)`` compressed RLE ``counts`` texts (bytes-like).

    Returns:
        ``(readable, total)``, each ``(S,)``: ``readable`` (bool) is False for a string that
        :func:`rle_counts_from_string` rejects, that has a negative run, or that is empty or has
        a number of more than 8 groups (left to it); ``total`` (int64) sums the runs of the others.
    """
    if not counts:
        return np.zeros(0, bool), np.zeros(0, np.int64)
    lengths = np.fromiter(map(len, counts), np.int64, len(counts))
    group = np.frombuffer(b"".join(counts), np.uint8).astype(np.int64) - 48
    owner = np.repeat(np.arange(len(counts)), lengths)  # the string of each character
    readable = lengths > 0
    readable[owner[(group < 0) | (group >= 64)]] = False
    last = (group & 0x20) == 0  # the last group of a number
    readable[readable] &= last[np.cumsum(lengths)[readable] - 1]  # no string ends inside a number
    if readable.all():  # then no number runs from one string into the next
        ends = np.flatnonzero(last)
        starts = np.concatenate([[0], ends[:-1] + 1])
        width = ends - starts + 1
        readable[owner[ends[width > 8]]] = False
    if not readable.all():  # read the readable ones alone
        keep = np.flatnonzero(readable)
        inner = rle_totals([counts[i] for i in keep])
        readable[keep], total = inner[0], np.zeros(len(counts), np.int64)
        total[keep] = inner[1]
        return readable, total
    shift = 5 * (np.arange(group.size) - np.repeat(starts, width))
    values = np.add.reduceat((group & 0x1F) << shift, starts)
    values -= np.where(group[ends] & 0x10, 1 << (5 * width), 0)  # sign-extend the last group
    number_owner = owner[ends]
    first = np.searchsorted(number_owner, np.arange(len(counts)))  # each string's first number
    k = np.arange(len(values)) - first[number_owner]  # index of each number in its string
    runs = values.copy()
    for chain in (k % 2 == 1, (k % 2 == 0) & (k >= 2)):  # run k adds run k - 2 from k = 3 on
        index = np.flatnonzero(chain)
        head = k[index] <= 2  # the first run of each chain
        sums = np.cumsum(values[index])
        base = (sums - values[index])[np.maximum.accumulate(np.where(head, np.arange(len(index)), 0))]
        runs[index] = sums - base
    readable &= ~np.logical_or.reduceat(runs < 0, first)
    return readable, np.add.reduceat(runs, first)


def check_rle(segm: dict, where: str, height: int | None = None, width: int | None = None) -> dict:
    """Validates an RLE dict before pycocotools sees it; returns it with str counts.

    Args:
        segm: ``{"size": [h, w], "counts": [int, ...] or str}``.
        where: names the record in error messages (file and annotation id).
        height: the image's height, if known; the RLE's size must then match.
        width: the image's width.

    Raises:
        DatasetError: missing keys; a size that is not two positive ints or differs from the
            image's; counts that are not a list of non-negative ints or an ASCII string; runs
            that are negative or do not add up to ``h * w``.
    """
    if "counts" not in segm or "size" not in segm:
        raise DatasetError(f"{where}: an RLE segmentation needs 'counts' and 'size'")
    size = segm["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(is_int(v) and v > 0 for v in size):
        raise DatasetError(f"{where}: RLE size {size!r} must be [height, width], two positive integers")
    if height is not None and list(size) != [height, width]:
        raise DatasetError(f"{where}: RLE size {list(size)} differs from the image's [height, width] "
                           f"[{height}, {width}]")
    counts, total = segm["counts"], size[0] * size[1]
    fix = "re-encode the mask with pycocotools.mask.encode"
    if isinstance(counts, list):
        bad = next((c for c in counts if not is_int(c) or c < 0), None)
        if bad is not None:
            raise DatasetError(f"{where}: uncompressed RLE counts must be non-negative integers, found {bad!r}")
        if sum(counts) != total:
            raise DatasetError(f"{where}: uncompressed RLE counts sum to {sum(counts)}, "
                               f"expected height*width = {total}")
        return segm
    if not isinstance(counts, (str, bytes)):
        raise DatasetError(f"{where}: RLE counts must be a string (compressed RLE) or a list of integers "
                           f"(uncompressed), got {type(counts).__name__}")
    try:
        runs = rle_counts_from_string(counts)
    except (ValueError, UnicodeDecodeError) as err:  # UnicodeDecodeError: non-ASCII bytes
        raise DatasetError(f"{where}: compressed RLE counts are corrupt ({err}); {fix}") from None
    if (runs < 0).any():
        raise DatasetError(f"{where}: compressed RLE counts decode to a negative run length "
                           f"(run {int(np.argmax(runs < 0))}); the string is corrupt: {fix}")
    if int(runs.sum()) != total:
        raise DatasetError(f"{where}: compressed RLE counts sum to {int(runs.sum())}, expected height*width = "
                           f"{total}; the string is corrupt or belongs to another size: {fix}")
    if isinstance(counts, bytes):
        segm = dict(segm, counts=counts.decode("ascii"))
    return segm


def decode_segmentation(segm, height: int, width: int) -> np.ndarray:
    """Rasterises a COCO segmentation (polygons, uncompressed or compressed RLE) with pycocotools.

    Args:
        segm: a list of flat polygons, or an RLE dict.
        height: image height.
        width: image width.

    Returns:
        ``(height, width)`` uint8 mask in {0, 1}; the union of all polygons.
    """
    if isinstance(segm, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    elif isinstance(segm["counts"], list):
        rle = mask_utils.frPyObjects(segm, height, width)  # uncompressed -> compressed
    else:
        rle = segm
        if isinstance(rle["counts"], str):
            rle = dict(rle, counts=rle["counts"].encode("ascii"))
    return mask_utils.decode(rle).astype(np.uint8)
