"""The figures of notebooks 00-02 draw the sizes, polygons and masks they are given."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from solo_lib import viz_data  # noqa: E402
from solo_lib.data.segmentation import decode_segmentation  # noqa: E402
from solo_lib.viz_style import class_color  # noqa: E402


def test_object_size_histogram_counts_box_sizes_per_bin():
    # Boxes [x0, y0, x1, y1] whose sqrt(w*h) is known: 2 x 8 -> 4, 6 x 6 -> 6, 10 x 40 -> 20, 100 x 100 -> 100.
    first = [SimpleNamespace(boxes=np.array([[0, 0, 2, 8], [5, 5, 11, 11]], np.float32)),
             SimpleNamespace(boxes=np.zeros((0, 4), np.float32))]  # an image without objects
    second = [SimpleNamespace(boxes=np.array([[10, 0, 20, 40], [0, 0, 100, 100]], np.float32))]
    bins = [3, 5, 10, 50, 200]
    fig, sizes = viz_data.object_size_histogram([first, second], bins=bins, title="toy sizes")
    np.testing.assert_allclose(sizes, [4, 6, 20, 100])
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == [1, 1, 1, 1]  # one object in each of 3-5, 5-10, 10-50, 50-200
    np.testing.assert_allclose([patch.get_x() for patch in ax.patches], bins[:-1])
    assert ax.get_xscale() == "log" and ax.get_title() == "toy sizes" and ax.get_ylabel() == "objects"
    assert all(tick == int(tick) for tick in ax.get_yticks())  # whole objects only
    plt.close(fig)
    fig, sizes = viz_data.object_size_histogram([first])  # default bins: 18, log-spaced from 4 to 256 px
    ax = fig.axes[0]
    assert len(ax.patches) == 18 and sum(p.get_height() for p in ax.patches) == 2
    np.testing.assert_allclose(ax.patches[0].get_x(), 4)
    plt.close(fig)


def test_polygons_over_mask_draws_closed_polygons_over_the_mask_zoomed_on_the_box():
    segmentation = [[10, 10, 30, 10, 30, 20, 10, 20], [40, 30, 50, 30, 45, 40]]  # a rectangle and a triangle
    mask = decode_segmentation(segmentation, 64, 64)
    bbox = [10, 10, 40, 30]  # x, y, width, height around both
    fig = viz_data.polygons_over_mask(mask, segmentation, bbox, margin=3, label=2)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), mask)
    lines = ax.get_lines()
    assert len(lines) == 2
    for line, poly in zip(lines, segmentation):
        xy = np.column_stack(line.get_data())
        np.testing.assert_array_equal(xy[:-1], np.reshape(poly, (-1, 2)))
        np.testing.assert_array_equal(xy[-1], xy[0])  # closed
        assert line.get_color() == class_color(2)
    assert ax.get_xlim() == (7, 53)
    assert ax.get_ylim() == (43, 7)  # y grows downwards, as in the image
    assert ax.get_title() == "polygon vertices over the rasterised mask"
    plt.close(fig)


def test_circle_as_polygon_follows_labelmes_vertex_rule():
    for r, n in ((20.0, 12), (150.0, 27)):
        fig, poly = viz_data.circle_as_polygon(30.0, 40.0, r)
        assert len(poly) == max(int(np.pi / np.arccos(1 - 1 / r)), 12) == n  # LabelMe's rule
        # vertices on the circle, rounded to 1/100 px as shape_to_polygon stores them
        np.testing.assert_allclose(np.hypot(poly[:, 0] - 30, poly[:, 1] - 40), r, atol=0.01)
        ax = fig.axes[0]
        circle, polygon = ax.get_lines()
        cx, cy = circle.get_data()
        np.testing.assert_allclose(np.hypot(cx - 30, cy - 40), r)
        xy = np.column_stack(polygon.get_data())
        np.testing.assert_array_equal(xy[:-1], poly)
        np.testing.assert_array_equal(xy[-1], xy[0])
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"true circle, r = {r:g} px", f"{n}-gon"]
        assert ax.yaxis_inverted() and ax.get_aspect() == 1.0
        assert ax.get_title() == "A LabelMe circle as a COCO polygon"
        plt.close(fig)


def _labelme_file(tmp_path, shapes, size=(40, 60), name="photo"):
    """A LabelMe file with a plain grey photo beside it."""
    import json

    from PIL import Image

    Image.fromarray(np.full((*size, 3), 128, np.uint8)).save(tmp_path / f"{name}.png")
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": f"{name}.png",
                                "imageData": None, "imageHeight": size[0], "imageWidth": size[1]}))
    return path


def _shape(label, points, group_id=None, shape_type="polygon"):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": shape_type, "flags": {}}


def test_draw_labelme_file_draws_each_shape_where_labelme_puts_it(tmp_path):
    names = ["coin", "spoon"]
    path = _labelme_file(tmp_path, [
        _shape("coin", [[10, 10], [20, 10], [20, 20]]),
        _shape("spoon", [[30, 5], [40, 5], [40, 9]], group_id=3),
        _shape("spoon", [[30, 25], [40, 25], [40, 30]], group_id=3),
        _shape("coin", [[2, 30], [8, 36]], shape_type="rectangle"),
        _shape("__ignore__", [[45, 30], [55, 30], [55, 38]])])
    fig, ax = plt.subplots()
    drawn = viz_data.draw_labelme_file(ax, path, names)
    assert [d["label"] for d in drawn] == ["coin", "spoon", "spoon", "coin", "__ignore__"]
    assert [d["tag"] for d in drawn] == ["coin", "spoon, group_id 3", "spoon, group_id 3", "coin", "__ignore__"]
    # LabelMe's pixel-edge coordinates drawn over imshow's pixel centres: shifted by half a pixel
    np.testing.assert_allclose(drawn[0]["patch"].get_xy()[:3], np.array([[10, 10], [20, 10], [20, 20]]) - 0.5)
    np.testing.assert_allclose(drawn[3]["points"], [[2, 30], [8, 30], [8, 36], [2, 36]])  # the rectangle's corners
    assert drawn[0]["patch"].get_edgecolor()[:3] == class_color(0)
    assert drawn[1]["patch"].get_edgecolor()[:3] == class_color(1)
    assert drawn[4]["patch"].get_hatch() == "////" and drawn[0]["patch"].get_hatch() is None
    # the pieces of one object and the ignored region are named on the picture; a plain shape is not
    assert sorted(t.get_text() for t in ax.texts) == ["__ignore__", "spoon, group_id 3", "spoon, group_id 3"]
    assert ax.get_xlim() == (-0.5, 59.5) and ax.get_ylim() == (39.5, -0.5)
    plt.close(fig)
    fig, ax = plt.subplots()
    viz_data.draw_labelme_file(ax, path, names, region=(25, 0, 60, 20))  # zoomed on the spoon's top piece
    assert ax.get_xlim() == (24.5, 59.5) and ax.get_ylim() == (19.5, -0.5)
    # each tag just above its shape, from the shape's left edge
    positions = sorted(t.get_position() for t in ax.texts)
    assert positions == [(30, 3), (30, 23), (45, 28)]  # spoon pieces at y 5 and 25, the ignored region at y 30
    plt.close(fig)


def test_labelme_gallery_counts_objects_not_shapes(tmp_path):
    first = _labelme_file(tmp_path, name="first", shapes=[_shape("coin", [[1, 1], [9, 1], [9, 9]]),
                                           _shape("coin", [[20, 1], [29, 1], [29, 9]])])
    second = _labelme_file(tmp_path, name="second", shapes=[_shape("spoon", [[1, 1], [9, 1], [9, 9]], group_id=1),
                                            _shape("spoon", [[20, 1], [29, 1], [29, 9]], group_id=1),
                                            _shape("__ignore__", [[30, 20], [39, 20], [39, 29]])])
    fig, shapes = viz_data.labelme_gallery([first, second], ["coin", "spoon"])
    assert [ax.get_title() for ax in fig.axes] == ["first.json: 2 coin", "second.json: 1 spoon, 1 ignored region"]
    assert {name: len(v) for name, v in shapes.items()} == {"first.json": 2, "second.json": 3}
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["coin", "spoon", "__ignore__"]
    plt.close(fig)
