"""The --strategy of a run, behind one `Runtime` interface: tf.distribute strategies, and for
Keras 3 on JAX multi-process data parallelism with `keras.distribution`. Batch sizes are global
(split over replicas)."""
import contextlib
import json
import os

import tensorflow as tf

from pea_keras.errors import UsageError


def cluster_from_tf_config():
    """(coordinator "host:port", number of processes, this process's index) from TF_CONFIG: the
    chief (if any) then the workers, in order; process 0 coordinates."""
    try:
        spec = json.loads(os.environ["TF_CONFIG"])
        members = spec["cluster"].get("chief", []) + spec["cluster"].get("worker", [])
        task = spec["task"]
        index = int(task["index"]) + (len(spec["cluster"].get("chief", [])) if task["type"] == "worker" else 0)
    except KeyError:
        raise UsageError("--strategy multiworker needs TF_CONFIG with the cluster's workers and this task "
                         '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": '
                         '"worker", "index": 0}})') from None
    except (ValueError, TypeError, AttributeError) as e:
        raise UsageError(f"TF_CONFIG is not a cluster description: {e}") from None
    if not members or not 0 <= index < len(members):
        raise UsageError(f"TF_CONFIG: task index {index} is not in a cluster of {len(members)}")
    return members[0], len(members), index


class Runtime:
    """Where a run trains: the scope its model is built in, its replicas, whether this process
    writes (the chief), and what happens after fit and at the end. For tf.distribute strategies."""

    validates_in_fit = True  # fit scores the validation split after each epoch.

    def __init__(self, strategy):
        self.strategy = strategy
        self.num_replicas_in_sync = strategy.num_replicas_in_sync

    def scope(self):
        return self.strategy.scope()

    @property
    def chief(self):
        """Whether this process writes the run directory and the int8 file (worker 0 or the chief)."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None or not getattr(resolver, "task_type", None):
            return True
        return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)

    def after_training(self, model):
        """Before scoring and saving `model`."""

    def wait_for_all(self):
        """At the end of the run, before this process leaves."""


class JaxDataParallel(Runtime):
    """Keras 3 on JAX over several processes: `jax.distributed` joins them (the cluster of TF_CONFIG,
    as for tf_keras' MultiWorkerMirroredStrategy) and `keras.distribution.DataParallel` splits each
    global batch over every process's devices, keeping the weights replicated. On CPU the
    processes exchange gradients through gloo."""

    def __init__(self):
        import jax
        import keras

        coordinator, processes, index = cluster_from_tf_config()
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=processes, process_id=index)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
        self.strategy, self.num_replicas_in_sync = None, jax.device_count()
        self.process_index = jax.process_index()

    # fit's validation would split the validation split over processes in uneven batches; the
    # split is scored after training instead, on every process alone.
    validates_in_fit = False

    def scope(self):
        return contextlib.nullcontext()

    @property
    def chief(self):
        return self.process_index == 0

    def after_training(self, model):
        """Every process keeps a local copy of the replicated weights, so that scoring, saving and
        the chief's export run on one process each, without the others."""
        import keras
        import numpy as np

        keras.distribution.set_distribution(None)
        for variable in model.variables:
            value = np.asarray(variable.value)  # Replicated: every process holds all of it.
            variable._layout = None  # Else assign puts it back on every process's devices.
            variable.assign(value)

    def wait_for_all(self):
        """Until every process is here: the others wait for the chief's export before exiting
        (jax.distributed fails the whole job if a process leaves long before the rest)."""
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("pea_keras run finished")


def make_runtime(name, tpu="", backend="tensorflow"):
    """The runtime for --strategy `name`: default, mirrored (every local GPU, else every logical
    CPU), multiworker (cluster from TF_CONFIG; on JAX a `JaxDataParallel`) or tpu."""
    if name == "multiworker" and backend == "jax":
        return JaxDataParallel()
    return Runtime(_strategy(name, tpu))


def _strategy(name, tpu):
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        # No GPU: every logical CPU device (one unless configured, as tests do to simulate two).
        return tf.distribute.MirroredStrategy(devices=[d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            raise UsageError(f"--strategy tpu: no TPU found ({str(e).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()

