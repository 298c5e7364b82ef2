"""Widget callbacks and drawing helpers: pure functions, checked on known inputs."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from solo_lib import viz, viz_style  # noqa: E402
from solo_lib.data.coco import boxes_from_masks, load_sample_dataset  # noqa: E402

NAMES = ("a", "b", "c")
# The explorer's choices with only the built-in augmentations registered, in their order.
CHOICES = ("none", "flip", "brightness", "scale", "crop", "random")


def toy_sample():
    image = np.full((40, 60, 3), 100, np.uint8)
    masks = np.zeros((3, 40, 60), np.uint8)
    masks[0, 2:10, 3:20] = 1  # top-left: a crop of the bottom-right quarter removes it
    masks[1, 25:38, 35:58] = 1
    masks[2, 15:30, 20:40] = 1
    return {"image": image, "masks": masks, "labels": np.array([0, 1, 2], np.int32),
            "iscrowd": np.array([False, False, True]), "boxes": boxes_from_masks(masks)}


def test_overlay_colours_only_masked_pixels_in_class_colour():
    s = toy_sample()
    out = viz_style.overlay_masks(s["image"], s["masks"][:1], s["labels"][:1], alpha=1.0)
    expected = np.round(np.array(viz_style.class_color(0)) * 255)
    assert np.allclose(out[5, 5], expected, atol=1)  # uint8: one level for rounding the blend to an integer
    assert (out[30, 5] == 100).all()  # outside every mask: unchanged


@pytest.mark.parametrize("transform", CHOICES)
def test_augmentation_view_keeps_instances_aligned(transform):
    fig, out = viz.augmentation_view(toy_sample(), NAMES, transform, amount=0.7, seed=3)
    n = len(out["labels"])
    assert out["masks"].shape == (n, *out["image"].shape[:2])
    assert out["boxes"].shape == (n, 4) and out["iscrowd"].shape == (n,)
    np.testing.assert_array_equal(out["boxes"], boxes_from_masks(out["masks"]))
    assert len(fig.axes) == 2 and fig.axes[1].get_title().startswith(f"after {transform}: {n} instances")
    plt.close(fig)


def test_explorer_choices_are_the_registered_augmentations_in_order():
    assert viz.augmentation_choices() == CHOICES


def test_augmentation_view_transform_effects():
    s = toy_sample()
    _, flipped = viz.augmentation_view(s, NAMES, "flip")
    np.testing.assert_array_equal(flipped["masks"], s["masks"][:, :, ::-1])
    _, scaled = viz.augmentation_view(s, NAMES, "scale", amount=0.5)  # factor 1.0
    np.testing.assert_array_equal(scaled["masks"], s["masks"])
    _, darker = viz.augmentation_view(s, NAMES, "brightness", amount=0.25)  # delta -0.5
    assert int(darker["image"][0, 0, 0]) == 0
    with pytest.raises(ValueError, match="transform must be one of"):
        viz.augmentation_view(s, NAMES, "rotate")
    plt.close("all")


def test_explorer_reruns_when_a_control_changes():
    ds = load_sample_dataset("train")
    w = viz.augmentation_explorer(ds)
    index, transform, amount, seed = w.children[:4]
    assert (index.max, transform.options) == (len(ds) - 1, CHOICES)
    first = w.result
    np.testing.assert_array_equal(first["masks"], ds[0].masks[:, :, ::-1])  # default: flip of image 0
    transform.value = "none"
    index.value = 3
    np.testing.assert_array_equal(w.result["masks"], ds[3].masks)
    np.testing.assert_array_equal(w.result["labels"], ds[3].labels)
    plt.close("all")


def test_show_samples_accepts_samples_and_dicts():
    ds = load_sample_dataset("val")
    fig = viz.show_samples([ds[0], ds[1].to_dict()], class_names=ds.class_names, ncols=3)
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert titles == [f"image {ds[0].image_id}: {len(ds[0].labels)} instances",
                      f"image {ds[1].image_id}: {len(ds[1].labels)} instances"]
    plt.close(fig)


def _label_boxes(fig):
    """Display extents of every class-name label, per axes, after drawing."""
    renderer = fig.canvas.get_renderer()
    return {ax: [viz_style._label_extent(t, renderer) for t in ax.texts if t.get_gid() == viz_style.LABEL_GID]
            for ax in fig.axes}


@pytest.mark.parametrize("draw", ["augmentation_view", "show_samples"])
def test_labels_stay_inside_their_axes_and_apart(draw):
    # Two boxes with the same top-left corner on the image's top edge: unmoved, both labels would
    # sit on one spot above the image, over the title.
    s = toy_sample()
    s["masks"][:] = 0
    s["masks"][0, 0:12, 5:25] = 1
    s["masks"][1, 0:20, 5:30] = 1
    s["masks"][2, 1:8, 6:12] = 1
    s["boxes"] = boxes_from_masks(s["masks"])
    if draw == "augmentation_view":
        fig, _ = viz.augmentation_view(s, NAMES, "none")
    else:
        fig = viz.show_samples([s, s], class_names=NAMES, ncols=2)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax, boxes in _label_boxes(fig).items():
        if not ax.get_visible() or not ax.axison:
            continue
        assert len(boxes) == 3
        frame = ax.get_window_extent(renderer)
        title = ax.title.get_window_extent(renderer)
        for k, box in enumerate(boxes):
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            assert not box.overlaps(title)
            assert not any(box.overlaps(other) for other in boxes[:k])
    plt.close(fig)
