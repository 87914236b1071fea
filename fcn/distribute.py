"""Where a run trains: one device, every GPU of one machine, or several machines (TrainConfig.strategy).

    default       one device (Keras' default placement)
    mirrored      every GPU of this machine: tf.distribute.MirroredStrategy (on a CPU, one replica); on
                  Keras' JAX backend, keras.distribution.DataParallel over the local devices
    multi_worker  several machines, each started with the same TF_CONFIG cluster and its own task index:
                  keras.distribution.DataParallel over every device of every worker, on Keras' JAX backend

Why JAX for several machines: with the pinned Keras 3.15.1 and TensorFlow 2.21, `model.fit` under
tf.distribute.MultiWorkerMirroredStrategy fails before the first step ("Attempt to convert a value
(PerReplica ...) to a Tensor", from Keras' symbolic build), and with that bypassed at the first step
("Invalid reduction dimension 0 for input with 0 dimensions", from reducing the scalar metrics across
workers): keras-team/keras#20585 and tensorflow/tensorflow#72388, where Keras' author states that Keras 3
does not support that strategy and points to Keras' own distribution API on JAX. So `multi_worker` runs
keras.distribution.DataParallel on JAX (jax.distributed under the hood), fed by the same tf.data pipeline.

The batch size is global. Each worker builds the same global batches (fcn/data/pipeline.py orders each
epoch from (seed, epoch) alone) and keeps its own slice of each, which is tf.data's DATA sharding: worker
k of n gets rows k*B/n .. (k+1)*B/n - 1 of every batch of B, so the workers together see exactly the
batches one worker would. Only the chief (worker 0) writes in the run folder; on JAX saving a model reads
arrays held by every worker, so the others save the same file into a temporary folder and delete it.
"""

import contextlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

# TensorFlow is imported where it is used: `fcn --help` and the JAX-only GPU check run without it.
STRATEGIES = ("default", "mirrored", "multi_worker")
# A lost worker. Killed, its peers' next collective fails at once (its connections close) and each of
# them ends with one line (leave_cluster). Gone silently (a machine cut off), JAX's coordination service
# declares it dead after HEARTBEAT_SECONDS without a heartbeat and ends the others with its own report.
# JAX's default, kept: shorter ones have ended healthy jobs whose hosts paused (jax-ml/jax#23599). Workers
# wait JOIN_SECONDS for all to join (also JAX's default).
HEARTBEAT_SECONDS = 100
JOIN_SECONDS = 300
_joined: dict = {}
# What a collective raises when a peer is gone (Gloo on CPUs, gRPC from the coordination service).
_PEER_LOST = ("Gloo", "Connection reset", "Connection closed", "Socket closed", "UNAVAILABLE", "heartbeat")


@dataclass(frozen=True)
class Cluster:
    """The workers of a multi-machine run ("host:port" each, the chief first) and which one this process is."""

    addresses: tuple[str, ...]
    index: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def cluster_from_tf_config(text: str | None) -> Cluster:
    """Read a TF_CONFIG JSON: {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}.

    A "chief" job, where there is one, comes first (as tf.distribute orders them); no other job is used.
    """
    if not text:
        raise ValueError("strategy multi_worker needs TF_CONFIG on every worker, e.g. TF_CONFIG='{\"cluster\": "
                         "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", "
                         "\"index\": 0}}' (index 1 on host2)")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chief, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        offset = {"chief": 0, "worker": len(chief)}[task["type"]]
        index = offset + int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not a cluster and task as tf.distribute reads them ({error!r}): {text}") from None
    addresses = tuple(chief + workers)
    if len(chief) > 1 or not 0 <= index < len(addresses):
        raise ValueError(f"TF_CONFIG: task {task} is not one of the {len(addresses)} workers of {cluster}")
    return Cluster(addresses, index)


@dataclass(frozen=True)
class Placement:
    """How this process takes part in training: its strategy's scope, how many workers, whether it writes."""

    strategy: str = "default"
    num_workers: int = 1
    worker_index: int = 0
    # Every device taking part, over all workers: the global batch is split over them.
    num_devices: int = 1
    scope: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    @property
    def is_chief(self) -> bool:
        """The one worker that writes the run folder (and prints the summary)."""
        return self.worker_index == 0

    def agree(self, flag: bool) -> bool:
        """The chief's `flag` on every worker (a collective: every worker calls it at the same point)."""
        if self.num_workers == 1:
            return flag
        from jax.experimental import multihost_utils

        return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))

    def share(self, value: int) -> int:
        """The chief's integer `value` on every worker (a collective, like agree)."""
        if self.num_workers == 1:
            return value
        from jax.experimental import multihost_utils

        return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int32)))

    @property
    def splits_evenly(self) -> bool:
        """Whether every batch must split into equal parts, one per device (several workers, or JAX).

        tf.distribute takes uneven parts; JAX does not. The last, smaller training batch of an epoch is then
        dropped (see shard_batches), and the validation batches must split evenly over a worker's devices.
        """
        return self.num_workers > 1 or (keras.backend.backend() == "jax" and self.num_devices > 1)

    def steps_per_epoch(self, train_count: int, val_count: int, batch_size: int) -> int:
        """Training steps per epoch; checks that every batch can be split as `splits_evenly` needs."""
        if not self.splits_evenly:
            return -(-train_count // batch_size)
        local_devices = self.num_devices // self.num_workers
        if batch_size % self.num_devices or train_count < batch_size:
            raise ValueError(f"strategy {self.strategy}: batch_size (the global batch) must be a multiple of the "
                             f"{self.num_devices} devices and at most the {train_count} training images, got "
                             f"{batch_size}")
        if val_count % batch_size % local_devices:
            raise ValueError(f"strategy {self.strategy}: the last validation batch ({val_count % batch_size} "
                             f"images) does not split over the {local_devices} devices of a worker; choose "
                             "max_val_images or batch_size so that it does")
        return train_count // batch_size

    def shard_batches(self, dataset, batch_size: int, batches: int):
        """This worker's slice of each full global batch of a tf.data dataset (see the module docstring).

        Where batches must split evenly, the last, smaller batch of each epoch is dropped; `batches` is then
        the number of global batches kept, over all the epochs the dataset holds.
        """
        if not self.splits_evenly:
            return dataset
        import tensorflow as tf

        full = dataset.filter(lambda images, *rest: tf.shape(images)[0] == batch_size)
        if self.num_workers > 1:
            full = full.rebatch(batch_size // self.num_workers).shard(self.num_workers, self.worker_index)
        return full.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(tf.data.AUTOTUNE)

    def save_elsewhere(self, save: Callable[[Path], object]) -> None:
        """Run `save(path)` into a temporary folder, then delete it: a non-chief's part in a collective save."""
        with tempfile.TemporaryDirectory(prefix="fcn-worker-") as scratch:
            save(Path(scratch) / "model.keras")


SINGLE = Placement()


def make_placement(strategy: str) -> Placement:
    """Set up `strategy` (one of STRATEGIES) in this process; multi_worker joins the TF_CONFIG cluster first."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    backend = keras.backend.backend()
    if strategy == "default":
        return SINGLE
    if strategy == "mirrored" and backend == "tensorflow":
        import tensorflow as tf

        mirrored = tf.distribute.MirroredStrategy()
        return Placement("mirrored", num_devices=mirrored.num_replicas_in_sync, scope=mirrored.scope)
    if strategy == "mirrored" and backend == "jax":
        data_parallel = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
        return Placement("mirrored", num_devices=len(keras.distribution.list_devices()), scope=data_parallel.scope)
    if strategy == "multi_worker" and backend == "jax":
        return _join_cluster(cluster_from_tf_config(os.environ.get("TF_CONFIG")))
    raise ValueError(f"strategy {strategy} does not run on Keras' {backend} backend: Keras 3 does not train under "
                     "tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585), so multi_worker trains on "
                     "JAX; start every worker with KERAS_BACKEND=jax")


def _join_cluster(cluster: Cluster) -> Placement:
    import jax

    if not jax.distributed.is_initialized():
        # What keras.distribution.initialize does, with JAX's timeouts bounded (see HEARTBEAT_SECONDS).
        # Blocks until every worker has joined; the chief's address is the coordinator's.
        from keras.src.backend.jax.distribution_lib import initialize_rng

        jax.distributed.initialize(coordinator_address=cluster.addresses[0], num_processes=len(cluster.addresses),
                                   process_id=cluster.index, initialization_timeout=JOIN_SECONDS,
                                   heartbeat_timeout_seconds=HEARTBEAT_SECONDS)
        initialize_rng()
    _joined.update(cluster=cluster)
    devices = keras.distribution.list_devices()
    # Each worker shards the training batches itself (Placement.shard_batches), and feeds every worker the
    # whole validation set: Keras' own sharding cannot split a last, smaller batch evenly over the workers.
    data_parallel = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    return Placement("multi_worker", num_workers=len(cluster.addresses), worker_index=cluster.index,
                     num_devices=len(devices), scope=data_parallel.scope)


def leave_cluster(error: BaseException) -> None:
    """After a multi_worker run failed in this process: one line on stderr, then end the process at once.

    JAX's own shutdown would wait for the lost worker and then abort with a native stack dump. The run
    folder keeps its last committed epoch: starting every worker again resumes there. Returns (doing
    nothing) where this process has joined no cluster.
    """
    cluster = _joined.get("cluster")
    if cluster is None:
        return
    if not isinstance(error, (OSError, ValueError, RuntimeError)):  # a bug: its traceback, then the line
        traceback.print_exception(error)
    print(f"error: {lost_worker_message(error, cluster)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def lost_worker_message(error: BaseException, cluster: Cluster) -> str:
    """One line for an error met by a worker of `cluster`: which worker was lost, where a peer was."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if not any(sign in str(error) for sign in _PEER_LOST):
        return text
    others = [index for index in range(len(cluster.addresses)) if index != cluster.index]
    who = (f"worker {others[0]} of {len(cluster.addresses)} ({cluster.addresses[others[0]]}"
           f"{', the chief' if others[0] == 0 else ''})" if len(others) == 1 else "a worker of the cluster")
    reason = text.rsplit(": ", 1)[-1][:200]  # e.g. "Connection reset by peer", after Gloo's source location
    return (f"{who} was lost ({reason}); the run folder keeps its last committed epoch: start every worker "
            "again to resume")
