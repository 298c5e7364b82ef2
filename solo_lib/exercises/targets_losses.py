"""Checkers of the build-a-piece exercises of notebooks 04 (targets) and 07 (losses).

``04c`` asks for the centre-region assignment of one instance (SOLO §3.3.1, "Label Assignment")
and compares it with :func:`solo_lib.targets.assign_grid_cells`; ``07c`` asks for the whole mask
loss ``L_mask`` of a batch (SOLO §3.3.2, "Loss Function") and compares it with
:func:`solo_lib.losses.dice_loss` and the normalisation of :func:`solo_lib.losses.solo_losses`.
Each checker raises :class:`~solo_lib.exercises.common.Wrong` naming the first failing case.
"""

from __future__ import annotations

import numpy as np

from solo_lib.exercises.common import Wrong
from solo_lib.exercises.common import expect as _expect

# -- 04: centre-region assignment ------------------------------------------------------------

def _centre_region_cases():
    """(name, mask (H, W) bool, S, eps): small, large, border, non-convex, several S and eps."""
    def canvas(h=96, w=128):
        return np.zeros((h, w), bool)

    small = canvas()
    small[40:46, 60:67] = True  # 7 x 6 px: one cell
    large = canvas()
    large[8:90, 10:120] = True  # almost the whole canvas: the clamp to 3 x 3 matters
    border = canvas()
    border[70:96, 100:128] = True  # touches the bottom-right corner: cells clipped to the grid
    corner = canvas()
    corner[0:5, 0:9] = True  # top-left corner, tiny
    ell = canvas()
    ell[10:80, 10:25] = True  # an L: its centre of mass is off the box centre
    ell[65:80, 10:110] = True
    ring = canvas(128, 128)
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - 60.3, xx - 70.1)
    ring[(r > 25) & (r < 40)] = True  # a ring: its centre of mass is not on the object
    wide = canvas(64, 256)
    wide[20:44, 30:230] = True  # a non-square canvas, wide object
    rng = np.random.default_rng(16)
    blob = canvas(80, 80)
    blob[rng.random((80, 80)) < 0.02] = True  # scattered pixels
    blob[30:50, 20:35] = True
    return [
        ("small square", small, 12, 0.2), ("small square", small, 40, 0.2),
        ("large rectangle", large, 12, 0.2), ("large rectangle", large, 40, 0.2),
        ("large rectangle", large, 24, 1.0), ("bottom-right border", border, 16, 0.2),
        ("bottom-right border", border, 36, 0.5), ("top-left corner", corner, 24, 0.2),
        ("L shape", ell, 16, 0.2), ("L shape", ell, 36, 0.2), ("ring", ring, 12, 0.2), ("ring", ring, 40, 0.3),
        ("wide canvas", wide, 24, 0.2), ("wide canvas", wide, 16, 1.0), ("scattered blob", blob, 24, 0.2),
    ]


def _library_cells(mask, grid, eps):
    """The (row, col) cells :func:`assign_grid_cells` makes positive for one mask on one level."""
    from solo_lib.config import SOLOConfig
    from solo_lib.targets import assign_grid_cells

    config = SOLOConfig.tiny(1, grid_sizes=(grid,), scale_ranges=((0, 1e9),), pos_scale=eps)
    (level,) = assign_grid_cells(mask[None], np.array([0]), config)
    return sorted((int(c) // grid, int(c) % grid) for c in level.cells)


def check_04c_centre_cells(centre_cells) -> str:
    """``centre_cells(mask, S, eps) -> [(row, col), ...]``: the positive cells of one instance."""
    cases = _centre_region_cases()
    for name, mask, grid, eps in cases:
        expected = _library_cells(mask, grid, eps)
        got = centre_cells(mask.copy(), grid, eps)
        try:
            got = sorted((int(i), int(j)) for i, j in got)
        except (TypeError, ValueError):
            raise Wrong(f"{name}, S={grid}: return a list of (row, col) pairs, got {got!r}") from None
        _expect(got == expected,
                f"{name} on a {mask.shape[1]}x{mask.shape[0]} canvas (W x H), S={grid}, eps={eps}: expected "
                f"cells {expected}, got {got} (hints: the centre is the centre of mass; the region is "
                "centre +/- eps * (w, h) / 2 with w, h the tight box's size; keep within one cell of the "
                "centre cell and inside the grid)")
    return f"{len(cases)} masks and grids: small, large, border, non-convex, non-square"


# -- 07: the mask loss of a batch ------------------------------------------------------------

def _mask_loss_cases():
    """(name, mask logits (B, K, H, W), targets (B, K, H, W), valid (B, K) bool)."""
    rng = np.random.default_rng(7)

    def targets(b, k, h=12, w=12):
        t = np.zeros((b, k, h, w), np.float32)
        for index in np.ndindex(b, k):
            y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
            t[index][y:y + rng.integers(2, 6), x:x + rng.integers(2, 6)] = 1
        return t

    cases = []
    t = targets(1, 3)
    cases.append(("one image, 3 pairs, all valid", rng.normal(0, 2, t.shape).astype(np.float32), t,
                  np.ones((1, 3), bool)))
    t = targets(2, 4)
    valid = np.array([[True, True, True, False], [True, False, False, False]])
    cases.append(("2 images, 4 and 1 pairs, padding with garbage logits", rng.normal(0, 3, t.shape).astype(np.float32),
                  t, valid))
    t = targets(2, 2)
    cases.append(("no valid pair at all", rng.normal(0, 1, t.shape).astype(np.float32), t, np.zeros((2, 2), bool)))
    t = targets(1, 2)
    perfect = np.where(t > 0, 12.0, -12.0).astype(np.float32)
    cases.append(("confident and right", perfect, t, np.ones((1, 2), bool)))
    t = targets(3, 5, 16, 20)
    valid = rng.random((3, 5)) < 0.6
    valid[0, 0] = True
    cases.append(("3 images, random padding, 16x20 masks", rng.normal(0, 1.5, t.shape).astype(np.float32), t, valid))
    return cases


def _library_mask_loss(logits, targets, valid, eps):
    """L_mask as :func:`solo_lib.losses.solo_losses` computes it from the per-pair dice."""
    from solo_lib.losses import dice_loss

    dice = dice_loss(logits, targets, eps=eps).numpy()  # (B, K)
    dice = np.where(valid, dice, 0.0)
    return float(dice.sum() / max(float(valid.sum()), 1.0))


def check_07c_mask_loss(mask_loss) -> str:
    """``mask_loss(logits, targets, valid, eps) -> float``: SOLO's L_mask of a batch."""
    eps = 1e-3
    cases = _mask_loss_cases()
    for name, logits, targets, valid in cases:
        expected = _library_mask_loss(logits, targets, valid, eps)
        got = float(mask_loss(logits.copy(), targets.copy(), valid.copy(), eps))
        _expect(np.isfinite(got) and abs(got - expected) < 1e-5,
                f"{name} (logits {logits.shape}, {int(valid.sum())} valid pairs): expected L_mask = "
                f"{expected:.5f}, got {got:.5f} (hints: sigmoid the logits; dice per pair with sums of "
                "squares; drop the padding; divide by the number of valid pairs, and give 0 when there are none)")
    return f"{len(cases)} batches, with padding and without positives"
