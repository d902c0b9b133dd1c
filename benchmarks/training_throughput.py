"""Training throughput of each recipe's network: images/s and the share of the device's
arithmetic bound it uses, in float32 and in mixed precision (float16 compute).

What is timed is the train step alone (forward, loss over every declared output,
backward, optimizer update) on batches already in device memory, at the recipe's input
size and batch size: the ceiling the input pipeline has to feed (benchmarks/pack_tfrecords.py
measures that side). FLOPs per image = 2 x 3 x the forward multiply-adds (kpose.models.flops:
backward ~ 2 x forward; 2 FLOPs per multiply-add). The bound is measured on the same device
in the same run: the best of large square matmuls in that precision (a datasheet peak is
often out of reach even for matmul; it is printed too where the device is a known GPU).
Runs on a CPU (reporting CPU numbers) as on a GPU; medians of --repeats timings.

    python benchmarks/training_throughput.py                       # every recipe, float32 and mixed
    python benchmarks/training_throughput.py --recipe efficientpose_rt --steps 20 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from kpose._tf import keras, tf
from kpose.models import TOP_DOWN, build_network, get_family, network_outputs
from kpose.models.flops import count_flops
from kpose.recipe import load_recipe, recipes
from kpose.skeletons import get_skeleton
from kpose.training.fit_stages import precision
from kpose.training.targets import target_specs
from kpose.training.trainer import make_trainer

# Dense float16 / float32 tensor-core peaks from NVIDIA's datasheets (TFLOP/s, SXM parts).
DATASHEET_TFLOPS = {"H100": {"mixed": 989.0, "float32": 494.7}, "H200": {"mixed": 989.0, "float32": 494.7},
                    "A100": {"mixed": 312.0, "float32": 156.0}}


def matmul_bound(mixed: bool, size: int = 4096, repeats: int = 5) -> float:
    """Measured FLOP/s of the device's best case: square matmuls in the step's compute type."""
    dtype = tf.float16 if mixed else tf.float32
    a = tf.random.normal([size, size], dtype=tf.float32)
    a = tf.cast(a, dtype)
    mm = tf.function(lambda x: tf.linalg.matmul(x, x))
    mm(a).numpy()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a).numpy()
        best = max(best, 2 * size ** 3 / (time.perf_counter() - t0))
    return best


def _batch(net, specs, task: str, batch: int):
    """Random inputs, targets and loss weights with the shapes the trainer takes."""
    rng = np.random.default_rng(0)
    h, w = net.input_shape[1:3]
    x = tf.constant(rng.uniform(0, 255, (batch, h, w, 3)).astype(np.float32))
    targets, weights = {}, {}
    for spec, out in zip(specs, net.outputs):
        oh, ow, c = (int(v) for v in out.shape[1:])
        targets[spec.name] = tf.constant(rng.uniform(0, 1, (batch, oh, ow, c)).astype(np.float32))
        if task == TOP_DOWN:
            n = c // 2 if spec.kind == "pafs" else c
            weights[spec.name] = tf.ones([batch, n])
        else:
            weights[spec.name] = tf.ones([batch, oh, ow, 1])
    return x, targets, weights


def measure(recipe: str, mixed: bool, steps: int, repeats: int, batch: int | None) -> dict:
    cfg = load_recipe(recipe)
    mcfg = cfg["model"]
    size = tuple(int(v) for v in mcfg["input_size"])
    batch = batch or int(cfg["train"]["batch_size"])
    skeleton = get_skeleton(cfg["skeleton"])
    ncfg = {"family": mcfg["family"], "variant": mcfg["variant"], "input_size": list(size),
            "skeleton": skeleton.to_dict()}
    task = get_family(mcfg["family"]).task
    specs = target_specs(network_outputs(ncfg), size, cfg["codec"]["sigma"], cfg["codec"]["paf_width"],
                         skeleton.num_keypoints, cfg["codec"]["limb_sigma"])
    keras.backend.clear_session()
    with precision(mixed):
        net = build_network(ncfg, training_outputs=True)
        trainer = make_trainer(net, specs, cfg["loss"], batch)
        opt = keras.optimizers.Adam(1e-4)
        trainer.compile(optimizer=keras.mixed_precision.LossScaleOptimizer(opt) if mixed else opt)
    x, targets, weights = _batch(net, specs, task, batch)
    step = trainer.make_train_function()
    data = iter(tf.data.Dataset.from_tensors((x, targets, weights)).repeat())
    for _ in range(3):  # trace, allocate
        step(data)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            logs = step(data)
        float(logs["loss"])  # wait for the device
        times.append((time.perf_counter() - t0) / steps)
    step_s = statistics.median(times)
    flops_per_image = 2 * 3 * count_flops(net, size)
    return {"recipe": recipe, "precision": "mixed" if mixed else "float32", "input": f"{size[0]}x{size[1]}",
            "batch": batch, "step_ms": round(step_s * 1e3, 2), "images_per_s": round(batch / step_s, 1),
            "gflops_per_image": round(flops_per_image / 1e9, 2),
            "achieved_tflops": round(flops_per_image * batch / step_s / 1e12, 3)}


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return "CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", action="append", help="recipe (repeatable; default: every packaged recipe)")
    ap.add_argument("--precision", choices=["float32", "mixed", "both"], default="both")
    ap.add_argument("--steps", type=int, default=10, help="steps per timing")
    ap.add_argument("--repeats", type=int, default=5, help="timings per setting (median reported)")
    ap.add_argument("--batch", type=int, help="batch size (default: the recipe's train.batch_size)")
    ap.add_argument("--out", default="benchmarks/results/training_throughput.json")
    a = ap.parse_args()

    device = device_name()
    modes = {"float32": [False], "mixed": [True], "both": [False, True]}[a.precision]
    bounds = {m: matmul_bound(m) for m in modes}
    rows = []
    for recipe in a.recipe or recipes():
        for mixed in modes:
            row = measure(recipe, mixed, a.steps, a.repeats, a.batch)
            row["bound_tflops"] = round(bounds[mixed] / 1e12, 3)
            row["share_of_bound"] = round(row["achieved_tflops"] * 1e12 / bounds[mixed], 4)
            sheet = next((v for k, v in DATASHEET_TFLOPS.items() if k in device), None)
            if sheet:
                row["share_of_datasheet"] = round(row["achieved_tflops"] / sheet[row["precision"]], 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\ndevice: {device}; bound = best {4096}x{4096} matmul measured here\n")
    cols = ["recipe", "precision", "input", "batch", "step_ms", "images_per_s", "gflops_per_image",
            "achieved_tflops", "bound_tflops", "share_of_bound"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"device": device, "date": time.strftime("%Y-%m-%d"), "rows": rows},
                                      indent=2))


if __name__ == "__main__":
    main()
