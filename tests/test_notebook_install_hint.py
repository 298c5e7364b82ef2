"""Every notebook's first code cell says how to install ``solo_lib`` when the kernel lacks it (a
notebook opened in Colab or a plain Jupyter), instead of failing on an import with no hint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _first_code_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def _hint(source: str) -> str:
    """The ``try: import solo_lib ... from None`` block of a first cell."""
    lines = source.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("try:")))
    end = next(i for i, line in enumerate(lines) if line.endswith("from None"))
    return "\n".join(lines[start:end + 1])


def test_every_notebook_has_the_same_hint_before_its_other_imports():
    assert len(NOTEBOOKS) >= 14
    hints = set()
    for path in NOTEBOOKS:
        source = _first_code_cell(path)
        hint = _hint(source)
        hints.add(hint)
        before = source[:source.index(hint)]
        assert "import" not in before, path.name  # nothing is imported before it
    assert len(hints) == 1


@pytest.mark.parametrize("installed", [False, True])
def test_the_hint_says_how_to_install_only_when_solo_lib_is_missing(installed):
    hint = _hint(_first_code_cell(NOTEBOOKS[0]))
    # sys.modules["solo_lib"] = None makes `import solo_lib` fail as a missing module would.
    hide = "" if installed else "import sys\nsys.modules['solo_lib'] = None\n"
    run = subprocess.run([sys.executable, "-c", hide + hint], capture_output=True, text=True)
    if installed:
        assert run.returncode == 0 and run.stdout == "", run.stderr
    else:
        last = run.stderr.strip().splitlines()[-1]
        assert last.startswith("ModuleNotFoundError: solo_lib is not installed in this kernel")
        assert "make lab" in last and "pip install ." in last
