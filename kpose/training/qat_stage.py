"""The QAT stage of a run: a quantisation-aware copy of the trained float network, its
ranges calibrated on training batches, fine-tuned with the float stage's loss."""
from __future__ import annotations

import contextlib
import time

from kpose._tf import keras
from kpose.models.concat_scales import concat_scales, first_inputs
from kpose.models.quantize import CALIBRATION_BATCHES, calibrate_ranges, frozen_batch_norms, quantize_model
from kpose.pose_model import PoseModel
from kpose.training.optimizers import FusedAdam
from kpose.training.recipe_model import inference_network
from kpose.training.trainer import WarmupCosine, make_trainer
from kpose.training.validation import EvalCallback


def qat_stage(net, specs, cfg, ds, steps, global_batch, strategy, config, validate, ckpt, key,
               out_dir, progress):
    """Fine-tune a QAT copy of the trained float network; returns (PoseModel, history, seconds)."""
    qcfg = cfg["qat"]
    epochs = int(qcfg["epochs"])
    # Measured on the float network, from the same seeded batches on every worker.
    scales = concat_scales(net, first_inputs(ds))
    with strategy.scope():
        qnet = quantize_model(net, scales)
    pose_model = PoseModel(inference_network(qnet, cfg), dict(config, quantization="qat", concat_scales=scales))
    qckpt = ckpt / "qat"
    qckpt.mkdir(exist_ok=True)
    callbacks = [EvalCallback(pose_model, validate, max(epochs, 1), qckpt, key, qnet),
                 keras.callbacks.CSVLogger(str(out_dir / "history_qat.csv")), keras.callbacks.TerminateOnNaN()]
    # freeze_batch_norm: ranges and weights adapt to the moving statistics the deployed
    # network uses, not to each small batch's own.
    with (frozen_batch_norms(qnet) if qcfg["freeze_batch_norm"] else contextlib.nullcontext()), strategy.scope():
        calibrate_ranges(qnet, ds.take(CALIBRATION_BATCHES), strategy)
        trainer = make_trainer(qnet, specs, cfg["loss"], global_batch)
        opt = FusedAdam(WarmupCosine(qcfg["lr"], 0, max(steps * epochs, 1)))
        opt.build(qnet.trainable_variables)  # slots made here: the first step is then traced once, not twice
        trainer.compile(optimizer=opt)
        t0 = time.time()
        hist = trainer.fit(ds, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks,
                           verbose=1 if progress else 2) if epochs > 0 else None
    return pose_model, (hist.history if hist else {}), time.time() - t0
