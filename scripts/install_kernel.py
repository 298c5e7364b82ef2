"""Registers the venv's Python as the ``solo-course`` Jupyter kernel (``make lab`` runs this).

Usage: ``python scripts/install_kernel.py`` (from the venv; installs into ``sys.prefix``).

The kernel is ipykernel's, with one option: ``--IPKernelApp.capture_fd_output=False``. Since
ipykernel 6 a kernel also forwards what C and C++ libraries write straight to file descriptors 1
and 2 into the notebook. TensorFlow's C++ runtime writes a timestamped log line there when it
loads (for example "oneDNN custom operations are on", which ``TF_CPP_MIN_LOG_LEVEL`` does not
silence because it is written before TensorFlow's logging is set up), so every notebook's first
cell would show it. With the option off, those lines go to the terminal that runs JupyterLab,
as they did before ipykernel 6; Python's own ``print``, warnings and progress bars still appear in
the notebook. ``scripts/execute_notebooks.py`` starts its kernels with the same option, so
committed outputs show what a learner sees.
"""

import shutil
import sys

from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager

KERNEL_NAME = "solo-course"
DISPLAY_NAME = "Python 3 (solo-course)"
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]


def main() -> None:
    spec_dir = write_kernel_spec(overrides={"display_name": DISPLAY_NAME}, extra_arguments=KERNEL_ARGUMENTS)
    try:  # copies the spec into <prefix>/share/jupyter/kernels/solo-course, replacing an older one
        KernelSpecManager().install_kernel_spec(spec_dir, KERNEL_NAME, prefix=sys.prefix)
    finally:
        shutil.rmtree(spec_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
