"""Data-parallel training on tf.distribute: several GPUs of one machine or several machines.

``train.strategy`` picks the engine: "default" (one device), "mirrored" (``MirroredStrategy``,
every GPU of this machine) or "multi_worker" (``MultiWorkerMirroredStrategy``; the cluster comes
from the ``TF_CONFIG`` environment variable, one process per machine). The recipe's
``pipeline.batch_size`` is the batch of one replica: the global batch is that times the replicas.
Each worker reads its own share of every epoch's batches; only the chief writes the run folder.

Keras 3.13's ``fit`` does not run under ``MultiWorkerMirroredStrategy`` as shipped
(tensorflow/tensorflow#72388): it reduces scalar logs with ``axis=0`` and reduces a whole input
batch across workers to build the model. :meth:`Distribution.adopt` and :func:`_patch_keras_reduce`
work around both; the multi-worker test guards them.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import keras
import tensorflow as tf

from freesound_tf.config import ConfigError
from freesound_tf.data.pipeline import EpochPlan, TrainInput


class Distribution:
    """One tf.distribute strategy and what the training loop needs to know about it."""

    def __init__(self, name: str, strategy: tf.distribute.Strategy) -> None:
        self.name, self.strategy = name, strategy
        resolver = getattr(strategy, "cluster_resolver", None) if name == "multi_worker" else None
        if resolver is None:
            self.workers, self.worker_index, self.is_chief = 1, 0, True
        else:
            spec = resolver.cluster_spec().as_dict()
            self.workers = sum(len(spec.get(job, [])) for job in ("chief", "worker"))
            kind, index = resolver.task_type, int(resolver.task_id or 0)
            # With a "chief" job the chief is its task; otherwise worker 0 acts as chief.
            self.is_chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in spec)
            self.worker_index = index + (1 if kind == "worker" and "chief" in spec else 0)

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def global_batch(self, per_replica: int) -> int:
        return per_replica * self.replicas

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build, load, compile and fit models inside this (variables become mirrored)."""
        if self.name == "default":
            yield
        else:
            with self.strategy.scope():
                yield

    def adopt(self, model: keras.Model) -> keras.Model:
        """Call on a model built or loaded in :meth:`scope`, before ``fit``.

        Keras binds the strategy at construction and then, in multi-worker mode, all-reduces a
        whole input batch just to build the model; forgetting it makes ``fit`` (run inside
        :meth:`scope`) take the strategy from that scope and build while tracing instead.
        """
        if self.name == "multi_worker":
            model._distribute_strategy = None
        return model

    def dataset(self, train_input: TrainInput,
                epochs: EpochPlan | None = None) -> tf.data.Dataset | tf.distribute.DistributedDataset:
        """One epoch of training batches, or with ``epochs`` the plan's epochs without end (a continuous
        input: fit it with ``steps_per_epoch``); per worker and replica under a strategy."""
        plan = {} if epochs is None else {"epochs": epochs}
        if self.name == "default":
            return train_input.dataset(**plan)

        def worker_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
            return train_input.dataset(shards=context.num_input_pipelines, shard=context.input_pipeline_id,
                                       replicas=self.replicas, **plan)

        return self.strategy.distribute_datasets_from_function(worker_dataset)


def _tf_config_workers() -> int:
    try:
        cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
    except KeyError:
        raise ConfigError("train.strategy = 'multi_worker' needs the TF_CONFIG environment variable "
                          "(cluster and task of this process); see README 'Several machines'") from None
    except (json.JSONDecodeError, TypeError):
        raise ConfigError("TF_CONFIG is not valid JSON with a 'cluster' table; see README 'Several machines'") from None
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def make_distribution(name: str) -> Distribution:
    """The strategy for ``train.strategy``. Create it first thing in a process: TF requires the
    multi-worker strategy before any other TensorFlow op runs."""
    if name == "default":
        return Distribution(name, tf.distribute.get_strategy())
    if name == "mirrored":
        return Distribution(name, tf.distribute.MirroredStrategy())
    if name == "multi_worker":
        _tf_config_workers()
        _patch_keras_reduce()
        return Distribution(name, tf.distribute.MultiWorkerMirroredStrategy())
    raise ConfigError(f"train.strategy: unknown strategy {name!r}; use default, mirrored or multi_worker")


def _patch_keras_reduce() -> None:
    """Average scalar step logs over workers with ``axis=None`` (Keras 3.13 passes ``axis=0``)."""
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "_freesound_tf", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            def reduce(value):
                if getattr(value, "shape", None) is not None and value.shape.rank == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return original(value, strategy, reduction)
            return keras.tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._freesound_tf = True
    trainer.reduce_per_replica = reduce_per_replica
