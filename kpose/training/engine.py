"""kpose.train: recipe -> trained, evaluated, saved run folder, in one call."""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kpose import plots
from kpose._tf import keras, tf
from kpose.data.coco_skeleton import skeleton_request
from kpose.models import build_network, get_family
from kpose.models.quantize import CALIBRATION_BATCHES
from kpose.pose_model import PoseModel
from kpose.recipe import load_recipe
from kpose.training import distribute
from kpose.training.distribute import Worker, drop_scratch, scratch_dir, shard_by_data, synchronize_batch_norms, worker
from kpose.training.fit_stages import any_input_size, precision, size_stages
from kpose.training.optimizers import make_optimizer
from kpose.training.qat_stage import qat_stage
from kpose.training.recipe_model import (inference_network, network_config, recipe_model_config, recipe_skeleton,
                                         recipe_targets)
from kpose.training.run_folder import BACKUP_DIR, backup_step, check_same_recipe, new_run_dir, resumed_run
from kpose.training.task_data import TASK_DATA
from kpose.training.trainer import WarmupCosine, make_trainer
from kpose.training.transfer import backbone_loader, init_weights, resolve_init, save_training_heads
from kpose.training.validation import EvalCallback, SaveLast

log = logging.getLogger("kpose")


@dataclass
class Run:
    """What `kpose.train` returns: the run folder, final metrics and the trained model."""

    dir: Path | None  # None on a worker that is not the chief: only the chief writes a run folder
    metrics: dict
    model: PoseModel
    recipe: dict
    history: dict = field(default_factory=dict)


def train(recipe: str = "efficientpose_rt", data: str | dict | None = None,
          epochs: int | None = None, batch_size: int | None = None,
          overrides: dict[str, Any] | None = None, runs_dir: str | Path = "runs",
          progress: bool = True, qat: bool | None = None, init: str | Path | None = None,
          resume: str | Path | None = None, strategy: str | None = None, name: str | None = None) -> Run:
    """Train a packaged (or YAML-file) recipe end to end and return the Run.

    data: "synthetic" (default, the embedded dataset), "coco:ANN.json:IMAGES",
    "mpii:LIST.json:IMAGES", or {"train": spec, "val": spec}.
    overrides: dotted recipe keys, e.g. {"train.lr": 5e-4, "model.input_size": [128, 128]}.
    qat: after the float stage, fine-tune with quantisation-aware training for the
      recipe's qat.epochs (None: the recipe's qat.enabled). The run's model is then the
      QAT model (export it with precision "qat"); the float model is kept in model_float/.
    init: start from a trained model (run folder, model folder or official .h5), e.g.
      `train(recipe, init="runs/<run>", epochs=0, qat=True)` quantises a trained model.
    resume: a run folder whose training was interrupted (killed, preempted): it continues
      from its last backup (`backup/`, written every train.backup_every steps, or every
      epoch) with the run's own recipe.yaml, in the same folder.
    strategy: tf.distribute strategy by name (train.strategy: auto, default, mirrored,
      multi_worker, tpu); auto reads TF_CONFIG, then looks for a TPU and local GPUs.
    name: the run folder's name (runs_dir/name) instead of recipe-date-time. Started again
      after a preemption (a scheduler reruns the same command on every worker), a named run
      whose folder holds a backup resumes from it; a finished one is not overwritten.
    """
    if resume is not None:
        given = {"data": data, "epochs": epochs, "batch_size": batch_size, "overrides": overrides,
                 "qat": qat, "init": init}
        if any(v for v in given.values()):
            raise ValueError(f"resume continues {resume} exactly as its recipe.yaml says; drop "
                             f"{[k for k, v in given.items() if v]}")
        run_dir, cfg = resumed_run(Path(resume))
        if strategy is not None:
            cfg["train"]["strategy"] = strategy
        made, me = _distribution(cfg)
        out_dir = run_dir if me.chief else scratch_dir(me)
        return _train(run_dir, out_dir, cfg, progress, made, me)
    ov = dict(overrides or {})
    if strategy is not None:
        ov["train.strategy"] = strategy
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
    made, me = _distribution(cfg)  # before any other TF op (multi-worker collectives)
    named = None if name is None else Path(runs_dir) / name
    if named is not None and (named / BACKUP_DIR).is_dir():
        check_same_recipe(named, cfg)
        return _train(named, named if me.chief else scratch_dir(me), cfg, progress, made, me)
    if named is not None and (named / "metrics.json").exists():
        raise ValueError(f"run {named} has finished (metrics.json); give another --name, or drop --name for "
                         f"a dated folder")
    if cfg["init"] is not None:
        resolve_init(cfg["init"], cfg["model"])  # fail before any work
    backbone_loader(cfg["model"])  # the same: no such backbone weights, file or network
    if me.chief:
        run_dir = out_dir = new_run_dir(runs_dir, cfg["name"]) if named is None else named
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        out_dir = scratch_dir(me)
        run_dir = out_dir if named is None else named  # backups are read from the chief's folder
    (out_dir / "recipe.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        return _train(run_dir, out_dir, cfg, progress, made, me)
    except BaseException:
        # Failed before training started (data or skeleton rejected, model not built): leave
        # no run folder behind. Once checkpoints exist, the folder is kept for --resume.
        if not (out_dir / "checkpoints").exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _distribution(cfg: dict) -> tuple[tf.distribute.Strategy, Worker]:
    made = distribute.strategy(cfg["train"]["strategy"])
    return made, worker(made)


def _lr_factor(tcfg: dict, replicas: int) -> float:
    if tcfg["lr_scaling"] not in ("none", "linear"):
        raise ValueError(f"recipe train.lr_scaling={tcfg['lr_scaling']!r}; known: none (lr as given), "
                         f"linear (lr x replicas)")
    return float(replicas) if tcfg["lr_scaling"] == "linear" else 1.0


def _train(run_dir: Path, out_dir: Path, cfg: dict, progress: bool, strategy: tf.distribute.Strategy,
           me: Worker) -> Run:
    """The training engine: data, network, fit with validation and backups, saving.

    run_dir holds the backup every worker resumes from; out_dir is where this worker writes
    (the run folder on the chief, a scratch folder removed at the end on the others)."""
    try:
        return _fit_and_save(run_dir, out_dir, cfg, progress, strategy, me)
    finally:
        drop_scratch(me, out_dir)


def _fit_and_save(run_dir: Path, out_dir: Path, cfg: dict, progress: bool, strategy: tf.distribute.Strategy,
                  me: Worker) -> Run:
    tcfg, mcfg = cfg["train"], cfg["model"]
    init = None if cfg["init"] is None else resolve_init(cfg["init"], mcfg)
    tf.keras.utils.set_random_seed(int(tcfg["seed"]))
    resuming = (run_dir / BACKUP_DIR).is_dir()
    where = f"run folder {run_dir}" if me.chief else f"{me.label}: the chief writes the run folder"
    print(f"kpose: {where}{' (resuming from its backup)' if resuming else ''}", flush=True)

    task = TASK_DATA[get_family(mcfg["family"]).task]
    data_spec = {"train": cfg["data"]["train"], "val": cfg["data"]["val"]}
    request = skeleton_request(cfg["skeleton"])
    train_set = task.load(data_spec, "train", request or recipe_skeleton(cfg), progress)
    if request is not None:
        # The model's skeleton is the data's own (names, limbs, flip pairs, sigmas), stored in full.
        cfg["skeleton"] = task.skeleton(train_set).to_dict()
    skeleton = recipe_skeleton(cfg)
    print(f"kpose: skeleton {skeleton.name}: {skeleton.num_keypoints} keypoints, {len(skeleton.limbs)} limbs, "
          f"flip pairs {[(skeleton.keypoints[a], skeleton.keypoints[b]) for a, b in skeleton.flip_pairs]}",
          flush=True)
    if not skeleton.flip_pairs and cfg["augment"]["flip"]:
        print("kpose: no flip pairs: training without flip augmentation (augment.flip = 0)", flush=True)
        cfg["augment"]["flip"] = 0.0
    task.check(skeleton, cfg)
    val_set = task.load(data_spec, "val", skeleton if request is None else request, progress)
    if task.skeleton(val_set).keypoints != skeleton.keypoints:
        raise ValueError(f"data.val = {cfg['data']['val']!r} has keypoints {task.skeleton(val_set).keypoints}, "
                         f"the training data {skeleton.keypoints}; validate on data with the same keypoints")
    if cfg["data"]["max_val"]:
        val_set = task.subset(val_set, int(cfg["data"]["max_val"]))
    for split, part in (("train", train_set), ("val", val_set)):
        print(f"kpose: {split}: {task.summary(part)}", flush=True)
        if task.count(part) == 0:
            raise ValueError(f"data.{split} = {cfg['data'][split]!r} has no usable {task.unit} "
                             f"({task.summary(part)}); check the annotation file and image folder")

    config = recipe_model_config(cfg, data_spec)
    input_size = tuple(int(v) for v in mcfg["input_size"])
    replicas = strategy.num_replicas_in_sync
    global_batch = int(tcfg["batch_size"]) * replicas
    lr_value = float(tcfg["lr"]) * _lr_factor(tcfg, replicas)
    print(f"kpose: {distribute.describe(strategy)}, {replicas} replica(s) on {me.count} worker(s): global batch "
          f"{global_batch} = {tcfg['batch_size']} per replica x {replicas}; lr {lr_value:g} "
          f"(train.lr_scaling: {tcfg['lr_scaling']})", flush=True)
    steps = int(tcfg["steps_per_epoch"] or max(task.count(train_set) // global_batch, 1))
    total = max(steps * int(tcfg["epochs"]), 1)

    seed = int(tcfg["seed"])
    specs = recipe_targets(cfg, input_size)
    ds = shard_by_data(task.batches(train_set, input_size, specs, cfg, global_batch, seed))
    mixed = bool(tcfg["mixed_precision"])
    if mixed and cfg["qat"]["enabled"]:
        raise ValueError("recipe train.mixed_precision: true with qat: quantisation-aware training runs in "
                         "float32; train in mixed precision, then --init that run with --qat")
    with strategy.scope(), precision(mixed):
        net = build_network(network_config(cfg), training_outputs=True)
        if not resuming and (backbone := backbone_loader(mcfg)) is not None:
            print(f"kpose: initialised {backbone(net)}", flush=True)
        if init is not None:
            summary = init_weights(net, init, skeleton, mcfg, calibration=ds.take(CALIBRATION_BATCHES))
            print(f"kpose: initialised {summary}", flush=True)
        if replicas > 1 and tcfg["sync_batch_norm"]:
            net = synchronize_batch_norms(net)
        trainer = make_trainer(net, specs, cfg["loss"], global_batch)
        lr = WarmupCosine(lr_value, int(tcfg["warmup_epochs"] * steps), total)
        opt = make_optimizer(tcfg["optimizer"], lr, tcfg["weight_decay"])
        if mixed:
            opt = keras.mixed_precision.LossScaleOptimizer(opt)
        # The optimizer's slots made now, not inside the first step: a tf.function that
        # creates variables is traced twice (seconds per training run, more for big models).
        opt.build(net.trainable_variables)
        trainer.compile(optimizer=opt)

    inference = inference_network(net, cfg)
    pose_model = PoseModel(inference, config)

    ckpt = out_dir / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    key = task.key(val_set)

    def validate(model, results_file):
        if model.config.get("quantization") == "qat" and cfg["eval"].get("scales"):
            # An int8 model has one input size: its validation runs at that size only.
            return task.evaluate(model, val_set, {**cfg, "eval": {**cfg["eval"], "scales": None}}, results_file)
        return task.evaluate(model, val_set, cfg, results_file)

    evaluator = EvalCallback(pose_model, validate, tcfg["eval_every"], ckpt, key, net,
                             total_epochs=int(tcfg["epochs"]))
    callbacks = [
        evaluator,
        SaveLast(net, ckpt / "last.weights.h5"),
        # append: the early-size stage and the rest are two fits into one log (the run folder is new)
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard"), write_graph=False,
                                    profile_batch=0),
        keras.callbacks.TerminateOnNaN(),
        # Model, optimizer and position, restored at the start of fit when the folder has one
        # (train(resume=...)); removed when training ends.
        keras.callbacks.BackupAndRestore(str(run_dir / BACKUP_DIR),
                                         save_freq=int(tcfg["backup_every"]) or "epoch"),
    ]
    t0 = time.time()
    history: dict = {}
    # A resumed run takes up each data stream where the backup left it (the same batches as an
    # uninterrupted run); the steps after the backup, lost with the kill, are redone.
    done = backup_step(run_dir / BACKUP_DIR) if resuming else 0
    for first, last, size in size_stages(tcfg, input_size):
        stage_trainer, stage_ds, any_size = trainer, ds, contextlib.nullcontext()
        skip = min(max(done - first * steps, 0), (last - first) * steps)
        stage_specs = specs if size == input_size else recipe_targets(cfg, size)
        if skip or size != input_size:
            stage_ds = shard_by_data(task.batches(train_set, size, stage_specs, cfg, global_batch, seed,
                                                  start_batch=skip))
        if size != input_size:
            with strategy.scope():
                stage_trainer = make_trainer(net, stage_specs, cfg["loss"], global_batch)
                stage_trainer.compile(optimizer=opt)  # the same optimizer: its moments carry over
            any_size = any_input_size(net)
            print(f"kpose: epochs {first + 1}-{last} at {size[0]}x{size[1]} "
                  f"(train.early_input_size), then {input_size[0]}x{input_size[1]}", flush=True)
        with any_size:
            hist = stage_trainer.fit(stage_ds, initial_epoch=first, epochs=last, steps_per_epoch=steps,
                                     callbacks=callbacks, verbose=1 if progress else 2)
        for k, v in hist.history.items():
            history.setdefault(k, []).extend(v)
    train_seconds = time.time() - t0
    # Finished: nothing to resume (BackupAndRestore empties its folder but leaves it).
    if me.chief:
        shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)

    # The best weights, unless the last epoch was the best: those are in the network already
    # (reading them back costs seconds, tens under MultiWorkerMirroredStrategy).
    if (ckpt / "best.weights.h5").exists() and evaluator.best_epoch != int(tcfg["epochs"]) - 1:
        net.load_weights(str(ckpt / "best.weights.h5"))  # the inference network shares its layers
    if mixed:
        # The trained model computes in float32 (its weights already are): the network again,
        # built outside the mixed policy, with these weights; validated again below.
        inference = build_network(network_config(cfg))
        inference.set_weights(pose_model.keras_model.get_weights())
        pose_model = PoseModel(inference, config)
    float_metrics = None
    if cfg["qat"]["enabled"]:
        float_metrics = dict(evaluator.best_metrics) or validate(pose_model, None)
        pose_model.save(out_dir / "model_float")
        save_training_heads(net, inference, out_dir / "model_float")
        print(f"kpose: float model {key}={float_metrics.get(key, float('nan')):.4f}; "
              f"quantisation-aware training for {cfg['qat']['epochs']} epochs", flush=True)
        pose_model, qat_hist, qat_seconds = qat_stage(net, specs, cfg, ds, steps, global_batch, strategy,
                                                       config, validate, ckpt, key, out_dir, progress)
        history.update({f"qat_{k}": v for k, v in qat_hist.items()})
        train_seconds += qat_seconds

    if float_metrics is None and evaluator.best_metrics and not mixed:
        # The final model is the best checkpoint: its evaluation is already done.
        metrics = dict(evaluator.best_metrics)
        shutil.copyfile(evaluator.best_predictions, out_dir / "val_predictions.json")
    else:
        metrics = validate(pose_model, out_dir / "val_predictions.json")
    if float_metrics is not None:
        metrics["float"] = {k: v for k, v in float_metrics.items() if isinstance(v, float)}
    metrics.update({"train_seconds": round(train_seconds, 1), "epochs": int(tcfg["epochs"]),
                    "optimizer_steps": int(opt.iterations.numpy()), "mixed_precision": mixed,
                    "steps_per_epoch": steps, "global_batch": global_batch,
                    "replicas": strategy.num_replicas_in_sync,
                    "task": get_family(mcfg["family"]).task, "sample_unit": task.unit,
                    "train_samples": task.count(train_set), "val_samples": task.count(val_set)})
    pose_model.save(out_dir / "model")
    if float_metrics is None:
        save_training_heads(net, inference, out_dir / "model")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plots.loss_curves(out_dir / "history.csv", out_dir / "loss.png", out_dir / "validation.csv")
    task.plot(pose_model, val_set, cfg, out_dir / "val_predictions.png")
    print(f"kpose: done in {train_seconds:.0f}s; {key}={metrics.get(key, float('nan')):.4f}; "
          f"run saved in {out_dir}", flush=True)
    return Run(dir=out_dir if me.chief else None, metrics=metrics, model=pose_model, recipe=cfg,
               history={k: [float(x) for x in v] for k, v in history.items()})
