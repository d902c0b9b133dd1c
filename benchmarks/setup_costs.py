"""What a training run pays before its first step, side by side with the way it was paid before:

* the QAT copy of a network: kpose's quantize_model (two graph copies) vs tfmot's
  quantize_annotate + quantize_apply (five), the same network (tests/test_quantize.py);
* tracing and first running a training step: FusedAdam (one fused update per variable) vs
  Keras's Adam (~15 ops per variable), the same arithmetic (tests/test_optimizers.py);
* exporting to TFLite, float (fp32) and the QAT copy (qat): kpose's conversion of the serving
  function frozen (tflite.convert) vs the SavedModel route with TF's defaults (the same serving
  function saved by tf.saved_model.save without options, then TFLiteConverter.from_saved_model),
  the same ops and outputs (tests/test_deploy.py).

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


def _tflite_export(model: PoseModel, precision: str, saved_model_route: bool) -> float:
    """Seconds to export a model (fp32, or qat for a QAT model) to TFLite: kpose's frozen
    conversion, or (saved_model_route) the serving function saved as tf.saved_model.save does
    without options (gradient functions of custom-gradient ops traced, the function converted
    by autograph) and converted from that SavedModel."""
    t0 = time.perf_counter()
    if not saved_model_route:
        tflite.convert(graph.export_function(model, model.keras_model), precision)
        return time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="kpose-bench-"))
    try:
        module = tf.Module()
        module.weights = list(model.keras_model.variables)
        serve = graph.serving_function(model.keras_model, model.input_size, graph.output_names(model))
        module.serve = tf.function(serve.python_function, input_signature=serve.input_signature)
        tf.saved_model.save(module, str(tmp / "sm"), signatures={graph.SIGNATURE_KEY: module.serve})
        conv = tf.lite.TFLiteConverter.from_saved_model(str(tmp / "sm"), signature_keys=[graph.SIGNATURE_KEY])
        conv.optimizations = [tf.lite.Optimize.DEFAULT] if precision == "qat" else []
        conv.convert()
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
        e = {precision: _pairs("kpose", lambda: _tflite_export(m, precision, False),
                               "SavedModel", lambda: _tflite_export(m, precision, True), args.repeats)
             for precision, m in (("fp32", model), ("qat", qat))}
        print(f"{recipe} at {size[0]}x{size[1]} ({len(net.layers)} layers, {len(net.trainable_variables)} "
              f"trainable variables), medians of {args.repeats}:")
        print(f"  QAT copy:          quantize_model {q['quantize_model']:.1f} s, tfmot quantize_apply "
              f"{q['tfmot quantize_apply']:.1f} s (ratio {q['quantize_model'] / q['tfmot quantize_apply']:.2f})")
        print(f"  trace + 1st step:  FusedAdam {s['FusedAdam']:.1f} s, keras Adam {s['keras Adam']:.1f} s "
              f"(ratio {s['FusedAdam'] / s['keras Adam']:.2f})")
        for precision, t in e.items():
            print(f"  TFLite export {precision:4s}: kpose (frozen) {t['kpose']:.1f} s, SavedModel route "
                  f"{t['SavedModel']:.1f} s (ratio {t['kpose'] / t['SavedModel']:.2f})", flush=True)


if __name__ == "__main__":
    main()
