"""Environment report (notebook 00): versions, devices and the course's expectations.

Importing this module does not import TensorFlow; :func:`environment_report` does.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from importlib import metadata

# The packages the course needs, with the version requirements.txt pins.
PACKAGES = ("tensorflow", "keras", "numpy", "pycocotools", "pillow", "matplotlib", "ipywidgets", "tqdm")


@dataclasses.dataclass(frozen=True)
class Environment:
    """What a learner's machine offers.

    Attributes:
        python: Python version, e.g. ``"3.11.7"``.
        platform: OS and architecture.
        cpu_count: logical CPUs.
        versions: installed version of each package in :data:`PACKAGES` (``None`` if missing).
        gpus: names of the GPUs TensorFlow sees (empty on a CPU-only machine).
    """

    python: str
    platform: str
    cpu_count: int
    versions: dict
    gpus: tuple[str, ...]

    @property
    def missing(self) -> list[str]:
        return [name for name, version in self.versions.items() if version is None]


def installed_version(package: str) -> str | None:
    """The installed distribution version; ``tensorflow`` also matches ``tensorflow-cpu``."""
    candidates = (package, f"{package}-cpu") if package == "tensorflow" else (package,)
    for name in candidates:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def probe_environment() -> Environment:
    """Collects the facts; imports TensorFlow to list its GPUs."""
    import tensorflow as tf

    gpus = tuple(d.name for d in tf.config.list_physical_devices("GPU"))
    return Environment(
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        cpu_count=os.cpu_count() or 1,
        versions={name: installed_version(name) for name in PACKAGES},
        gpus=gpus,
    )


def environment_report(env: Environment | None = None) -> str:
    """A short human-readable report of :func:`probe_environment`."""
    env = env or probe_environment()
    lines = [f"Python {env.python} on {env.platform}, {env.cpu_count} logical CPU(s)"]
    lines += [f"  {name:<12} {version or 'MISSING'}" for name, version in env.versions.items()]
    if env.gpus:
        lines.append(f"GPU(s): {', '.join(env.gpus)}: training will use them")
    else:
        lines.append("No GPU: everything runs on the CPU (the course is sized for that)")
    if env.missing:
        lines.append(f"Missing packages: {', '.join(env.missing)}; run `make lab` or `pip install -r requirements.txt`")
    if sys.version_info < (3, 11):
        lines.append("Python 3.11 or newer is required (the pinned numpy, Keras, matplotlib and Pillow need it)")
    return "\n".join(lines)
