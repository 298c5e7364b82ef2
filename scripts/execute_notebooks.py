"""Re-executes notebooks in place, the way CI runs them, so their committed outputs match.

Usage (from the repo root, through ``make notebooks`` which sets the CI environment):
    python scripts/execute_notebooks.py notebooks/00_setup_and_tour.ipynb [...]

Each notebook runs in a fresh kernel of the current Python (the venv), with ``notebooks/`` as
its working directory; the time each took is printed. The notebooks keep the ``solo-course``
kernelspec that ``make lab`` registers.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KERNELSPEC = {"name": "solo-course", "display_name": "Python 3 (solo-course)", "language": "python"}


def execute(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    seconds = time.perf_counter() - start
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata.setdefault("language_info", {})["name"] = "python"
    nbformat.write(nb, path)
    return seconds


def main(paths: list[str]) -> int:
    total = 0.0
    for name in paths:
        seconds = execute(Path(name))
        total += seconds
        print(f"{seconds:6.1f} s  {name}", flush=True)
    print(f"{total:6.1f} s  total")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
