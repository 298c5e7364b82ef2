"""The figures of notebooks 08 and 09 draw the numbers they are given, and object_ious measures
what it says on hand-made masks."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from solo_lib import viz_training  # noqa: E402
from solo_lib.train_config import TrainConfig  # noqa: E402


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_loss_curves_plot_draws_each_component_per_epoch():
    curves = {"loss": np.array([3.0, 2.0, 1.5, 1.2]), "category_loss": np.array([1.2, 0.6, 0.3, 0.2]),
              "mask_loss": np.array([0.6, 0.45, 0.4, 0.33])}
    fig = viz_training.loss_curves_plot(curves, mask_loss_weight=3.0, steps_per_epoch=3, batch_size=4,
                                        title="Overfitting the 12 training images")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["total = category + 3 x mask", "category (focal)", "mask (dice)"]
    for line, key in zip(lines, ("loss", "category_loss", "mask_loss")):
        x, y = line.get_data()
        np.testing.assert_array_equal(x, [1, 2, 3, 4])  # epochs count from 1
        np.testing.assert_array_equal(y, curves[key])
    assert ax.get_xlabel() == "epoch (3 steps of 4 images)" and ax.get_ylabel() == "loss"
    assert ax.get_title() == "Overfitting the 12 training images"
    assert legend_texts(ax) == [line.get_label() for line in lines]
    plt.close(fig)
    fig = viz_training.loss_curves_plot(curves, mask_loss_weight=1.5)
    assert fig.axes[0].get_xlabel() == "epoch"
    assert fig.axes[0].get_lines()[0].get_label() == "total = category + 1.5 x mask"
    plt.close(fig)


def test_ap50_curves_start_at_zero_and_draw_the_bar():
    scratch = [{"steps": 90, "mask_ap50": 0.1}, {"steps": 180, "mask_ap50": 0.5}, {"steps": 270, "mask_ap50": 0.93}]
    mine = [{"steps": 15, "mask_ap50": 0.78}, {"steps": 30, "mask_ap50": 0.91}]
    fig = viz_training.ap50_curves({"random weights": scratch, "your run": mine}, bar=0.9, batch_size=4,
                                   ylabel="mask AP50, 12 training images")
    ax = fig.axes[0]
    first, second, bar = ax.get_lines()
    np.testing.assert_array_equal(first.get_xdata(), [0, 90, 180, 270])
    np.testing.assert_array_equal(first.get_ydata(), [0, 0.1, 0.5, 0.93])
    np.testing.assert_array_equal(second.get_xdata(), [0, 15, 30])
    np.testing.assert_array_equal(second.get_ydata(), [0, 0.78, 0.91])
    assert first.get_marker() != second.get_marker()  # told apart without colour too
    np.testing.assert_array_equal(bar.get_ydata(), [0.9, 0.9])  # axhline: constant y across the axes
    assert bar.get_linestyle() == ":"
    assert legend_texts(ax) == ["random weights", "your run", "the bar: AP50 0.9"]
    assert ax.get_xlabel() == "training step (4 images)" and ax.get_ylabel() == "mask AP50, 12 training images"
    assert ax.get_title() == "Memorising the training images"
    plt.close(fig)


def square(size, top, left, height, width):
    mask = np.zeros((size, size), np.uint8)
    mask[top:top + height, left:left + width] = 1
    return mask


def test_object_ious_on_hand_made_masks():
    # Image 1: an 8 x 8 square on the stride-4 grid (class 0) and a single pixel (class 1).
    big, dot = square(32, 8, 8, 8, 8), square(32, 28, 28, 1, 1)
    first = SimpleNamespace(masks=np.stack([big, dot]), labels=np.array([0, 1]))
    # Image 2: a 12 x 12 square on the grid (class 2), and no predictions at all.
    second = SimpleNamespace(masks=square(32, 4, 4, 12, 12)[None], labels=np.array([2]))
    predictions = [
        {"masks": np.stack([square(32, 8, 10, 8, 8),  # class 0, shifted 2 px: 48 shared of 80 -> IoU 0.6
                            square(32, 0, 0, 4, 4),   # class 0, elsewhere: IoU 0
                            big,                      # the big square exactly, but labelled 1: must not count for it
                            dot]),                    # class 1, exactly the dot: IoU 1
         "labels": np.array([0, 0, 1, 1])},
        {"masks": np.zeros((0, 32, 32), np.uint8), "labels": np.zeros((0,), np.int32)},
    ]
    sizes, best_possible, own_iou = viz_training.object_ious([first, second], predictions, mask_stride=4)
    np.testing.assert_allclose(sizes, [8, 1, 12])
    np.testing.assert_allclose(own_iou, [48 / 80, 1.0, 0.0])
    # Squares on the stride-4 grid come back whole but for their four corner pixels (the bilinear
    # tent gives them 0.625^2 < 0.5, as in tests/test_targets.py); one pixel has no target pixel.
    np.testing.assert_allclose(best_possible, [60 / 64, 0.0, 140 / 144])


def test_small_objects_plot_draws_the_given_points():
    sizes = np.array([3.0, 8.0, 40.0])
    best_possible = np.array([0.4, 0.8, 0.97])
    own_iou = np.array([0.0, 0.6, 0.9])
    fig = viz_training.small_objects_plot(sizes, best_possible, own_iou)
    ax = fig.axes[0]
    perfect, model = ax.collections
    np.testing.assert_array_equal(perfect.get_offsets(), np.column_stack([sizes, best_possible]))
    np.testing.assert_array_equal(model.get_offsets(), np.column_stack([sizes, own_iou]))
    (threshold,) = ax.get_lines()
    np.testing.assert_array_equal(threshold.get_ydata(), [0.5, 0.5])
    assert ax.get_xscale() == "log"
    assert legend_texts(ax) == ["perfect stride-4 mask", "your model's best mask", "IoU 0.5 (AP50)"]
    assert ax.get_title() == "Small objects: little room above IoU 0.5"
    assert ax.get_xlabel() == "object size: square root of its area (px)"
    plt.close(fig)


def test_lr_schedule_plot_warm_up_then_step_decay():
    paper = TrainConfig()  # 0.01, 500 warm-up steps from 1 %, x0.1 after epochs 9 and 11 of 12
    fig, steps, rate = viz_training.lr_schedule_plot(paper, steps_per_epoch=100, every=10, name="1x schedule")
    ax = fig.axes[0]
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(steps, np.arange(0, 1200, 10))
    np.testing.assert_allclose(line.get_xdata(), steps / 100)  # epochs
    np.testing.assert_array_equal(line.get_ydata(), rate)
    at = dict(zip(steps.tolist(), rate.tolist()))
    np.testing.assert_allclose(at[0], 0.01 * 0.01, rtol=1e-6)  # warm-up starts at 1 %
    np.testing.assert_allclose(at[250], 0.01 * (0.01 + 0.99 * 0.5), rtol=1e-6)  # half-way: linear
    np.testing.assert_allclose([at[500], at[890]], 0.01, rtol=1e-6)  # the full rate after warm-up
    np.testing.assert_allclose([at[900], at[1090]], 0.001, rtol=1e-6)  # x0.1 from epoch 9
    np.testing.assert_allclose([at[1100], at[1190]], 0.0001, rtol=1e-6)  # x0.1 again from epoch 11
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "1x schedule: warm-up, then x0.1 at epochs 9 and 11"
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "learning rate"
    plt.close(fig)


def test_lr_schedule_plot_without_warm_up():
    recipe = TrainConfig(epochs=4, warmup_steps=0, decay_epochs=(3,))
    fig, steps, rate = viz_training.lr_schedule_plot(recipe, steps_per_epoch=5, every=1, name="short")
    np.testing.assert_allclose(rate, np.where(steps >= 15, 0.001, 0.01), rtol=1e-6)
    assert fig.axes[0].get_title() == "short: no warm-up, then x0.1 at epoch 3"
    plt.close(fig)
