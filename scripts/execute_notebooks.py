"""Re-executes notebooks in place, the way CI runs them, so their committed outputs match.

Usage (from the repo root, through ``make notebooks``, which sets the CI environment):
    python scripts/execute_notebooks.py notebooks/00_setup_and_tour.ipynb [...]

Each notebook runs in a fresh kernel of the current Python (the venv), with its own folder as
the working directory; the time each took is printed. The notebooks keep the ``solo-course``
kernelspec that ``make lab`` registers, and the kernel gets that kernelspec's option
(``scripts/install_kernel.py``: C-level output such as TensorFlow's start-up log lines goes to the
terminal, not into the notebook).

Why not ``nbclient`` / ``jupyter nbconvert --execute``: when a cell changes a widget's value
(our notebooks drive each widget once so nbval exercises it), nbclient sometimes waits for the
whole cell timeout before it sees the reply (jupyter/nbclient#312, still open). This executor
reads IOPub until the kernel reports idle for the request, as nbval does, which is not affected.
"""

import sys
import time
from pathlib import Path
from queue import Empty

import nbformat
from jupyter_client.manager import start_new_kernel
from nbformat.v4 import output_from_msg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from install_kernel import KERNEL_ARGUMENTS  # noqa: E402  (the same kernel option as `make lab`)

KERNELSPEC = {"name": "solo-course", "display_name": "Python 3 (solo-course)", "language": "python"}


def _append(outputs: list, out) -> None:
    """Appends an output, merging consecutive stream outputs of the same name (as nbclient does)."""
    if out.output_type == "stream" and outputs and outputs[-1].output_type == "stream" \
            and outputs[-1].name == out.name:
        outputs[-1].text += out.text
    else:
        outputs.append(out)


def run_cell(kc, source: str, timeout: float) -> tuple[list, int | None]:
    """Executes one cell; returns its outputs and execution count. Raises on an error output."""
    msg_id = kc.execute(source, allow_stdin=False)
    outputs, count, clear_pending = [], None, False
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except Empty:
            raise TimeoutError(f"cell did not finish within {timeout} s:\n{source[:200]}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content["execution_state"] == "idle":
            break
        if kind == "execute_input":
            count = content["execution_count"]
        elif kind == "clear_output":
            if content.get("wait"):
                clear_pending = True
            else:
                outputs.clear()
        elif kind in ("stream", "display_data", "execute_result", "error"):
            if clear_pending:
                outputs.clear()
                clear_pending = False
            _append(outputs, output_from_msg(msg))
            if kind == "error":
                raise RuntimeError(f"cell raised {content['ename']}: {content['evalue']}\n{source[:300]}")
    kc.get_shell_msg(timeout=timeout)  # the execute_reply, already sent by now
    return outputs, count


def execute(path: Path, timeout: float = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(path.parent.resolve()), extra_arguments=KERNEL_ARGUMENTS)
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            cell.outputs, cell.execution_count = run_cell(kc, cell.source, timeout)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
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
