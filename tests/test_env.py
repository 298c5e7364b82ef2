"""Environment report and the command line's entry points."""

import subprocess
import sys

from solo_lib.demo import PRETRAINED_SHAPES
from solo_lib.env import PACKAGES, Environment, environment_report, installed_version


def test_report_names_missing_packages_and_devices():
    env = Environment(python="3.11.7", platform="Linux x86_64", cpu_count=2,
                      versions={name: "1.0" for name in PACKAGES} | {"pycocotools": None}, gpus=())
    text = environment_report(env)
    assert "2 logical CPU(s)" in text and "No GPU" in text
    assert "pycocotools  MISSING" in text and "Missing packages: pycocotools" in text
    gpu = environment_report(Environment("3.11.7", "Linux", 8, {n: "1" for n in PACKAGES}, ("/physical_device:GPU:0",)))
    assert "GPU(s): /physical_device:GPU:0" in gpu and "Missing" not in gpu


def test_installed_version_finds_the_cpu_build_of_tensorflow():
    assert installed_version("tensorflow") is not None
    assert installed_version("no-such-package-solo") is None


def test_cli_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "solo_lib", "--help"], capture_output=True, text=True, check=True).stdout
    assert all(c in out for c in ("train", "predict", "evaluate", "demo", "convert-labelme"))
    sub = subprocess.run([sys.executable, "-m", "solo_lib", "convert-labelme", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "INPUT_DIR" in sub and "--labels" in sub


def test_cli_train_predict_evaluate_round_trip(tmp_path):
    """The three model commands on the sample data: a 1-epoch model, an overlay, an AP table."""
    env_run = dict(capture_output=True, text=True, timeout=300, cwd=tmp_path)
    ckpt = tmp_path / "ckpt"
    trained = subprocess.run([sys.executable, "-m", "solo_lib", "train", "--epochs", "1", "--steps-per-epoch", "2",
                              "--batch-size", "2", "--image-scale", "128", "128", "--optimizer", "adam",
                              "--lr", "0.001", "--warmup-steps", "1", "--out", str(ckpt),
                              "--pretrained", str(PRETRAINED_SHAPES)],
                             **env_run)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert (ckpt / "epoch_0001.keras").is_file() and "trained 1 epoch(s)" in trained.stdout
    assert "starting from tiny_shapes.weights.h5: 78 weight tensors loaded, reset: category_out" in trained.stdout
    from solo_lib.data.coco import sample_dataset_paths

    image = next(sample_dataset_paths("val")[1].glob("*.jpg"))
    out = tmp_path / "overlay.png"
    predicted = subprocess.run([sys.executable, "-m", "solo_lib", "predict", "--model", str(ckpt / "epoch_0001.keras"),
                                "--image", str(image), "--out", str(out), "--score-thr", "0.05"], **env_run)
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    assert out.stat().st_size > 1000
    evaluated = subprocess.run([sys.executable, "-m", "solo_lib", "evaluate", "--model", str(ckpt / "epoch_0001.keras"),
                                "--results", str(tmp_path / "results.json")], **env_run)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert "AP" in evaluated.stdout and (tmp_path / "results.json").is_file()
