"""Validation during training: evaluate every N epochs, keep the best weights.

Checkpoints have one layout: `best.weights.h5` and `last.weights.h5` both hold the
training network (every head, training-only ones included), so the heads saved with a
run come from the same epoch as the weights they go with."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import numpy as np

from kpose._tf import keras
from kpose.pose_model import PoseModel

# (model, results file) -> metrics: the task's evaluation of the validation split.
Evaluate = Callable[[PoseModel, Path], dict]


class EvalCallback(keras.callbacks.Callback):
    """Evaluates on the validation split every N epochs; keeps the best weights."""

    def __init__(self, pose_model: PoseModel, evaluate: Evaluate, every: int, ckpt_dir: Path,
                 key: str, network: keras.Model, total_epochs: int | None = None):
        """network: the training network the pose model's layers belong to (what is saved)."""
        super().__init__()
        self.network = network
        self.total_epochs = total_epochs  # fit may run in stages; the last epoch is always evaluated
        self.pose_model, self.evaluate, self.every = pose_model, evaluate, max(int(every), 1)
        self.ckpt_dir, self.key = ckpt_dir, key
        self.best = -np.inf
        self.best_epoch: int | None = None  # the epoch whose weights best.weights.h5 holds (this fit)
        self.best_metrics: dict = {}  # of the weights in best.weights.h5, predictions beside them
        self.best_predictions = ckpt_dir / "best_predictions.json"
        # Validation runs every N epochs; CSVLogger fixes its columns at epoch 1,
        # so validation metrics get their own file.
        self.csv = ckpt_dir.parent / "validation.csv"

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == (self.total_epochs or self.params.get("epochs"))
        if (epoch + 1) % self.every and not last:
            return
        latest = self.ckpt_dir / "latest_predictions.json"
        # Without it, every validation after the first scored multi-scale maps of the first one's weights.
        self.pose_model.weights_changed()
        m = self.evaluate(self.pose_model, latest)
        scalars = {k: v for k, v in m.items() if isinstance(v, float)}
        new_file = not self.csv.exists()
        with self.csv.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["epoch", *scalars])
            if new_file:
                w.writeheader()
            w.writerow({"epoch": epoch, **scalars})
        for k, v in m.items():
            if logs is not None and isinstance(v, float):
                logs[f"val_{k}"] = v
        score = m.get(self.key, -np.inf)
        if score > self.best:
            self.best, self.best_metrics, self.best_epoch = score, m, epoch
            self.network.save_weights(str(self.ckpt_dir / "best.weights.h5"))
            latest.replace(self.best_predictions)
        print(f"  validation {self.key}={score:.4f} (best {self.best:.4f})", flush=True)


class SaveLast(keras.callbacks.Callback):
    """The training network's weights after every epoch, as `last.weights.h5`."""

    def __init__(self, network: keras.Model, path: Path):
        super().__init__()
        self.network, self.path = network, path

    def on_epoch_end(self, epoch, logs=None):
        self.network.save_weights(str(self.path))
