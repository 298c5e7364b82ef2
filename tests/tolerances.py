"""How close two float32 computations of the same quantity must be, and why.

Two correct float32 computations of one quantity rarely agree bit for bit: graph and eager mode,
a checkpointed and a plain step, oneDNN's kernels and TensorFlow's own, and oneDNN's kernels on
two CPUs (AVX2 on AMD Zen, AVX-512 and AMX on Intel Xeon) add the same terms in different orders.
Each addition rounds by at most half a float32 ulp, ``EPS32 / 2`` relative. For a sum of ``K``
terms of mixed sign the rounding errors add up like a random walk, to about ``EPS32 * sqrt(K)``
times the size of the result (a blocked or pairwise sum does better; ``sqrt(K)`` covers the plain
loop). A network adds such an error at every layer and carries the earlier ones forward; with
normalisation the gain per layer is about 1, so the errors of ``depth`` layers add up to about
``depth`` times one layer's.

So the tolerance here is absolute, and the same for every element of a tensor::

    bound = SAFETY * EPS32 * sqrt(terms) * depth * max|expected|

``terms`` is the largest reduction behind one element (3 x 3 x C for a 3x3 convolution,
B x H x W for a weight gradient) and ``depth`` the number of such reductions in a row. An element
near zero is thus judged against the size of the tensor it belongs to, as its rounding error is
(a relative tolerance would ask it for more digits than float32 has). A real bug, a wrong index, a
missing term or a statistic updated twice, moves results by a percent or more of
``max|expected|``; each caller says in a comment how far its bound stays below that.

Set ``SOLO_TOLERANCE_REPORT=1`` (and run pytest with ``-s``) to print each comparison's worst
difference as a fraction of its bound: how much room a new CPU or kernel family has left.
"""

from __future__ import annotations

import math
import os

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7, the float32 spacing just above 1.0
# Two: the difference of two computations carries the rounding errors of both. The estimate is
# already generous (sqrt(terms) is a plain loop's random walk, depth adds layers' errors as if
# they all had one sign): measured differences, with and without oneDNN, use a few percent of it.
SAFETY = 2.0


def float32_bound(scale: float, *, terms: int, depth: int = 1, safety: float = SAFETY) -> float:
    """Largest difference expected between two orderings of a float32 computation.

    Args:
        scale: size of the result, usually ``max|expected|``.
        terms: length of the largest sum behind one element (1 for element-wise math).
        depth: how many such sums are chained (layers of a network, steps of an optimiser).
        safety: see :data:`SAFETY`.

    Returns:
        ``safety * EPS32 * sqrt(terms) * depth * scale``.
    """
    if terms < 1 or depth < 1:
        raise ValueError(f"terms and depth must be >= 1, got terms={terms}, depth={depth}")
    return safety * EPS32 * math.sqrt(terms) * depth * scale


def assert_close_float32(actual, expected, *, terms: int, depth: int = 1, scale: float | None = None,
                         atol: float = 0.0, safety: float = SAFETY, what: str = "") -> float:
    """Assert that ``max|actual - expected| <= float32_bound(scale, terms=terms, depth=depth) + atol``.

    Args:
        actual, expected: arrays (or tensors, or numbers) of the same shape, all finite.
        terms, depth, safety: see :func:`float32_bound`.
        scale: the magnitude the rounding is relative to; ``max|expected|`` by default. Pass a
            larger one when the result is a difference of larger numbers (a sum that cancels).
        atol: added to the bound, for rounding outside the modelled sums that the caller states
            (e.g. an ulp of the weights a compared update was added to).
        what: names the quantity in the failure message.

    Returns:
        The bound that was used.

    Raises:
        AssertionError: shapes differ, a value is not finite, or the worst element is over the
            bound; the message gives the bound's formula and the worst element.
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    label = f"{what}: " if what else ""
    assert actual.shape == expected.shape, f"{label}shape {actual.shape} != expected {expected.shape}"
    assert np.all(np.isfinite(actual)) and np.all(np.isfinite(expected)), f"{label}non-finite values"
    if scale is None:
        scale = float(np.abs(expected).max()) if expected.size else 0.0
    bound = float32_bound(scale, terms=terms, depth=depth, safety=safety) + atol
    if not expected.size:
        return bound
    diff = np.abs(actual - expected)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    if os.environ.get("SOLO_TOLERANCE_REPORT"):
        used = diff[worst] / bound if bound else (0.0 if diff[worst] == 0 else math.inf)
        print(f"\n[tolerance] {what or 'comparison'}: max diff {diff[worst]:.3g}, bound {bound:.3g} "
              f"({used:.1%} used)")
    if diff[worst] > bound:
        raise AssertionError(
            f"{label}max |actual - expected| = {diff[worst]:.4g} > bound {bound:.4g} = {safety:g} (safety) x "
            f"eps32 {EPS32:.3g} x sqrt({terms} terms) x depth {depth} x scale {scale:.4g} + atol {atol:.3g}; "
            f"{int((diff > bound).sum())} of {diff.size} elements over it; worst at index {tuple(map(int, worst))}: "
            f"actual {actual[worst]:.8g}, expected {expected[worst]:.8g}")
    return bound
