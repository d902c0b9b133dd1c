"""Draw the README's pictures with kpose: a bottom-up model's people on a synthetic crowd
image, and the same model + kpose.Tracker on frames of a synthetic video clip.

    python docs/images/render.py runs/<openpose_mobilenet_v2 run>/    # ~1.5 min on 2 CPU cores

MODEL is the multi-person quick start (`kpose train openpose_mobilenet_v2`). Everything drawn
is the model's output on kpose's own synthetic data (never seen in training: the crowd scene
and the clips come from their own random streams); nothing comes from ../shared.
"""
import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import kpose
from kpose.data.synthetic import CROWD_SCENE, render_image
from kpose.data.synthetic.clips import generate_clips, read_clips
from kpose.plots import annotate_image
from kpose.skeletons import COCO17, convert_keypoints

HERE = Path(__file__).resolve().parent
OPTS = {"flip_test": True, "scales": [1.0, 1.5]}   # as the recipe validates
CROWD_SEED, CROWD_SIZE = 20, (256, 256)            # (height, width): the size the model trained on
CLIP, STEP, SHOWN = 4, 1, (27, 45, 54, 63, 81, 99)  # clip index, frame step (1: all 30 fps), frames drawn


def label(img: np.ndarray, text: str) -> Image.Image:
    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((6, 4), text, fill=(255, 255, 255), font=ImageFont.load_default(size=14),
                            stroke_width=2, stroke_fill=(0, 0, 0))
    return im


def crowd(model) -> None:
    img, _ = render_image(np.random.default_rng([CROWD_SEED, 7, 1]), CROWD_SIZE, CROWD_SCENE)
    big = np.asarray(Image.fromarray(img).resize((512, 512), Image.BICUBIC))   # 2x, for drawing only
    poses = model.predict(img, **OPTS)
    for p in poses:
        p.keypoints[:, :2] = p.keypoints[:, :2] * 2 + 0.5   # pixel centres: x' = 2x + 0.5
    # A still image is a video of one frame (as the web demo does): the tracker numbers the
    # people, so each gets a colour of its own; poses below its min_pose_score (0.15) get no
    # number and are left out.
    poses = kpose.Tracker.for_skeleton(model.skeleton).update(poses, 0.0)
    people = [p for p in poses if p.track_id is not None]
    print(f"crowd: {len(people)} people, {len(poses) - len(people)} weaker poses left out:",
          [(round(p.score, 2), int((p.keypoints[:, 2] > 0.2).sum())) for p in poses if p.track_id is None])
    drawn = label(annotate_image(big, people, model.skeleton.limbs), f"{len(people)} people found")
    drawn.save(HERE / "crowd.jpg", quality=88)


def coco17(poses, skeleton):
    """Poses in COCO-17 by keypoint name (CMU-18 has no OKS sigmas; COCO-17 has), as
    benchmarks/tracking_video.py tracks them: OKS matching beats box IoU at crossings."""
    return [dataclasses.replace(p, keypoints=convert_keypoints(p.keypoints, skeleton, COCO17),
                                names=COCO17.keypoints) for p in poses]


def tracked_clip(model) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clip = read_clips(generate_clips(tmp, n=CLIP + 1))[CLIP]
        frames = list(clip.video())[::STEP]
        tracker = kpose.Tracker.for_skeleton(COCO17)
        tracked = [tracker.update(coco17(model.predict(image, **OPTS), model.skeleton), t_ms) for image, t_ms in frames]
    tiles = []
    for i in SHOWN:
        (image, t_ms), people = frames[i // STEP], tracked[i // STEP]
        ids = " ".join(f"#{p.track_id}" for p in sorted(people, key=lambda p: p.box[0]) if p.track_id)
        tiles.append(label(annotate_image(image, people, COCO17.limbs), f"t = {t_ms / 1000:.1f} s   {ids}"))
    w, h = tiles[0].size
    sheet = Image.new("RGB", (3 * w + 8, 2 * h + 4), (255, 255, 255))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % 3) * (w + 4), (n // 3) * (h + 4)))
    sheet.save(HERE / "tracked_clip.jpg", quality=88)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a bottom-up run folder (kpose train openpose_mobilenet_v2)")
    model = kpose.load(ap.parse_args().model)
    crowd(model)
    tracked_clip(model)
