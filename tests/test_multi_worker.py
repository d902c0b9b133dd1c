"""Multi-worker training on loopback: two `kpose train` processes on 127.0.0.1 with TF_CONFIG
(MultiWorkerMirroredStrategy) train like one process at the same global batch and seed."""
import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from kpose.data.synthetic import ensure_dataset
from kpose.training import distribute

# One step per epoch: history.csv then holds the loss of every step. Four steps, not more: each
# epoch end costs the workers ~6 s of checkpoint and callback coordination.
PER_REPLICA, WORKERS, STEPS, EPOCHS = 2, 2, 1, 4
# Two processes reduce their gradients and batch statistics over the wire: sums in another
# order than one process makes them, so float32 rounding, nothing more, may differ. The first
# step (same weights, same batch) agrees to rounding; Adam then turns rounding noise in
# gradients near zero into steps of up to lr (it divides by the gradient's own size), so a
# few weights (BatchNorm offsets whose gradient is nearly zero) drift by up to lr x steps and
# the later losses by ~1e-3 (measured: 4e-4 after 6 steps). A real difference (each worker
# on the same half batch, per-replica batch statistics, a loss over the local batch) moves
# the first loss by percents and most weights by ~lr per step.
FIRST_LOSS_RTOL, LOSS_RTOL, MEDIAN_WEIGHT_ATOL = 1e-5, 3e-3, 1e-4
ARGS = ["efficientpose_rt", "--quiet", "--epochs", str(EPOCHS), "--set", f"train.steps_per_epoch={STEPS}",
        "--set", "model.input_size=[64,48]", "--set", "init=null", "--set", "data.max_val=4",
        "--set", f"train.eval_every={EPOCHS}", "--set", "train.early_epochs=0", "--set", "train.seed=3",
        # Two backups, not one per epoch: under MultiWorkerMirroredStrategy each reads every
        # batch-norm statistic through an all-reduce (~4 s a backup here).
        "--set", f"train.backup_every={EPOCHS * STEPS // 2}"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _train(runs_dir, batch: int, tf_config: dict | None, strategy: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    extra = ["--strategy", strategy] if strategy else []
    return subprocess.Popen([sys.executable, "-m", "kpose.cli", "train", *ARGS, "--batch-size", str(batch),
                             "--runs-dir", str(runs_dir), *extra], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _losses(run) -> np.ndarray:
    with open(run / "history.csv") as f:
        return np.array([float(row["loss"]) for row in csv.DictReader(f)])


def _weights(run) -> list[np.ndarray]:
    import h5py

    out = []
    with h5py.File(run / "checkpoints" / "last.weights.h5") as f:
        f.visititems(lambda name, obj: out.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_two_workers_on_loopback_train_like_one_process(tmp_path):
    # The embedded dataset is made once, here, not by three training processes at once.
    ensure_dataset(progress=False)
    ports = _free_ports(WORKERS)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = [_train(tmp_path / f"worker{i}", PER_REPLICA,
                      {"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(WORKERS)]
    # The reference run beside them: the workers spend much of their time waiting on each other.
    one = _train(tmp_path / "single", PER_REPLICA * WORKERS, None)
    outs = [w.communicate(timeout=600)[0] for w in workers]
    single_out = one.communicate(timeout=600)[0]
    for i, (w, out) in enumerate(zip(workers, outs)):
        assert w.returncode == 0, f"worker {i}:\n{out[-4000:]}"
    assert one.returncode == 0, single_out[-4000:]

    assert "MultiWorkerMirroredStrategy, 2 replica(s) on 2 worker(s): global batch 4 = 2 per replica x 2" \
        in outs[0], outs[0][-3000:]
    # Only the chief (worker 0) writes a run folder; the other leaves nothing behind.
    chief_runs = list((tmp_path / "worker0").glob("efficientpose_rt-*"))
    assert len(chief_runs) == 1 and not (tmp_path / "worker1").exists()
    assert "run folder: written by the chief worker" in outs[1]
    chief = chief_runs[0]
    metrics = json.loads((chief / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["global_batch"] == 4
    assert metrics["optimizer_steps"] == EPOCHS * STEPS
    (single,) = (tmp_path / "single").glob("efficientpose_rt-*")

    losses, reference = _losses(chief), _losses(single)
    mine, theirs = _weights(chief), _weights(single)
    assert [n for n, _ in mine] == [n for n, _ in theirs] and len(mine) > 50
    diffs = np.concatenate([np.abs(a - b).ravel() for (_, a), (_, b) in zip(mine, theirs)])
    print(f"losses {losses} vs {reference}; weight differences: median {np.median(diffs):.2e}, "
          f"max {diffs.max():.2e}")
    assert len(losses) == EPOCHS * STEPS and losses[-1] < losses[0]  # it trains
    np.testing.assert_allclose(losses[0], reference[0], rtol=FIRST_LOSS_RTOL)
    np.testing.assert_allclose(losses, reference, rtol=LOSS_RTOL)
    assert np.median(diffs) < MEDIAN_WEIGHT_ATOL


def test_strategy_from_the_environment(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.strategy_name() == "default"  # no GPU, no TPU, no cluster here
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    assert distribute.strategy_name() == "multi_worker"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker"}}))
    assert distribute.strategy_name() == "default"
    assert distribute.strategy_name("mirrored") == "mirrored"
    with pytest.raises(ValueError, match="known: auto, default"):
        distribute.strategy_name("horovod")
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(ValueError, match="TF_CONFIG is not JSON"):
        distribute.strategy_name()
