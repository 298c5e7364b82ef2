"""The repository contract: pins agree between pip and conda, and the two commands exist."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pip_pins(lines):
    """Requirement lines (comments and blanks dropped), whitespace-normalised."""
    pins = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            pins.append(re.sub(r"\s+", " ", line))
    return pins


def requirements():
    return pip_pins((ROOT / "requirements.txt").read_text().splitlines())


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


def test_every_requirement_is_pinned_exactly():
    for req in requirements():
        assert re.match(r"^[A-Za-z0-9_.\-\[\]]+==[0-9][^;\s]*(\s*;.*)?$", req), f"not an exact pin: {req}"


def test_conda_environment_lists_the_same_pins():
    assert conda_pip_section() == requirements()


def test_pyproject_dependencies_are_all_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {name_of(d) for d in project["dependencies"] + project["optional-dependencies"]["dev"]
                + project["optional-dependencies"]["export"]}
    pinned = {name_of(r) for r in requirements()}
    assert declared <= pinned, f"declared in pyproject but not pinned: {sorted(declared - pinned)}"


def test_the_field_dependencies_are_present():
    pinned = {name_of(r) for r in requirements()}
    for name in ("tensorflow-cpu", "tensorflow", "keras", "jupyterlab", "ipywidgets", "matplotlib", "numpy",
                 "pycocotools", "nbval", "pytest"):
        assert name in pinned, name


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make lab") < readme.index("make test") < readme.index("conda env create")
