"""Which connection encoding groups better, PAFs (OpenPose) or limb heatmaps (SimplePose)?

Trained networks cannot answer it on this machine's budget (from random weights both
recipes reach AP ~0 in 15 CPU minutes: docs/results.md), so this compares the two encodings
themselves, with the same keypoint heatmaps, the same skeleton (COCO-17 limbs) and the same
grouping code (LimbHeatmapCodec reuses PafCodec's peaks and assembly; only the limb score
differs): the ground truth of the synthetic validation images is encoded, the maps are
degraded the way a network's are (peaks attenuated, blurred, noise of std s added to every
map, smooth over a cell: the same noise on a unit PAF component as on a unit limb heatmap), decoded, and scored
by pycocotools OKS AP. Default scenes (1-4 people) against the crowd setting (3-10
overlapping people, too-hidden ones as ignore regions), at stride 8 and stride 4.

    python benchmarks/connection_encodings.py [--images 200] [--noise 0,0.03,0.06,0.1]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from kpose.codecs import LimbHeatmapCodec, PafCodec
from kpose.data.synthetic import ensure_dataset
from kpose.metrics import coco_keypoint_ap
from kpose.skeletons import COCO17

ATTENUATION = 0.7   # a trained network's peaks rarely reach the target's 1.0
BLUR = 0.7          # cells: its maps are wider than the targets


def degrade(maps: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Network-like maps [h, w, C] from perfect ones: attenuated, blurred, with noise of std
    `noise` that is smooth over BLUR cells (a network's errors are blobs, not salt)."""
    if noise == 0:
        return maps
    out = gaussian_filter(maps * ATTENUATION, sigma=(BLUR, BLUR, 0))
    blobs = gaussian_filter(rng.normal(0.0, 1.0, out.shape), sigma=(BLUR, BLUR, 0))
    return (out + noise * blobs / blobs.std()).astype(np.float32)


def people_of(ann: dict) -> dict[int, np.ndarray]:
    """Keypoints [P, K, 3] of the labelled people of each image id."""
    by_image: dict[int, list] = {}
    for a in ann["annotations"]:
        if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0):
            by_image.setdefault(a["image_id"], []).append(a["keypoints"])
    return {i: np.asarray(k, np.float64).reshape(len(k), -1, 3) for i, k in by_image.items()}


def score(ann_file: Path, images: list[dict], people: dict, codec, noise: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)   # the same noise draws for both encodings
    results, found = [], 0
    for image in images:
        gt = people.get(image["id"], np.zeros((0, len(COCO17.keypoints), 3)))
        heatmaps = degrade(codec.encode_heatmaps(gt)[0], noise, rng)
        limb_maps = degrade(codec.encode(gt)[0], noise, rng)
        poses, scores = codec.decode(heatmaps, limb_maps)
        found += len(poses)
        results += [{"image_id": image["id"], "category_id": 1, "score": float(s),
                     "keypoints": np.round(p.astype(np.float64), 3).ravel().tolist()}
                    for p, s in zip(poses, scores)]
    stats = coco_keypoint_ap(ann_file, results, COCO17.sigmas_array(), [i["id"] for i in images])
    return {"AP": stats["AP"], "AP50": stats["AP50"], "found": found}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200, help="validation images per setting")
    ap.add_argument("--noise", default="0,0.03,0.06,0.1", help="noise std on the maps (0: perfect maps)")
    ap.add_argument("--strides", default="8,4")
    ap.add_argument("--out", default="benchmarks/results/connection_encodings.json")
    a = ap.parse_args()
    rows = []
    for setting, crowd in (("default", False), ("crowd", True)):
        paths = ensure_dataset(num_train=8, num_val=a.images, crowd=crowd)   # a small sibling cache
        ann = json.loads(Path(paths["val"]).read_text())
        images, people = ann["images"][:a.images], people_of(ann)
        annotated = sum(len(people.get(i["id"], ())) for i in images)
        for stride in (int(s) for s in a.strides.split(",")):
            size = (images[0]["height"], images[0]["width"])
            grid = (size[0] // stride, size[1] // stride)
            codecs = {"PAF": PafCodec(size, grid, COCO17.limbs, sigma=1.0),
                      "limb heatmap": LimbHeatmapCodec(size, grid, COCO17.limbs, sigma=1.0)}
            for noise in tqdm([float(n) for n in a.noise.split(",")], desc=f"{setting} stride {stride}"):
                for name, codec in codecs.items():
                    r = score(paths["val"], images, people, codec, noise, seed=0)
                    rows.append({"setting": setting, "stride": stride, "noise": noise, "encoding": name,
                                 "annotated": annotated, **r})
                    print(json.dumps(rows[-1]), flush=True)
    print("| scenes | stride | map noise | PAF AP / AP50 / found | limb heatmap AP / AP50 / found | annotated |")
    print("|---|---|---|---|---|---|")
    for paf, limb in zip(rows[::2], rows[1::2]):
        print(f"| {paf['setting']} | {paf['stride']} | {paf['noise']:g} | {paf['AP']:.3f} / {paf['AP50']:.3f} / "
              f"{paf['found']} | {limb['AP']:.3f} / {limb['AP50']:.3f} / {limb['found']} | {paf['annotated']} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
