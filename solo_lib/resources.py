"""Where the files the library reads at run time live: the sample data, the sample model and the
pretrained weights.

In the repository they sit in ``data/`` at its root, where the notebooks, the README and the
``scripts/`` that make them refer to them. A wheel (``pip install .``, not ``-e``) carries the same
folder inside the package as ``solo_lib/_data`` (``pyproject.toml`` maps the package
``solo_lib._data`` to ``data/``), so an installed ``solo_lib`` finds its data through
:mod:`importlib.resources` wherever Python runs, without the repository. The packaged copy is
looked up first: beside an installed package, ``../data`` is ``site-packages/data``, where another
distribution may have put an unrelated folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# What is shipped in data/: name -> folder. "sample" is a tiny dataset drawn by a program
# (scripts/make_sample_data.py); "real_photos" is three real photographs (notebook 08b).
SHIPPED_DATASETS = {"sample": "sample_coco", "real_photos": "real_photos"}
SAMPLE_MODEL_DIR = "sample_model"  # scripts/train_sample_model.py
PRETRAINED_DIR = "pretrained"  # scripts/pretrain_shapes.py


def data_dir() -> Path:
    """The folder holding ``sample_coco``, ``real_photos``, ``sample_model`` and ``pretrained``.

    Returns:
        ``solo_lib/_data`` in an installed wheel, else the repository's ``data/`` (a source
        checkout or an editable install).

    Raises:
        FileNotFoundError: neither exists (e.g. the package was imported from a zip file, or a
            checkout lost its ``data/`` folder), naming both places and how to get the data.
    """
    packaged = resources.files("solo_lib") / "_data"
    # A wheel installed on disk gives a pathlib.Path; a zip import gives a Traversable that
    # TensorFlow and pycocotools cannot open by name, so it counts as missing.
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[1] / "data"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"the course data is neither in {packaged} (an installed wheel) nor in {checkout} "
                            "(a source checkout); install solo_lib from a clone of the course repository with "
                            "`pip install .` (or `pip install -e .` to edit it)")


def shipped_dataset_dir(dataset: str) -> Path:
    """The folder of a shipped dataset: ``annotations/`` (COCO) and ``labelme/`` (images + LabelMe).

    Args:
        dataset: ``"sample"`` (``data/sample_coco``) or ``"real_photos"`` (``data/real_photos``).

    Raises:
        ValueError: ``dataset`` is not one of :data:`SHIPPED_DATASETS`.
    """
    if dataset not in SHIPPED_DATASETS:
        raise ValueError(f"dataset must be one of {sorted(SHIPPED_DATASETS)}, got {dataset!r}")
    return data_dir() / SHIPPED_DATASETS[dataset]


def sample_model_dir() -> Path:
    """``data/sample_model``: the tiny preset overfit on the sample training set, and its facts."""
    return data_dir() / SAMPLE_MODEL_DIR


def pretrained_shapes() -> Path:
    """``data/pretrained/tiny_shapes.weights.h5``: the tiny preset pretrained on synthetic shapes that
    are not the sample's (the starting point of notebook 08's and 08b's fine-tuning)."""
    return data_dir() / PRETRAINED_DIR / "tiny_shapes.weights.h5"
