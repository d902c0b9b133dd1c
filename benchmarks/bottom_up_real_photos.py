"""Bottom-up on real photos: tf-pose-estimation's weights through kpose, COCO AP and pictures.

Evaluates `kpose.load(openpose_mobilenet_v2_small.pb)` (kpose's own MobileNetV2 OpenPose with
the released weights) on every photo of ../shared/data/coco_mini val2017 with pycocotools
(whole images, no boxes), for several input sizes and decoder settings, and draws the people
found on tf-pose-estimation's sample photos and on frames of ../shared/data/videos.
The reference is tf-pose-estimation's own pipeline on the same photos (AP 0.131 at its README
setting, 432x368 stretched input with x4 upsampled maps; 0.111 at native size), measured with
its code on this kind of machine (kpose issue 12).

    python benchmarks/bottom_up_real_photos.py [--out benchmarks/results/bottom_up]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

from kpose.data.images import load_image
from kpose.evaluation import evaluate
from kpose.model_io import load_tf_pose
from kpose.plots import _plt, draw_pose

SHARED = Path(os.environ.get("KPOSE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PB = SHARED / "peers" / "tf_pose_estimation" / "openpose_mobilenet_v2_small.pb"
COCO = SHARED / "data" / "coco_mini"
DATA = f"coco:{COCO / 'annotations' / 'person_keypoints_val2017.json'}:{COCO / 'val2017'}"

# (name, input (h, w), codec overrides, flip test, scales)
SETTINGS = (
    ("368x432", (368, 432), {}, False, None),
    ("368x432 flip", (368, 432), {}, True, None),
    ("368x432 x4 upsample, blur 0.75", (368, 432), {"upsample": 4, "smooth_sigma": 0.75}, False, None),
    ("432x512", (432, 512), {}, False, None),
    ("432x512 flip", (432, 512), {}, True, None),
    ("368x432 scales 1, 1.5", (368, 432), {}, False, (1.0, 1.5)),
    ("368x432 scales 1, 1.5, flip", (368, 432), {}, True, (1.0, 1.5)),
    ("368x432 scales 0.75, 1, 1.25, flip", (368, 432), {}, True, (0.75, 1.0, 1.25)),
)


def _model(size, overrides):
    model = load_tf_pose(PB, size)
    model.codec = dataclasses.replace(model.codec, **overrides)
    model.config["codec"] = model.codec.to_dict()
    return model


def _draw(model, image, png: Path, title: str) -> int:
    plt = _plt()
    img = load_image(image)
    poses = [p for p in model.predict(img) if p.score > 0.2]
    fig, ax = plt.subplots(figsize=(8, 8 * img.shape[0] / img.shape[1]))
    ax.imshow(img)
    ax.axis("off")
    for pose in poses:
        draw_pose(ax, pose.keypoints, model.skeleton.limbs)
    ax.set_title(f"{title}: {len(poses)} people")
    fig.savefig(png, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return len(poses)


def _video_frames(path: Path, n: int = 3) -> list[np.ndarray]:
    import imageio.v3 as iio  # optional: only for the video pictures

    frames = [f for i, f in enumerate(iio.imiter(path)) if i % 25 == 0]
    return frames[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/bottom_up")
    ap.add_argument("--only", help="run only the settings whose name contains this text")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, size, overrides, flip, scales in SETTINGS:
        if a.only and a.only not in name:
            continue
        model = _model(size, overrides)
        t0 = time.time()
        m = evaluate(model, data=DATA, progress=False, flip_test=flip, scales=scales)
        rows.append({"setting": name, "AP": round(m["AP"], 4), "AP50": round(m["AP50"], 4),
                     "AR": round(m["AR"], 4), "people_found": int(m["people_found"]),
                     "people_annotated": int(m["people_annotated"]), "images": int(m["images"]),
                     "seconds": round(time.time() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    (out / "coco_mini_val.json").write_text(json.dumps(rows, indent=2))
    print("| setting | AP | AP50 | AR | people found / annotated |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['AR']:.3f} | "
              f"{r['people_found']} / {r['people_annotated']} |")

    model = _model((368, 432), {})
    for photo in sorted((SHARED / "peers" / "tf_pose_estimation").glob("*.jpg")):
        n = _draw(model, photo, out / f"{photo.stem}_pose.png", photo.name)
        print(f"{photo.name}: {n} people drawn")
    for video in sorted((SHARED / "data" / "videos").glob("*.mp4")):
        try:
            frames = _video_frames(video)
        except ImportError:
            print("imageio not installed: video frames skipped (pip install imageio[pyav])")
            break
        for i, frame in enumerate(frames):
            n = _draw(model, frame, out / f"{video.stem}_{i}.png", f"{video.name} frame {25 * i}")
            print(f"{video.name} frame {25 * i}: {n} people drawn")
    print(f"pictures in {out}")


if __name__ == "__main__":
    main()
