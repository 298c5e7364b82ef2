"""Multi-worker training: two processes under MultiWorkerMirroredStrategy (TF_CONFIG on localhost).

A module-scoped fixture does the expensive part once (five training processes, three at a time):

* run A: two workers (``solo_lib.train.train`` in a script), a fresh run of 2 epochs x 2 steps on
  global batches of 4, writing checkpoints; the non-chief worker is given its own view of the
  run folder, which must stay untouched;
* run R, at the same time: the reference, one process with ``MirroredStrategy`` over two logical
  CPUs, which has exactly the workers' per-replica semantics;
* run B: two workers through the command line (``train --multi-worker --resume``), resuming from
  run A's epoch-1 checkpoint, which must end where the uninterrupted run A ended.

The tests then compare what these runs wrote.
"""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from solo_lib import distributed
from solo_lib.__main__ import main
from solo_lib.checkpoints import save_checkpoint
from solo_lib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 400  # seconds for all the runs (each takes 20-60 s on 2 shared cores)
# The training of every run: the tiny preset at a small scale, 2 epochs of 2 steps on global batches of 4
# (2 images per worker). The command line of run B says the same with its options (the model, and its
# image scale, come from the checkpoint it resumes).
TRAIN = dict(epochs=2, batch_size=4, steps_per_epoch=2, optimizer="sgd", learning_rate=0.01, warmup_steps=1,
             decay_epochs=())
CLI_TRAIN = ["--epochs", "2", "--batch-size", "4", "--steps-per-epoch", "2", "--optimizer", "sgd", "--lr", "0.01",
             "--warmup-steps", "1", "--decay-epochs"]

COMMON = textwrap.dedent("""
    import json, os, sys, traceback
    import numpy as np

    def finish(run):  # the outputs are written before the exit; os._exit: no wait on TensorFlow's threads
        try:
            run()
        except BaseException:
            traceback.print_exc()
            sys.stdout.flush(); sys.stderr.flush(); os._exit(1)
        sys.stdout.flush(); sys.stderr.flush(); os._exit(0)

    def setup(strategy, out, checkpoint_dir=None):
        import keras
        from solo_lib import distributed
        from solo_lib.config import SOLOConfig
        from solo_lib.data import pipeline
        from solo_lib.data.coco import load_sample_dataset
        from solo_lib.train_config import TrainConfig

        config, dataset = SOLOConfig.tiny(4, image_scale=(128, 128)), load_sample_dataset("train")
        cfg = TrainConfig(**json.loads(os.environ["SOLO_TEST_TRAIN"]), checkpoint_dir=checkpoint_dir)
        # Each replica's part of the first two global batches, as fit gets them: the pipeline of
        # train(), sharded by solo_lib.distributed, distributed by the strategy.
        keras.utils.set_random_seed(cfg.seed)
        data = pipeline.training_dataset(pipeline.in_memory_source(dataset), config, batch_size=cfg.batch_size,
                                         augment=cfg.augment, seed=cfg.seed)
        batches = iter(strategy.experimental_distribute_dataset(distributed.shard_by_data(data)))
        parts = [np.stack([np.asarray(v) for v in strategy.experimental_local_results(next(batches)[0])])
                 for _ in range(2)]
        np.save(os.path.join(out, "parts.npy"), np.stack(parts))  # (2 batches, local replicas, 2, H, W, 3)
        return config, dataset, cfg

    def train_and_save(strategy, config, dataset, cfg, out):
        import keras
        from solo_lib.train import train

        class FirstLoss(keras.callbacks.Callback):  # the loss of step 1 (logs hold the epoch's running mean)
            def on_train_batch_end(self, batch, logs=None):
                if not hasattr(self, "value"):
                    self.value = float(logs["loss"])

        first = FirstLoss()
        with strategy.scope():
            model, history = train(config, cfg, dataset, callbacks=[first], progress=False)
        np.savez(os.path.join(out, "weights.npz"), *[np.asarray(w) for w in model.weights])
        with open(os.path.join(out, "run.json"), "w") as f:
            json.dump({"history": history.history, "first_loss": first.value}, f)
""")

WORKER = COMMON + textwrap.dedent("""
    from solo_lib.distributed import describe, strategy_from_environment

    strategy = strategy_from_environment()  # first: before any other TensorFlow operation
    out, checkpoint_dir = sys.argv[1], sys.argv[2]
    print(describe(strategy), flush=True)

    def run():
        config, dataset, cfg = setup(strategy, out, checkpoint_dir)
        train_and_save(strategy, config, dataset, cfg, out)

    finish(run)
""")

REFERENCE = COMMON + textwrap.dedent("""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = sys.argv[1]

    def run():
        import keras
        from solo_lib.losses import solo_losses
        from solo_lib.model.solov2 import build_model

        config, dataset, cfg = setup(strategy, out)
        train_and_save(strategy, config, dataset, cfg, out)
        # The step-1 losses by hand, from the initial weights (train() seeds, then builds):
        # each half of the first global batch with its own normalisers, and the whole batch.
        keras.utils.set_random_seed(cfg.seed)
        model = build_model(config, class_names=dataset.class_names)
        np.savez(os.path.join(out, "initial.npz"), *[np.asarray(w) for w in model.weights])
        from solo_lib.data import pipeline
        keras.utils.set_random_seed(cfg.seed)
        data = pipeline.training_dataset(pipeline.in_memory_source(dataset), config, batch_size=cfg.batch_size,
                                         augment=cfg.augment, seed=cfg.seed)
        batches = iter(data)  # one iterator: a second one would be shuffled in another order
        (images, targets), second = next(batches), next(batches)
        np.save(os.path.join(out, "global.npy"), np.stack([np.asarray(images), np.asarray(second[0])]))

        def loss(part):
            return float(solo_losses(model(images[part], training=True),
                                     {k: v[part] for k, v in targets.items()}, config)["total"])

        with open(os.path.join(out, "losses.json"), "w") as f:
            json.dump({"halves": [loss(slice(0, 2)), loss(slice(2, 4))], "whole": loss(slice(0, 4))}, f)

    finish(run)
""")


def free_port() -> int:
    with socket.socket() as s:  # port 0: the system picks a free one (released at once; taken again by the worker)
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", TQDM_DISABLE="1", CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0",
               SOLO_TEST_TRAIN=json.dumps(TRAIN), **extra)
    return env


def start(runs: dict, name: str, command, tmp: Path, **env) -> None:
    """Starts ``command`` as ``runs[name]``, in its own process group (so a stuck run is killed with
    its children), its output to ``tmp/NAME.log``."""
    log = tmp / f"{name}.log"
    with open(log, "w") as f:
        runs[name] = (subprocess.Popen(command, cwd=ROOT, env=environment(**env), stdout=f, stderr=subprocess.STDOUT,
                                       start_new_session=True), log)


def wait_for(runs: dict, names, deadline: float) -> None:
    """Waits until the runs ``names`` end (at most until ``deadline``); fails with the output of every
    run unless they all ended with status 0."""
    for name in names:
        try:
            runs[name][0].wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            break
    if any(runs[name][0].returncode != 0 for name in names):
        stop(runs)
        report = "\n".join(f"--- {name} (status {process.returncode}):\n{log.read_text()[-4000:]}"
                           for name, (process, log) in runs.items())
        pytest.fail(f"a run failed or did not end within {TIMEOUT} s:\n{report}")


def stop(runs: dict) -> None:
    """Kills the process group of every run still running."""
    for process, _ in runs.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def tf_config(ports, index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multiworker")
    (tmp / "worker.py").write_text(WORKER)
    (tmp / "reference.py").write_text(REFERENCE)
    chief_dir, worker_view = tmp / "run", tmp / "worker1_view"  # run A's folder as each worker sees it
    for name in ("A0", "A1", "R"):
        (tmp / name).mkdir()
    runs, deadline = {}, time.monotonic() + TIMEOUT
    try:
        ports = [free_port(), free_port()]
        for i, folder in enumerate([chief_dir, worker_view]):
            start(runs, f"A{i}", [sys.executable, str(tmp / "worker.py"), str(tmp / f"A{i}"), str(folder)], tmp,
                  TF_CONFIG=tf_config(ports, i))
        start(runs, "R", [sys.executable, str(tmp / "reference.py"), str(tmp / "R")], tmp)
        wait_for(runs, ["A0", "A1"], deadline)
        # Run B: resume run A from its epoch-1 checkpoint, through the command line, into a new folder.
        ports = [free_port(), free_port()]
        for i in range(2):
            start(runs, f"B{i}", [sys.executable, "-m", "solo_lib", "train", "--multi-worker", *CLI_TRAIN, "--resume",
                                  "--model-path", str(chief_dir / "epoch_0001.keras"), "--out", str(tmp / "resumed")],
                  tmp, TF_CONFIG=tf_config(ports, i))
        wait_for(runs, ["R", "B0", "B1"], deadline)
    finally:
        stop(runs)
    return tmp, {name: log.read_text() for name, (_, log) in runs.items()}


def load(folder: Path, name: str):
    with np.load(folder / name) as f:
        return [f[k] for k in f.files]


def checkpoint_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array a ``.keras`` checkpoint holds (model weights and optimizer state), by name,
    read from its ``model.weights.h5`` without building the model."""
    import h5py

    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as f:
        arrays = {}
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return arrays


def assert_close_to_reference(got, want, start, what):
    """Weights after a few SGD steps, compared with the update ``want - start`` as the scale.

    Both runs compute the same per-replica losses on the same images, and a 2-way all-reduce adds
    two gradients in either order with the same result (float addition is commutative). What can
    still differ is the order of the float32 sums inside kernels that split their work over
    threads (oneDNN convolution gradients): each worker has its own 2-thread pool, the reference
    two devices sharing one. A reordered sum of n terms moves by about sqrt(n) * 6e-8 of their
    magnitude; the largest sums here (the first convolutions' weight gradients, over 2 images x
    128 x 128 positions) have n ~ 3e4, i.e. ~1e-5 of a gradient, carried about linearly through 4
    small steps. 1e-3 of the largest change of each weight tensor leaves a 100x margin, and is still
    100x below what training one replica on the whole batch changes (15% of the update for the
    median tensor, measured: the losses' normalisers differ, see the next tests).
    """
    for i, (g, w, s) in enumerate(zip(got, want, start)):
        if not np.issubdtype(w.dtype, np.floating):
            np.testing.assert_array_equal(g, w, err_msg=f"{what}: weight {i}")
            continue
        scale = float(np.max(np.abs(w - s)))
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-3 * scale + 4 * np.finfo(np.float32).eps * np.abs(w).max(),
                                   err_msg=f"{what}: weight {i}")


def test_both_workers_hold_identical_weights(runs):
    tmp, _ = runs
    a0, a1 = load(tmp / "A0", "weights.npz"), load(tmp / "A1", "weights.npz")
    assert len(a0) == len(a1) > 50
    # Exactly: both apply the same all-reduced gradient (a ring all-reduce hands every worker the
    # same bytes) to the same weights with the same element-wise ops, on the same CPU.
    for i, (x, y) in enumerate(zip(a0, a1)):
        np.testing.assert_array_equal(x, y, err_msg=f"weight {i}")
    h0, h1 = (json.loads((tmp / f"A{i}" / "run.json").read_text()) for i in range(2))
    assert h0 == h1  # the logged losses are global (averaged over both workers), so every worker logs the same


def test_workers_equal_mirrored_strategy_on_the_same_global_batches(runs):
    tmp, _ = runs
    start = load(tmp / "R", "initial.npz")
    assert_close_to_reference(load(tmp / "A0", "weights.npz"), load(tmp / "R", "weights.npz"), start,
                              "two workers vs MirroredStrategy")
    # The weights moved: the comparison above is not between two copies of the initial weights.
    assert max(float(np.max(np.abs(w - s))) for w, s in zip(load(tmp / "A0", "weights.npz"), start)
               if np.issubdtype(s.dtype, np.floating)) > 1e-3
    ours, ref = (json.loads((tmp / name / "run.json").read_text()) for name in ("A0", "R"))
    np.testing.assert_allclose(ours["history"]["loss"], ref["history"]["loss"], rtol=1e-4)


def test_the_logged_loss_is_the_mean_of_each_workers_own_loss(runs):
    """Why one replica on the global batch is not the reference: each replica divides its loss by
    its own positive counts (+ 1 for the category loss; solo_lib/losses.py, the authors' per-GPU
    normalisation), and ``SOLOv2.train_step`` averages over the replicas, so step 1 minimises
    (L(first half) + L(second half)) / 2, not L(whole batch)."""
    tmp, _ = runs
    losses = json.loads((tmp / "R" / "losses.json").read_text())
    step1 = json.loads((tmp / "A0" / "run.json").read_text())["first_loss"]
    # The by-hand losses run eagerly, the workers' in a graph: float32 sums of ~8e3 focal terms
    # reordered, ~1e-5 relative at most; rel 1e-4 keeps a margin.
    assert step1 == pytest.approx(np.mean(losses["halves"]), rel=1e-4)
    # One replica on the whole batch sees another loss (0.4% here, 37x the tolerance above; and
    # the update differs by 15% of its size for the median weight tensor): 10x the tolerance at least.
    assert abs(losses["whole"] - step1) > 10 * 1e-4 * step1


def test_each_worker_trains_on_its_half_of_every_global_batch(runs):
    tmp, _ = runs
    whole = np.load(tmp / "R" / "global.npy")  # (2 batches, 4, H, W, 3): the pipeline in one process
    parts = [np.load(tmp / f"A{i}" / "parts.npy") for i in range(2)]  # (2 batches, 1 replica, 2, H, W, 3)
    for b in range(2):
        np.testing.assert_array_equal(parts[0][b, 0], whole[b, :2])
        np.testing.assert_array_equal(parts[1][b, 0], whole[b, 2:])
    assert not np.array_equal(parts[0][0, 0], parts[1][0, 0])  # two different halves: the union is the batch


def test_only_the_chief_writes_checkpoints(runs):
    tmp, _ = runs
    assert sorted(p.name for p in (tmp / "run").iterdir()) == ["epoch_0001.keras", "epoch_0002.keras"]
    assert not (tmp / "worker1_view").exists()  # the non-chief wrote nothing, not even the folder
    assert sorted(p.name for p in (tmp / "resumed").iterdir()) == ["epoch_0002.keras"]


def test_resuming_on_two_workers_continues_the_uninterrupted_run(runs):
    tmp, outputs = runs
    for i in range(2):
        assert "resuming from epoch_0001.keras: 1 epoch(s) done" in outputs[f"B{i}"]
    assert "trained 2 epoch(s); checkpoints in" in outputs["B0"]
    assert "as worker 1 of 2 workers (not the chief), 2 replica(s) in all; the chief writes the checkpoints" \
        in outputs["B1"]
    epoch1, uninterrupted, resumed = (checkpoint_arrays(tmp / folder / name) for folder, name in [
        ("run", "epoch_0001.keras"), ("run", "epoch_0002.keras"), ("resumed", "epoch_0002.keras")])
    assert resumed.keys() == uninterrupted.keys() and len(resumed) > 100  # weights, epoch counter, optimizer state
    # Weights and optimizer state come back bit for bit and the resumed run sees the same batches, so
    # the same bound as between two workers and the reference holds, with epoch 2's update as the scale
    # (integers, the epoch counter and the optimizer's step count, exactly).
    names = sorted(resumed)
    assert_close_to_reference([resumed[k] for k in names], [uninterrupted[k] for k in names],
                              [epoch1[k] for k in names], "resumed vs uninterrupted")
    run_a = json.loads((tmp / "A0" / "run.json").read_text())["history"]["loss"]
    line = next(s for s in outputs["B0"].splitlines() if s.startswith("epoch   2/2: loss"))
    assert float(line.split()[3]) == pytest.approx(run_a[1], abs=1e-3)  # printed with 3 decimals


# Fast checks, no cluster.

@pytest.mark.parametrize("value, message", [
    ("{not json", "is not JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'has no "cluster"'),
    ('{"cluster": {"worker": ["localhost:1"]}}', 'has no "task"'),
    ('{"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 2}}',
     'task index 2 is out of range: its cluster has 2 "worker" address'),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "chief", "index": 0}}',
     'task type "chief" is not a job of its cluster'),
    ('{"cluster": {"worker": ["localhost:1"], "ps": ["localhost:2"]}, "task": {"type": "worker", "index": 0}}',
     'names a "ps" job'),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', 'not a "host:port" address'),
])
def test_malformed_tf_config_is_one_clear_error(value, message):
    with pytest.raises(ConfigError, match="^TF_CONFIG ") as err:
        distributed.read_tf_config(value)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_tf_config_parsing_and_single_process_defaults(monkeypatch):
    value = '{"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]}, "task": {"type": "worker", "index": 1}}'
    assert distributed.read_tf_config(value)["task"] == {"type": "worker", "index": 1}
    assert distributed.read_tf_config(None) is None and distributed.read_tf_config("  ") is None
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = distributed.strategy_from_environment()
    assert strategy is tf.distribute.get_strategy()  # no TF_CONFIG: the default strategy, one process
    assert distributed.is_chief(strategy) and distributed.num_workers(strategy) == 1


@pytest.mark.parametrize("tf_config, flag, message", [
    (None, True, "--multi-worker reads the cluster from the TF_CONFIG environment variable, which is not set"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}', False,
     "TF_CONFIG is set: add --multi-worker"),
    ("[1, 2]", True, 'TF_CONFIG has no "cluster"'),
])
def test_command_line_checks_tf_config_first(tf_config, flag, message, monkeypatch, capsys, tmp_path):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    status = main(["train", *(["--multi-worker"] if flag else []), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_a_non_chief_saves_to_a_temporary_folder_it_removes(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    made = []
    original = keras.Model.save
    monkeypatch.setattr(keras.Model, "save", lambda self, path, **kw: (made.append(Path(path)), original(self, path)))
    save_checkpoint(model, tmp_path / "run" / "epoch_0001.keras", chief=False)
    assert len(made) == 1 and made[0].parent.parent == scratch  # saved (the collectives ran) in a scratch folder
    assert not (tmp_path / "run").exists() and not any(scratch.iterdir())  # nothing in the run folder, nothing left
    save_checkpoint(model, tmp_path / "run" / "epoch_0001.keras", chief=True)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["epoch_0001.keras"]


def test_generator_sources_are_sharded_by_data_and_explicit_policies_kept():
    policy = tf.data.experimental.AutoShardPolicy
    source = tf.data.Dataset.from_generator(lambda: iter(range(4)), output_signature=tf.TensorSpec((), tf.int64))
    assert distributed.shard_by_data(source).options().experimental_distribute.auto_shard_policy == policy.DATA
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy.OFF  # e.g. a source that shards files itself
    kept = distributed.shard_by_data(source.with_options(options))
    assert kept.options().experimental_distribute.auto_shard_policy == policy.OFF
