"""The figures of notebook 07 draw what the loss formulas say."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from solo_lib import viz_losses  # noqa: E402


def test_focal_curves_one_line_per_gamma_and_gamma_0_is_cross_entropy():
    fig = viz_losses.focal_loss_curves(gammas=(0, 2, 5), num=50)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["gamma = 0 (cross-entropy)", "gamma = 2", "gamma = 5"]
    p_t, ce = lines[0].get_data()
    np.testing.assert_allclose(ce, -np.log(p_t))
    for line, gamma in zip(lines[1:], (2, 5)):
        x, y = line.get_data()
        np.testing.assert_allclose(y, -((1 - x) ** gamma) * np.log(x))  # RetinaNet Eq. 5, alpha_t = 1
        assert (y <= ce + 1e-12).all()  # focusing only ever lowers the loss
    _, y2 = lines[1].get_data()
    _, y5 = lines[2].get_data()
    assert y5[-10] < y2[-10] < ce[-10]  # at high p_t a larger gamma forgives more
    plt.close(fig)


def test_dice_examples_values_and_panels():
    target = np.zeros((16, 16))
    target[4:8, 4:8] = 1
    guesses = {"right": target, "nothing": np.zeros((16, 16)), "everything": np.ones((16, 16))}
    fig, table = viz_losses.dice_examples(target, guesses, inside=0.8, outside=0.2)
    assert list(table) == list(guesses)
    for name, guess in guesses.items():
        p = np.where(guess > 0, 0.8, 0.2)
        dice = 1 - 2 * (p * target).sum() / ((p ** 2).sum() + (target ** 2).sum() + 1e-3)  # SOLO's D, sums of squares
        bce = -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p))
        assert abs(table[name][0] - dice) < 1e-5 and abs(table[name][1] - bce) < 1e-9
    assert table["right"][0] < min(table["everything"][0], table["nothing"][0])
    axes = fig.axes
    assert len(axes) == 3
    assert [ax.get_title().split("\n")[0] for ax in axes] == ["right", "nothing", "everything"]
    assert f"dice {table['nothing'][0]:.2f}" in axes[1].get_title()
    np.testing.assert_allclose(axes[0].get_images()[0].get_array(), np.where(target > 0, 0.8, 0.2))
    fig.canvas.draw()  # layout happens at draw time: then no title may touch the suptitle or another title
    renderer = fig.canvas.get_renderer()
    boxes = [fig._suptitle.get_window_extent(renderer)] + [ax.title.get_window_extent(renderer) for ax in axes]
    assert not any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])
    plt.close(fig)
