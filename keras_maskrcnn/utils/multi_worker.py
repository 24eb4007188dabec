"""Data-parallel training over several worker processes, on one machine or many.

Every worker runs the same `maskrcnn-train` command. Where they find each other comes from the
environment, as each backend expects it:

- TensorFlow: `TF_CONFIG`, e.g. on the first of two machines
  `{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", "index": 0}}`;
  a `tf.distribute.MultiWorkerMirroredStrategy` then runs one replica on each GPU of each
  worker (on the CPU of a worker without GPUs) and all-reduces the gradients.
- JAX: `KERAS_DISTRIBUTION_JOB_ADDRESSES` (the coordinator's host:port, or every worker's,
  comma separated), `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`
  (or nothing, where `jax.distributed.initialize` finds the cluster itself, as under SLURM);
  a `keras.distribution.DataParallel` over the devices of every process follows. CPU-only
  processes exchange gradients through gloo.

Each worker reads its own shards of every global batch (`Generator.compute_shard`); worker 0 (TensorFlow's
"chief" task when the cluster has one) is the chief, which alone writes snapshots and logs.
"""

import dataclasses
import json
import os

import keras


@dataclasses.dataclass
class Workers:
    """The cluster as this process sees it: num_workers processes, this one worker_index of
    them; replicas: model replicas over all workers (devices), each on its part of a batch."""

    num_workers: int
    worker_index: int
    replicas: int
    strategy: object = None  # TensorFlow's MultiWorkerMirroredStrategy
    distribution: object = None  # JAX's keras.distribution.DataParallel

    @property
    def is_chief(self):
        return self.worker_index == 0

    def scope(self):
        """Context in which to build, compile and fit the model."""
        if self.strategy is not None:
            return self.strategy.scope()
        return self.distribution.scope()

    def check_batch_size(self, batch_size):
        """ValueError unless batch_size (images per step, all workers together) gives every
        worker and every replica the same number of images."""
        if batch_size % self.replicas or batch_size % self.num_workers:
            raise ValueError(f"the batch size {batch_size} must be a multiple of the {self.replicas} model "
                             f"replicas of the {self.num_workers} workers, so that each gets the same number of images")

    def local_shards(self):
        """(shards, count): the shards of every global batch of `count` equal shards that this
        worker reads, in the order its data must yield them. TensorFlow: one shard per local
        replica (the strategy hands each replica one element of the worker's data); JAX: one
        per worker (Keras splits it over the local devices)."""
        if self.strategy is not None:
            local = len(self.strategy.extended.worker_devices)
            return [self.worker_index * local + i for i in range(local)], self.num_workers * local
        return [self.worker_index], self.num_workers

    def fit_data(self, dataset):
        """What to give `fit` for a keras.utils.PyDataset of this worker's shards (local_shards):
        on TensorFlow a distributed dataset of its elements, one per local replica and step
        (so the strategy does not shard or rebatch them again); on JAX the PyDataset itself.
        Give fit its steps_per_epoch: without, on TensorFlow the epoch's per-output loss logs come
        out at half their value (the total is right)."""
        if self.strategy is None:
            return dataset
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        return self.strategy.distribute_datasets_from_function(
            lambda context: PyDatasetAdapter(dataset, shuffle=False).get_tf_dataset())


def tf_config_task():
    """(num_workers, worker_index) from TF_CONFIG; ValueError naming what is missing or wrong."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError("TF_CONFIG is not set: every worker needs it, e.g. "
                         '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not a cluster and task description ({error!r}): {text}") from None
    if kind not in ("chief", "worker") or index >= len(cluster.get(kind, [])) or index < 0:
        raise ValueError(f"TF_CONFIG: task {kind} {index} is not in the cluster {cluster}")
    return len(chiefs) + len(workers), (index if kind == "chief" else len(chiefs) + index)


def initialize(backend=None):
    """Joins the cluster the environment describes; returns its `Workers`. Call it before the
    backend runs any operation (TensorFlow cannot join a cluster later). ValueError when the
    environment does not describe a cluster, or on the torch backend."""
    backend = backend or keras.backend.backend()
    if backend == "tensorflow":
        return _initialize_tensorflow()
    if backend == "jax":
        return _initialize_jax()
    raise ValueError(f"training on several workers needs the tensorflow or jax backend, not {backend} "
                     "(set KERAS_BACKEND)")


def _initialize_tensorflow():
    num_workers, worker_index = tf_config_task()
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Workers(num_workers, worker_index, strategy.num_replicas_in_sync, strategy=strategy)


def _initialize_jax():
    import jax

    known = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE")
    if not any(os.environ.get(name) for name in known):
        raise ValueError("KERAS_DISTRIBUTION_JOB_ADDRESSES is not set: every worker needs it (the coordinator's "
                         "host:port), with KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID "
                         "(under SLURM or mpirun JAX finds them itself)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only; GPUs use NCCL
    keras.distribution.initialize()
    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    return Workers(jax.process_count(), jax.process_index(), len(devices), distribution=distribution)


def prepare_for_fit(model, batch):
    """Works around two faults of Keras 3's TensorFlow trainer under a MultiWorkerMirroredStrategy,
    for `model` built and compiled in the strategy's scope; batch: one local (inputs, targets).

    1. fit builds the compiled loss and metrics from its first distributed batch, reduced across
       workers with `strategy.reduce` on the whole (inputs, targets) structure, which fails
       ("Attempt to convert a value (PerReplica ...)", keras-team/keras#20585). They are built
       here from `batch` instead, and that step of fit is turned off for `model`.
    2. fit averages each step's logs over the workers with `strategy.reduce("MEAN", axis=0)`,
       which fails on the scalars train_step returns ("Invalid reduction dimension 0 for input
       with 0 dimensions"). train_step and test_step return them as shape (1,) here, which that
       reduction averages to the same scalars a single device gives.
    """
    model._symbolic_build(data_batch=tuple(batch))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    for name in ("train_step", "test_step"):
        model.__dict__[name] = _rank_one_logs(getattr(model, name))


def _rank_one_logs(step):
    def wrapped(data):
        return {key: keras.ops.reshape(value, (1,)) for key, value in step(data).items()}

    return wrapped
