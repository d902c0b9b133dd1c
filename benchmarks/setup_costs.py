"""What a training run pays before its first step, side by side with the way it was paid before:

* the QAT copy of a network: kpose's quantize_model (two graph copies) vs tfmot's
  quantize_annotate + quantize_apply (five), the same network (tests/test_quantize.py);
* tracing and first running a training step: FusedAdam (one fused update per variable) vs
  Keras's Adam (~15 ops per variable), the same arithmetic (tests/test_optimizers.py);
* exporting the QAT copy to TFLite (SavedModel written, then converted): kpose's
  write_saved_model (no custom-gradient functions, serving trace without autograph) vs the
  same SavedModel written with TF's defaults.

Each pair runs in alternating order, --repeats times in one process (after one untimed warm-up
of each, which pays TF's one-off costs); medians and their ratio are printed.

    python benchmarks/setup_costs.py
    python benchmarks/setup_costs.py --recipes efficientpose_rt --repeats 5
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from kpose._tf import keras, tf
from kpose.deploy import graph, tflite
from kpose.models import get_family
from kpose.models.quantize import quantize_model, quantize_model_via_tfmot
from kpose.pose_model import PoseModel
from kpose.recipe import load_recipe
from kpose.training import untrained_networks
from kpose.training.optimizers import FusedAdam
from kpose.training.recipe_model import inference_network, recipe_skeleton, recipe_targets
from kpose.training.task_data import TASK_DATA
from kpose.training.trainer import make_trainer

# The gates' small sizes: what these costs grow with is the number of layers, not pixels.
SIZES = {"efficientpose_rt": [64, 48], "openpose_mobilenet_v2": [64, 64]}


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _first_step(net, cfg, size, batch, make_opt) -> float:
    """Seconds to trace a training step and run it once."""
    trainer = make_trainer(net, recipe_targets(cfg, size), cfg["loss"], 2)
    opt = make_opt()
    opt.build(net.trainable_variables)
    trainer.compile(optimizer=opt)
    step = tf.function(trainer.train_step)
    return _seconds(lambda: step(batch))


def _qat_export(model: PoseModel, defaults: bool) -> float:
    """Seconds to write a QAT model's export SavedModel and convert it to QAT TFLite; with
    `defaults`, the same module saved as tf.saved_model.save does without options (gradient
    functions of custom-gradient ops traced, the serving function converted by autograph)."""
    tmp = Path(tempfile.mkdtemp(prefix="kpose-bench-"))
    try:
        t0 = time.perf_counter()
        if defaults:
            module = tf.Module()
            module.weights = list(model.keras_model.variables)
            serve = graph.serving_function(model.keras_model, model.input_size, graph.output_names(model))
            module.serve = tf.function(serve.python_function, input_signature=serve.input_signature)
            tf.saved_model.save(module, str(tmp / "sm"), signatures={graph.SIGNATURE_KEY: module.serve})
        else:
            graph.write_saved_model(model, tmp / "sm", model.keras_model)
        tflite.convert(tmp / "sm", "qat")
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pairs(name_a, run_a, name_b, run_b, repeats: int) -> dict:
    run_a(), run_b()  # warm-up
    times = {name_a: [], name_b: []}
    for i in range(repeats):
        order = [(name_a, run_a), (name_b, run_b)][:: 1 if i % 2 == 0 else -1]
        for name, run in order:
            times[name].append(run())
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=list(SIZES), help="recipes to measure (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each (default: %(default)s)")
    args = ap.parse_args(argv)
    for recipe in args.recipes:
        overrides = {"model.input_size": SIZES.get(recipe, load_recipe(recipe)["model"]["input_size"]), "init": None}
        cfg = load_recipe(recipe, overrides)
        size = tuple(cfg["model"]["input_size"])
        tf.keras.utils.set_random_seed(0)
        net, model = untrained_networks(recipe, overrides)
        q = _pairs("quantize_model", lambda: _seconds(lambda: quantize_model(net)),
                   "tfmot quantize_apply", lambda: _seconds(lambda: quantize_model_via_tfmot(net)), args.repeats)
        task = TASK_DATA[get_family(cfg["model"]["family"]).task]
        data = task.load({"train": cfg["data"]["train"]}, "train", recipe_skeleton(cfg), False)
        batch = next(iter(task.batches(data, size, recipe_targets(cfg, size), cfg, 2, seed=0)))

        def step_with(make_opt):
            def run():
                tf.keras.utils.set_random_seed(0)
                return _first_step(untrained_networks(recipe, overrides)[0], cfg, size, batch, make_opt)
            return run
        s = _pairs("FusedAdam", step_with(lambda: FusedAdam(1e-3)),
                   "keras Adam", step_with(lambda: keras.optimizers.Adam(1e-3)), args.repeats)
        qat = PoseModel(inference_network(quantize_model(net), cfg), dict(model.config, quantization="qat"))
        e = _pairs("kpose", lambda: _qat_export(qat, False), "TF defaults", lambda: _qat_export(qat, True),
                   args.repeats)
        print(f"{recipe} at {size[0]}x{size[1]} ({len(net.layers)} layers, {len(net.trainable_variables)} "
              f"trainable variables), medians of {args.repeats}:")
        print(f"  QAT copy:          quantize_model {q['quantize_model']:.1f} s, tfmot quantize_apply "
              f"{q['tfmot quantize_apply']:.1f} s (ratio {q['quantize_model'] / q['tfmot quantize_apply']:.2f})")
        print(f"  trace + 1st step:  FusedAdam {s['FusedAdam']:.1f} s, keras Adam {s['keras Adam']:.1f} s "
              f"(ratio {s['FusedAdam'] / s['keras Adam']:.2f})")
        print(f"  QAT TFLite export: kpose {e['kpose']:.1f} s, TF defaults {e['TF defaults']:.1f} s "
              f"(ratio {e['kpose'] / e['TF defaults']:.2f})", flush=True)


if __name__ == "__main__":
    main()
