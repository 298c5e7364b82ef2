"""SOLO losses against independent numpy formulations of the paper's equations."""

import numpy as np
import pytest
import tensorflow as tf
from tolerances import assert_close_float32

from solo_lib.config import SOLOConfig
from solo_lib.losses import dice_loss, focal_loss, solo_losses

C = 3
# float32 losses against float64 numpy: a focal sum over B x M x C = 2 x 20 x 3 = 120 positive
# terms (random_category, make_batch with 20 cells), each a chain of about four rounded
# element-wise ops (sigmoid, log, power, product): terms=120, depth=4, a bound of ~1e-5 relative.
# A wrong alpha, gamma, normaliser or mask pair changes a loss by 10 % or more.
FOCAL_TERMS, CHAIN = 2 * 20 * C, 4


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def np_focal_sum(logits, targets, num_classes, alpha, gamma):
    """RetinaNet Eq. 5, FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), summed, written out per class."""
    total = 0.0
    p = np_sigmoid(logits)
    for c in range(num_classes):
        is_pos = targets == c  # background (num_classes) is never positive
        p_t = np.where(is_pos, p[..., c], 1.0 - p[..., c])
        alpha_t = np.where(is_pos, alpha, 1.0 - alpha)
        total += np.sum(-alpha_t * (1.0 - p_t) ** gamma * np.log(p_t))
    return total


def np_dice(p, q, eps):
    return 1.0 - 2.0 * np.sum(p * q) / (np.sum(p * p) + np.sum(q * q) + eps)


def random_category(rng, b=2, m=20, num_classes=C):
    logits = rng.normal(0.0, 2.0, (b, m, num_classes)).astype(np.float32)
    targets = rng.integers(0, num_classes + 1, (b, m)).astype(np.int32)  # num_classes = background
    targets[:, :4] = num_classes  # make sure there are background cells
    return logits, targets


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.9, 0.0), (0.4, 1.5)])
def test_focal_loss_matches_the_paper_equation(alpha, gamma):
    logits, targets = random_category(np.random.default_rng(0))
    got = float(focal_loss(logits, targets, C, alpha=alpha, gamma=gamma))
    assert_close_float32(got, np_focal_sum(logits, targets, C, alpha, gamma), terms=FOCAL_TERMS, depth=CHAIN,
                         what="focal loss")


def test_focal_loss_weights_positives_by_alpha_and_negatives_by_one_minus_alpha():
    logits, targets = random_category(np.random.default_rng(1))
    got = float(focal_loss(logits, targets, C, alpha=0.25, gamma=2.0))
    swapped = np_focal_sum(logits, targets, C, alpha=0.75, gamma=2.0)
    no_focus = np_focal_sum(logits, targets, C, alpha=0.25, gamma=0.0)
    assert abs(got - swapped) > 0.1 * got and abs(got - no_focus) > 0.1 * got
    # By hand, one cell with logit 0 (p = 0.5): 0.25 * 0.5^2 * ln 2 as a positive,
    # 0.75 * 0.5^2 * ln 2 as a negative of each other class.
    one = focal_loss(np.zeros((1, 1, 2), np.float32), np.array([[0]], np.int32), 2)
    # Closed forms of two terms: a few float32 ulps (eps 1.2e-7), so rtol 1e-6 (~8 ulps).
    np.testing.assert_allclose(float(one), (0.25 + 0.75) * 0.25 * np.log(2.0), rtol=1e-6)
    background = focal_loss(np.zeros((1, 1, 2), np.float32), np.array([[2]], np.int32), 2)
    np.testing.assert_allclose(float(background), 2 * 0.75 * 0.25 * np.log(2.0), rtol=1e-6)


def test_focal_loss_is_not_clipped_for_confidently_wrong_cells():
    # A positive at logit -40 costs alpha * 40 and keeps gradient -alpha (a clipped probability
    # would cap the loss at alpha * -log(1e-7) ~ 4 and give zero gradient).
    x = tf.constant([[[-40.0, 40.0]]])  # class 0 positive, class 1 negative: both badly wrong
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = focal_loss(x, tf.constant([[0]]), 2)
    # Closed forms: log(1 + e^-40) ~ 4e-18 and sigmoid(-40) ~ 4e-18 are below float32 resolution, so
    # only a few ulps of rounding remain; rtol 1e-5 (~80 ulps) while a clipped loss would be off by 90 %.
    np.testing.assert_allclose(float(loss), 0.25 * 40 + 0.75 * 40, rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy().ravel(), [-0.25, 0.75], rtol=1e-5)


def test_dice_loss_matches_numpy_and_its_extremes():
    rng = np.random.default_rng(2)
    logits = rng.normal(0.0, 3.0, (2, 3, 5, 7)).astype(np.float32)
    masks = (rng.random((2, 3, 5, 7)) < 0.4).astype(np.uint8)
    got = dice_loss(logits, masks, eps=1e-3).numpy()
    assert got.shape == (2, 3)
    expected = [[np_dice(np_sigmoid(logits[b, k]), masks[b, k], 1e-3) for k in range(3)] for b in range(2)]
    # Sums over 5 x 7 = 35 pixels, a sigmoid and a product before them, a division after: depth 3.
    # Judged against the largest loss (values in [0, 1]): a dice near 0 has the absolute rounding
    # of the sums it is 1 minus. A wrong sum (p instead of p^2, eps twice) moves it by > 1e-3.
    assert_close_float32(got, expected, terms=5 * 7, depth=3, what="dice loss, eps 1e-3")
    big_eps = [[np_dice(np_sigmoid(logits[b, k]), masks[b, k], 5.0) for k in range(3)] for b in range(2)]
    assert_close_float32(dice_loss(logits, masks, eps=5.0).numpy(), big_eps, terms=5 * 7, depth=3,
                         what="dice loss, eps 5")
    perfect = np.where(masks == 1, 50.0, -50.0).astype(np.float32)
    # Not rounding: the default eps 1e-3 leaves 1 - 2n / (2n + eps) = eps / (2n + eps) <= 1e-4 for a
    # mask of n >= 5 pixels (sigmoid(+-50) is exactly 1 and ~2e-22 in float32).
    np.testing.assert_allclose(dice_loss(perfect, masks).numpy(), 0.0, atol=1e-4)
    # Overlap ~2e-22 x n against a denominator of ~n: 1 to within an ulp; atol 1e-6 is ~8 ulps of 1.
    np.testing.assert_allclose(dice_loss(-perfect, masks).numpy(), 1.0, atol=1e-6)


def make_batch(rng, config, b=2, k=5, n=3, h=6, w=7, e=4):
    """Small random outputs and targets with padding pairs whose indices are garbage."""
    m = config.num_cells
    outputs = {
        "category": rng.normal(-1.0, 2.0, (b, m, config.num_classes)).astype(np.float32),
        "kernel": rng.normal(0.0, 1.0, (b, m, e)).astype(np.float32),
        "mask_feature": rng.normal(0.0, 1.0, (b, h, w, e)).astype(np.float32),
    }
    category = np.full((b, m), config.num_classes, np.int32)
    pos_cells = rng.integers(0, m, (b, k)).astype(np.int32)
    pos_instances = rng.integers(0, n, (b, k)).astype(np.int32)
    pos_valid = np.zeros((b, k), bool)
    pos_valid[0, :3] = True  # image 0: 3 pairs and 2 padding
    pos_valid[1, :1] = True  # image 1: 1 pair and 4 padding
    pos_cells[~pos_valid] = rng.choice([-7, m + 11, 3], (~pos_valid).sum())  # garbage, some out of range
    pos_instances[~pos_valid] = rng.choice([-1, n + 5, 0], (~pos_valid).sum())
    for i in range(b):
        for j in np.flatnonzero(pos_valid[i]):
            category[i, pos_cells[i, j]] = rng.integers(0, config.num_classes)
    masks = (rng.random((b, n, h, w)) < 0.3).astype(np.uint8)
    targets = {"category": category, "pos_cells": pos_cells, "pos_instances": pos_instances,
               "pos_valid": pos_valid, "masks": masks}
    return outputs, targets


def np_ins_ind_label(targets):
    """The reference's per-cell positive flag (WXinlong/SOLO ``solov2_target_single``'s
    ``ins_ind_label``), ``(B, M)`` bool: set for the cell of every valid (cell, instance) pair, so
    a cell that several instances share is flagged once."""
    flags = np.zeros(np.shape(targets["category"]), bool)
    for i, j in zip(*np.nonzero(targets["pos_valid"])):
        flags[i, targets["pos_cells"][i, j]] = True
    return flags


def np_solo_losses(outputs, targets, config):
    """Loops over the valid pairs; each mask logit is a dot product of kernel and feature pixel.
    The focal sum is divided by the number of flagged cells + 1 (the reference's
    ``avg_factor=num_ins + 1``), the dice averaged over the pairs."""
    dices = []
    b, h, w, _ = outputs["mask_feature"].shape
    for i in range(b):
        for j in range(targets["pos_valid"].shape[1]):
            if not targets["pos_valid"][i, j]:
                continue
            kernel = outputs["kernel"][i, targets["pos_cells"][i, j]].astype(np.float64)
            logit = np.zeros((h, w))
            for y in range(h):
                for x in range(w):
                    logit[y, x] = np.dot(outputs["mask_feature"][i, y, x].astype(np.float64), kernel)
            target = targets["masks"][i, targets["pos_instances"][i, j]].astype(np.float64)
            dices.append(np_dice(np_sigmoid(logit), target, config.dice_eps))
    num_ins = int(np_ins_ind_label(targets).sum())
    focal = np_focal_sum(outputs["category"], targets["category"], config.num_classes,
                         config.focal_alpha, config.focal_gamma)
    category = focal / (num_ins + 1)
    mask = float(np.mean(dices)) if dices else 0.0
    return {"total": category + config.mask_loss_weight * mask, "category": category,
            "mask": mask, "num_pos": len(dices), "num_pos_cells": num_ins}


@pytest.fixture(scope="module")
def config():
    return SOLOConfig.tiny(C).replace(grid_sizes=(4, 2), scale_ranges=((1, 40), (20, 2048)))


@pytest.mark.parametrize("changes", [{}, {"mask_loss_weight": 0.5, "dice_eps": 5.0, "focal_alpha": 0.6}])
def test_solo_losses_match_a_numpy_loop_and_exclude_padding(config, changes):
    config = config.replace(**changes)
    outputs, targets = make_batch(np.random.default_rng(3), config)
    got = {key: float(value) for key, value in solo_losses(outputs, targets, config).items()}
    expected = np_solo_losses(outputs, targets, config)
    assert got["num_pos"] == expected["num_pos"] == 4
    assert got["num_pos_cells"] == expected["num_pos_cells"]
    for key in ("category", "mask", "total"):
        # The focal sum (FOCAL_TERMS) is the longest; the mask loss adds a 4-term dot product before
        # the dice's 6 x 7 = 42-pixel sums, within CHAIN.
        assert_close_float32(got[key], expected[key], terms=FOCAL_TERMS, depth=CHAIN, what=key)
    # Changing what padding points at changes nothing: the same computation on the valid pairs,
    # so at most the rounding of the mean over 4 pairs of 42-pixel sums (padding leaking in would
    # add or change a whole pair's dice, ~25 % of the mean).
    targets2 = dict(targets, pos_cells=np.where(targets["pos_valid"], targets["pos_cells"], 1),
                    pos_instances=np.where(targets["pos_valid"], targets["pos_instances"], 2))
    assert_close_float32(float(solo_losses(outputs, targets2, config)["mask"]), got["mask"], terms=6 * 7,
                         what="mask loss with other padding")


def shared_cell_batch(config):
    """Random outputs and hand-made targets in which instances share cells: image 0 has pairs
    (cell 5, instance 0), (5, 1) and (6, 0), image 1 has (3, 0) and (3, 1), plus padding."""
    outputs, _ = make_batch(np.random.default_rng(9), config)
    b, m = 2, config.num_cells
    pos_cells = np.array([[5, 5, 6, 0, 0], [3, 3, 0, 0, 0]], np.int32)
    pos_instances = np.array([[0, 1, 0, 0, 0], [0, 1, 0, 0, 0]], np.int32)
    pos_valid = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], bool)
    category = np.full((b, m), config.num_classes, np.int32)
    category[0, [5, 6]] = [2, 1]  # cell 5: the later instance's class, as solo_lib.targets does
    category[1, 3] = 0
    masks = (np.random.default_rng(10).random((b, 3, 6, 7)) < 0.3).astype(np.uint8)
    return outputs, {"category": category, "pos_cells": pos_cells, "pos_instances": pos_instances,
                     "pos_valid": pos_valid, "masks": masks}


def test_category_loss_divides_by_distinct_positive_cells_plus_one(config):
    outputs, targets = shared_cell_batch(config)
    num_ins = int(np_ins_ind_label(targets).sum())
    assert num_ins == 3 and targets["pos_valid"].sum() == 5  # 5 pairs in 3 distinct cells
    got = solo_losses(outputs, targets, config)
    assert float(got["num_pos"]) == 5 and float(got["num_pos_cells"]) == num_ins
    focal = np_focal_sum(outputs["category"], targets["category"], config.num_classes,
                         config.focal_alpha, config.focal_gamma)
    # As in test_solo_losses_match_a_numpy_loop_and_exclude_padding. Dividing by pairs + 1 (6
    # instead of 4) would make the loss a third smaller, far outside the bound.
    assert_close_float32(float(got["category"]), focal / (num_ins + 1), terms=FOCAL_TERMS, depth=CHAIN,
                         what="category loss / (distinct cells + 1)")
    expected = np_solo_losses(outputs, targets, config)
    for key in ("mask", "total"):  # the mask loss still averages over the 5 pairs
        assert_close_float32(float(got[key]), expected[key], terms=FOCAL_TERMS, depth=CHAIN, what=key)


def test_positive_cells_of_real_targets_are_the_cells_with_a_class():
    """On targets from solo_lib.targets, where two instances share a cell, the reference's per-cell
    flag (set from the pairs) marks exactly the cells whose category is a class."""
    from solo_lib.targets import collate_targets, image_targets

    config = SOLOConfig.tiny(C).replace(grid_sizes=(4,), scale_ranges=((1, 2048),))
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 2:62, 2:62] = 1  # centre (31.5, 31.5), centre region +/- 6 px: the 2 x 2 cells 5, 6, 9, 10
    masks[1, 34:58, 34:58] = 1  # centre (45.5, 45.5), +/- 2.4 px: cell 10 only, shared with instance 0
    targets = collate_targets([image_targets(masks, np.array([1, 2]), config),
                               image_targets(masks[:1], np.array([0]), config)])
    flags = np_ins_ind_label(targets)
    assert targets["pos_valid"].sum() == 5 + 4 and flags.sum() == 4 + 4  # one cell holds two pairs
    np.testing.assert_array_equal(flags, targets["category"] < config.num_classes)
    assert targets["category"][0, 10] == 2  # the later instance's class
    outputs, _ = make_batch(np.random.default_rng(11), config, b=2, n=2, h=16, w=16)
    got = solo_losses(outputs, targets, config)
    assert float(got["num_pos_cells"]) == flags.sum() and float(got["num_pos"]) == 9
    focal = np_focal_sum(outputs["category"], targets["category"], C, config.focal_alpha, config.focal_gamma)
    # A focal sum over 2 x 16 cells x 3 classes, within FOCAL_TERMS.
    assert_close_float32(float(got["category"]), focal / (flags.sum() + 1), terms=FOCAL_TERMS, depth=CHAIN,
                         what="category loss on real targets")


def test_total_is_category_plus_three_times_mask_for_the_default_config():
    config = SOLOConfig(num_classes=C).replace(grid_sizes=(3,), scale_ranges=((1, 2048),))
    assert config.mask_loss_weight == 3.0
    outputs, targets = make_batch(np.random.default_rng(4), config)
    losses = solo_losses(outputs, targets, config)
    assert all(v.dtype == tf.float32 and v.shape == () for v in losses.values())
    # One float32 multiply-add of two positive numbers: at most ~2 ulps; rtol 1e-6 is ~8.
    np.testing.assert_allclose(float(losses["total"]), float(losses["category"]) + 3.0 * float(losses["mask"]),
                               rtol=1e-6)
    assert float(losses["mask"]) > 0.1  # the mask term is really there


@pytest.mark.parametrize("k", [4, 0])
def test_zero_positives_give_finite_loss_and_gradients(config, k):
    outputs, targets = make_batch(np.random.default_rng(5), config, k=max(k, 5))
    targets = dict(targets, category=np.full_like(targets["category"], config.num_classes),
                   pos_valid=np.zeros((2, k), bool), pos_cells=np.full((2, k), -3, np.int32),
                   pos_instances=np.full((2, k), 99, np.int32))
    variables = {key: tf.Variable(value) for key, value in outputs.items()}
    with tf.GradientTape() as tape:
        losses = solo_losses(variables, targets, config)
    assert float(losses["num_pos"]) == 0.0 and float(losses["mask"]) == 0.0
    assert np.isfinite(float(losses["total"]))
    assert_close_float32(float(losses["total"]), np_solo_losses(outputs, targets, config)["total"],
                         terms=FOCAL_TERMS, depth=CHAIN, what="total loss without positives")
    grads = tape.gradient(losses["total"], variables)
    for key, grad in grads.items():
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.all(np.isfinite(grad)), key
    assert np.abs(tf.convert_to_tensor(grads["category"]).numpy()).sum() > 0
    # Nothing is positive, so the mask branch gets exactly zero gradient.
    assert not tf.convert_to_tensor(grads["kernel"]).numpy().any()
    assert not tf.convert_to_tensor(grads["mask_feature"]).numpy().any()


def test_padding_gets_no_gradient(config):
    outputs, targets = make_batch(np.random.default_rng(6), config)
    kernel = tf.Variable(outputs["kernel"])
    with tf.GradientTape() as tape:
        mask = solo_losses(dict(outputs, kernel=kernel), targets, config)["mask"]
    grad = tf.convert_to_tensor(tape.gradient(mask, kernel)).numpy()
    valid = targets["pos_valid"]
    touched = np.zeros(grad.shape[:2], bool)
    for i, j in zip(*np.nonzero(valid)):
        touched[i, targets["pos_cells"][i, j]] = True
    assert np.all(np.isfinite(grad)) and np.abs(grad[touched]).min() > 0
    assert not grad[~touched].any()


def test_graph_mode_matches_eager_with_unknown_batch_and_pairs(config):
    outputs, targets = make_batch(np.random.default_rng(7), config)
    spec = lambda x: tf.TensorSpec([None] * x.ndim, tf.as_dtype(x.dtype))  # noqa: E731

    @tf.function(input_signature=[{k: spec(v) for k, v in outputs.items()},
                                  {k: spec(v) for k, v in targets.items()}])
    def graph_losses(outputs, targets):
        return solo_losses(outputs, targets, config)

    eager = solo_losses(outputs, targets, config)
    graph = graph_losses(outputs, targets)
    for key in eager:
        # The same float32 sums, perhaps fused or reordered by Grappler/oneDNN in the graph.
        assert_close_float32(float(graph[key]), float(eager[key]), terms=FOCAL_TERMS, depth=CHAIN,
                             what=f"graph {key}")


def test_runs_under_a_distribution_strategy(config):
    outputs, targets = make_batch(np.random.default_rng(8), config)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        result = strategy.run(tf.function(lambda o, t: solo_losses(o, t, config)), args=(outputs, targets))
    # One replica: the same sums, traced instead of eager (as in the graph-mode test above).
    assert_close_float32(float(strategy.reduce("SUM", result["total"], axis=None)),
                         float(solo_losses(outputs, targets, config)["total"]), terms=FOCAL_TERMS, depth=CHAIN,
                         what="total under MirroredStrategy")
