"""Dataset files of the synthetic data: COCO annotations, worker processes, the cache.

`generate` writes one split (JPEGs + a COCO person-keypoints JSON);
`ensure_dataset` builds the train and val splits once into a cache folder,
atomically, and reuses them while the parameters and this generator's code are
unchanged. Everything is drawn from `np.random.default_rng([seed, crc32(split),
index])` (crowd images add a variant code to the key), so an image depends only
on (seed, split, index): same seed -> same bytes, for any number of workers.

bbox, area and the RLE segmentation of an annotation are those of the person's
visible pixels; boxes are in COCO's edge frame (a box covering pixel columns
c0..c1 has x=c0, w=c1-c0+1), keypoints in the pixel-centre frame.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from kpose.data.images import default_cache_dir
from kpose.data.synthetic.scene import CROWD_SCENE, DEFAULT_SCENE, render_image
from kpose.skeletons import COCO17

log = logging.getLogger(__name__)

# Bump when the generator's output changes, so stale caches are not reused.
DATASET_VERSION = "v2"
DEFAULT_NUM_TRAIN = 3000
DEFAULT_NUM_VAL = 300
DEFAULT_SEED = 0
DEFAULT_IMAGE_SIZE = (256, 256)
_VAL_SEED_OFFSET = 1_000_003  # val people come from a disjoint seed stream
_CROWD_STREAM = 1             # crowd images draw from their own random stream
_PACKAGE_DIR = Path(__file__).resolve().parent


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode())


def _rng(seed: int, split: str, index: int, crowd: bool) -> np.random.Generator:
    key = [seed, _split_code(split), index] + ([_CROWD_STREAM] if crowd else [])
    return np.random.default_rng(key)


def _annotation(person: dict, ann_id: int, image_id: int, h: int, w: int,
                keep_hidden: bool = False) -> dict | None:
    """COCO annotation of one rendered person, or None when too little of it is visible.

    keep_hidden: a person too hidden to label but with visible pixels becomes a
    keypoint-less annotation instead (num_keypoints 0): bottom-up readers make it
    an ignore region, as they do with COCO's unlabelled people.
    """
    kps = person["keypoints"]
    mask = person["mask"]
    num = int((kps[:, 2] > 0).sum())
    area = int(mask.sum())
    if num < 3 or (kps[:, 2] == 2).sum() < 2 or area < 80:
        if not keep_hidden or area == 0:
            return None
        kps, num = np.zeros_like(kps), 0
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    flat: list = []
    for x, y, v in kps:
        flat += [round(float(x), 2), round(float(y), 2), int(v)]
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "keypoints": flat, "num_keypoints": num, "bbox": bbox, "area": area,
        "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
    }


def _categories() -> list[dict]:
    return [{
        "id": 1, "name": "person", "supercategory": "person",
        "keypoints": list(COCO17.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in COCO17.limbs],
    }]


def _make_image(job: tuple) -> list[dict]:
    """Render, save and annotate image `index` (a top-level function so worker processes can run it)."""
    img_dir, seed, split, index, h, w, crowd = job
    rng = _rng(seed, split, index, crowd)
    img, people = render_image(rng, (h, w), CROWD_SCENE if crowd else DEFAULT_SCENE)
    Image.fromarray(img).save(Path(img_dir) / f"{index:06d}.jpg", quality=int(rng.integers(55, 96)))
    anns = (_annotation(person, 0, index + 1, h, w, keep_hidden=crowd) for person in people)
    return [a for a in anns if a is not None]


def generate(out_dir: str | Path, num_images: int, seed: int, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
             split: str = "train", progress: bool = True, workers: int = 1, crowd: bool = False) -> Path:
    """Write `num_images` synthetic images and their COCO keypoint annotations.

    Images go to out_dir/<split>/NNNNNN.jpg, annotations to
    out_dir/annotations/person_keypoints_<split>.json, which is returned.
    image_size is (height, width). crowd: 3-10 overlapping people per image
    (scene.CROWD_SCENE) instead of 1-4. Output depends only on (seed, split,
    index, crowd), so it is the same for any number of worker processes.
    """
    out_dir = Path(out_dir)
    h, w = int(image_size[0]), int(image_size[1])
    if workers > 1 and num_images > 1:
        # Spawned workers re-import the caller's __main__: a user's script that
        # calls kpose.train() at top level, without a main guard, would run again
        # in every worker. A fresh interpreter running this package hosts the pool.
        cmd = [sys.executable, "-m", "kpose.data.synthetic", str(out_dir), str(num_images),
               str(seed), f"{h}x{w}", split, str(int(progress)), str(workers), str(int(crowd))]
        subprocess.run(cmd, check=True)
        return out_dir / "annotations" / f"person_keypoints_{split}.json"
    return write_split(out_dir, num_images, seed, (h, w), split, progress, 1, crowd)


def write_split(out_dir: Path, num_images: int, seed: int, image_size: tuple[int, int], split: str,
                progress: bool, workers: int, crowd: bool) -> Path:
    """`generate` in this process, with a pool of `workers` spawned processes (run by the pool host)."""
    h, w = image_size
    img_dir = out_dir / split
    ann_dir = out_dir / "annotations"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(str(img_dir), seed, split, i, h, w, crowd) for i in range(num_images)]
    bar = tqdm(total=num_images, desc=f"synthetic {split}", unit="img") if progress else None
    images, anns = [], []
    pool = None
    try:
        if workers > 1 and num_images > 1:
            # spawn, not fork: the caller may already hold TensorFlow's threads
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            results = pool.map(_make_image, jobs, chunksize=16)
        else:
            results = map(_make_image, jobs)
        for i, image_anns in enumerate(results):
            images.append({"id": i + 1, "file_name": f"{i:06d}.jpg", "width": w, "height": h})
            for a in image_anns:
                a["id"] = len(anns) + 1
                anns.append(a)
            if bar is not None:
                bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    info = {"description": "kpose synthetic COCO-17 people", "version": DATASET_VERSION,
            "seed": seed, "split": split}
    if crowd:
        info["variant"] = "crowd"
    data = {"info": info, "licenses": [], "images": images, "annotations": anns, "categories": _categories()}
    ann_path = ann_dir / f"person_keypoints_{split}.json"
    tmp = ann_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, ann_path)
    return ann_path


def _generator_digest() -> str:
    """Fingerprint of this generator's code: a cache made by other code is rebuilt, not reused."""
    digest = hashlib.sha1()
    for path in sorted(_PACKAGE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes().replace(b"\r\n", b"\n"))
    return digest.hexdigest()[:12]


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / "dataset.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_dataset(root: str | Path | None = None, *, num_train: int = DEFAULT_NUM_TRAIN,
                   num_val: int = DEFAULT_NUM_VAL, seed: int = DEFAULT_SEED,
                   image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE, progress: bool = True,
                   workers: int | None = None, crowd: bool = False) -> dict[str, Path]:
    """Generate the train/val splits into a cache folder once; return their paths.

    root defaults to <kpose cache dir>/synthetic-v2 (synthetic-crowd-v2 with
    crowd=True; the cache dir is kpose.data.images.default_cache_dir: $KPOSE_CACHE,
    else ~/.cache/kpose); non-default sizes or seeds get a sibling folder of their
    own. The splits are built in a temporary folder and renamed into place, so an
    interrupted run leaves nothing half-made. Validation images come from a
    separate seed stream: they hold new people. crowd: 3-10 overlapping people
    per image, too-hidden ones kept as keypoint-less annotations (ignore regions).
    workers: processes (default: up to 4 CPUs).
    Returns {"train", "val"} annotation files and {"train_images", "val_images"} folders.
    """
    params = {"version": DATASET_VERSION, "num_train": int(num_train), "num_val": int(num_val),
              "seed": int(seed), "image_size": [int(image_size[0]), int(image_size[1])],
              "variant": "crowd" if crowd else "default"}
    if root is None:
        root = default_cache_dir() / f"synthetic-{'crowd-' if crowd else ''}{DATASET_VERSION}"
        if (num_train, num_val, seed, tuple(params["image_size"])) != (
                DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL, DEFAULT_SEED, DEFAULT_IMAGE_SIZE):
            tag = zlib.crc32(json.dumps(params, sort_keys=True).encode())
            root = root.with_name(f"{root.name}-{tag:08x}")
    params["generator"] = _generator_digest()
    root = Path(root).expanduser()
    paths = {
        "train": root / "annotations" / "person_keypoints_train.json",
        "val": root / "annotations" / "person_keypoints_val.json",
        "train_images": root / "train", "val_images": root / "val",
    }
    found = _read_manifest(root)
    if found == params:
        return paths
    if root.exists() and any(root.iterdir()):
        if found is None:
            # never delete a folder we did not make
            raise FileExistsError(f"{root} exists and is not a kpose synthetic dataset "
                                  f"(no dataset.json). Fix: pass an empty or new folder as root.")
        shutil.rmtree(root)  # ours, from other parameters or generator version: rebuild
    root.parent.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    log.info("generating the synthetic%s dataset (%d train + %d val images) into %s",
             " crowd" if crowd else "", num_train, num_val, root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        generate(tmp, num_train, seed, image_size, "train", progress, workers, crowd)
        generate(tmp, num_val, seed + _VAL_SEED_OFFSET, image_size, "val", progress, workers, crowd)
        (tmp / "dataset.json").write_text(json.dumps(params, sort_keys=True))
        try:
            if root.exists():
                root.rmdir()  # empty (checked above); rename cannot replace it otherwise on every OS
            os.rename(tmp, root)
        except OSError:
            # another process (say a second training worker) finished first; its copy is identical
            if _read_manifest(root) != params:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths
