"""Environment report and the command line's entry points."""

import subprocess
import sys

import pytest

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
    out = subprocess.run([sys.executable, "-m", "solo_lib", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert all(c in out for c in ("train", "predict", "evaluate", "demo", "convert-labelme"))
    sub = subprocess.run([sys.executable, "-m", "solo_lib", "convert-labelme", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "INPUT_DIR" in sub and "--labels" in sub


def test_cli_version_and_every_train_option_has_help(capsys):
    from solo_lib import __version__
    from solo_lib.__main__ import build_parser, main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"solo_lib {__version__}"
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    missing = [a.option_strings[0] for a in train._actions if a.option_strings and not a.help]
    assert missing == [], missing


# The train -> predict -> evaluate round trip through the command line is
# tests/test_real_photos.py::test_cli_loop_on_the_real_photos (it also converts LabelMe first).
