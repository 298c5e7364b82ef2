"""The command line generated from the configuration dataclasses (``solo_lib.cli_options``,
``solo_lib.commands``): every field is an option, defaults and help come from the dataclasses, the
options build the same configuration the library would, and the parser imports no TensorFlow."""

import argparse
import dataclasses
import subprocess
import sys
import typing

import pytest

from solo_lib import commands
from solo_lib.__main__ import build_parser, main
from solo_lib.cli_options import Option, add_options, config_from_args, field_docs
from solo_lib.data.augment_config import AugmentConfig
from solo_lib.errors import ConfigError
from solo_lib.train_config import RECIPES, TrainConfig


def _train_parser():
    return build_parser()._subparsers._group_actions[0].choices["train"]


def _config(*argv):
    return commands._train_config(build_parser().parse_args(["train", *argv]))


def test_every_config_field_is_an_option():
    # A new TrainConfig or AugmentConfig field fails this test until it has an option (one line in
    # solo_lib/commands.py) and a docstring entry; "augment" is the AugmentConfig options' group.
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"augment"}
    assert {o.field for o in commands.TRAIN_OPTIONS} == train_fields
    # AugmentConfig.extra holds the parameters of augmentations registered from outside
    # (solo_lib.data.augment_registry); the command line sets the built-in ones.
    augment_fields = {f.name for f in dataclasses.fields(AugmentConfig)} - {"extra"}
    assert {o.field for o in commands.AUGMENT_OPTIONS} == augment_fields
    for cls in (TrainConfig, AugmentConfig):
        assert set(field_docs(cls)) >= {f.name for f in dataclasses.fields(cls)}, cls.__name__


def test_no_options_give_the_dataclass_defaults():
    assert _config() == TrainConfig()
    for name, recipe in RECIPES.items():
        cfg = _config("--recipe", name)
        # The command line always writes checkpoints (its output); the notebook recipes keep none.
        assert cfg == recipe().replace(checkpoint_dir=cfg.checkpoint_dir), name
        assert cfg.checkpoint_dir == (recipe().checkpoint_dir or "checkpoints")


def test_help_shows_each_default_and_the_docstring():
    by_flag = {a.option_strings[0]: a for a in _train_parser()._actions if a.option_strings}
    helps = {flag: action.help for flag, action in by_flag.items()}
    assert helps["--batch-size"].startswith("global batch (16 in the paper")  # TrainConfig's docstring
    assert helps["--batch-size"].endswith("(default: 16)")  # ... and default
    assert helps["--brightness-delta"].startswith("Largest brightness shift")  # AugmentConfig's
    assert "largest size whose long side is" in helps["--image-scale"]  # SOLOConfig's
    assert helps["--image-scale"].endswith("(default: the preset's)")
    # Field names in the help are replaced by the options a user types.
    assert "micro-batches of --batch-size / --accumulate-steps images" in helps["--accumulate-steps"]
    assert "with --stream" not in helps["--memory-budget-mb"] and "without --stream, refuse" in helps[
        "--memory-budget-mb"]
    assert not [flag for flag, text in helps.items() if "batch_size" in (text or "")]
    assert helps["--decay-epochs"].endswith("(default: 9 11)")
    assert by_flag["--optimizer"].choices == ["sgd", "adam"]
    assert helps["--stream"].startswith("without --stream: decode the dataset once into memory")
    assert helps["--stream"].endswith("(default: off)")
    assert by_flag["--scale-range"].nargs == 2 and by_flag["--decay-epochs"].nargs == "*"
    assert by_flag["--short-sides"].nargs == "+"


def test_options_replace_fields_and_keep_the_rest():
    cfg = _config("--recipe", "overfit_sample", "--epochs", "5", "--batch-size", "2", "--clip-norm", "none",
                  "--decay-epochs", "--stream", "--flip-prob", "0.25", "--scale-range", "0.8", "1.25",
                  "--crop-size", "96", "128", "--pretrained-reset", "--momentum", "0.8", "--jit")
    base = TrainConfig.overfit_sample()
    assert cfg == base.replace(epochs=5, batch_size=2, clip_norm=None, decay_epochs=(), in_memory=False,
                               augment=dataclasses.replace(base.augment, flip_prob=0.25, scale_range=(0.8, 1.25),
                                                           crop_size=(96, 128)),
                               pretrained_reset=(), momentum=0.8, jit_compile=True, checkpoint_dir="checkpoints")
    assert _config("--short-sides", "640", "800").short_sides == (640, 800)
    # --epochs reaches the recipe, whose decay epochs follow it; paper_1x's are fixed (9, 11).
    assert _config("--recipe", "overfit_sample", "--epochs", "10").decay_epochs == (8,)
    assert _config("--epochs", "10").decay_epochs == (9, 11)
    assert _config("--short-sides", "none").short_sides is None


@pytest.mark.parametrize("argv, message", [
    (["--flip-prob", "2"], "invalid augmentation option: --flip-prob must be a number in [0, 1], got 2.0"),
    (["--clip-norm", "0"], "invalid train option: --clip-norm must be > 0 (or none), got 0.0"),
    (["--momentum", "1"], "--momentum must be in [0, 1) and --weight-decay >= 0"),
    (["--batch-size", "6", "--accumulate-steps", "4"], "--batch-size (6) must be a multiple of --accumulate-steps"),
    (["--scale-range", "2", "1"], "--scale-range must be (low, high) with 0 < low <= high"),
])
def test_invalid_values_name_the_option(argv, message):
    with pytest.raises(ConfigError) as err:
        _config(*argv)
    assert message in str(err.value)


def test_invalid_values_exit_2_with_one_line(capsys, tmp_path):
    assert main(["train", "--warmup-ratio", "0", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid train option: --warmup-steps must be >= 0 and --warmup-ratio in (0, 1]")
    assert "\n" not in err and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as stop:  # argparse's own usage errors: also 2
        main(["train", "--optimizer", "sgdd"])
    assert stop.value.code == 2


def test_predict_and_evaluate_check_their_options_before_loading_tensorflow(tmp_path):
    # In a fresh interpreter: the parser and the option checks import no TensorFlow.
    code = ("import sys\nfrom solo_lib.__main__ import main\n"
            f"status = main(['evaluate', '--model', 'm.keras', '--results', {str(tmp_path / 'no' / 'r.json')!r}])\n"
            "status2 = main(['predict', '--model', 'm.keras', '--image', 'x.png', '--out', 'out.nope'])\n"
            "status3 = main(['train', '--epochs', '0'])\n"
            "print(status, status2, status3, 'tensorflow' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert run.stdout.split() == ["2", "2", "2", "False"], run.stdout + run.stderr
    assert "--results" in run.stderr and "cannot tell the picture format" in run.stderr
    assert "--epochs must be >= 1" in run.stderr


def test_prog_is_the_name_the_user_typed(monkeypatch):
    assert build_parser(prog="solo").format_usage().startswith("usage: solo ")
    monkeypatch.setattr(sys, "argv", ["/venv/bin/solo", "train"])
    assert build_parser().prog == "solo"
    monkeypatch.setattr(sys, "argv", ["/repo/solo_lib/__main__.py"])
    assert build_parser().prog == "python -m solo_lib"


def test_a_toy_dataclass_round_trips():
    # The generator itself, on a dataclass it has never seen: types, nargs, None, bools, help.
    @dataclasses.dataclass(frozen=True)
    class Toy:
        """A toy.

        Attributes:
            size: how big, see ``colour_name``.
            pair: two numbers.
            many: any number of names.
            maybe: a limit, or None for none.
            colour_name: one of two.
            loud: shout.
        """

        size: int = 3
        pair: tuple[float, float] = (1.0, 2.0)
        many: tuple[str, ...] = ("a",)
        maybe: int | None = 5
        colour_name: typing.Literal["red", "blue"] = "red"
        loud: bool = False

    options = [Option("size", "--size"), Option("pair", "--pair"), Option("many", "--many"),
               Option("maybe", "--maybe"), Option("colour_name", "--colour"), Option("loud", "--loud")]
    parser = argparse.ArgumentParser()
    add_options(parser, Toy, options, defaults=Toy())
    assert config_from_args(Toy(), parser.parse_args([]), options) == Toy()
    args = parser.parse_args(["--size", "4", "--pair", "0.5", "7", "--many", "--maybe", "none", "--colour", "blue",
                              "--loud"])
    assert config_from_args(Toy(), args, options) == Toy(4, (0.5, 7.0), (), None, "blue", True)
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["size"] == "how big, see --colour. (default: 3)"
    assert helps["maybe"] == "a limit, or none for none. (default: 5)"
    with pytest.raises(ValueError, match="docstring does not describe 'size'"):
        add_options(argparse.ArgumentParser(), type("Bare", (Toy,), {"__doc__": "Nothing."}), options[:1])
