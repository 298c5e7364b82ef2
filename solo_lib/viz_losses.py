"""Pictures of notebook 07: the focal loss curves and the dice loss of example masks.

SOLO's loss (arXiv 1912.04488, §3.3.2) is a focal loss on the category grid plus a dice loss on
the masks. These figures show why each was chosen; the numbers they draw come from
:mod:`solo_lib.losses` or from the paper's formula, and ``tests/test_viz_losses.py`` checks them.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def focal_curve(p_t: np.ndarray, gamma: float) -> np.ndarray:
    """The focal loss ``-(1 - p_t)^gamma * log(p_t)`` with ``alpha_t = 1`` (RetinaNet Eq. 5).

    Args:
        p_t: probabilities of the true label, in (0, 1].
        gamma: the focusing exponent; 0 gives the cross-entropy ``-log(p_t)``.

    Returns:
        An array of the shape of ``p_t``.
    """
    p_t = np.asarray(p_t, float)
    return -((1 - p_t) ** gamma) * np.log(p_t)


def focal_loss_curves(gammas=(0, 0.5, 1, 2, 5), num: int = 200):
    """One focal loss curve per ``gamma`` over ``p_t`` in [0.01, 1]: how much an example of a
    given confidence still costs. ``gamma = 0`` is the cross-entropy.

    Args:
        gammas: focusing exponents, one curve each.
        num: points per curve.

    Returns:
        The matplotlib figure; its line labels start with ``gamma = ...``.
    """
    p_t = np.linspace(0.01, 1.0, num)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for gamma in gammas:
        label = f"gamma = {gamma:g}" + (" (cross-entropy)" if gamma == 0 else "")
        ax.plot(p_t, focal_curve(p_t, gamma), label=label)
    ax.set_xlabel("p_t, probability of the true label")
    ax.set_ylabel("loss (alpha_t = 1)")
    ax.set_title("Focal loss down-weights well-classified examples", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def dice_examples(target: np.ndarray, guesses: dict, inside: float = 0.9, outside: float = 0.1):
    """Each guessed mask as a probability map next to the target, with its dice and per-pixel
    cross-entropy: dice judges the object, cross-entropy mostly the background.

    A guess is a binary ``(H, W)`` mask; the prediction is ``inside`` on it and ``outside``
    elsewhere. Dice comes from :func:`solo_lib.losses.dice_loss` (sums of squares, SOLO §3.3.2).

    Args:
        target: ``(H, W)`` binary target mask.
        guesses: ``{name: (H, W) binary mask}``, one panel each, in order.
        inside: predicted probability on the guessed mask.
        outside: predicted probability elsewhere.

    Returns:
        ``(figure, table)``: ``table[name] = (dice_loss, cross_entropy)`` as floats. Panel
        titles hold the name and both values; the target is drawn as a white outline.
    """
    from solo_lib.losses import dice_loss

    target = np.asarray(target, float)
    # Constrained layout makes room for the suptitle above the panel titles (tight_layout does not).
    fig, axes = plt.subplots(1, len(guesses), figsize=(2.2 * len(guesses), 2.8), squeeze=False, layout="constrained")
    table = {}
    for ax, (name, guess) in zip(axes[0], guesses.items()):
        p = np.where(np.asarray(guess) > 0, inside, outside)
        logits = np.log(p / (1 - p))[None, None].astype(np.float32)  # (1, 1, H, W)
        dice = float(dice_loss(logits, target[None, None].astype(np.float32))[0, 0])
        bce = float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))
        table[name] = (dice, bce)
        ax.imshow(p, cmap="viridis", vmin=0, vmax=1)
        ax.contour(target, levels=[0.5], colors="white", linewidths=1.0)
        ax.set_title(f"{name}\ndice {dice:.2f}, CE {bce:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"prediction {inside:g} on the guess, {outside:g} elsewhere; white: the target", fontsize=9)
    return fig, table
