"""The canvas figure of notebook 04 (solo_lib.viz_canvas): it shows what the pipeline and predict do."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from solo_lib.config import SOLOConfig  # noqa: E402
from solo_lib.data import augment as aug  # noqa: E402
from solo_lib.data import pipeline  # noqa: E402
from solo_lib.data.coco import CocoDataset, sample_dataset_paths  # noqa: E402
from solo_lib.viz_canvas import canvas_views, draw_canvas_views  # noqa: E402


@pytest.fixture(scope="module")
def sample():
    dataset = CocoDataset(*sample_dataset_paths("train"))
    # The 176 x 240 image: resized to 188 x 256 on the tiny preset's 256 x 256 canvas.
    return next(s for s in dataset if s.image.shape[:2] == (176, 240))


@pytest.fixture(scope="module")
def config(sample):
    return SOLOConfig.tiny(4)


def test_training_view_is_the_pipelines_canvas_and_targets(sample, config):
    views = canvas_views(sample, config, instance=2)
    sample_dict = {k: v for k, v in sample.to_dict().items()}
    batches = pipeline.training_dataset(tf.data.Dataset.from_tensors(sample_dict), config, batch_size=1,
                                        augment=aug.AugmentConfig.none())
    images, targets = pipeline.first_batch(batches)
    np.testing.assert_array_equal(views["training"]["image"], images[0])
    valid = targets["pos_valid"][0] == 1
    cells, instances = targets["pos_cells"][0][valid], targets["pos_instances"][0][valid]
    start = 0
    for level, s in enumerate(config.grid_sizes):
        mine = sorted(divmod(int(c) - start, s) for c, i in zip(cells, instances)
                      if i == 2 and start <= c < start + s * s)
        assert sorted(views["training"]["positive_cells"][level]) == mine
        start += s * s
    # The centre cell is always one of the positives (the centre region contains it).
    for level, centre in enumerate(views["training"]["centre_cells"]):
        if views["training"]["positive_cells"][level]:
            assert centre in views["training"]["positive_cells"][level]


def test_inference_view_has_the_same_canvas_and_cells_and_another_canvas_does_not(sample, config):
    moved = 0
    for instance in range(len(sample.labels)):
        views = canvas_views(sample, config, instance)
        assert views["inference"]["canvas"] == views["training"]["canvas"] == (256, 256)
        np.testing.assert_array_equal(views["inference"]["image"], views["training"]["image"])
        assert views["inference"]["centre_cells"] == views["training"]["centre_cells"]
        assert views["unresized"]["canvas"] == (192, 256)
        moved += views["unresized"]["centre_cells"] != views["training"]["centre_cells"]
    assert moved == len(sample.labels)  # on a 192-row canvas every centre lands in another row


def test_figure_draws_the_cells_it_computed(sample, config):
    views = canvas_views(sample, config, instance=2)
    for level in range(config.num_levels):
        fig = draw_canvas_views(views, config, level, label=int(sample.labels[2]))
        axes = fig.axes
        assert len(axes) == 3
        for ax, view in zip(axes, views.values()):
            row, col = view["centre_cells"][level]
            assert f"centre in cell ({row}, {col})" in ax.get_title()
            assert f"canvas {view['canvas'][0]}x{view['canvas'][1]}" in ax.get_title()
            # Titles are wrapped so neighbouring panels' titles never overlap.
            assert max(len(line) for line in ax.get_title().splitlines()) <= 40
            filled = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_fill()]
            assert len(filled) == len(view.get("positive_cells", [[]] * 3)[level])
            outlined = [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]
            cell_h, cell_w = view["canvas"][0] / config.grid_sizes[level], view["canvas"][1] / config.grid_sizes[level]
            assert len(outlined) == 1 and outlined[0].get_xy() == (col * cell_w, row * cell_h)
        matplotlib.pyplot.close(fig)


def test_instance_out_of_range(sample, config):
    with pytest.raises(ValueError, match="instance must be in"):
        canvas_views(sample, config, instance=99)
