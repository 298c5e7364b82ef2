"""Files on disk for a training run: its checkpoints and its folder (notebooks 08-09).

A checkpoint ``epoch_NNNN.keras`` is a whole Keras model file: the weights, the optimizer state
(its step counter and slots, and the learning-rate schedule, a registered ``solo_lib.optim``
object), the epoch counter ``epochs_done`` and the training set's ``class_names``. A resumed run
therefore continues exactly where it stopped, and predictions name their classes.
:func:`load_checkpoint` reads one back with ``safe_mode=True``.

Writes are atomic (:func:`save_atomically`): the model is saved to a hidden
``.tmp-PID-epoch_NNNN.keras`` in the same folder, then renamed into place, so a run killed while
saving (or stopped by a full disk) never leaves a half-written checkpoint that a resumed run would
take for the newest. The partial files of stopped runs are removed at the next start
(:func:`remove_stale_temporaries`).

A fresh run refuses a folder that already holds another run's checkpoints
(:func:`refuse_other_run`): its files would replace the others one epoch at a time, and a later
resume (which starts from the newest file) would mix the two runs. Resume that run, choose another
folder, or delete its checkpoints first with ``overwrite`` (:func:`remove_checkpoints`). Before
training, the folder is also proved writable and checked for room for one checkpoint
(:func:`prepare_output_dir`, :func:`check_free_space`), so a bad folder fails now rather than after
an epoch.

Pretrained weights, the other file a run may start from, are :mod:`solo_lib.pretrained`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import keras
import numpy as np

import solo_lib.optim  # noqa: F401  (registers the optimizer and schedule a checkpoint refers to)
from solo_lib.errors import CheckpointError, MissingFileError
from solo_lib.model.solov2 import SOLOv2

CHECKPOINT = re.compile(r"^epoch_(\d{4})\.keras$")
TEMPORARY = re.compile(r"^\.tmp-(\d+)-epoch_\d{4}\.keras$")  # save_atomically's names


def save_atomically(model: keras.Model, path: Path) -> None:
    """Saves to a hidden temporary file in the same folder, then renames it into place. The
    temporary file is removed if saving fails (a full disk, an interruption).

    Raises:
        CheckpointError: the folder cannot be written (no space, no permission).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save(tmp)
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise CheckpointError(f"{path}: cannot write the checkpoint ({err.strerror or err}); free some space "
                                  f"or choose another checkpoint folder (--out)") from err
        raise


def save_checkpoint(model: keras.Model, path: Path, *, chief: bool = True) -> None:
    """Writes ``path`` with :func:`save_atomically` on the chief; on another worker of a
    multi-worker run (``chief=False``), saves the same model to a temporary folder of its own and
    deletes it.

    Saving a Keras model under ``MultiWorkerMirroredStrategy`` runs collective operations (it
    creates and reads variables), which every worker must join, so the other workers cannot just
    skip it; they must not write into the chief's folder either (on a shared disk they would
    replace its files). Keras' multi-worker tutorial and tf.keras's ``ModelCheckpoint`` do the
    same (``solo_lib.distributed``).

    Raises:
        CheckpointError: the folder cannot be written (no space, no permission).
    """
    if chief:
        save_atomically(model, path)
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"solo-worker-{os.getpid()}-"))
    try:
        save_atomically(model, scratch / path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_checkpoint(path: str | os.PathLike) -> SOLOv2:
    """Loads a ``.keras`` checkpoint (model, optimizer state, epoch counter) with ``safe_mode=True``.

    Use this rather than ``keras.saving.load_model`` directly: importing this module registers the
    learning-rate schedule the saved optimizer refers to, and the file is checked first so a bad
    one fails with a message that says what is wrong with it. The model's ``checkpoint_path``
    attribute names the file (error messages about its classes use it).

    Raises:
        MissingFileError: no such file.
        CheckpointError: a folder, not a ``.keras`` name, not a complete ``.keras`` archive
            (truncated or damaged), refused by Keras (e.g. by ``safe_mode``), or not a SOLOv2 model.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: checkpoint not found; give the path of an epoch_NNNN.keras file")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give a .keras checkpoint file inside it "
                              f"(e.g. {path / 'epoch_0001.keras'})")
    if path.suffix != ".keras":
        raise CheckpointError(f"{path} is not a .keras checkpoint (a .keras file is what train writes; "
                              f".weights.h5 files hold weights only: see solo_lib.pretrained.load_pretrained)")
    try:
        with zipfile.ZipFile(path) as archive:
            complete = archive.testzip() is None and {"config.json", "model.weights.h5"} <= set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        complete = False
    if not complete:
        raise CheckpointError(f"{path} is not a complete .keras file (truncated or damaged); use an earlier "
                              f"checkpoint or train again")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as err:
        reason = " ".join(str(err).split("Full object config")[0].split())[:400]  # Keras appends the whole config
        raise CheckpointError(f"{path} cannot be loaded as a solo_lib checkpoint: {reason}") from err
    if not isinstance(model, SOLOv2):
        raise CheckpointError(f"{path} holds a {type(model).__name__}, not a SOLOv2 model")
    model.checkpoint_path = str(path)
    return model


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The ``epoch_NNNN.keras`` file with the highest epoch in ``directory`` (None if none)."""
    found = run_checkpoints(directory)
    return found[-1] if found else None


def run_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The ``epoch_NNNN.keras`` files in ``directory``, by epoch (none if it does not exist)."""
    return sorted(p for p in Path(directory).glob("epoch_*.keras") if CHECKPOINT.match(p.name))


def resume_path(model_path: str | os.PathLike | None, directory: str | os.PathLike | None) -> Path:
    """The checkpoint a resumed run starts from: ``model_path``, or the newest in ``directory``."""
    if model_path:
        return Path(model_path)
    directory = directory or "."
    path = latest_checkpoint(directory)
    if path is None:
        raise CheckpointError(f"{directory}: no epoch_NNNN.keras checkpoint to resume from; start a fresh run "
                              f"(without --resume), or name the checkpoint with --model-path")
    return path


def refuse_other_run(directory: str | os.PathLike) -> None:
    """Fails if ``directory`` already holds ``epoch_NNNN.keras`` files: a fresh run there would mix
    with that other run.

    Raises:
        CheckpointError: it does; the message says how to resume, move or overwrite.
    """
    found = run_checkpoints(directory)
    if found:
        names = ", ".join(p.name for p in found) if len(found) <= 3 else f"{found[0].name} .. {found[-1].name}"
        raise CheckpointError(
            f"{directory} already holds another run's checkpoints ({names}); a fresh run there "
            f"would mix with them. Continue that run with --resume "
            f"(load_previous_model=True), choose a new folder (--out), or delete them first with "
            f"--overwrite (overwrite=True)")


def remove_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Deletes the ``epoch_NNNN.keras`` files in ``directory`` (what ``overwrite`` does); returns them."""
    removed = run_checkpoints(directory)
    for p in removed:
        p.unlink()
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or a platform that cannot tell: leave its file alone
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Deletes the partial ``.tmp-PID-epoch_NNNN.keras`` files that processes which no longer run
    left in ``directory`` (killed while saving); returns them."""
    removed = []
    for p in Path(directory).glob(".tmp-*-epoch_*.keras"):
        match = TEMPORARY.match(p.name)
        if match and not _process_alive(int(match.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def prepare_output_dir(directory: str | os.PathLike, what: str, option: str) -> Path:
    """Creates ``directory`` and proves it writable (writes and deletes a probe file) before any
    training, so an unwritable folder fails now rather than after an epoch.

    Raises:
        CheckpointError: it cannot be created or written; the message names it and ``option``.
    """
    directory = Path(directory)
    probe = directory / f".probe-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"solo_lib write test")
        probe.unlink()
    except OSError as err:
        raise CheckpointError(f"{directory}: cannot write {what} there ({err.strerror or err}); choose a "
                              f"writable folder with {option}") from None
    return directory


def check_free_space(directory: str | os.PathLike, model: keras.Model) -> None:
    """Fails now if ``directory`` (or, before it exists, its nearest existing parent) has less free
    space than one checkpoint of ``model`` needs (its weights plus up to two optimizer slots per
    weight, as Adam keeps).

    Raises:
        CheckpointError: not enough space.
    """
    need = 3 * sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights) + 2**20
    existing = Path(directory).absolute()
    while not existing.exists() and existing != existing.parent:  # the folder may not exist yet
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < need:
        raise CheckpointError(f"{directory}: {free / 2**20:.1f} MB free, but a checkpoint of this model needs "
                              f"about {need / 2**20:.1f} MB; free some space or choose another folder (--out)")
