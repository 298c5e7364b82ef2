"""The feature-map figures of notebooks 05 and 06 (solo_lib.viz_network): what each panel shows."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from solo_lib.viz_network import draw_channels, draw_feature_maps, draw_kernel_mask, kernel_mask_iou, mean_abs_maps  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _pyramid(rng, height=64, width=48):
    return [rng.normal(size=(1, height // s, width // s, 3)).astype("float32") for s in (4, 8, 16, 32)]


def _overlaps(fig):
    """Pairs of titles (axes titles and the suptitle) whose drawn boxes intersect."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [ax.title for ax in fig.axes if ax.get_title()] + ([fig._suptitle] if fig._suptitle else [])
    boxes = [t.get_window_extent(renderer) for t in texts]
    return [(texts[i].get_text(), texts[j].get_text()) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if boxes[i].overlaps(boxes[j])]


def test_feature_maps_show_each_maps_mean_abs_activation_over_the_canvas():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)
    features = _pyramid(rng)
    fig = draw_feature_maps(image, features, ["C2", "C3", "C4", "C5"])
    axes = fig.axes
    assert len(axes) == 5
    np.testing.assert_array_equal(axes[0].images[0].get_array(), image)
    assert axes[0].get_title() == "input\n64 x 48"
    for ax, name, feature, stride in zip(axes[1:], ("C2", "C3", "C4", "C5"), features, (4, 8, 16, 32)):
        shown = np.asarray(ax.images[0].get_array())
        np.testing.assert_allclose(shown, np.abs(feature[0]).mean(axis=-1), rtol=1e-6)
        h, w = feature.shape[1:3]
        assert ax.get_title() == f"{name}\n{h} x {w}, stride {stride}"
        assert ax.images[0].get_extent() == [0, 48, 64, 0]  # every map over the whole canvas
    assert not _overlaps(fig)


def test_feature_maps_of_an_inexact_stride_and_a_wrong_name_count():
    rng = np.random.default_rng(1)
    fig = draw_feature_maps(np.zeros((70, 45, 3), np.uint8), [rng.normal(size=(18, 12, 2))], ["C2"])
    assert fig.axes[1].get_title() == "C2\n18 x 12, stride 3.9"
    with pytest.raises(ValueError, match="2 maps but 1 names"):
        draw_feature_maps(np.zeros((8, 8, 3), np.uint8), [np.ones((2, 2, 1))] * 2, ["C2"])


def test_mean_abs_maps_accepts_batched_and_unbatched_maps():
    x = np.arange(24, dtype=float).reshape(2, 3, 4) - 10
    np.testing.assert_array_equal(mean_abs_maps([x, x[None]])[0], np.abs(x).mean(axis=-1))
    np.testing.assert_array_equal(mean_abs_maps([x[None]])[0], np.abs(x).mean(axis=-1))


def test_channels_are_drawn_on_a_scale_symmetric_about_zero():
    rng = np.random.default_rng(2)
    feature = rng.normal(size=(1, 16, 12, 5))
    feature[0, ..., 3] += 2.0  # one mostly positive channel: its scale must still be centred on 0
    image = np.zeros((64, 48, 3), np.uint8)
    fig = draw_channels(feature, [1, 3], ["channel 1", "channel 3"], image=image, title="F")
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3  # the input, two channels (the colour bars have no images)
    for ax, c in zip(image_axes[1:], (1, 3)):
        shown = ax.images[0]
        np.testing.assert_array_equal(shown.get_array(), feature[0, ..., c])
        low, high = shown.get_clim()
        assert low == -high == pytest.approx(-np.abs(feature[0, ..., c]).max())
        assert ax.get_title() == f"channel {c}\n16 x 12"
        assert shown.get_extent() == [0, 48, 64, 0]
    assert fig._suptitle.get_text() == "F"
    assert not _overlaps(fig)


def test_non_negative_channels_are_drawn_from_zero():
    feature = np.maximum(np.random.default_rng(3).normal(size=(8, 6, 2)), 0)  # after a ReLU
    fig = draw_channels(feature, [1], ["F channel 1"])
    shown = [ax for ax in fig.axes if ax.images][0].images[0]
    assert shown.get_clim() == (0.0, feature[..., 1].max())
    assert shown.get_cmap().name == "viridis"


def test_channels_without_an_image():
    coords = np.stack(np.meshgrid(np.linspace(-1, 1, 8), np.linspace(-1, 1, 6)), axis=-1)  # (6, 8, 2)
    fig = draw_channels(coords, [0, 1], ["x", "y"])
    image_axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in image_axes] == ["x\n6 x 8", "y\n6 x 8"]
    assert image_axes[0].images[0].get_clim() == (-1.0, 1.0)
    with pytest.raises(ValueError, match="2 channels but 1 names"):
        draw_channels(coords, [0, 1], ["x"])


def test_kernel_mask_panels_and_iou():
    target = np.zeros((6, 6), np.uint8)
    target[1:4, 1:4] = 1  # 9 pixels
    logits = -np.ones((6, 6))
    logits[1:4, 1:3] = 2.0  # 6 of them drawn
    logits[5, 5] = 0.5  # and one outside
    assert kernel_mask_iou(target, logits) == pytest.approx(6 / 10)
    fig = draw_kernel_mask(target, logits)
    image_axes = [ax for ax in fig.axes if ax.images]
    np.testing.assert_array_equal(image_axes[0].images[0].get_array(), target > 0)
    np.testing.assert_array_equal(image_axes[1].images[0].get_array(), logits)
    assert image_axes[1].images[0].get_clim() == (-2.0, 2.0)
    np.testing.assert_array_equal(image_axes[2].images[0].get_array(), logits > 0)
    assert image_axes[2].get_title() == "F x G > 0\nIoU with target 0.60"
    assert not _overlaps(fig)
    with pytest.raises(ValueError, match="differ in shape"):
        draw_kernel_mask(target, logits[:5])
