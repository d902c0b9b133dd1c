"""Fault tolerance: a training run killed with SIGKILL mid-epoch resumes from its last backup
when the same command is started again (a named run, as a scheduler restarts it) or with
`kpose train --resume RUN`, in the same folder, and ends at the same step count."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kpose._tf import tf
from kpose.training.run_folder import backup_step

# Killed after its second backup (step 8 of 24), mid-epoch: the resumed run restores a mid-epoch
# position and crosses an epoch end.
STEPS, EPOCHS, EVERY = 12, 2, 4
# Measured: the resumed run's weights equal the uninterrupted run's bit for bit on this CPU
# (same batches, same order of operations); the bound leaves room for thread-order rounding.
WEIGHT_ATOL = 1e-5
ARGS = ["--quiet", "--epochs", str(EPOCHS), "--set", f"train.steps_per_epoch={STEPS}",
        "--set", f"train.backup_every={EVERY}", "--set", "model.input_size=[64,48]", "--set", "train.batch_size=4",
        "--set", "train.early_epochs=0", "--set", "data.max_val=8", "--set", f"train.eval_every={EPOCHS}",
        # Random weights: the official ones (the recipe's init) cost ~10 s a run to load and map.
        "--set", "init=null"]


def _saved_steps(backup) -> int:
    """Optimizer steps in the newest backup: where BackupAndRestore resumes from."""
    return backup_step(backup)


def _weights(run) -> list:
    import h5py

    out = []
    with h5py.File(run / "checkpoints" / "last.weights.h5") as f:
        f.visititems(lambda name, obj: out.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_killed_run_resumes_from_its_backup(tmp_path):
    cmd = [sys.executable, "-m", "kpose.cli", "train"]
    command = cmd + ["efficientpose_rt", "--runs-dir", str(tmp_path), "--name", "preempted", *ARGS]
    proc = subprocess.Popen(command,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, steps = time.time() + 600, None
    try:
        while time.time() < deadline and proc.poll() is None:
            backups = list(tmp_path.glob("preempted/backup"))
            if backups and any(backups[0].rglob("checkpoint")):
                try:
                    steps = _saved_steps(backups[0])
                except (StopIteration, ValueError, tf.errors.OpError):
                    steps = None  # being written
                if steps is not None and steps >= 2 * EVERY:
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
    if proc.returncode != -signal.SIGKILL:
        pytest.fail(f"the run ended before it was killed (rc {proc.returncode}):\n{out[-3000:]}")
    run = backups[0].parent
    assert steps is not None and not (run / "metrics.json").exists()
    done_before = _saved_steps(run / "backup")

    # The scheduler starts the same command again: it resumes.
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming from its backup" in resumed.stdout
    # The trainer is built before fit: BackupAndRestore builds the optimizer, then restores.
    assert "is unbuilt" not in resumed.stdout + resumed.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    # The same number of optimizer steps as an uninterrupted run: the steps after the backup
    # (lost with the kill) are run again, none twice.
    assert metrics["optimizer_steps"] == EPOCHS * STEPS
    assert (run / "model" / "kpose.json").exists() and not (run / "backup").exists()
    print(f"killed after the backup at step {done_before} of {EPOCHS * STEPS}; resumed to {metrics['optimizer_steps']}")

    # The same final weights as a run that was never killed: the resumed run restored model and
    # optimizer and took up the data stream at the backup's step.
    straight = subprocess.run(cmd + ["efficientpose_rt", "--runs-dir", str(tmp_path), "--name", "straight", *ARGS],
                              capture_output=True, text=True, timeout=900)
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]
    mine, theirs = _weights(run), _weights(tmp_path / "straight")
    assert [n for n, _ in mine] == [n for n, _ in theirs]
    worst = max(float(abs(a - b).max()) for (_, a), (_, b) in zip(mine, theirs))
    print(f"largest weight difference to the uninterrupted run: {worst:.2e}")
    assert worst <= WEIGHT_ATOL

    with pytest.raises(SystemExit):
        from kpose.cli import main
        main(["train", "efficientpose_rt", "--resume", str(run)])
    from kpose.training import train
    with pytest.raises(ValueError, match="no backup/"):
        train(resume=run)
    with pytest.raises(ValueError, match="has finished"):  # started again once more: not overwritten
        train("efficientpose_rt", runs_dir=tmp_path, name="preempted")
