"""What every exercise checker shares: the verdict for a wrong answer, and random test masks."""

import numpy as np


class Wrong(AssertionError):
    """An answer that fails a case; the message says which and why."""


def expect(condition: bool, message: str) -> None:
    """Raises :class:`Wrong` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Wrong(message)


def blobs(count: int, height: int, width: int, rng, *, centre=(0.3, 0.7), radius=(0.15, 0.4)) -> np.ndarray:
    """``(count, H, W)`` uint8 random ellipses (never empty), to test mask code on.

    Each ellipse's centre is drawn uniformly in ``centre`` x the image size and its radii in
    ``radius`` x the image size; the centre pixel is always set. Wider ``centre`` and larger
    ``radius`` ranges make overlaps more or less frequent.
    """
    ys, xs = np.mgrid[0:height, 0:width]
    masks = np.zeros((count, height, width), np.uint8)
    for k in range(count):
        cy, cx = rng.uniform(*centre) * height, rng.uniform(*centre) * width
        ry, rx = rng.uniform(*radius) * height, rng.uniform(*radius) * width
        masks[k] = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1.0
        masks[k, int(cy), int(cx)] = 1
    return masks
