"""Training on several machines: ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` (notebook 09).

Every machine (a *worker*) runs the same training command with its own ``TF_CONFIG``, a JSON
environment variable naming every worker's ``host:port`` and which one it is (TensorFlow's
multi-worker convention, https://www.tensorflow.org/guide/distributed_training)::

    {"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}

:func:`strategy_from_environment` checks it and returns a ``tf.distribute.MultiWorkerMirroredStrategy``
(synchronous data parallelism: each worker computes the gradients of its part of each global
batch, an all-reduce sums them over the workers, and every worker applies the same update, so
the copies of the weights stay identical). It must be created before TensorFlow runs anything
else in the process: it starts the worker's gRPC server and configures the collective ops.

**Who writes.** Only the chief (``task`` ``chief``, or ``worker`` 0 when there is no chief job)
writes into the run's folders (:func:`is_chief`); saving a Keras model under this strategy still
runs collective operations (it creates and reads variables), so the other workers save their
identical copies to a temporary folder that is deleted at once (``solo_lib.checkpoints``), the
rule of Keras' multi-worker tutorial (https://www.tensorflow.org/tutorials/distribute/multi_worker_with_keras,
"Model saving and loading") and of tf.keras's ``ModelCheckpoint``.

**Data.** Keras gives each worker its part of every global batch itself (tf.data auto-sharding,
:func:`prepare_fit`). The course's sources are Python generators, which cannot be split by
file, so each worker runs the whole (seeded, hence identical) pipeline and keeps its slice of
each batch: ``DATA`` sharding, set explicitly rather than left to ``AUTO``'s fallback.
"""

from __future__ import annotations

import json
import os
from typing import NoReturn

import tensorflow as tf

from solo_lib.errors import ConfigError

JOBS = ("chief", "worker")  # the jobs MultiWorkerMirroredStrategy trains with
EXAMPLE = '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'


def read_tf_config(text: str | None) -> dict | None:
    """Parses and checks a ``TF_CONFIG`` value.

    Args:
        text: the variable's value; None or blank when it is not set.

    Returns:
        The parsed dict, or None when ``text`` is None or blank.

    Raises:
        ConfigError: not JSON, no ``cluster`` of ``host:port`` lists, a job other than ``chief``
            and ``worker``, no ``task``, or a task that is not one of the cluster's.
    """
    if text is None or not text.strip():
        return None

    def fail(problem: str) -> NoReturn:
        raise ConfigError(f"TF_CONFIG {problem}; set it on each worker as in {EXAMPLE} (README, 'Several machines')")

    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        fail(f"is not JSON ({err})")
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not config["cluster"]:
        fail('has no "cluster": an object mapping each job ("worker", optionally "chief") to its addresses')
    cluster = config["cluster"]
    for job, addresses in cluster.items():
        if job not in JOBS:
            fail(f'names a "{job}" job, but MultiWorkerMirroredStrategy trains with {" and ".join(JOBS)} jobs only')
        if not isinstance(addresses, list) or not addresses:
            fail(f'cluster "{job}" must be a non-empty list of "host:port" addresses, got {addresses!r}')
        for address in addresses:
            host, _, port = str(address).rpartition(":") if isinstance(address, str) else ("", "", "")
            if not host or not port.isdigit():
                fail(f'cluster "{job}" has {address!r}, not a "host:port" address')
    if len(cluster.get("chief", [])) > 1:
        fail(f'cluster "chief" lists {len(cluster["chief"])} addresses; there is at most one chief')
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        fail('has no "task" with a "type" and an "index" (which of the cluster\'s workers this process is)')
    job, index = task["type"], task["index"]
    if job not in cluster:
        fail(f'task type "{job}" is not a job of its cluster ({", ".join(cluster)})')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[job]):
        fail(f'task index {index!r} is out of range: its cluster has {len(cluster[job])} "{job}" address(es), '
             f"indices 0 to {len(cluster[job]) - 1}")
    return config


def strategy_from_environment() -> tf.distribute.Strategy:
    """The strategy the ``TF_CONFIG`` environment variable asks for: ``MultiWorkerMirroredStrategy``
    when it is set, else the current (by default, single-device) strategy.

    Call it first thing in the program, before any other TensorFlow operation. Each worker then
    waits in its first collective operation (creating the model's variables) until all have started.

    Raises:
        ConfigError: ``TF_CONFIG`` is malformed (see :func:`read_tf_config`).
    """
    if read_tf_config(os.environ.get("TF_CONFIG")) is None:
        return tf.distribute.get_strategy()
    # CommunicationOptions AUTO: ring all-reduce over gRPC between CPUs, NCCL between GPUs.
    return tf.distribute.MultiWorkerMirroredStrategy()


def num_workers(strategy: tf.distribute.Strategy | None = None) -> int:
    """How many processes train together under ``strategy`` (default: the current one); 1 unless
    it is a ``MultiWorkerMirroredStrategy`` with several tasks in its cluster."""
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, ())) for job in JOBS)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's outputs (checkpoints, logs) under ``strategy``
    (default: the current one): True except on the non-chief workers of a multi-worker run.

    TensorFlow's rule (``StrategyExtended.should_checkpoint``): the ``chief`` task if the cluster
    has one, else ``worker`` 0.
    """
    strategy = strategy or tf.distribute.get_strategy()
    return bool(strategy.extended.should_checkpoint)


def describe(strategy: tf.distribute.Strategy | None = None) -> str:
    """This process's place in the cluster, in words (for logs)."""
    strategy = strategy or tf.distribute.get_strategy()
    if num_workers(strategy) == 1:
        return f"one process, {strategy.num_replicas_in_sync} replica(s)"
    resolver = strategy.cluster_resolver
    role = "chief" if is_chief(strategy) else "not the chief"
    return (f"{resolver.task_type} {resolver.task_id} of {num_workers(strategy)} workers ({role}), "
            f"{strategy.num_replicas_in_sync} replica(s) in all")


def shard_by_data(data):
    """``data`` with tf.data's auto-shard policy set to ``DATA`` unless its source set one.

    A distributed ``Model.fit`` splits each global batch over the replicas of all workers
    (``Strategy.experimental_distribute_dataset``): on every worker the pipeline runs whole, each
    global batch is cut into per-replica batches, and the worker keeps the ones of its replicas.
    That is right only when every worker's pipeline yields the same batches in the same order,
    which the seeded pipeline of ``solo_lib.data.pipeline`` does. ``AUTO`` would first try to give
    each worker its own input files, find none in a generator source, and fall back to ``DATA``
    with a warning; a file-based source (TFRecord shards split per worker) sets its own policy
    (``FILE`` or ``OFF``), which is kept. A ``tf.distribute.DistributedDataset`` is returned as is.
    """
    if not isinstance(data, tf.data.Dataset):
        return data
    if data.options().experimental_distribute.auto_shard_policy != tf.data.experimental.AutoShardPolicy.AUTO:
        return data
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options)


def prepare_fit(model, data):
    """Readies ``model`` (built and compiled, optimizer built) and its training ``data`` for
    ``Model.fit`` under the current strategy; returns the data to fit on.

    * The data's sharding over workers (:func:`shard_by_data`).
    * Under any ``tf.distribute`` strategy, Keras 3 (3.15) starts ``fit`` with a symbolic build
      that pulls one batch from a first iterator of the data and then starts over with a second
      one; the seeded shuffle (``reshuffle_each_iteration``) gives that second iterator another
      order, so a distributed run would not see the batches a single-device run sees. A built,
      compiled model has nothing to build: the step is skipped, and every strategy trains on the
      same batches.
    * Under a multi-worker ``MultiWorkerMirroredStrategy`` that symbolic build also fails (it
      averages the batch over all replicas with this strategy's ``reduce``, which takes one
      tensor, not an ``(images, targets)`` structure), and ``fit`` averages the values
      ``train_step`` returns with ``reduce("MEAN", value, axis=0)``, which fails on scalars
      (keras-team/keras issues 20585 and 20329, tensorflow/tensorflow issue 72388). They are
      given a leading axis of 1, so the average is over the replicas only: every worker logs the
      same, global losses (and :class:`~solo_lib.callbacks.NonFiniteLossGuard` stops all workers
      at the same step).

    Both changes are instance attributes that call the model's own methods, added once.

    Raises:
        ConfigError: multi-worker training of a model that is not built and compiled.
    """
    data = shard_by_data(data)
    if "_maybe_symbolic_build" not in vars(model):
        symbolic_build = model._maybe_symbolic_build

        def maybe_symbolic_build(iterator=None, data_batch=None):
            optimizer = model.optimizer
            if all(layer.built for layer in model._flatten_layers()) and optimizer is not None and optimizer.built:
                return None  # nothing to build, and no batch pulled from the data
            return symbolic_build(iterator=iterator, data_batch=data_batch)

        model._maybe_symbolic_build = maybe_symbolic_build
    if num_workers(model.distribute_strategy) > 1 and "train_step" not in vars(model):
        if not (model.built and model.optimizer is not None and model.optimizer.built):
            raise ConfigError("multi-worker training needs a built, compiled model with a built optimizer before fit")
        step = model.train_step

        def train_step(batch):
            return {name: tf.reshape(value, [1]) for name, value in step(batch).items()}

        model.train_step = train_step
    return data
