"""The repository contract: pins agree between pip, conda and pyproject, the two commands exist, and
solo_lib installs as a package that runs without the repository.

The last part builds solo_lib's wheel (not an editable install) from a copy of the sources, installs it
into a fresh virtual environment that borrows this one's dependencies (TensorFlow is not downloaded
again) but not its editable solo_lib, and runs ``python -m solo_lib demo`` from a folder outside the
repository: the sample data, the sample model and the pretrained weights must come from the installed
package (``solo_lib/_data``, see ``solo_lib/resources.py``).
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib

from solo_lib import resources

ROOT = Path(__file__).resolve().parents[1]


def pip_pins(lines):
    """Requirement lines (comments and blanks dropped), whitespace-normalised."""
    pins = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            pins.append(re.sub(r"\s+", " ", line))
    return pins


def requirements(name="requirements.txt"):
    return pip_pins((ROOT / name).read_text().splitlines())


def added_for_tests():
    """requirements-test.txt's own pins: its ``-r requirements.txt`` line taken off."""
    lines = requirements("requirements-test.txt")
    assert lines[0] == "-r requirements.txt", "requirements-test.txt must start from what a learner installs"
    assert not any(line.startswith("-") for line in lines[1:]), lines
    return lines[1:]


def conda_pip_section():
    """The ``- pip:`` list of environment.yml (parsed by hand: no YAML dependency needed)."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
    items = []
    for line in lines[start + 1:]:
        if not line.strip() or len(line) - len(line.lstrip()) < indent:
            break
        items.append(line.strip()[2:] if line.strip().startswith("- ") else line.strip())
    return pip_pins(items)


def name_of(requirement):
    return re.split(r"[=<>!~;\s\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def version_of(requirement, operator):
    """The version after ``operator`` (``==`` or ``>=``) and the environment marker, if any."""
    spec, _, marker = requirement.partition(";")
    return spec.split(operator, 1)[1].strip(), re.sub(r"[\s'\"]", "", marker)


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-test.txt"])
def test_every_requirement_is_pinned_exactly(name):
    pins = added_for_tests() if name == "requirements-test.txt" else requirements(name)
    for req in pins:
        assert re.match(r"^[A-Za-z0-9_.\-\[\]]+==[0-9][^;\s]*(\s*;.*)?$", req), f"{name}: not an exact pin: {req}"


def test_the_test_tools_are_not_in_a_learners_install():
    learner = {name_of(r) for r in requirements()}
    test_only = {name_of(r) for r in added_for_tests()}
    assert not learner & test_only, f"pinned in both files: {sorted(learner & test_only)}"
    assert {"pytest", "nbval", "playwright", "ruff"} <= test_only


def test_conda_environment_lists_the_learners_pins():
    assert conda_pip_section() == requirements()


def test_pyproject_bounds_are_the_tested_pins():
    """Each lower bound in pyproject is the pinned version (only the pins are tested), and each
    package pyproject declares is pinned: dependencies and the lab/export extras in requirements.txt,
    the test extra in requirements-test.txt."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project, extras = pyproject["project"], pyproject["project"]["optional-dependencies"]
    for declared, pinned_in in ((project["dependencies"] + extras["lab"] + extras["export"], requirements()),
                                (extras["test"] + pyproject["build-system"]["requires"], added_for_tests())):
        pins = {(name_of(r), version_of(r, "==")[1]): version_of(r, "==")[0] for r in pinned_in}
        for dependency in declared:
            floor, marker = version_of(dependency, ">=")
            key = (name_of(dependency), marker)
            assert key in pins, f"pyproject declares {dependency!r}, not pinned with that marker"
            assert floor == pins[key], f"pyproject's {dependency!r}: its lower bound is not the tested pin {pins[key]}"


def test_the_field_dependencies_are_present():
    pinned = {name_of(r) for r in requirements()}
    for name in ("tensorflow-cpu", "tensorflow", "keras", "jupyterlab", "ipywidgets", "matplotlib", "numpy",
                 "pycocotools"):
        assert name in pinned, name


def test_make_test_installs_the_test_tools():
    """``make test`` (and every target that runs pytest) depends on the test install, whose stamp
    depends on the learner's install and on requirements-test.txt."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(TEST_STAMP\): \$\(STAMP\) requirements-test\.txt\n\t.*-r requirements-test\.txt",
                     makefile, re.M)
    assert re.search(r"^\$\(STAMP\): requirements\.txt pyproject\.toml\n(\t.*\n)*\t.*-r requirements\.txt\n",
                     makefile, re.M)
    for target in ("test", "unit", "nbval", "browser", "bench"):
        assert re.search(rf"^{target}: venv-test$", makefile, re.M), target
    for target in ("lab", "demo", "demo-real"):
        assert re.search(rf"^{target}: venv$", makefile, re.M), target


def test_ci_runs_the_readme_test_command():
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make lab") < readme.index("make test") < readme.index("conda env create")


def test_pyproject_lists_every_package():
    """pyproject lists its packages by hand (to map solo_lib._data onto data/): a new subpackage
    left out of the list would be missing from the wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "solo_lib").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert set(setuptools["packages"]) == on_disk | {"solo_lib._data"}
    for package in on_disk:
        assert (ROOT / package.replace(".", "/") / "__init__.py").is_file(), package
    assert setuptools["package-dir"] == {"solo_lib._data": "data"}


def digests(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_checkout_reads_the_repositorys_data_folder():
    assert resources.data_dir() == ROOT / "data"
    assert resources.shipped_dataset_dir("real_photos") == ROOT / "data" / "real_photos"
    assert resources.pretrained_shapes().is_file() and (resources.sample_model_dir() / "tiny_sample.json").is_file()
    with pytest.raises(ValueError, match="dataset must be one of"):
        resources.shipped_dataset_dir("coco")


def test_no_data_anywhere_says_where_it_looked(tmp_path):
    """A solo_lib with neither solo_lib/_data nor ../data (here a copy of the package alone) fails with
    both places and how to install, not with a path into nowhere."""
    shutil.copytree(ROOT / "solo_lib", tmp_path / "solo_lib", ignore=shutil.ignore_patterns("__pycache__"))
    run = subprocess.run([sys.executable, "-c", "import solo_lib.resources as r; r.data_dir()"], cwd=tmp_path,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=""))
    assert run.returncode == 1
    assert (f"neither in {tmp_path / 'solo_lib' / '_data'} (an installed wheel) nor in {tmp_path / 'data'}"
            in run.stderr), run.stderr
    assert "pip install ." in run.stderr


# --- a non-editable install in a fresh environment -----------------------------------------------

# Run in the installed environment: where solo_lib and its data come from, and every data file's digest.
PROBE = """
import hashlib, json, solo_lib, solo_lib.resources as r
d = r.data_dir()
print(json.dumps({"solo_lib": solo_lib.__file__, "data": str(d), "files": {
    p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
    if p.is_file()}}))
"""


def _run(command, **kwargs):
    run = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert run.returncode == 0, f"{command} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv holding solo_lib's wheel, seeing this venv's dependencies through a ``.pth`` line.

    A ``.pth`` line only adds a folder to ``sys.path``: the ``.pth`` files inside that folder (among
    them the editable install's finder, which would import the repository's solo_lib) are not run.
    """
    work = tmp_path_factory.mktemp("packaging")
    src = work / "src"  # built from a copy: the build writes build/ and *.egg-info beside pyproject.toml
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "solo_lib", src / "solo_lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data", src / "data")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", work / "dist", src])
    wheel = next((work / "dist").glob("solo_lib-*.whl"))
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # Installed before the .pth exists, so that pip sees no solo_lib already there (this venv's editable one).
    _run([*pip, "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "zz_solo_course_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    outside = work / "elsewhere"  # cwd: neither the repository nor the sources beside it
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg", TQDM_DISABLE="1", CUDA_VISIBLE_DEVICES="")
    return python, venv, outside, env


def test_the_installed_package_carries_its_data(installed):
    python, venv, outside, env = installed
    probe = json.loads(_run([python, "-c", PROBE], cwd=outside, env=env).stdout)
    assert Path(probe["solo_lib"]).is_relative_to(venv), f"imported the repository's solo_lib: {probe['solo_lib']}"
    assert Path(probe["data"]) == Path(probe["solo_lib"]).parent / "_data"
    assert probe["files"] == digests(ROOT / "data")  # every file of data/, byte for byte


def test_the_installed_demo_runs_outside_the_repository(installed):
    python, _, outside, env = installed
    run = _run([python, "-m", "solo_lib", "demo", "--epochs", "1", "--out", "out"], cwd=outside, env=env)
    for split in ("train", "val"):
        assert re.search(rf"^{split}\s+mask AP \d\.\d{{3}}  AP50 \d\.\d{{3}}", run.stdout, re.M), run.stdout
    val_images = json.loads((ROOT / "data/sample_coco/annotations/instances_val.json").read_text())["images"]
    assert sorted(p.name for p in (outside / "out").iterdir()) == sorted(
        ["demo_model.keras"] + [f"val_{image['id']:03d}.png" for image in val_images])
