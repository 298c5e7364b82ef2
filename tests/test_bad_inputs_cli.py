"""Bad inputs to ``python -m solo_lib``: each ends as one ``error: ...`` line and exit status 2, and
changes nothing on disk (or as correct behaviour). ``--debug`` / ``SOLO_DEBUG=1`` show the traceback.

Most cases call ``solo_lib.__main__.main`` in the test process (fast); a few run the real command.
One tiny checkpoint, trained once per module, serves every case.
"""

import contextlib
import copy
import errno
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import pytest

from solo_lib import __main__ as cli
from solo_lib import checkpoints as checkpoints_module
from solo_lib import commands
from solo_lib import train as train_module
from solo_lib.checkpoints import load_checkpoint
from solo_lib.data.coco import CocoDataset, load_sample_dataset, sample_dataset_paths
from solo_lib.errors import CheckpointError, ConfigError, SoloError
from solo_lib.model.solov2 import check_classes

ROOT = Path(__file__).resolve().parents[1]
# One optimisation step: enough for a real checkpoint.
QUICK = ["--epochs", "1", "--batch-size", "2", "--steps-per-epoch", "1", "--optimizer", "adam", "--lr", "0.001",
         "--warmup-steps", "1"]
# ... of the tiny preset at a 64 px image scale (a 64 x 64 canvas). Fresh runs only: a resumed run
# keeps its checkpoint's image scale, and --image-scale with --resume is an error (a case below).
FRESH = [*QUICK, "--image-scale", "64", "64"]


def _craft(source: Path, target: Path, edit) -> Path:
    """A copy of the .keras archive ``source`` whose config.json is ``edit(config)``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            out.writestr(item, data)
    return target


def _write_coco(data: dict, path: Path) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder with one trained checkpoint, crafted checkpoints and datasets, and paths to them."""
    base = tmp_path_factory.mktemp("bad_inputs")
    train_json, train_images = sample_dataset_paths("train")
    val_json, val_images = sample_dataset_paths("val")
    # The run below goes into a folder holding another run's checkpoints (--overwrite removes them)
    # and the partial temporary files of a dead process (removed) and of a live one (kept).
    ckpt_dir = base / "ckpt"
    ckpt_dir.mkdir()
    for name in ("epoch_0001.keras", "epoch_0002.keras"):
        (ckpt_dir / name).write_bytes(b"another run")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = ckpt_dir / f".tmp-{int(dead.stdout)}-epoch_0003.keras"
    stale.write_bytes(b"half a zip")
    live = ckpt_dir / f".tmp-{os.getpid()}-epoch_0004.keras"
    live.write_bytes(b"being written")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(["train", *FRESH, "--out", str(ckpt_dir), "--overwrite"])
    facts = {"rc": rc, "stdout": out.getvalue(), "stale_left": stale.exists(), "live_left": live.exists(),
             "files": sorted(p.name for p in ckpt_dir.iterdir())}
    live.unlink()
    ckpt = ckpt_dir / "epoch_0001.keras"

    crafted = base / "crafted"
    crafted.mkdir()
    (crafted / "truncated.keras").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    (crafted / "empty.keras").write_bytes(b"")

    def unknown_class(config):
        config.update(module="evil.module", class_name="Evil", registered_name="evil>Evil")

    def no_names(config):
        del config["config"]["class_names"]

    def three_names(config):
        config["config"]["class_names"] = ["a", "b", "c"]

    _craft(ckpt, crafted / "unknown_class.keras", unknown_class)
    _craft(ckpt, crafted / "no_class_names.keras", no_names)
    _craft(ckpt, crafted / "three_names.keras", three_names)
    lam = keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)])
    lam.save(crafted / "lambda.keras")
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.save(crafted / "plain.keras")

    data = base / "data"
    data.mkdir()
    train_coco, val_coco = json.loads(train_json.read_text()), json.loads(val_json.read_text())
    two = copy.deepcopy(train_coco)  # the first two classes only
    two["categories"] = two["categories"][:2]
    two["annotations"] = [a for a in two["annotations"] if a["category_id"] in (1, 2)]
    swapped = copy.deepcopy(val_coco)  # same names, ids of disc and block swapped
    swap = {1: 2, 2: 1}
    for cat in swapped["categories"]:
        cat["id"] = swap.get(cat["id"], cat["id"])
    for ann in swapped["annotations"]:
        ann["category_id"] = swap.get(ann["category_id"], ann["category_id"])
    huge = copy.deepcopy(train_coco)  # records claiming 40000 x 40000 images (the files are 256 px)
    for img in huge["images"]:
        img["height"] = img["width"] = 40000
    (data / "not_an_image.png").write_text("this is text")
    (data / "lonely.weights.h5").write_bytes(b"weights without their JSON")
    (data / "a_file").write_text("a file, not a folder")
    (base / "empty").mkdir()
    (base / "cwd").mkdir()
    paths = {
        "base": base, "ckpt_dir": ckpt_dir, "ckpt": ckpt, "crafted": crafted, "data": data,
        "two": _write_coco(two, data / "two_classes.json"), "swapped": _write_coco(swapped, data / "swapped_ids.json"),
        "huge": _write_coco(huge, data / "huge.json"), "train_images": train_images, "val_images": val_images,
        "image": train_images / train_coco["images"][0]["file_name"],
        "weights_h5": ROOT / "data/sample_model/tiny_sample.weights.h5",
    }
    return {"paths": paths, "facts": facts}


def _snapshot(root: Path) -> dict:
    """Every file and folder under ``root``: size and sha256 (folders: None)."""
    return {str(p.relative_to(root)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) if p.is_file()
            else None for p in sorted(root.rglob("*"))}


def _fill(args, paths):
    return [a.format(**paths) for a in args]


def _run_case(world, args, wants, capsys, monkeypatch):
    """Runs ``main(args)`` and checks: exit 2, one error line holding ``wants``, nothing changed."""
    paths = world["paths"]
    monkeypatch.chdir(paths["base"] / "cwd")  # default outputs (prediction.png, checkpoints) land in the snapshot
    before = _snapshot(paths["base"])
    capsys.readouterr()
    rc = cli.main(_fill(args, paths))
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    for want in _fill(wants, paths):
        assert want in lines[0], (want, lines[0])
    assert _snapshot(paths["base"]) == before, "a failed command changed files"


# -- train ------------------------------------------------------------------------------------

TRAIN_CASES = [
    pytest.param(["train", *QUICK, "--out", "{ckpt_dir}"],
                 ["{ckpt_dir} already holds another run's checkpoints (epoch_0001.keras)", "--resume", "new folder",
                  "--overwrite"], id="fresh-run-into-another-runs-folder"),
    pytest.param(["train", *QUICK, "--resume", "--out", "{base}/empty"],
                 ["{base}/empty: no epoch_NNNN.keras checkpoint to resume from", "--model-path"],
                 id="resume-empty-folder"),
    pytest.param(["train", *QUICK, "--resume", "--out", "{base}/not_there"],
                 ["{base}/not_there: no epoch_NNNN.keras checkpoint"], id="resume-missing-folder"),
    pytest.param(["train", *QUICK, "--resume", "--model-path", "{base}/nope.keras", "--out", "{base}/empty"],
                 ["{base}/nope.keras: checkpoint not found"], id="resume-missing-model-path"),
    pytest.param(["train", *QUICK, "--resume", "--model-path", "{weights_h5}", "--out", "{base}/empty"],
                 ["tiny_sample.weights.h5 is not a .keras checkpoint"], id="resume-from-weights-file"),
    pytest.param(["train", *QUICK, "--resume", "--model-path", "{crafted}/truncated.keras", "--out", "{base}/empty"],
                 ["truncated.keras is not a complete .keras file (truncated or damaged)"], id="resume-truncated"),
    pytest.param(["train", *QUICK, "--epochs", "3", "--resume", "--model-path", "{ckpt}", "--annotations", "{two}",
                  "--images", "{train_images}", "--out", "{base}/empty"],
                 ["{ckpt} was trained on the classes ['disc', 'block', 'leaf', 'star']",
                  "{two} has ['disc', 'block']"], id="resume-on-other-classes"),
    pytest.param(["train", *QUICK, "--epochs", "3", "--resume", "--model-path", "{ckpt}", "--preset", "paper_r50",
                  "--out", "{base}/empty"],
                 ["{ckpt} was made with another model configuration", "backbone: checkpoint 'tiny', given 'resnet50'",
                  "leave out --preset"], id="resume-with-other-preset"),
    pytest.param(["train", *QUICK, "--resume", "--model-path", "{ckpt}", "--out", "{base}/empty"],
                 ["1 epoch(s) done already, and epochs=1", "--epochs"], id="resume-with-nothing-left"),
    pytest.param(["train", *QUICK, "--model-path", "{ckpt}"], ["--model-path", "add --resume"],
                 id="model-path-without-resume"),
    pytest.param(["train", *QUICK, "--resume", "--overwrite"], ["--overwrite", "--resume", "choose one"],
                 id="overwrite-and-resume"),
    pytest.param(["train", *QUICK, "--image-scale", "64", "16"],
                 ["invalid model option: --image-scale must be (long, short), two integers >= 32", "got (64, 16)"],
                 id="image-scale-too-small"),
    pytest.param(["train", *FRESH, "--short-sides", "32", "96", "--out", "{base}/new"],
                 ["--short-sides must be integers in [32, 64]", "--image-scale (64, 64)", "got (32, 96)"],
                 id="short-side-above-the-image-scale"),
    pytest.param(["train", *FRESH, "--short-sides", "16"], ["--short-sides must be integers >= 32", "got (16,)"],
                 id="short-side-below-32"),
    pytest.param(["train", *QUICK, "--resume", "--image-scale", "128", "128", "--out", "{ckpt_dir}"],
                 ["--image-scale and --backbone-weights describe the model of a fresh run",
                  "leave them out with --resume"],
                 id="image-scale-with-resume"),
    pytest.param(["train", *QUICK, "--epochs", "3", "--resume", "--model-path", "{ckpt}", "--preset", "tiny",
                  "--image-scale", "128", "128", "--out", "{base}/empty"],
                 ["{ckpt} was made with another model configuration",
                  "image_scale: checkpoint [64, 64], given [128, 128]", "leave out --preset"],
                 id="resume-with-preset-of-another-image-scale"),
    pytest.param(["train", *FRESH, "--epochs", "0"], ["--epochs must be >= 1, got 0"], id="epochs-0"),
    pytest.param(["train", *FRESH, "--batch-size", "-2"], ["--batch-size must be >= 1, got -2"], id="batch-negative"),
    pytest.param(["train", *FRESH, "--accumulate-steps", "3"],
                 ["--batch-size (2) must be a multiple of --accumulate-steps (3)"], id="accumulate-not-dividing-batch"),
    pytest.param(["train", *FRESH, "--lr", "-1"], ["--lr must be >= 0 and finite, got -1.0"], id="lr-negative"),
    pytest.param(["train", *FRESH, "--steps-per-epoch", "0"], ["--steps-per-epoch must be >= 1"], id="steps-0"),
    pytest.param(["train", *FRESH, "--memory-budget-mb", "0"], ["--memory-budget-mb must be > 0"], id="budget-0"),
    pytest.param(["train", *FRESH, "--annotations", "{two}"], ["--annotations {two} needs --images"],
                 id="annotations-without-images"),
    pytest.param(["train", *FRESH, "--pretrained", "{base}/none.weights.h5", "--out", "{base}/new"],
                 ["{base}/none.weights.h5 not found"], id="pretrained-missing"),
    pytest.param(["train", *FRESH, "--pretrained", "{data}/lonely.weights.h5", "--out", "{base}/new"],
                 ["{data}/lonely.json is missing"], id="pretrained-without-json"),
    pytest.param(["train", *FRESH, "--annotations", "{huge}", "--images", "{train_images}", "--out", "{base}/new"],
                 ["{huge}: decoding its 12 images into memory would take about",
                  "above the memory budget of 2,048 MB", "--stream"], id="dataset-over-memory-budget"),
    pytest.param(["train", *FRESH, "--out", "{data}/a_file/checkpoints"],
                 ["{data}/a_file/checkpoints: cannot write checkpoints there", "--out"], id="out-not-writable"),
    pytest.param(["train", *FRESH, "--out", "{base}/empty", "--log-dir", "{data}/a_file/logs"],
                 ["{data}/a_file/logs: cannot write TensorBoard logs there", "--log-dir"], id="log-dir-not-writable"),
    # --overwrite deletes the old checkpoints only once both output folders are known to be writable.
    pytest.param(["train", *FRESH, "--out", "{ckpt_dir}", "--overwrite", "--log-dir", "{data}/a_file/logs"],
                 ["{data}/a_file/logs: cannot write TensorBoard logs there"], id="overwrite-keeps-old-run-on-failure"),
]


@pytest.mark.parametrize("args, wants", TRAIN_CASES)
def test_train_refuses(world, args, wants, capsys, monkeypatch):
    _run_case(world, args, wants, capsys, monkeypatch)


def test_train_refuses_a_full_disk_before_training(world, capsys, monkeypatch):
    class Usage:  # what shutil.disk_usage returns, on a disk with 100 kB left
        total, used, free = 2**30, 2**30 - 10**5, 10**5

    monkeypatch.setattr(checkpoints_module.shutil, "disk_usage", lambda path: Usage)
    _run_case(world, ["train", *FRESH, "--out", "{base}/new"],
              ["{base}/new: 0.1 MB free, but a checkpoint of this model needs about", "another folder (--out)"],
              capsys, monkeypatch)


def test_stream_skips_the_memory_estimate_and_reaches_train(world, capsys, monkeypatch):
    seen = {}

    def fake_train(model_config, cfg, dataset, **kwargs):
        seen.update(cfg=cfg, model_config=model_config)
        raise ConfigError("stop here")

    monkeypatch.setattr(train_module, "train", fake_train)
    _run_case(world, ["train", *FRESH, "--stream", "--annotations", "{huge}", "--images", "{train_images}"],
              ["stop here"], capsys, monkeypatch)
    assert seen["cfg"].in_memory is False and seen["model_config"].backbone == "tiny"


def test_overwrite_replaces_the_old_run_and_removes_dead_temporaries(world):
    facts = world["facts"]
    assert facts["rc"] == 0, facts["stdout"]
    assert facts["files"] == [f".tmp-{os.getpid()}-epoch_0004.keras", "epoch_0001.keras"]  # epoch_0002 is gone
    assert not facts["stale_left"] and facts["live_left"]  # the live process's file is not touched
    assert "partial checkpoint left by a stopped run" in facts["stdout"]
    assert "overwrite: removed" in facts["stdout"] and "epoch_0002.keras" in facts["stdout"]
    assert int(load_checkpoint(world["paths"]["ckpt"]).epochs_done.numpy()) == 1


# -- predict and evaluate ---------------------------------------------------------------------

PREDICT_EVALUATE_CASES = [
    pytest.param(["predict", "--model", "{base}/nope.keras", "--image", "{image}", "--out", "{base}/p.png"],
                 ["{base}/nope.keras: checkpoint not found"], id="predict-missing-model"),
    pytest.param(["predict", "--model", "{crafted}/truncated.keras", "--image", "{image}", "--out", "{base}/p.png"],
                 ["not a complete .keras file (truncated or damaged)"], id="predict-truncated-model"),
    pytest.param(["predict", "--model", "{ckpt_dir}", "--image", "{image}", "--out", "{base}/p.png"],
                 ["{ckpt_dir} is a folder"], id="predict-model-is-folder"),
    pytest.param(["predict", "--model", "{ckpt}", "--image", "{base}/nope.png", "--out", "{base}/p.png"],
                 ["{base}/nope.png", "not found"], id="predict-missing-image"),
    pytest.param(["predict", "--model", "{ckpt}", "--image", "{data}/not_an_image.png", "--out", "{base}/p.png"],
                 ["{data}/not_an_image.png: cannot read"], id="predict-not-an-image"),
    pytest.param(["predict", "--model", "{ckpt}", "--image", "{image}", "--score-thr", "2", "--out", "{base}/p.png"],
                 ["--score-thr 2.0 must be in [0, 1)"], id="predict-score-thr-2"),
    pytest.param(["predict", "--model", "{ckpt}", "--image", "{image}", "--class-names", "a,b",
                  "--out", "{base}/p.png"],
                 ["--class-names gives 2 names but {ckpt} predicts 4 classes", "['disc', 'block', 'leaf', 'star']"],
                 id="predict-too-few-class-names"),
    pytest.param(["predict", "--model", "{ckpt}", "--image", "{image}", "--class-names", "a,b,c,d,e",
                  "--out", "{base}/p.png"], ["--class-names gives 5 names", "give exactly 4"],
                 id="predict-too-many-class-names"),
    pytest.param(["predict", "--model", "{ckpt}", "--image", "{image}", "--out", "{base}/no_folder/p.png"],
                 ["--out {base}/no_folder/p.png: folder", "does not exist"], id="predict-out-missing-folder"),
    pytest.param(["predict", "--model", "{ckpt}", "--image", "{image}", "--out", "{base}/p.xyz"],
                 ["--out {base}/p.xyz: cannot tell the picture format", ".png"], id="predict-out-unknown-format"),
    pytest.param(["predict", "--model", "{ckpt}", "--image", "{image}", "--out", "{base}/empty"],
                 ["--out {base}/empty is a folder"], id="predict-out-is-folder"),
    pytest.param(["evaluate", "--model", "{ckpt}", "--annotations", "{two}", "--images", "{train_images}"],
                 ["{ckpt} was trained on the classes ['disc', 'block', 'leaf', 'star'] "
                  "but {two} has ['disc', 'block']"],
                 id="evaluate-fewer-classes"),
    pytest.param(["evaluate", "--model", "{ckpt}", "--annotations", "{swapped}", "--images", "{val_images}"],
                 ["{ckpt} was trained on the classes ['disc', 'block', 'leaf', 'star']",
                  "{swapped} lists the same names in another order ['block', 'disc', 'leaf', 'star']"],
                 id="evaluate-swapped-category-ids"),
    pytest.param(["evaluate", "--model", "{crafted}/no_class_names.keras", "--annotations", "{two}",
                  "--images", "{train_images}"],
                 ["no_class_names.keras predicts 4 classes but {two} has 2"],
                 id="evaluate-old-checkpoint-fewer-classes"),
    pytest.param(["evaluate", "--model", "{weights_h5}"], ["is not a .keras checkpoint"], id="evaluate-weights-file"),
    pytest.param(["evaluate", "--model", "{ckpt}", "--annotations", "{two}"], ["needs --images"],
                 id="evaluate-annotations-without-images"),
    pytest.param(["evaluate", "--model", "{ckpt}", "--results", "{base}/no_folder/r.json"],
                 ["--results {base}/no_folder/r.json: folder", "does not exist"], id="evaluate-results-missing-folder"),
]


@pytest.mark.parametrize("args, wants", PREDICT_EVALUATE_CASES)
def test_predict_and_evaluate_refuse(world, args, wants, capsys, monkeypatch):
    _run_case(world, args, wants, capsys, monkeypatch)


def test_predict_takes_class_names_from_the_checkpoint(world):
    model = load_checkpoint(world["paths"]["ckpt"])
    assert commands._class_names(model, None) == ["disc", "block", "leaf", "star"]
    assert commands._class_names(model, "a, b,c,d") == ["a", "b", "c", "d"]
    old = load_checkpoint(world["paths"]["crafted"] / "no_class_names.keras")
    assert commands._class_names(old, None) == ["0", "1", "2", "3"]


# -- checkpoints ------------------------------------------------------------------------------

CHECKPOINT_CASES = [
    pytest.param("{base}/nope.keras", FileNotFoundError, ["{base}/nope.keras: checkpoint not found"], id="missing"),
    pytest.param("{ckpt_dir}", CheckpointError, ["is a folder"], id="folder"),
    pytest.param("{weights_h5}", CheckpointError, ["is not a .keras checkpoint"], id="weights-file"),
    pytest.param("{crafted}/truncated.keras", CheckpointError, ["not a complete .keras file (truncated or damaged)"],
                 id="truncated"),
    pytest.param("{crafted}/empty.keras", CheckpointError, ["not a complete .keras file"], id="empty"),
    pytest.param("{crafted}/lambda.keras", CheckpointError, ["lambda.keras cannot be loaded", "safe_mode"],
                 id="lambda-layer-refused-by-safe-mode"),
    pytest.param("{crafted}/unknown_class.keras", CheckpointError, ["unknown_class.keras cannot be loaded", "Evil"],
                 id="unknown-class"),
    pytest.param("{crafted}/plain.keras", CheckpointError, ["plain.keras holds a Sequential, not a SOLOv2 model"],
                 id="not-a-solov2"),
    pytest.param("{crafted}/three_names.keras", CheckpointError, ["3 class names", "4 classes"],
                 id="class-names-of-other-length"),
]


@pytest.mark.parametrize("path, error, wants", CHECKPOINT_CASES)
def test_load_checkpoint_refuses(world, path, error, wants, capsys, monkeypatch):
    paths = world["paths"]
    with pytest.raises(error) as caught:
        load_checkpoint(path.format(**paths))
    assert isinstance(caught.value, SoloError)
    for want in _fill(wants, paths):
        assert want in str(caught.value), (want, str(caught.value))
    # and the command line says it in one line
    _run_case(world, ["evaluate", "--model", path], [wants[0]], capsys, monkeypatch)


def test_checkpoints_carry_class_names_and_old_ones_are_checked_by_count(world):
    paths = world["paths"]
    model = load_checkpoint(paths["ckpt"])
    train_set = load_sample_dataset("train")
    assert model.class_names == train_set.class_names == ("disc", "block", "leaf", "star")
    assert model.checkpoint_path == str(paths["ckpt"])
    check_classes(model, load_sample_dataset("val"))  # the same classes: accepted
    old = load_checkpoint(paths["crafted"] / "no_class_names.keras")
    assert old.class_names is None
    check_classes(old, CocoDataset(paths["swapped"], paths["val_images"]))  # no names: only the count is checked
    with pytest.raises(CheckpointError, match="predicts 4 classes"):
        check_classes(old, CocoDataset(paths["two"], paths["train_images"]))


# -- the error channel ------------------------------------------------------------------------

@pytest.mark.parametrize("raised, want", [
    pytest.param(PermissionError(errno.EACCES, "Permission denied", "/srv/x"), "error: /srv/x: Permission denied",
                 id="permission"),
    pytest.param(OSError(errno.ENOSPC, "No space left on device", "/srv/y"), "error: /srv/y: No space left on device",
                 id="disk-full"),
    pytest.param(IsADirectoryError(errno.EISDIR, "Is a directory", "/srv/z"), "error: /srv/z: Is a directory",
                 id="is-a-directory"),
])
def test_user_os_errors_become_one_line(world, raised, want, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(train_module, "train", fail)
    monkeypatch.chdir(world["paths"]["base"] / "cwd")
    assert cli.main(["train", *FRESH, "--out", str(world["paths"]["base"] / "empty")]) == 2
    assert capsys.readouterr().err.strip() == want


def test_bugs_and_debug_keep_the_traceback(world, monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(train_module, "train", bug)
    monkeypatch.chdir(world["paths"]["base"] / "cwd")
    with pytest.raises(KeyError, match="a bug"):  # not a user error: the traceback stays
        cli.main(["train", *FRESH, "--out", str(world["paths"]["base"] / "empty")])
    with pytest.raises(ConfigError, match="add --resume"):  # --debug after the command
        cli.main(["train", "--debug", "--model-path", "x.keras"])
    monkeypatch.setenv("SOLO_DEBUG", "1")
    with pytest.raises(ConfigError, match="add --resume"):
        cli.main(["train", "--model-path", "x.keras"])


def _command(args, tmp_path, **env):
    environment = {k: v for k, v in os.environ.items() if k != "SOLO_DEBUG"}
    environment.update(TF_CPP_MIN_LOG_LEVEL="3", TQDM_DISABLE="1", PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "solo_lib", *args], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_real_exit_status_and_debug_traceback(tmp_path):
    plain = _command(["train", "--model-path", "old.keras"], tmp_path)
    assert plain.returncode == 2, plain.stderr
    assert plain.stderr.strip() == "error: --model-path old.keras is the checkpoint to resume from: add --resume"
    debug = _command(["--debug", "train", "--model-path", "old.keras"], tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
    env_debug = _command(["train", "--model-path", "old.keras"], tmp_path, SOLO_DEBUG="1")
    assert env_debug.returncode == 1 and "Traceback" in env_debug.stderr
    assert not any(tmp_path.iterdir())  # nothing written
