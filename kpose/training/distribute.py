"""tf.distribute for kpose.train: which strategy, who writes, how the data is split.

The strategy comes from the environment the way cluster schedulers set it up
(Kubernetes TFJob, Vertex AI and TF Cloud write `TF_CONFIG`): several workers in
`TF_CONFIG` -> MultiWorkerMirroredStrategy, a TPU resolver -> TPUStrategy, several
local GPUs -> MirroredStrategy, else the default (one device). `train.strategy` (or
`kpose train --strategy`) picks one by name instead.

Multi-worker collectives must be configured before TensorFlow's runtime starts, so
`strategy()` is the first TF call of a training run, and one strategy serves a process.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kpose._tf import keras, tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")

_made: dict[str, tf.distribute.Strategy] = {}


def tf_config() -> dict:
    """The parsed TF_CONFIG ({} when unset); a ValueError naming the variable when malformed."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not JSON ({e}); expected e.g. "
                         '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}}') from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster", {}), dict):
        raise ValueError("TF_CONFIG: expected an object with \"cluster\" (job -> addresses) and \"task\"")
    return config


def cluster_workers(config: dict) -> int:
    """Machines in TF_CONFIG's cluster that train (chief and workers)."""
    cluster = config.get("cluster", {})
    return sum(len(cluster.get(job, [])) for job in ("chief", "worker"))


def _tpu_resolver():
    """A TPU cluster resolver when this machine has a TPU (TPU_NAME or a Cloud TPU VM), else None."""
    if not (os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")):
        return None
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver()
    except (ValueError, tf.errors.NotFoundError):
        return None


def strategy_name(requested: str = "auto") -> str:
    """The strategy `requested` resolves to on this machine (see the module docstring)."""
    if requested not in STRATEGIES:
        raise ValueError(f"train.strategy={requested!r}; known: {', '.join(STRATEGIES)} "
                         f"(auto: from TF_CONFIG, a TPU, the local GPUs)")
    if requested != "auto":
        return requested
    if cluster_workers(tf_config()) > 1:
        return "multi_worker"
    if _tpu_resolver() is not None:
        return "tpu"
    # physical devices: listing them does not start the runtime (logical devices would)
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def strategy(requested: str = "auto") -> tf.distribute.Strategy:
    """The process's strategy for `requested` (made once; see the module docstring)."""
    name = strategy_name(requested)
    if name in _made:
        return _made[name]
    if _made:
        raise ValueError(f"train.strategy={requested!r} ({name}) in a process that already trains with "
                         f"{next(iter(_made))}: TensorFlow's runtime takes one strategy per process")
    if name == "multi_worker":
        if cluster_workers(tf_config()) < 1:
            raise ValueError("train.strategy=multi_worker needs TF_CONFIG with the cluster's workers, e.g. "
                             '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": '
                             '"worker", "index": 0}}')
        made = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "tpu":
        resolver = _tpu_resolver()
        if resolver is None:
            raise ValueError("train.strategy=tpu: no TPU found (set TPU_NAME, or run on a Cloud TPU VM)")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        made = tf.distribute.TPUStrategy(resolver)
    elif name == "mirrored":
        made = tf.distribute.MirroredStrategy()
    else:
        made = tf.distribute.get_strategy()
    _made[name] = made
    return made


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster: only the chief writes the run folder."""

    index: int
    count: int
    chief: bool

    @property
    def label(self) -> str:
        return f"worker {self.index} of {self.count}{' (chief)' if self.chief else ''}"


def worker(made: tf.distribute.Strategy) -> Worker:
    """Index, count and chief flag of this process under `made` (1 worker, chief, when local)."""
    if not isinstance(made, tf.distribute.MultiWorkerMirroredStrategy):
        return Worker(0, 1, True)
    resolver = made.cluster_resolver
    spec = resolver.cluster_spec().as_dict()
    count = cluster_workers({"cluster": spec})
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    # With a "chief" job the chief is that task; without one, worker 0 plays it (TF's rule).
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in spec)
    index = task_id + (1 if task_type == "worker" and "chief" in spec else 0)
    return Worker(index, count, chief)


def describe(made: tf.distribute.Strategy) -> str:
    """The strategy's public name (MultiWorkerMirroredStrategy's class is named otherwise)."""
    if isinstance(made, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(made).__name__


def scratch_dir(me: Worker) -> Path:
    """Where a non-chief worker writes what the chief writes into the run folder; removed
    at the end (`drop_scratch`)."""
    return Path(tempfile.mkdtemp(prefix=f"kpose-worker{me.index}-"))


def drop_scratch(me: Worker, folder: Path) -> None:
    if not me.chief:
        shutil.rmtree(folder, ignore_errors=True)


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Split batches across workers by element: every worker runs the same seeded pipeline and
    keeps its share of each global batch (kpose's datasets are not file-based)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def synchronize_batch_norms(net: keras.Model) -> keras.Model:
    """A copy of `net` whose BatchNormalizations use the statistics of the global batch across
    replicas (as one process training the whole batch would), with the same weights.

    Call under the strategy's scope. The copy shares no layers with `net`."""
    norm = keras.layers.BatchNormalization

    def clone(layer):
        config = layer.get_config()
        if type(layer) is norm:
            config.update(synchronized=True, fused=None)
        return layer.__class__.from_config(config)

    if not any(type(layer) is norm for layer in net.layers):
        return net
    copy = keras.models.clone_model(net, clone_function=clone)
    copy.set_weights(net.get_weights())
    return copy
