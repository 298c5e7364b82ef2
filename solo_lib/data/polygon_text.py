"""Many COCO polygon segmentations checked straight from their JSON text, with numpy (CocoDataset at scale).

``json.load`` of a file the size of COCO train2017 makes about 50 million Python floats, one
object each, for the polygon coordinates alone: gigabytes, and most of the time of loading it.
:class:`~solo_lib.data.coco.CocoDataset` only needs, when it opens a file, the verdict on each
polygon (fine, degenerate, or with points outside the image) and keeps the text to decode one
image's annotations when they are asked for. This module gives those verdicts for a whole batch
of segmentation texts at once, in a few numpy passes, without a Python object per number:

1. :func:`read_polygon_texts` keeps the texts made of digits, ``.``, ``-``, ``,``, ``[`` and ``]``
   alone (JSON whitespace dropped), follows the bracket depth at each delimiter, and keeps those
   that are a non-empty list of non-empty lists of plain numbers (``-?digits[.digits]``, as COCO
   files and ``json.dumps`` write them). Anything else (an exponent, ``NaN``, ``true``, a string,
   a flat list, ``[]``, deeper nesting) is left to the per-record checks of
   :mod:`solo_lib.data.segmentation`, which name what is wrong;
2. each number of up to 8 characters is converted in 8-byte words (below), longer ones with
   ``float``. Both are correctly rounded, so the values are those ``json`` gives;
3. :func:`check_polygons` applies :func:`~solo_lib.data.segmentation._clean_segmentation`'s rules
   to all polygons at once: an odd count, fewer than 3 points or zero area (shoelace per polygon
   with ``np.add.reduceat``) make a polygon degenerate, a point outside ``[0, width] x [0, height]``
   is clipped. An area so close to zero that rounding could decide it goes back to the
   per-record check, which computes it exactly as it always does.

Numbers in 8-byte words: the text of a number of at most 8 characters is loaded as one little-endian
``uint64`` (first character in the lowest byte). The sign and the decimal point are located
with byte arithmetic and removed, and three multiply-shift steps combine neighbouring digits into
pairs, quadruples and one 8-digit integer ``m`` (the "SWAR" technique of simdjson and fast_float:
D. Lemire, "Number parsing at a gigabyte per second", Software: Practice and Experience 51(8),
2021). The value is then ``m / 10**e``: ``m < 10**8`` and ``10**e`` (``e <= 8``) are exact
doubles, so one IEEE division is correctly rounded (Clinger's fast path, PLDI 1990).
"""

from __future__ import annotations

import dataclasses

import numpy as np

_ONES = np.uint64(0x0101010101010101)
_MASK = np.array([(1 << (8 * n)) - 1 for n in range(9)], np.uint64)  # the low n bytes
_ZEROS = np.array([int.from_bytes(b"0" * n, "little") for n in range(9)], np.uint64)  # n ASCII zeros
_POW10 = 10.0 ** np.arange(9)
_U64 = {n: np.uint64(n) for n in (1, 7, 8, 10, 16, 32, 100, 10000, 0xFF, 0x2D)}  # numpy keeps uint64 x uint64
_DOTS, _HIGH = _ONES * np.uint64(ord(".")), _ONES * np.uint64(0x80)


@dataclasses.dataclass
class PolygonTexts:
    """Polygon segmentations read from text.

    Attributes:
        plain: ``(R,)`` bool, the texts that are lists of non-empty lists of plain finite numbers;
            the others are for the per-record checks.
        polygons: ``(R,)`` int64 polygons per plain text (0 for the others).
        lengths: ``(P,)`` int64 numbers per polygon, the plain texts' polygons in order.
        coords: ``(sum(lengths),)`` float64 the numbers, polygon after polygon.
    """

    plain: np.ndarray
    polygons: np.ndarray
    lengths: np.ndarray
    coords: np.ndarray


def read_polygon_texts(texts: list) -> PolygonTexts:
    """Reads the JSON texts (bytes-like) of segmentations that start with ``[``.

    Each text must be one complete JSON array (as a JSON parser delimits values, e.g.
    ``msgspec.Raw``): the brackets of a text without strings balance, which is what splits the
    joined bytes back into texts.
    """
    count = len(texts)
    data = b"".join([*texts, bytes(8)])  # 8 more bytes: each number's 8-byte word stays inside
    text = np.frombuffer(data, np.uint8, len(data) - 8)
    delimiter = (text == ord(",")) | (text == ord("[")) | (text == ord("]"))
    if not (delimiter | ((text - np.uint8(48)) < 10) | (text == ord(".")) | (text == ord("-"))).all():
        return _plain_bytes_only(texts)  # whitespace, or something else than numbers and lists
    at = np.flatnonzero(delimiter)
    kind = text[at]
    opening, closing = kind == ord("["), kind == ord("]")
    depth = np.cumsum(opening.view(np.int8) - closing.view(np.int8), dtype=np.int32)  # after each delimiter
    gap = np.diff(at) - 1  # characters between a delimiter and the next
    token = np.flatnonzero(gap > 0)  # a number follows delimiter `token`
    starts = np.flatnonzero(opening & (depth == 1))  # the delimiter that opens each text
    opens, closes = np.flatnonzero(opening & (depth == 2)), np.flatnonzero(closing & (depth == 1))  # polygons
    odd = np.concatenate([token[depth[token] != 2],  # a number outside a polygon list, or deeper
                          np.flatnonzero(opening[:-1] & (gap == 0) & closing[1:])])  # [] anywhere
    unusual = np.zeros(count, bool)
    unusual[np.searchsorted(starts, odd, side="right") - 1] = True
    polygons = np.diff(np.searchsorted(opens, starts), append=len(opens))
    lengths = np.searchsorted(token, closes) - np.searchsorted(token, opens)  # numbers between [ and ]
    if unusual.any():
        token = token[~unusual[np.searchsorted(starts, token, side="right") - 1]]
        lengths = lengths[~unusual[np.searchsorted(starts, opens, side="right") - 1]]
        polygons[unusual] = 0
    values = _parse_numbers(data, at[token] + 1, gap[token])
    finite = np.isfinite(values)
    if not finite.all():  # a huge literal written without exponent: the per-record check names it
        unusual[np.searchsorted(starts, token[~finite], side="right") - 1] = True
        return _subset(texts, ~unusual)
    return PolygonTexts(~unusual, polygons, lengths, values)


def _plain_bytes_only(texts: list) -> PolygonTexts:
    """Drops JSON whitespace, then reads the texts made of digits, ``.-,[]`` alone; the others
    (a string could hold brackets that do not balance) are for the per-record checks."""
    texts = [bytes(t).translate(None, b" \t\n\r") for t in texts]
    return _subset(texts, np.array([not t.translate(None, b"0123456789.-,[]") for t in texts], bool))


def _subset(texts: list, keep: np.ndarray) -> PolygonTexts:
    """Reads ``texts[keep]`` only; the others are not plain."""
    index = np.flatnonzero(keep)
    inner = read_polygon_texts([texts[i] for i in index])
    plain, polygons = np.zeros(len(texts), bool), np.zeros(len(texts), np.int64)
    plain[index], polygons[index] = inner.plain, inner.polygons
    return PolygonTexts(plain, polygons, inner.lengths, inner.coords)


def _parse_numbers(data: bytes, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Values of the plain JSON numbers ``data[start:start + length]`` (see the module docstring);
    ``data`` ends with 8 bytes that are not part of any number."""
    # every byte offset as the start of a little-endian uint64 (strides of one byte, unaligned)
    words = np.ndarray((len(data) - 7,), "<u8", buffer=data, strides=(1,))[start]
    short = length <= 8  # the whole number is in its word
    negative = (words & _U64[0xFF]) == _U64[0x2D]  # "-"
    if negative.any():
        words = np.where(negative, words >> _U64[8], words)
        length = length - negative
    width = np.minimum(length, 8)
    words &= _MASK[width]
    # The first byte equal to "." is the first zero byte of words ^ "........": the classic
    # zero-byte test (x - 0x01..01) & ~x & 0x80..80 sets bit 7 of it (and maybe of later bytes).
    x = words ^ _DOTS
    zero = (x - _ONES) & ~x & _HIGH
    point = zero & (~zero + _U64[1])  # lowest set bit: 2**(8 k + 7) for a point at byte k, else 0
    has_point = point != 0
    below = (point >> _U64[7]) - has_point  # the bytes before the point: 2**(8 k) - 1
    # Remove the point: the integer digits move up one byte into its place and a "0" fills byte
    # 0, so the word holds `width` digits either way.
    digits = np.where(has_point, ((words & below) << _U64[8]) | (words & ~((below << _U64[8]) | _U64[0xFF]))
                      | _ZEROS[1], words)
    # One digit per byte, most significant in the lowest byte; the bytes past the number are 0,
    # as if the number had 8 - width more digits, all zeros: the integer read is m * 10**(8 - width).
    d = digits - _ZEROS[width]
    d = (d * _U64[10] + (d >> _U64[8])) & np.uint64(0x00FF00FF00FF00FF)  # 2-digit numbers in 16-bit lanes
    d = (d * _U64[100] + (d >> _U64[16])) & np.uint64(0x0000FFFF0000FFFF)  # 4-digit numbers in 32-bit lanes
    d = (d * _U64[10000] + (d >> _U64[32])) & np.uint64(0xFFFFFFFF)  # the 8-digit integer
    # Divide by 10**(8 - width + digits after the point) = 10**(7 - k) with a point at byte k
    # (the 8 k one bits of `below`), else 10**(8 - width): both exact doubles.
    exponent = np.where(has_point, 7 - (np.bitwise_count(below) >> np.uint8(3)).astype(np.int64), 8 - width)
    values = d.astype(np.float64) / _POW10[exponent]
    if negative.any():
        values = np.where(negative, -values, values)
    for i in np.flatnonzero(~short):  # 9 characters or more: float() (rare in COCO files)
        values[i] = float(data[start[i]:start[i] + length[i] + negative[i]])
    return values


def check_polygons(read: PolygonTexts, heights: np.ndarray, widths: np.ndarray):
    """The verdicts of :func:`~solo_lib.data.segmentation._clean_segmentation` on every plain text.

    Args:
        read: from :func:`read_polygon_texts`.
        heights, widths: ``(R,)`` the size of each text's image.

    Returns:
        ``(doubtful, degenerate, clipped)``, each ``(R,)``: ``doubtful`` (bool) marks a polygon
        whose area is so close to zero that summation order could make it exactly 0, for the
        per-record check to decide; ``degenerate`` (int64) counts polygons with an odd number of
        coordinates, fewer than 3 points or zero area; ``clipped`` (bool) marks a point outside
        the image in a polygon that is not degenerate. Texts that are not plain get 0 / False.
    """
    count = len(read.plain)
    n = read.lengths
    record = np.repeat(np.arange(count), read.polygons)  # of each polygon
    short = (n % 2 == 1) | (n < 6)
    degenerate = np.bincount(record[short], minlength=count)
    coords = read.coords[np.repeat(~short, n)] if short.any() else read.coords  # whole points, 3 or more
    points, record = n[~short] // 2, record[~short]
    doubtful, clipped = np.zeros(count, bool), np.zeros(count, bool)
    if points.size:
        x, y = coords[0::2], coords[1::2]
        first = np.cumsum(points) - points
        following = np.arange(1, len(x) + 1)  # the next vertex, wrapping around each polygon
        following[first + points - 1] = first
        twice_area = np.add.reduceat(x * y[following] - y * x[following], first)
        low_x, high_x = np.minimum.reduceat(x, first), np.maximum.reduceat(x, first)
        low_y, high_y = np.minimum.reduceat(y, first), np.maximum.reduceat(y, first)
        clipped[record[(low_x < 0) | (high_x > widths[record]) | (low_y < 0) | (high_y > heights[record])]] = True
        # Rounding: each cross term x y' - y x' is within 2 eps of |x y'| + |y x'| <= 2 |x|max |y|max,
        # and a sum of m terms within (m - 1) eps of the sum of their magnitudes; the per-record
        # check (two dot products) errs as much. Twice that bound leaves no doubt that both
        # results are non-zero, or both exactly zero.
        largest = np.maximum(high_x, -low_x) * np.maximum(high_y, -low_y)
        bound = (4 * points + 8) * np.finfo(np.float64).eps * 2 * points * largest
        doubtful[record[np.abs(twice_area) <= bound]] = True
    return doubtful, degenerate, clipped
