"""Starting from pretrained weights (``solo_lib.pretrained.load_pretrained``), the shipped shapes
pretraining (``data/pretrained``, ``scripts/pretrain_shapes.py``) and training until a mask AP50
bar (``MaskAPCurve``), which notebook 08 relies on."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from solo_lib.callbacks import MaskAPCurve
from solo_lib.config import SOLOConfig
from solo_lib.data.coco import load_sample_dataset
from solo_lib.demo import PRETRAINED_SHAPES, load_sample_model
from solo_lib.model.solov2 import build_model
from solo_lib.pretrained import load_pretrained, pretrained_info
from solo_lib.train import train
from solo_lib.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = SOLOConfig.tiny(4)


def save_pretrained(model, folder: Path, name: str = "donor") -> Path:
    """Writes ``name.weights.h5`` and the ``name.json`` that load_pretrained reads."""
    path = folder / f"{name}.weights.h5"
    model.save_weights(path)
    (folder / f"{name}.json").write_text(json.dumps({"config": model.config.to_dict()}))
    return path


def values(layer_or_model):
    return [np.array(w) for w in layer_or_model.weights]


@pytest.fixture(scope="module")
def donor_path(tmp_path_factory):
    donor = build_model(TINY, (64, 64))
    for w in donor.weights:  # values no fresh model could have: a copy is unmistakable
        w.assign(np.full(w.shape, 0.5).astype(w.dtype))
    return save_pretrained(donor, tmp_path_factory.mktemp("pretrained"))


def test_everything_but_the_reset_layers_is_copied(donor_path):
    model = build_model(TINY, (64, 64))
    fresh_category = values(model.head.category_out)
    fresh_epochs = int(model.epochs_done.numpy())
    copied = load_pretrained(model, donor_path, reset=("category_out",))
    assert copied == len(model.weights) - len(model.head.category_out.weights) - 1  # minus the epoch counter
    reset_ids = {id(w) for w in model.head.category_out.weights} | {id(model.epochs_done)}
    for w in model.weights:
        if id(w) not in reset_ids:
            assert np.all(np.array(w) == 0.5), w.path
    for before, after in zip(fresh_category, values(model.head.category_out), strict=True):
        np.testing.assert_array_equal(before, after)
    assert int(model.epochs_done.numpy()) == fresh_epochs


def test_reset_nothing_copies_the_class_predictor_too(donor_path):
    model = build_model(TINY, (64, 64))
    load_pretrained(model, donor_path, reset=())
    assert all(np.all(v == 0.5) for v in values(model.head.category_out))


def test_other_classes_need_the_class_predictor_reset(donor_path):
    model = build_model(SOLOConfig.tiny(7), (64, 64))
    fresh_category = values(model.head.category_out)
    copied = load_pretrained(model, donor_path, reset=("category_out",))  # 4 classes pretrained, 7 here: fine
    assert copied == len(model.weights) - len(model.head.category_out.weights) - 1
    reset_ids = {id(w) for w in model.head.category_out.weights} | {id(model.epochs_done)}
    assert all(np.all(np.array(w) == 0.5) for w in model.weights if id(w) not in reset_ids)
    for before, after in zip(fresh_category, values(model.head.category_out), strict=True):
        np.testing.assert_array_equal(before, after)
    with pytest.raises(ValueError, match=r"category_out.*4 classes, this model 7: reset 'category_out'"):
        load_pretrained(build_model(SOLOConfig.tiny(7), (64, 64)), donor_path, reset=())


def test_a_different_architecture_is_named_in_the_error(donor_path):
    with pytest.raises(ValueError,
                       match=r"donor\.weights\.h5 does not fit this model.*fpn_channels=64.*fpn_channels=32"):
        load_pretrained(build_model(SOLOConfig.tiny(4, fpn_channels=32), (64, 64)), donor_path)
    with pytest.raises(ValueError, match=r"donor\.weights\.h5: weight .* has shape .*same architecture"):
        load_pretrained(build_model(SOLOConfig.tiny(7, fpn_channels=32), (64, 64)), donor_path)


def test_missing_files_are_named(tmp_path, donor_path):
    model = build_model(TINY, (64, 64))
    with pytest.raises(FileNotFoundError, match="nothing.weights.h5"):
        load_pretrained(model, tmp_path / "nothing.weights.h5")
    lonely = tmp_path / "lonely.weights.h5"
    lonely.write_bytes(donor_path.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"lonely\.json is missing"):
        load_pretrained(model, lonely)


def test_train_starts_from_pretrained_weights(donor_path, capsys):
    cfg = TrainConfig(epochs=1, batch_size=2, steps_per_epoch=1, learning_rate=0.0, warmup_steps=0,
                      decay_epochs=(), clip_norm=None, weight_decay=0.0, checkpoint_dir=None,
                      pretrained=str(donor_path))
    # A 64 px image scale (a 64 x 64 canvas) keeps the step quick; the weights do not depend on it.
    model, _ = train(TINY.replace(image_scale=(64, 64)), cfg, load_sample_dataset("train"), progress=False)
    # learning rate 0: the backbone still holds the donor's values after a step
    assert all(np.all(v == 0.5) for v in values(model.backbone))
    assert not np.all(np.array(model.head.category_out.weights[0]) == 0.5)
    assert "donor.weights.h5" in capsys.readouterr().out


def test_reset_names_are_checked():
    with pytest.raises(ValueError, match="pretrained_reset"):
        TrainConfig(pretrained_reset=("category_tower",))


def test_mask_ap_curve_stops_at_the_bar():
    model, _ = load_sample_model()  # memorised the training images: AP50 0.94
    dataset = load_sample_dataset("train")
    for stop_at, measured in ((0.9, [2]), (0.99, [2, 3])):  # every 2 epochs and after the last one (3)
        curve = MaskAPCurve(dataset, every=2, stop_at=stop_at, verbose=False)
        curve.set_model(model)
        curve.set_params({"epochs": 3, "steps": 3})  # what fit passes: 3 epochs of 3 steps
        model.stop_training = False
        for epoch in range(3):
            curve.on_epoch_begin(epoch)
            curve.on_epoch_end(epoch, {"loss": 0.25})
            if model.stop_training:
                break
        assert [p["epoch"] for p in curve.points] == measured and curve.points[0]["steps"] == 6
        assert all(p["mask_ap50"] > 0.9 for p in curve.points)
        assert (curve.reached is curve.points[0]) is (stop_at == 0.9) and model.stop_training is (stop_at == 0.9)


@pytest.fixture(scope="module")
def sample_script():
    spec = importlib.util.spec_from_file_location("make_sample_data", ROOT / "scripts" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_pretraining_scenes_are_never_sample_scenes(sample_script):
    """render_scene draws every random choice from the spec's seed, so disjoint seeds mean no
    pretraining image is a sample image, training or validation."""
    info = pretrained_info(PRETRAINED_SHAPES)
    first, last = info["pretraining_set"]["seeds"]
    specs = sample_script.pretraining_specs(info["pretraining_set"]["images"])
    assert [s.seed for s in specs] == list(range(first, last + 1))
    sample_seeds = {s.seed for s in sample_script.TRAIN_SPECS + sample_script.VAL_SPECS}
    assert not sample_seeds & {s.seed for s in specs}
    assert specs == sample_script.pretraining_specs(len(specs))  # the script makes the same set again


def test_shipped_pretrained_weights_fit_the_tiny_preset():
    info = pretrained_info(PRETRAINED_SHAPES)
    assert SOLOConfig.from_dict(info["config"]) == SOLOConfig.tiny(4)
    model = build_model(SOLOConfig.tiny(4), (64, 64))
    assert load_pretrained(model, PRETRAINED_SHAPES) == len(model.weights) - 3  # category_out's 2, epochs_done
