"""Is tf.data the bottleneck? Input-pipeline throughput vs the model's training step.

Measures, in one run on this machine: samples/s produced by kpose's training
pipeline (decode, crop or whole-image warp, augmentation, all pass targets; the
recipe's task decides which), and samples/s of the training step on in-memory batches. Ratio > 1 means the pipeline keeps
up with training. Medians over timed windows after warm-up.

    python benchmarks/pipeline_vs_step.py [--recipe efficientpose_rt] [--set model.input_size=[224,224]]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from kpose._tf import keras, tf
from kpose.models import build_network, get_family, network_outputs
from kpose.recipe import load_recipe, parse_override
from kpose.skeletons import get_skeleton
from kpose.training.targets import target_specs
from kpose.training.task_data import TASK_DATA
from kpose.training.trainer import make_trainer


def _windows(fn, warmup: int, windows: int, per_window: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(windows):
        t = time.perf_counter()
        for _ in range(per_window):
            fn()
        times.append((time.perf_counter() - t) / per_window)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="efficientpose_rt")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--per-window", type=int, default=10)
    ap.add_argument("--jit", action="store_true", help="compile the training step with XLA")
    a = ap.parse_args()
    cfg = load_recipe(a.recipe, dict(parse_override(s) for s in a.set))
    size = tuple(cfg["model"]["input_size"])
    batch = int(cfg["train"]["batch_size"])
    skeleton = get_skeleton(cfg["skeleton"])
    task = TASK_DATA[get_family(cfg["model"]["family"]).task]
    data = task.load({"train": cfg["data"]["train"]}, "train", skeleton, False)
    ncfg = {"family": cfg["model"]["family"], "variant": cfg["model"]["variant"],
            "input_size": size, "skeleton": cfg["skeleton"]}
    net = build_network(ncfg, training_outputs=True)
    specs = target_specs(network_outputs(ncfg), size, cfg["codec"]["sigma"], cfg["codec"]["paf_width"],
                         skeleton.num_keypoints, cfg["codec"]["limb_sigma"])
    ds = task.batches(data, size, specs, cfg, batch, 0)
    it = iter(ds)
    pipe = _windows(lambda: next(it), 3, a.windows, a.per_window)

    trainer = make_trainer(net, specs, cfg["loss"], batch)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    fixed = next(it)
    step = tf.function(trainer.train_step, jit_compile=a.jit)
    train = _windows(lambda: step(fixed)["loss"].numpy(), 3, a.windows, a.per_window)

    pipe_s, step_s = statistics.median(pipe), statistics.median(train)
    result = {
        "recipe": a.recipe, "jit": a.jit, "input_size": size, "batch": batch, "cpu_cores": os.cpu_count(),
        "pipeline_samples_per_s": round(batch / pipe_s, 1),
        "train_step_ms": round(step_s * 1000, 1),
        "train_samples_per_s": round(batch / step_s, 1),
        "pipeline_over_training_ratio": round(step_s / pipe_s, 2),
    }
    print(json.dumps(result, indent=2))
    verdict = "keeps up with" if result["pipeline_over_training_ratio"] >= 1 else "is SLOWER than"
    print(f"tf.data pipeline {verdict} the training step "
          f"({result['pipeline_samples_per_s']} samples/s vs {result['train_samples_per_s']} samples/s)")


if __name__ == "__main__":
    main()
