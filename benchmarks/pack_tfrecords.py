"""Sharded TFRecords: memory of `kpose data pack`, and reading shards vs JPEG folders vs a training step.

1. Packing memory. A COCO-format annotation file of N images (train-like
   content: ~55% of images with 1-4 keypoint people, keypoint-less people and
   crowds with polygon / RLE segmentations, COCO's extra image fields; tiny
   JPEGs reused, so the file, not the pixels, is what grows) is generated into
   a temporary folder and packed in a fresh process; its peak RSS is reported
   beside the RSS after imports and beside `json.load` of the same file (what
   the readers do) in another fresh process. Two sizes show whether packing
   memory grows with the file.
2. Reading. The same real images (coco_mini train from ../shared, its people
   replicated `--copies` times under new ids) are read as JPEG files
   (`coco:` spec) and from shards (`tfrecord:` spec): records/s of the raw
   reads (files read vs records streamed and parsed), and crops/s of the
   top-down training pipeline (kpose.data.pipeline.augmented_crops: decode, crop,
   augment at the model's input size).
3. Training. Samples/s of efficientpose_rt's training step at 224 on this CPU
   (a few steps on one fixed batch), the rate the pipeline has to keep up with.

Every rate is measured in a process of its own (tf.data's background threads
would otherwise feed one pipeline while the other is timed), files and shards
taking turns over `--rounds`, so that other load on the machine weighs on both;
each cell is the median over rounds of medians over timed windows after warm-up.
Printed as markdown tables.

    python benchmarks/pack_tfrecords.py [--images 20000 100000] [--copies 10] [--size 224] [--batch 8]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from kpose._tf import keras, tf
from kpose.data.pack import pack
from kpose.data.pipeline import augmented_crops
from kpose.data.shard_stream import shard_records
from kpose.data.sources import load_instances
from kpose.models import build_network, network_outputs
from kpose.recipe import load_recipe
from kpose.training.targets import target_specs, training_batches
from kpose.training.trainer import make_trainer

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KPOSE_SHARED", REPO.parent / "shared"))
COCO_MINI = SHARED / "data" / "coco_mini"

# Run in a fresh interpreter (Linux /proc): peak RSS of one job, RSS after its imports, wall time.
_MEASURE = r"""
import json, sys, time
def status_mb(field):  # VmHWM, not ru_maxrss: Linux carries the latter over from the parent across exec
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024
rss_mb = lambda: status_mb("VmRSS")
job, ann, images, out = sys.argv[1:5]
if job == "pack":
    from kpose.data.pack import pack
else:
    import json as _json
base = rss_mb()
t = time.perf_counter()
if job == "pack":
    index = pack(f"coco:{ann}:{images}", out, shard_size=1024, progress=False, verify=False)
    n = index["counts"]["images"]
else:
    with open(ann, "rb") as f:
        n = len(_json.loads(f.read())["images"])
print(json.dumps({"base_mb": base, "peak_mb": status_mb("VmHWM"),
                  "seconds": time.perf_counter() - t, "images": n}))
"""


def _tiny_jpegs(folder: Path, n: int = 8) -> list[tuple[str, int, int]]:
    """A few small JPEGs (real photos shrunk when ../shared is there): (name, width, height)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((COCO_MINI / "train2017").glob("*.jpg"))[:n]
    out = []
    for i in range(n):
        if sources:
            img = Image.open(sources[i % len(sources)]).convert("RGB").resize((96, 72))
        else:
            img = Image.fromarray(np.random.default_rng(i).integers(0, 255, (72, 96, 3), np.uint8))
        img.save(folder / f"{i}.jpg", quality=90)
        out.append((f"{i}.jpg", 96, 72))
    return out


def _person(rng, ann_id: int, image_id: int, w: int, h: int, kind: str) -> dict:
    """One person annotation: 'person' (keypoints), 'hidden' (no keypoints) or 'crowd' (RLE)."""
    x, y = rng.uniform(0, w * 0.5), rng.uniform(0, h * 0.5)
    bw, bh = rng.uniform(8, w - x), rng.uniform(8, h - y)
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    poly = np.stack([x + bw / 2 * (1 + np.cos(angles)), y + bh / 2 * (1 + np.sin(angles))], 1)
    kps = np.zeros((17, 3))
    if kind == "person":
        kps[:, 0], kps[:, 1] = rng.uniform(x, x + bw, 17), rng.uniform(y, y + bh, 17)
        kps[:, 2] = rng.choice([0, 1, 2], 17, p=[0.3, 0.1, 0.6])
        kps[kps[:, 2] == 0, :2] = 0
    ann = {"segmentation": [np.round(poly.ravel(), 2).tolist()], "num_keypoints": int((kps[:, 2] > 0).sum()),
           "area": round(float(bw * bh * 0.6), 2), "iscrowd": 0, "keypoints": kps.astype(int).ravel().tolist(),
           "image_id": image_id, "bbox": [round(v, 2) for v in (x, y, bw, bh)], "category_id": 1, "id": ann_id}
    if kind == "crowd":
        ann.update(iscrowd=1, segmentation={"counts": [int(v) for v in rng.integers(1, 40, 40)], "size": [h, w]})
    return ann


def generate_coco(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """A train-like COCO keypoints file of n images over a few tiny JPEGs, written as it goes."""
    rng = np.random.default_rng(seed)
    images_dir = folder / "images"
    files = _tiny_jpegs(images_dir)
    ann_path = folder / f"person_keypoints_{n}.json"
    with open(ann_path, "w") as f:
        f.write('{"info": {"description": "kpose benchmark"}, "licenses": [], "images": [\n')
        for i in range(n):
            name, w, h = files[i % len(files)]
            f.write(("," if i else "") + json.dumps({
                "license": 3, "file_name": name, "coco_url": f"http://images.cocodataset.org/train2017/{i:012d}.jpg",
                "height": h, "width": w, "date_captured": "2013-11-14 16:28:13",
                "flickr_url": f"http://farm4.staticflickr.com/3153/{i:010d}_f8ed7d9b9b_z.jpg", "id": i + 1}) + "\n")
        f.write('], "annotations": [\n')
        ann_id, first = 1, True
        for i in range(n):
            name, w, h = files[i % len(files)]
            people = int(rng.choice([0, 1, 2, 3, 4], p=[0.45, 0.25, 0.15, 0.1, 0.05]))
            kinds = ["person"] * people + ["hidden"] * int(rng.integers(0, 3))
            kinds += ["crowd"] if rng.random() < 0.01 else []
            for kind in kinds:
                f.write(("" if first else ",") + json.dumps(_person(rng, ann_id, i + 1, w, h, kind)) + "\n")
                ann_id, first = ann_id + 1, False
        cat = {"supercategory": "person", "id": 1, "name": "person",
               "keypoints": ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                             "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
                             "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"],
               "skeleton": [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
                            [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]}
        f.write('], "categories": [' + json.dumps(cat) + "]}\n")
    return ann_path, images_dir


def measure(job: str, ann: Path, images: Path, out: Path) -> dict:
    env = dict(os.environ, KPOSE_CACHE=str(out.parent / "cache"))
    res = subprocess.run([sys.executable, "-c", _MEASURE, job, str(ann), str(images), str(out)], env=env,
                         capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def replicated_coco_mini(folder: Path, copies: int) -> tuple[Path, Path]:
    """coco_mini train with every image entry (and its annotations) repeated under new ids."""
    src = json.loads((COCO_MINI / "annotations" / "person_keypoints_train2017.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    step = max(im["id"] for im in src["images"]) + 1
    astep = max(a["id"] for a in src["annotations"]) + 1
    for c in range(copies):
        images += [dict(im, id=im["id"] + c * step) for im in src["images"]]
        anns += [dict(a, id=a["id"] + c * astep, image_id=a["image_id"] + c * step) for a in src["annotations"]]
    path = folder / "coco_mini_x.json"
    path.write_text(json.dumps(dict(src, images=images, annotations=anns)))
    return path, COCO_MINI / "train2017"


def _rate(it, per_window: int, windows: int, warmup: int) -> float:
    """Median elements/s of next(it) over timed windows."""
    for _ in range(warmup):
        next(it)
    times = []
    for _ in range(windows):
        t = time.perf_counter()
        for _ in range(per_window):
            next(it)
        times.append((time.perf_counter() - t) / per_window)
    return 1.0 / statistics.median(times)


def child_rate(kind: str, source: str, folder: Path, size: int, batch: int, windows: int) -> float:
    """One measurement (run in its own process, see `rates`): elements/s of
    records (raw reads), crops (augmented_crops), or train (samples/s of the training step)."""
    spec = f"coco:{folder / 'coco_mini_x.json'}:{COCO_MINI / 'train2017'}"
    inst = load_instances(spec if source == "files" else f"tfrecord:{folder / 'shards'}", "train", progress=False)
    cfg = load_recipe("efficientpose_rt", {"model.input_size": [size, size]})
    if kind == "records":
        # Every image once per pass, both ways: its file read, or its record streamed and parsed.
        if source == "files":
            every = [str(COCO_MINI / "train2017" / im["file_name"])
                     for im in json.loads((folder / "coco_mini_x.json").read_text())["images"]]
            ds = tf.data.Dataset.from_tensor_slices(every).repeat().map(
                tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            ds = shard_records(sorted(str(p) for p in (folder / "shards").glob("*.tfrecord")), seed=0, repeat=True)
        return _rate(iter(ds.batch(32).prefetch(tf.data.AUTOTUNE)), 20, windows, 20) * 32
    if kind == "crops":
        ds = augmented_crops(inst, (size, size), cfg["augment"], seed=0).batch(batch)
        return _rate(iter(ds.prefetch(tf.data.AUTOTUNE)), 10, windows, 5) * batch
    ncfg = {"family": "efficientpose", "variant": cfg["model"]["variant"], "input_size": (size, size),
            "skeleton": "coco17"}
    specs = target_specs(network_outputs(ncfg), (size, size), cfg["codec"]["sigma"], cfg["codec"]["paf_width"], 17)
    fixed = next(iter(training_batches(inst, (size, size), specs, cfg["augment"], batch)))
    trainer = make_trainer(build_network(ncfg, training_outputs=True), specs, cfg["loss"], batch)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    step = tf.function(trainer.train_step)
    return batch * _rate(iter(lambda: step(fixed)["loss"].numpy(), None), 2, windows, 2)


def rates(folder: Path, rounds: int, size: int, batch: int, windows: int) -> dict:
    """Medians over `rounds` of each measurement in a fresh process, files and shards taking
    turns: the machine's other load then weighs on both alike."""
    got: dict = {}
    plan = [(k, s) for _ in range(rounds) for k in ("records", "crops") for s in ("files", "shards")]
    for kind, source in plan + [("train", "files")]:
        cmd = [sys.executable, __file__, "--child", kind, source, str(folder), "--size", str(size),
               "--batch", str(batch), "--windows", str(windows)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if res.returncode != 0:
            raise RuntimeError(f"{kind} {source} failed:\n{res.stderr[-3000:]}")
        got.setdefault((kind, source), []).append(float(res.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(v) for k, v in got.items()}


def prepare_reading(folder: Path, copies: int) -> dict:
    """coco_mini train x `copies` as a COCO file over its JPEGs, and packed (64 images a shard)."""
    ann, images = replicated_coco_mini(folder, copies)
    index = pack(f"coco:{ann}:{images}", folder / "shards", shard_size=64, progress=False)
    return {"images": index["counts"]["images"], "people": index["counts"]["people"], "shards": len(index["shards"]),
            "shard_mb": sum(s["bytes"] for s in index["shards"]) / 2**20,
            "unique_files": len(list((COCO_MINI / "train2017").glob("*.jpg")))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, nargs="+", default=[20000, 100000], help="annotation file sizes to pack")
    ap.add_argument("--copies", type=int, default=10, help="coco_mini train replicated this often for reading")
    ap.add_argument("--size", type=int, default=224, help="crop / model input size")
    ap.add_argument("--batch", type=int, default=8, help="batch of the crops and of the training step")
    ap.add_argument("--windows", type=int, default=5, help="timed windows per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="processes per reading measurement, files and shards in turn")
    ap.add_argument("--keep", help="keep the generated data in this folder instead of a temporary one")
    ap.add_argument("--child", nargs=3, metavar=("KIND", "SOURCE", "DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(child_rate(a.child[0], a.child[1], Path(a.child[2]), a.size, a.batch, a.windows))
        return
    if not COCO_MINI.is_dir():
        raise SystemExit(f"{COCO_MINI} not found: the reading part uses coco_mini (set KPOSE_SHARED)")
    folder = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="kpose-pack-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in a.images:
            ann, images = generate_coco(folder / f"gen{n}", n)
            mb = ann.stat().st_size / 2**20
            packed = measure("pack", ann, images, folder / f"gen{n}" / "shards")
            loaded = measure("json", ann, images, folder / f"gen{n}" / "shards")
            rows.append((n, mb, packed, loaded))
            shutil.rmtree(folder / f"gen{n}", ignore_errors=True)
        data = prepare_reading(folder / "read", a.copies)
        r = rates(folder / "read", a.rounds, a.size, a.batch, a.windows)
    finally:
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print(f"\n### Packing memory ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})\n")
    print("| images | annotation file | pack: RSS after imports | pack: peak RSS | pack time | images/s "
          "| json.load: peak RSS (after imports) |")
    print("|---|---|---|---|---|---|---|")
    for n, mb, p, j in rows:
        print(f"| {n} | {mb:.0f} MB | {p['base_mb']:.0f} MB "
              f"| {p['peak_mb']:.0f} MB (+{p['peak_mb'] - p['base_mb']:.0f}) | {p['seconds']:.0f} s "
              f"| {n / p['seconds']:.0f} | {j['peak_mb']:.0f} MB (+{j['peak_mb'] - j['base_mb']:.0f}) |")
    train = r[("train", "files")]
    print(f"\n### Reading {data['images']} images / {data['people']} people ({data['unique_files']} JPEG files "
          f"reused; {data['shards']} shards, {data['shard_mb']:.0f} MB), crops {a.size}x{a.size}; medians of "
          f"{a.rounds} processes per cell, files and shards in turn\n")
    print("| source | records/s (raw read) | crops/s (decode+crop+augment) | crops/s over training samples/s |")
    print("|---|---|---|---|")
    for name, key in (("JPEG files", "files"), ("TFRecord shards", "shards")):
        print(f"| {name} | {r[('records', key)]:.0f} | {r[('crops', key)]:.1f} | {r[('crops', key)] / train:.1f} |")
    print(f"| shards / files | {r[('records', 'shards')] / r[('records', 'files')]:.2f} "
          f"| {r[('crops', 'shards')] / r[('crops', 'files')]:.2f} | |")
    print(f"\nefficientpose_rt training step at {a.size}x{a.size}, batch {a.batch}: {train:.1f} samples/s")


if __name__ == "__main__":
    main()
