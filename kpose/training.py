"""kpose.train: recipe -> trained, evaluated, saved run folder, in one call."""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from kpose._tf import keras, tf
from kpose.codecs.heatmap import HeatmapCodec
from kpose.codecs.heatmap_tf import heatmap_to_input_tf
from kpose.data.pipeline import KEYPOINTS_KEY, TargetSpec, train_dataset
from kpose.data.records import Instances
from kpose.data.sources import load_instances
from kpose.pose_model import PoseModel, build_network, model_config
from kpose.recipe import load_recipe
from kpose.skeletons import Skeleton, get_skeleton

log = logging.getLogger("kpose")


@dataclass
class Run:
    """What `kpose.train` returns: the run folder, final metrics and the trained model."""

    dir: Path
    metrics: dict
    model: PoseModel
    recipe: dict
    history: dict = field(default_factory=dict)


# ---- targets and loss ----------------------------------------------------------------

def target_specs(net, input_size, sigma: float, paf_width: float) -> list[TargetSpec]:
    """One TargetSpec per training output, from the output strides and names.

    input_size is the size the targets are for: the network's own or, for a fully
    convolutional network trained at another size, that size (a multiple of the
    coarsest output stride). sigma is in input pixels; each output gets it in its
    own pixels, at least 1 so that coarse passes still see a Gaussian rather than a
    single pixel.
    """
    net_h, net_w = net.input_shape[1:3]
    specs = []
    for name, out in zip(net.output_names, net.outputs):
        h, w, c = out.shape[1:]
        stride = net_w / w
        if input_size[0] % (net_h / h) or input_size[1] % stride:
            raise ValueError(f"input size {tuple(input_size)} is not a multiple of output {name}'s "
                             f"stride {stride:g}; use a multiple of {stride:g}")
        kind = "paf" if "paf" in name else "heatmap"
        s = paf_width if kind == "paf" else max(sigma / stride, 1.0)
        specs.append(TargetSpec(name, kind, (int(input_size[0] * h // net_h), int(input_size[1] // stride)),
                                float(s)))
    return specs


class PoseTrainer(keras.Model):
    """Wraps a multi-output network with kpose's visibility-weighted pass losses.

    Every pass is supervised (intermediate supervision); each channel's squared
    error is weighted by its target weight (0 for unlabelled or out-of-crop
    keypoints and for limbs missing an endpoint).
    """

    def __init__(self, net, specs: list[TargetSpec], pass_weights, scale: float, global_batch: int,
                 foreground_weight: float = 0.0, coord_weight: float = 0.0, coord_beta: float = 20.0,
                 input_size: tuple | None = None):
        super().__init__()
        self.coord_weight, self.coord_beta = float(coord_weight), float(coord_beta)
        self.input_size = tuple(int(v) for v in (input_size or net.input_shape[1:3]))
        if self.coord_weight and specs[-1].kind != "heatmap":
            raise ValueError(f"recipe loss.coord_weight needs a heatmap as the last output; "
                             f"{specs[-1].name} is a {specs[-1].kind}")
        self.net = net
        self.specs = specs
        self.pass_weights = [float(w) for w in pass_weights]
        if len(self.pass_weights) != len(specs):
            raise ValueError(f"recipe loss.pass_weights has {len(self.pass_weights)} entries; the "
                             f"model has {len(specs)} supervised outputs {[s.name for s in specs]}")
        self.scale = float(scale)
        self.foreground_weight = float(foreground_weight)
        self.global_batch = global_batch
        names = ["loss"] + [s.name for s in specs] + (["coords"] if self.coord_weight else [])
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    def get_config(self):
        # The wrapper is rebuilt from the recipe, never deserialised.
        return {}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, x, training=False):
        return self.net(x, training=training)

    def _pass_losses(self, targets, weights, outputs):
        per_sample, parts = 0.0, {}
        for spec, out, pw in zip(self.specs, outputs, self.pass_weights):
            t, w = targets[spec.name], weights[spec.name]
            if spec.kind == "paf":  # one weight per limb, two channels (x, y) per limb
                w = tf.repeat(w, 2, axis=-1)
            sq = tf.square(tf.cast(out, tf.float32) - t)
            if self.foreground_weight:
                # Gaussian peaks cover a tiny fraction of a map: without extra weight on
                # them a from-scratch model first learns to predict zeros everywhere and
                # sits on that plateau. Per-pixel weights keep the optimum at the target.
                sq = sq * (1.0 + self.foreground_weight * tf.abs(t))
            err = tf.reduce_mean(sq, axis=[1, 2])  # [B, C]
            sample = self.scale * tf.reduce_mean(err * w, axis=-1)  # [B]
            parts[spec.name] = tf.nn.compute_average_loss(sample, global_batch_size=self.global_batch)
            per_sample += pw * sample
        if self.coord_weight:
            sample = self._coord_loss(outputs[-1], targets[KEYPOINTS_KEY], weights[self.specs[-1].name])
            parts["coords"] = tf.nn.compute_average_loss(sample, global_batch_size=self.global_batch)
            per_sample += self.coord_weight * sample
        loss = tf.nn.compute_average_loss(per_sample, global_batch_size=self.global_batch)
        if self.net.losses:
            loss += tf.nn.scale_regularization_loss(tf.add_n(self.net.losses))
        return loss, parts

    def _coord_loss(self, heatmaps, keypoints, weights):
        """L1 distance between the soft-argmax of the decoded heatmaps and the keypoints.

        MSE on Gaussian maps gives a weak, slow signal for where exactly a peak sits;
        this loss pulls each peak's expected position (softmax of beta * heatmap over the
        map, in crop pixels) onto the keypoint, as integral regression / DSNT do, while
        the MSE terms keep the maps Gaussian for the codec's argmax + DARK decode.
        In units of the crop's larger side, times loss.scale; [B].
        """
        spec = self.specs[-1]
        h, w = spec.size
        hm = tf.cast(heatmaps, tf.float32)
        b, k = tf.shape(hm)[0], hm.shape[-1]
        p = tf.nn.softmax(self.coord_beta * tf.reshape(hm, [b, h * w, k]), axis=1)
        p = tf.reshape(p, [b, h, w, k])
        eu = tf.reduce_sum(tf.reduce_sum(p, axis=1) * tf.range(w, dtype=tf.float32)[None, :, None], axis=1)
        ev = tf.reduce_sum(tf.reduce_sum(p, axis=2) * tf.range(h, dtype=tf.float32)[None, :, None], axis=1)
        xy = heatmap_to_input_tf(tf.stack([eu, ev], -1), self.input_size, spec.size)  # [B, K, 2]
        d = tf.reduce_sum(tf.abs(xy - keypoints[..., :2]), axis=-1) / max(self.input_size)
        return self.scale * tf.reduce_mean(d * weights, axis=-1)

    def train_step(self, data):
        x, targets, weights = data
        with tf.GradientTape() as tape:
            outputs = self.net(x, training=True)
            loss, parts = self._pass_losses(targets, weights, outputs)
        variables = self.net.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._track(loss, parts)

    def test_step(self, data):
        x, targets, weights = data
        loss, parts = self._pass_losses(targets, weights, self.net(x, training=False))
        return self._track(loss, parts)

    def _track(self, loss, parts):
        # Trackers see per-replica shares; multiply back so logs show the batch mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.trackers["loss"].update_state(loss * replicas)
        for k, v in parts.items():
            self.trackers[k].update_state(v * replicas)
        return {k: m.result() for k, m in self.trackers.items()}


def make_trainer(net, specs: list[TargetSpec], loss: dict, global_batch: int,
                 input_size: tuple | None = None) -> PoseTrainer:
    """The PoseTrainer for a recipe's `loss` section (input_size: of the batches, if not the net's)."""
    return PoseTrainer(net, specs, loss["pass_weights"], loss["scale"], global_batch,
                       loss["foreground_weight"], loss["coord_weight"], loss["coord_beta"], input_size)


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then cosine decay to 1% of the peak rate."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup, self.total = float(peak), int(warmup_steps), int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1) / max(self.warmup, 1)
        progress = tf.clip_by_value((step - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
        cosine = self.peak * (0.01 + 0.99 * 0.5 * (1 + tf.cos(math.pi * progress)))
        return tf.where(step < self.warmup, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup, "total_steps": self.total}


# ---- evaluation during training ------------------------------------------------------

class EvalCallback(keras.callbacks.Callback):
    """Evaluates on the validation split every N epochs; keeps the best weights."""

    def __init__(self, pose_model: PoseModel, val: Instances, every: int, ckpt_dir: Path,
                 batch_size: int, key: str, flip_test: bool = False, total_epochs: int | None = None):
        super().__init__()
        self.total_epochs = total_epochs  # fit may run in stages; the last epoch is always evaluated
        self.flip_test = flip_test
        self.pose_model, self.val, self.every = pose_model, val, max(int(every), 1)
        self.ckpt_dir, self.batch_size, self.key = ckpt_dir, batch_size, key
        self.best = -np.inf
        self.best_metrics: dict = {}  # of the weights in best.weights.h5, predictions beside them
        self.best_predictions = ckpt_dir / "best_predictions.json"
        # Validation runs every N epochs; CSVLogger fixes its columns at epoch 1,
        # so validation metrics get their own file.
        self.csv = ckpt_dir.parent / "validation.csv"

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 == (self.total_epochs or self.params.get("epochs"))
        if (epoch + 1) % self.every and not last:
            return
        from kpose.evaluation import evaluate_instances
        latest = self.ckpt_dir / "latest_predictions.json"
        m = evaluate_instances(self.pose_model, self.val, batch_size=self.batch_size,
                               results_file=latest, flip_test=self.flip_test)
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
            self.best, self.best_metrics = score, m
            self.pose_model.keras_model.save_weights(str(self.ckpt_dir / "best.weights.h5"))
            latest.replace(self.best_predictions)
        print(f"  validation {self.key}={score:.4f} (best {self.best:.4f})", flush=True)


# ---- the one call ----------------------------------------------------------------------

def _strategy() -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 0 else tf.distribute.get_strategy()


def _run_dir(root: str | Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = Path(root) / f"{name}-{stamp}"
    i = 1
    while d.exists():
        i += 1
        d = Path(root) / f"{name}-{stamp}-{i}"
    d.mkdir(parents=True)
    return d


def untrained_model(recipe: str = "efficientpose_rt", overrides: dict[str, Any] | None = None) -> PoseModel:
    """The PoseModel a recipe trains, with fresh weights (for export and QAT checks)."""
    cfg = load_recipe(recipe, overrides)
    mcfg = cfg["model"]
    skeleton = get_skeleton(cfg["skeleton"])
    input_size = tuple(int(v) for v in mcfg["input_size"])
    net = build_network({"family": mcfg["family"], "variant": mcfg["variant"],
                         "input_size": input_size, "skeleton": skeleton.name}, training_outputs=True)
    final = target_specs(net, input_size, cfg["codec"]["sigma"], cfg["codec"]["paf_width"])[-1]
    codec = HeatmapCodec(input_size=input_size, heatmap_size=final.size, sigma=final.sigma)
    config = model_config(mcfg["family"], mcfg["variant"], input_size, skeleton, codec,
                          crop_padding=cfg["augment"]["box_padding"], recipe=cfg["name"],
                          data={"train": cfg["data"]["train"], "val": cfg["data"]["val"]})
    return PoseModel(keras.Model(net.inputs, net.outputs[-1], name=net.name), config)


def _keypoint_axes(src: tuple, dst: tuple, ks: int, kd: int) -> list[int] | None:
    """Axes of a weight with ks keypoint channels in the source and kd in the target,
    or None when the shapes differ on any other axis."""
    if len(src) != len(dst):
        return None
    axes = [a for a, (s, d) in enumerate(zip(src, dst)) if s == ks and d == kd]
    if any(s != d for a, (s, d) in enumerate(zip(src, dst)) if a not in axes):
        return None
    return axes


def _transfer_matrix(src: Skeleton, dst: Skeleton) -> np.ndarray:
    """[Kd, Ks]: how each target keypoint's channel is made from the source channels.

    One-hot for a keypoint both skeletons name; for a head keypoint the source lacks
    (COCO's face from MPII), the mean of the source's head keypoints, so it starts as
    a head detector instead of noise; a zero row (kept as initialised) otherwise.
    """
    mix = np.zeros((dst.num_keypoints, src.num_keypoints))
    src_head = [src.index(n) for n in src.extra.get("head_keypoints", ())]
    for k, name in enumerate(dst.keypoints):
        if name in src.keypoints:
            mix[k, src.index(name)] = 1.0
        elif name in dst.extra.get("head_keypoints", ()) and src_head:
            mix[k, src_head] = 1.0 / len(src_head)
    return mix


def _map_keypoint_channels(src: np.ndarray, dst: np.ndarray, axes: list[int],
                           mix: np.ndarray) -> np.ndarray:
    """dst with its keypoint channels (on `axes`) made from src's through `mix` [Kd, Ks].

    On one keypoint axis (a head's output channels, its bias) rows of `mix` are linear
    combinations. On layers that connect keypoint channels to keypoint channels (the
    transposed convolutions: two axes) only keypoints both skeletons name are copied:
    a mean there would feed each stand-in channel from all of them at once.
    """
    out = dst.copy()
    if len(axes) == 1:
        a = axes[0]
        rows = np.flatnonzero(mix.any(axis=1))
        mixed = np.moveaxis(np.tensordot(src, mix[rows], axes=([a], [1])), -1, a)
        index = [slice(None)] * dst.ndim
        index[a] = rows
        out[tuple(index)] = mixed.astype(dst.dtype)
        return out
    exact = np.flatnonzero((mix == 1.0).any(axis=1))
    source = mix[exact].argmax(axis=1)
    sub = src
    for a in axes:
        sub = np.take(sub, source, axis=a)
    grid = [exact if a in axes else np.arange(n) for a, n in enumerate(dst.shape)]
    out[np.ix_(*grid)] = sub
    return out


def _resolve_init(init: str | Path, mcfg: dict) -> Path:
    """A recipe's init: "official" = the official release of the recipe's variant."""
    if str(init) == "official":
        from kpose.models.official import official_weights_path

        if mcfg["family"] != "efficientpose":
            raise ValueError(f"init: official exists only for EfficientPose, not {mcfg['family']!r}")
        return official_weights_path(mcfg["variant"])
    return Path(os.path.expandvars(str(init)))


TRAINING_HEADS_FILE = "training_heads.npz"


def _save_training_heads(net, inference, directory: Path) -> None:
    """Save the training-only heads (EfficientPose: pass-1 PAFs, pass-2 maps) beside a saved
    model: `--init` from it then resumes with them, not with fresh heads whose first
    gradients disturb the trained features."""
    keep = {layer.name for layer in inference.layers}
    arrays = {f"{layer.name}/{i}": w for layer in net.layers if layer.name not in keep
              for i, w in enumerate(layer.get_weights())}
    if arrays:
        np.savez(Path(directory) / TRAINING_HEADS_FILE, **arrays)


def _load_training_heads(net, directory: Path) -> list[str]:
    """Restore the heads _save_training_heads wrote, where names and shapes match."""
    path = Path(directory) / TRAINING_HEADS_FILE
    if not path.exists():
        return []
    by_layer: dict[str, dict[int, np.ndarray]] = {}
    with np.load(path) as z:
        for key in z.files:
            name, i = key.rsplit("/", 1)
            by_layer.setdefault(name, {})[int(i)] = z[key]
    layers = {layer.name: layer for layer in net.layers}
    loaded = []
    for name, ws in by_layer.items():
        layer = layers.get(name)
        new = [ws[i] for i in sorted(ws)]
        if layer is not None and [w.shape for w in new] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(new)
            loaded.append(name)
    return loaded


def _init_weights(net, init: str | Path, skeleton: Skeleton, mcfg: dict) -> str:
    """Copy weights from a trained model (run/model folder or official .h5) by layer name.

    A model of another skeleton (e.g. the official MPII16 releases into a COCO17
    recipe) transfers too: keypoint-channel axes of its heads are mapped by keypoint
    name, and keypoints the source lacks keep their fresh initialisation. Returns a
    one-line summary of what was copied.
    """
    from kpose.deploy.graph import export_network
    from kpose.pose_model import load

    source_model = load(init)
    src_arch = (source_model.config.get("family"), source_model.config.get("variant"))
    if src_arch != (mcfg["family"], mcfg["variant"]):
        raise ValueError(f"init={init!s} is an {src_arch[0]} {src_arch[1]} model; the recipe builds "
                         f"{mcfg['family']} {mcfg['variant']}: start from a model of the same family "
                         f"and variant (model.family / model.variant)")
    src_skel = source_model.skeleton
    mix = _transfer_matrix(src_skel, skeleton)
    source = export_network(source_model)
    same = src_skel.name == skeleton.name
    copied, mapped = 0, []
    for layer in source.layers:
        if not layer.weights:
            continue
        try:
            target = net.get_layer(layer.name)
        except ValueError:
            continue
        src_w, dst_w = layer.get_weights(), target.get_weights()
        new, remapped = [], False
        for s, d in zip(src_w, dst_w):
            axes = None if same else _keypoint_axes(s.shape, d.shape, src_skel.num_keypoints,
                                                    skeleton.num_keypoints)
            if axes:
                new.append(_map_keypoint_channels(s, d, axes, mix))
                remapped = True
            elif s.shape == d.shape:
                new.append(s)
            else:
                raise ValueError(f"init={init!s}: layer {layer.name!r} has shapes "
                                 f"{[w.shape for w in src_w]}, the recipe's model has "
                                 f"{[w.shape for w in dst_w]}; use a model of the same "
                                 f"family and variant")
        target.set_weights(new)
        copied += 1
        if remapped:
            mapped.append(layer.name)
    if not copied:
        raise ValueError(f"init={init!s}: no layer names in common with the recipe's model")
    summary = f"{copied} layers from {init}"
    src_dir = Path(init)
    if (src_dir / "model" / TRAINING_HEADS_FILE).exists():
        src_dir = src_dir / "model"
    heads = _load_training_heads(net, src_dir) if src_dir.is_dir() else []
    if heads:
        summary += f" (with its training heads {', '.join(heads)})"
    if not same:
        named = (mix == 1.0).any(axis=1)
        stand_in = [n for n, r, e in zip(skeleton.keypoints, mix, named) if r.any() and not e]
        fresh = [n for n, r in zip(skeleton.keypoints, mix) if not r.any()]
        summary += (f"; {src_skel.name} -> {skeleton.name}: {len(mapped)} head layers mapped by "
                    f"keypoint name ({int(named.sum())} of {skeleton.num_keypoints} keypoints)")
        if stand_in:
            summary += (f", from the mean of {'/'.join(src_skel.extra['head_keypoints'])}: "
                        f"{', '.join(stand_in)}")
        summary += f", fresh: {', '.join(fresh) or 'none'}"
    return summary


def _size_stages(tcfg: dict, input_size: tuple) -> list[tuple[int, int, tuple]]:
    """(first epoch, end epoch, input size) of each fit: progressive resizing.

    With train.early_input_size set, the first train.early_epochs run on smaller crops
    (cheaper steps; the network is fully convolutional), the rest at the model's size.
    The last epoch always runs at the model's size, and an early size that is not
    smaller than the model's (say after --set model.input_size=[64,64]) is not used.
    """
    epochs = int(tcfg["epochs"])
    early = tcfg.get("early_input_size")
    if early and (len(early) != 2 or any(int(v) % 8 for v in early)):
        raise ValueError(f"recipe train.early_input_size={early!r}: expected [height, width], "
                         f"multiples of 8 (e.g. [128, 96])")
    smaller = bool(early) and all(int(e) < int(m) for e, m in zip(early, input_size))
    n = max(0, min(int(tcfg.get("early_epochs") or 0), epochs - 1)) if smaller else 0
    stages = [(0, n, tuple(int(v) for v in early))] if n else []
    if epochs > 0:
        stages.append((n, epochs, tuple(input_size)))
    return stages


@contextlib.contextmanager
def _any_input_size(net):
    """Let a fixed-size functional network run on batches of another size meanwhile.

    Every layer of kpose's networks is convolutional or global pooling; only Keras's
    input check is tied to the size the model was built for.
    """
    spec = net.input_spec
    net.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: int(net.input_shape[-1])})
    try:
        yield
    finally:
        net.input_spec = spec


def train(recipe: str = "efficientpose_rt", data: str | dict | None = None,
          epochs: int | None = None, batch_size: int | None = None,
          overrides: dict[str, Any] | None = None, runs_dir: str | Path = "runs",
          progress: bool = True, qat: bool | None = None, init: str | Path | None = None) -> Run:
    """Train a packaged (or YAML-file) recipe end to end and return the Run.

    data: "synthetic" (default, the embedded dataset), "coco:ANN.json:IMAGES",
    "mpii:LIST.json:IMAGES", or {"train": spec, "val": spec}.
    overrides: dotted recipe keys, e.g. {"train.lr": 5e-4, "model.input_size": [128, 128]}.
    qat: after the float stage, fine-tune with quantisation-aware training for the
      recipe's qat.epochs (None: the recipe's qat.enabled). The run's model is then the
      QAT model (export it with precision "qat"); the float model is kept in model_float/.
    init: start from a trained model (run folder, model folder or official .h5), e.g.
      `train(recipe, init="runs/<run>", epochs=0, qat=True)` quantises a trained model.
    """
    ov = dict(overrides or {})
    if epochs is not None:
        ov["train.epochs"] = int(epochs)
    if batch_size is not None:
        ov["train.batch_size"] = int(batch_size)
    if data is not None:
        if isinstance(data, dict):
            ov.update({f"data.{k}": v for k, v in data.items()})
        else:
            ov["data.train"] = ov["data.val"] = data
    cfg = load_recipe(recipe, ov)
    if qat is not None:
        cfg["qat"]["enabled"] = bool(qat)
    if init is not None:
        cfg["init"] = str(init)
    tcfg, mcfg = cfg["train"], cfg["model"]
    init = None if cfg["init"] is None else _resolve_init(cfg["init"], mcfg)  # fail before any work
    tf.keras.utils.set_random_seed(int(tcfg["seed"]))
    run_dir = _run_dir(runs_dir, cfg["name"])
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"kpose: run folder {run_dir}", flush=True)

    skeleton = get_skeleton(cfg["skeleton"])
    data_spec = {"train": cfg["data"]["train"], "val": cfg["data"]["val"]}
    train_set = load_instances(data_spec, "train", progress=progress)
    val_set = load_instances(data_spec, "val", progress=progress)
    if cfg["data"]["max_val"]:
        val_set = val_set.select(np.arange(min(len(val_set), int(cfg["data"]["max_val"]))))
    for split, inst in (("train", train_set), ("val", val_set)):
        print(f"kpose: {split}: {inst.summary()}", flush=True)
        if inst.skeleton.name != skeleton.name:
            raise ValueError(f"data.{split} = {cfg['data'][split]!r} has {inst.skeleton.name} keypoints "
                             f"but the recipe's skeleton is {skeleton.name}; set skeleton: "
                             f"{inst.skeleton.name} in the recipe (or --set skeleton={inst.skeleton.name})")
        if len(inst) == 0:
            raise ValueError(f"data.{split} = {cfg['data'][split]!r} has no usable person instances "
                             f"({inst.summary()}); check the annotation file and image folder")

    if cfg["codec"]["type"] != "heatmap":
        raise ValueError(f"recipe codec.type={cfg['codec']['type']!r}: top-down training decodes "
                         f"heatmaps; known: heatmap")
    input_size = tuple(int(v) for v in mcfg["input_size"])
    strategy = _strategy()
    global_batch = int(tcfg["batch_size"]) * strategy.num_replicas_in_sync
    steps = int(tcfg["steps_per_epoch"] or max(len(train_set) // global_batch, 1))
    total = max(steps * int(tcfg["epochs"]), 1)

    with strategy.scope():
        net = build_network({"family": mcfg["family"], "variant": mcfg["variant"],
                             "input_size": input_size, "skeleton": skeleton.name},
                            training_outputs=True)
        specs = target_specs(net, input_size, cfg["codec"]["sigma"], cfg["codec"]["paf_width"])
        trainer = make_trainer(net, specs, cfg["loss"], global_batch)
        lr = WarmupCosine(tcfg["lr"], int(tcfg["warmup_epochs"] * steps), total)
        if tcfg["optimizer"] == "adamw":
            opt = keras.optimizers.AdamW(lr, weight_decay=tcfg["weight_decay"])
        elif tcfg["optimizer"] == "adam":
            opt = keras.optimizers.Adam(lr)
        else:
            raise ValueError(f"recipe train.optimizer={tcfg['optimizer']!r}; known: adam, adamw")
        trainer.compile(optimizer=opt)
        if init is not None:
            summary = _init_weights(net, init, skeleton, mcfg)
            print(f"kpose: initialised {summary}", flush=True)

    final = specs[-1]
    codec = HeatmapCodec(input_size=input_size, heatmap_size=final.size, sigma=final.sigma)
    inference = keras.Model(net.inputs, net.outputs[-1], name=net.name)
    config = model_config(mcfg["family"], mcfg["variant"], input_size, skeleton, codec,
                          crop_padding=cfg["augment"]["box_padding"], recipe=cfg["name"], data=data_spec)
    pose_model = PoseModel(inference, config)

    ds_kw = dict(seed=int(tcfg["seed"]), shuffle_buffer=int(tcfg["shuffle_buffer"]))
    ds = train_dataset(train_set, input_size, specs, cfg["augment"], global_batch, **ds_kw)
    ckpt = run_dir / "checkpoints"
    ckpt.mkdir()
    key = "AP" if skeleton.sigmas is not None else "PCKh@0.5"
    evaluator = EvalCallback(pose_model, val_set, tcfg["eval_every"], ckpt,
                             cfg["eval"]["batch_size"], key, bool(cfg["eval"]["flip_test"]),
                             total_epochs=int(tcfg["epochs"]))
    callbacks = [
        evaluator,
        keras.callbacks.ModelCheckpoint(str(ckpt / "last.weights.h5"), save_weights_only=True),
        # append: the early-size stage and the rest are two fits into one log (the run folder is new)
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), write_graph=False,
                                    profile_batch=0),
        keras.callbacks.TerminateOnNaN(),
    ]
    t0 = time.time()
    history: dict = {}
    for first, last, size in _size_stages(tcfg, input_size):
        stage_trainer, stage_ds, any_size = trainer, ds, contextlib.nullcontext()
        if size != input_size:
            stage_specs = target_specs(net, size, cfg["codec"]["sigma"], cfg["codec"]["paf_width"])
            with strategy.scope():
                stage_trainer = make_trainer(net, stage_specs, cfg["loss"], global_batch, size)
                stage_trainer.compile(optimizer=opt)  # the same optimizer: its moments carry over
            stage_ds = train_dataset(train_set, size, stage_specs, cfg["augment"], global_batch, **ds_kw)
            any_size = _any_input_size(net)
            print(f"kpose: epochs {first + 1}-{last} at {size[0]}x{size[1]} "
                  f"(train.early_input_size), then {input_size[0]}x{input_size[1]}", flush=True)
        with any_size:
            hist = stage_trainer.fit(stage_ds, initial_epoch=first, epochs=last, steps_per_epoch=steps,
                                     callbacks=callbacks, verbose=1 if progress else 2)
        for k, v in hist.history.items():
            history.setdefault(k, []).extend(v)
    train_seconds = time.time() - t0

    if (ckpt / "best.weights.h5").exists():
        inference.load_weights(str(ckpt / "best.weights.h5"))
    from kpose.evaluation import evaluate_instances
    eval_kw = dict(batch_size=cfg["eval"]["batch_size"], flip_test=bool(cfg["eval"]["flip_test"]))

    float_metrics = None
    if cfg["qat"]["enabled"]:
        float_metrics = dict(evaluator.best_metrics) or evaluate_instances(pose_model, val_set, **eval_kw)
        pose_model.save(run_dir / "model_float")
        _save_training_heads(net, inference, run_dir / "model_float")
        print(f"kpose: float model {key}={float_metrics.get(key, float('nan')):.4f}; "
              f"quantisation-aware training for {cfg['qat']['epochs']} epochs", flush=True)
        pose_model, qat_hist, qat_seconds = _qat_stage(net, specs, cfg, ds, steps, global_batch, strategy,
                                                       config, val_set, ckpt, key, run_dir, progress)
        history.update({f"qat_{k}": v for k, v in qat_hist.items()})
        train_seconds += qat_seconds

    if float_metrics is None and evaluator.best_metrics:
        # The final model is the best checkpoint: its evaluation is already done.
        metrics = dict(evaluator.best_metrics)
        shutil.copyfile(evaluator.best_predictions, run_dir / "val_predictions.json")
    else:
        metrics = evaluate_instances(pose_model, val_set, results_file=run_dir / "val_predictions.json",
                                     **eval_kw)
    if float_metrics is not None:
        metrics["float"] = {k: v for k, v in float_metrics.items() if isinstance(v, float)}
    metrics.update({"train_seconds": round(train_seconds, 1), "epochs": int(tcfg["epochs"]),
                    "steps_per_epoch": steps, "global_batch": global_batch,
                    "replicas": strategy.num_replicas_in_sync,
                    "train_instances": len(train_set), "val_instances": len(val_set),
                    "skipped_train": dict(train_set.skipped), "skipped_val": dict(val_set.skipped)})
    pose_model.save(run_dir / "model")
    if float_metrics is None:
        _save_training_heads(net, inference, run_dir / "model")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    from kpose import plots
    plots.loss_curves(run_dir / "history.csv", run_dir / "loss.png", run_dir / "validation.csv")
    plots.prediction_grid(pose_model, val_set, run_dir / "val_predictions.png")
    print(f"kpose: done in {train_seconds:.0f}s; {key}={metrics.get(key, float('nan')):.4f}; "
          f"run saved in {run_dir}", flush=True)
    return Run(dir=run_dir, metrics=metrics, model=pose_model, recipe=cfg,
               history={k: [float(x) for x in v] for k, v in history.items()})


def _qat_stage(net, specs, cfg, ds, steps, global_batch, strategy, config, val_set, ckpt, key,
               run_dir, progress):
    """Fine-tune a QAT copy of the trained float network; returns (PoseModel, history, seconds)."""
    from kpose.quantization import CALIBRATION_BATCHES, calibrate_ranges, quantize_model

    qcfg = cfg["qat"]
    epochs = int(qcfg["epochs"])
    with strategy.scope():
        qnet = quantize_model(net)
        calibrate_ranges(qnet, ds.take(CALIBRATION_BATCHES), strategy)
        trainer = make_trainer(qnet, specs, cfg["loss"], global_batch)
        lr = WarmupCosine(qcfg["lr"], 0, max(steps * epochs, 1))
        trainer.compile(optimizer=keras.optimizers.Adam(lr))
    inference = keras.Model(qnet.inputs, qnet.outputs[-1], name=net.name + "_qat")
    pose_model = PoseModel(inference, dict(config, quantization="qat"))
    qckpt = ckpt / "qat"
    qckpt.mkdir(exist_ok=True)
    evaluator = EvalCallback(pose_model, val_set, max(epochs, 1), qckpt, cfg["eval"]["batch_size"],
                             key, bool(cfg["eval"]["flip_test"]))
    callbacks = [evaluator, keras.callbacks.CSVLogger(str(run_dir / "history_qat.csv")),
                 keras.callbacks.TerminateOnNaN()]
    t0 = time.time()
    hist = trainer.fit(ds, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks,
                       verbose=1 if progress else 2) if epochs > 0 else None
    return pose_model, (hist.history if hist else {}), time.time() - t0
