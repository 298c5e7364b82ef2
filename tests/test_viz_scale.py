"""The figures of notebook 09's "Beyond one laptop" (solo_lib.viz_scale): what they draw equals the
numbers they are given, and the helpers that compute those numbers agree with independent
formulations (a pixel-by-pixel run count, the shard files themselves, tf.distribute's own rewrite
of a dataset for one worker)."""

import matplotlib

matplotlib.use("Agg")

import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from matplotlib.colors import to_rgb, to_rgba  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

from solo_lib import distributed, viz_scale  # noqa: E402
from solo_lib.config import SOLOConfig  # noqa: E402
from solo_lib.data import pipeline  # noqa: E402
from solo_lib.data.coco import load_sample_dataset  # noqa: E402
from solo_lib.data.tfrecord import mask_runs, write_tfrecords  # noqa: E402

TINY = SOLOConfig.tiny(4, image_scale=(128, 128))


def runs_by_hand(mask):
    """COCO's uncompressed RLE, one pixel at a time: down each column, then the next; from a run of 0s."""
    runs, value, length = [], 0, 0
    for x in range(mask.shape[1]):
        for y in range(mask.shape[0]):
            if mask[y, x] != value:
                runs.append(length)
                value, length = mask[y, x], 0
            length += 1
    return runs + [length]


def blob():
    mask = np.zeros((9, 7), np.uint8)
    mask[2:6, 1:4] = 1
    mask[0, 4] = 1  # a column starting with a 1: its run of 0s from the previous column ends there
    mask[8, 6] = 1  # the last pixel set: the runs end with a run of 1s
    return mask


def test_run_index_map_gives_back_the_mask_column_by_column():
    mask = blob()
    runs = runs_by_hand(mask)
    assert runs == mask_runs(mask[None])[0].tolist()[:len(runs)]  # the shards store exactly these runs
    index = viz_scale.run_index_map(runs, *mask.shape)
    np.testing.assert_array_equal(index % 2, mask)  # odd runs are the 1s
    np.testing.assert_array_equal(index.T.reshape(-1), np.repeat(np.arange(len(runs)), runs))  # column-major
    assert index[0, 4] == 7 and index[-1, -1] == len(runs) - 1  # columns 1-3: runs 1, 3, 5; column 4: run 7
    with pytest.raises(ValueError, match="add up to 62 pixels, not 9 x 7 = 63"):
        viz_scale.run_index_map([*runs[:-1], runs[-1] - 1], *mask.shape)


def test_mask_runs_plot_colours_each_run_and_draws_its_length():
    mask = blob()
    runs = runs_by_hand(mask)
    fig = viz_scale.mask_runs_plot(runs, *mask.shape, margin=1, title="a blob")
    left, right = fig.axes
    rgb = np.asarray(left.images[0].get_array())
    index = viz_scale.run_index_map(runs, *mask.shape)
    for (y, x), k in np.ndenumerate(index):
        np.testing.assert_allclose(rgb[y, x], to_rgb(viz_scale.RUN_COLORS[(k % 2, k // 2 % 2)]))
    colours = {value: {viz_scale.RUN_COLORS[(value, shade)] for shade in (0, 1)} for value in (0, 1)}
    assert not colours[0] & colours[1]  # a 1 never looks like a 0
    # Zoomed on the instance's pixels (rows 0-8, columns 1-6) plus 1 pixel, within the image.
    assert left.get_xlim() == (-0.5, 6.5) and left.get_ylim() == (8.5, -0.5)
    bars = right.patches
    assert [b.get_height() for b in bars] == runs and right.get_yscale() == "log"
    assert [b.get_facecolor() for b in bars] == [to_rgba(viz_scale.RUN_COLORS[(k % 2, k // 2 % 2)])
                                                 for k in range(len(runs))]
    assert f"{len(runs)} runs" in right.get_xlabel() and "63 pixels" in right.get_title()
    assert fig._suptitle.get_text() == "a blob"
    plt.close(fig)


# -- shards and workers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    dataset = load_sample_dataset("train")
    return write_tfrecords(dataset, tmp_path_factory.mktemp("shards"), 3, progress=False).dataset, dataset


def test_shard_and_file_policy_ids_follow_the_shard_files(sharded):
    shards, dataset = sharded
    ids = dataset.image_ids
    assert viz_scale.shard_image_ids(shards) == [ids[k::3] for k in range(3)]  # image i in shard i % 3
    two = viz_scale.file_policy_ids(shards, 2)
    assert sorted(two[0]) == sorted(ids[0::3] + ids[2::3]) and two[1] == ids[1::3]
    assert two[0][:2] == [ids[0], ids[2]]  # shards 0 and 2 read round-robin
    assert viz_scale.file_policy_ids(shards, 3) == [ids[k::3] for k in range(3)]


def _distribute_for_worker(data, workers, index):
    """What tf.distribute does to a dataset on worker ``index`` (one replica per worker), with its own
    functions: tensorflow/python/distribute/input_lib.py, ``_create_cloned_datasets_from_dataset``."""
    from tensorflow.python.data.experimental.ops import distribute as tf_data_distribute
    from tensorflow.python.distribute import input_ops

    batch = tf_data_distribute.compute_batch_size(data)
    sizes = tf_data_distribute.batch_sizes_for_worker(batch, workers, 1, index)
    return input_ops.auto_shard_dataset(data.rebatch(sizes), workers, index, workers)


def test_data_policy_ids_are_tf_distributes_split_of_trains_batches(sharded):
    shards, dataset = sharded
    one_process, parts = viz_scale.data_policy_ids(shards, TINY, num_workers=2, batch_size=4, steps=3)
    assert one_process.shape == (3, 4) and parts.shape == (2, 3, 2)
    assert sorted(one_process.ravel().tolist()) == dataset.image_ids  # shuffled before repeat: one pass
    assert one_process.ravel().tolist() != dataset.image_ids  # and shuffled

    def painted_batches():
        keras.utils.set_random_seed(0)
        data = pipeline.training_dataset(shards.source().map(viz_scale._painted), TINY, batch_size=4, seed=0)
        return distributed.shard_by_data(data)

    for i in range(2):
        worker = _distribute_for_worker(painted_batches(), 2, i)
        got = [viz_scale._ids(images) for images, _ in worker.take(3)]
        np.testing.assert_array_equal(got, parts[i])
    np.testing.assert_array_equal(np.concatenate(list(parts), axis=1), one_process)

    # Painting the pixels changes nothing else: the same targets, batch by batch, as train()'s pipeline.
    keras.utils.set_random_seed(0)
    plain = pipeline.training_dataset(shards.source(), TINY, batch_size=4, seed=0)
    for (_, painted), (_, real) in zip(painted_batches().take(3), plain.take(3)):
        for key in real:
            np.testing.assert_array_equal(painted[key], real[key], err_msg=key)
    with pytest.raises(ValueError, match="does not split over 3 workers"):
        viz_scale.data_policy_ids(shards, TINY, num_workers=3, batch_size=4, steps=1)


def test_painted_ids_cover_three_bytes():
    sample = {"image": tf.zeros((5, 4, 3), tf.uint8), "image_id": tf.constant(70_000 + 3 * 256 + 7, tf.int64)}
    image = viz_scale._painted(sample)["image"]
    assert image.shape == (5, 4, 3) and len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) == 1
    assert viz_scale._ids(image[None]) == [70_000 + 3 * 256 + 7]


def by_gid(ax):
    return {artist.get_gid(): artist for artist in [*ax.patches, *ax.texts] if artist.get_gid()}


def test_shard_policies_plot_draws_who_reads_what():
    shard_ids = [[1, 4], [2, 5], [3, 6]]
    file_ids = [[1, 3, 4, 6], [2, 5]]
    parts = np.array([[[6, 2], [5, 3]], [[1, 4], [9, 8]]])  # (2 workers, 2 steps, 2 images)
    fig = viz_scale.shard_policies_plot(shard_ids, file_ids, parts)
    left, right = (by_gid(ax) for ax in fig.axes)
    color = [to_rgba(c) for c in viz_scale.WORKER_COLORS]
    for k, reader in enumerate([0, 1, 0]):
        box = left[f"file:shard{k}"]
        assert isinstance(box, Rectangle) and box.get_facecolor() == color[reader]
        assert left[f"file:shard{k}:text"].get_text() == f"shard {k}: " + " ".join(map(str, shard_ids[k]))
        assert right[f"data:shard{k}"].get_facecolor() == to_rgba(viz_scale.SHARED)
    arrows = {gid for gid, a in left.items() if isinstance(a, FancyArrowPatch)}
    assert arrows == {"file:shard0->worker0", "file:shard1->worker1", "file:shard2->worker0"}
    assert left["file:worker0:text"].get_text() == "worker 0: 1 3 4 6"
    assert left["file:worker1"].get_facecolor() == color[1]
    assert {gid for gid, a in right.items() if isinstance(a, FancyArrowPatch)} == {
        f"data:shard{k}->worker{i}" for k in range(3) for i in range(2)}  # every worker reads every shard
    for (i, s, j), image_id in np.ndenumerate(parts):
        assert right[f"data:step{s}:worker{i}:{j}:text"].get_text() == str(image_id)
        assert right[f"data:step{s}:worker{i}:{j}"].get_facecolor() == color[i]
    assert "InputContext" in fig.axes[0].get_title() and "--multi-worker" in fig.axes[1].get_title()
    plt.close(fig)
    # A shard no single worker read whole is drawn grey, with no arrow.
    fig = viz_scale.shard_policies_plot(shard_ids, [[1, 3, 6], [2, 4, 5]], parts)
    left = by_gid(fig.axes[0])
    assert left["file:shard0"].get_facecolor() == to_rgba(viz_scale.SHARED)
    assert "file:shard0->worker0" not in left
    plt.close(fig)


# -- gradients --------------------------------------------------------------------------------------


def test_relative_differences_are_against_each_reference_tensors_largest_element():
    reference = [np.array([2.0, -4.0]), None, np.zeros(3), np.array([[1.0, 0.5]])]
    grads = [np.array([2.5, -4.0]), None, np.zeros(3), np.array([[1.0, 0.5]])]
    got = viz_scale.relative_differences(grads, reference)
    assert got[0] == 0.5 / 4.0 and np.isnan(got[1]) and got[2] == 0.0 and got[3] == 0.0
    with pytest.raises(ValueError, match="1 gradients against 1, or a gradient in one list only"):
        viz_scale.relative_differences([None], [np.ones(1)])
    with pytest.raises(ValueError, match="1 gradients against 2, "):
        viz_scale.relative_differences([np.ones(1)], [np.ones(1), np.ones(1)])


def test_model_part_names_the_tiny_models_parts():
    assert viz_scale.model_part("stage0_conv0/kernel") == "backbone"
    assert viz_scale.model_part("sol_ov2/fpn/lateral_c2/kernel") == "fpn"
    assert viz_scale.model_part("sol_ov2/head/kernel_tower/kernel_tower_gn0/gamma") == "head"
    assert viz_scale.model_part("sol_ov2/mask_feature/fuse/fuse_conv/kernel") == "mask_feature"


def test_gradient_differences_plot_draws_each_way_per_variable_on_a_log_axis():
    names = ["stage0_conv0/kernel", "stage0_gn0/gamma", "sol_ov2/fpn/lateral_c2/kernel",
             "sol_ov2/head/kernel_out/bias"]
    diffs = {"accumulated": np.array([0.0, 3e-7, 1e-6, 2e-8]), "naive": np.array([0.1, 0.2, 0.05, 0.3])}
    fig = viz_scale.gradient_differences_plot(names, diffs, bound=8e-4, floor=1e-9)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlim() == (-0.5, 3.5)
    accumulated, naive, bound = ax.get_lines()
    np.testing.assert_array_equal(accumulated.get_xdata(), [0, 1, 2, 3])
    np.testing.assert_array_equal(accumulated.get_ydata(), [1e-9, 3e-7, 1e-6, 2e-8])  # 0 drawn at the floor
    np.testing.assert_array_equal(naive.get_ydata(), diffs["naive"])
    np.testing.assert_array_equal(bound.get_ydata(), [8e-4, 8e-4])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["accumulated", "naive",
                                                                   "float32 rounding bound (8.0e-04)"]
    spans = {a.get_gid(): a for a in ax.patches if a.get_gid()}
    assert list(spans) == ["part:backbone", "part:fpn", "part:head"]
    xs = {gid: [span.get_x(), span.get_x() + span.get_width()] for gid, span in spans.items()}
    assert xs == {"part:backbone": [-0.5, 1.5], "part:fpn": [1.5, 2.5], "part:head": [2.5, 3.5]}
    assert [t.get_text() for t in ax.texts if t.get_gid()] == ["backbone", "fpn", "head"]
    assert "4, in model order" in ax.get_xlabel()
    plt.close(fig)
