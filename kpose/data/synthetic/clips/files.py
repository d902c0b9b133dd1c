"""Clip files: PoseTrack-like COCO annotations with JPEG frames, written and read back.

Layout under out_dir:

    frames/clip_000/000000.jpg ...          one folder of JPEG frames per clip
    annotations/person_keypoints_clips.json

The JSON is a COCO person-keypoints file (pycocotools loads it) plus PoseTrack's video fields:
`videos` [{id, name, fps, num_frames, width, height}], every image has `vid_id`, `frame_id`
(0-based index in its clip), `timestamp_ms`, `nframes` and a `file_name` relative to frames/,
and every annotation a `track_id` (0-based, stable within its clip, kept when a person leaves
and comes back). A person is annotated in a frame when at least MIN_LABELLED keypoints lie in
the frame, occluded ones included (v=1, as COCO labels occluded joints it can place): the
ground truth of a tracker is where people are, not only where they are seen. bbox and area are
those of the visible pixels (COCO's edge frame, as the still-image dataset), or of the
labelled keypoints when nothing of the person is visible.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from kpose.data.images import DataError
from kpose.data.synthetic.clips.motion import sample_actors
from kpose.data.synthetic.clips.render import render_frame, sample_scene
from kpose.data.synthetic.dataset import _categories
from kpose.skeletons import COCO17

CLIPS_VERSION = "v1"   # bump when the clips a seed gives change
DEFAULT_NUM_CLIPS = 8
DEFAULT_FPS = 30.0
DEFAULT_DURATION_S = 3.6
DEFAULT_FRAME_SIZE = (240, 320)  # (height, width)
MIN_LABELLED = 3
JPEG_QUALITY = 92
ANNOTATIONS = Path("annotations") / "person_keypoints_clips.json"


def _rng(seed: int, index: int) -> np.random.Generator:
    # A fixed stream code keeps clip streams apart from the still-image dataset's [seed, split, index].
    return np.random.default_rng([int(seed), 0x636C6970, int(index)])


def _annotation(labels: dict, track_id: int, h: int, w: int) -> dict | None:
    kps, mask = labels["keypoints"], labels["mask"]
    num = int((kps[:, 2] > 0).sum())
    if num < MIN_LABELLED:
        return None
    area = int(mask.sum())
    if area:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    else:
        xy = kps[kps[:, 2] > 0, :2]
        x0, y0 = np.floor(xy.min(0)).astype(int)
        x1, y1 = np.ceil(xy.max(0)).astype(int)
        bbox = [int(x0), int(y0), int(max(x1 - x0, 1)), int(max(y1 - y0, 1))]
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    flat: list = []
    for x, y, v in kps:
        flat += [round(float(x), 2), round(float(y), 2), int(v)]
    return {"category_id": 1, "iscrowd": 0, "track_id": int(track_id), "keypoints": flat,
            "num_keypoints": num, "bbox": bbox, "area": area,
            "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")}}


def generate_clip(out_dir: str | Path, index: int, seed: int = 0, frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
                  fps: float = DEFAULT_FPS, duration_s: float = DEFAULT_DURATION_S) -> dict:
    """Render clip `index` into out_dir/frames/clip_<index>/ and return its COCO entries:
    {"video", "images", "annotations"} with ids local to the clip (generate_clips renumbers).
    Depends only on (seed, index, frame_size, fps, duration_s)."""
    h, w = int(frame_size[0]), int(frame_size[1])
    rng = _rng(seed, index)
    actors = sample_actors(rng, index, (h, w), duration_s)
    scene = sample_scene(rng, (h, w))
    name = f"clip_{index:03d}"
    folder = Path(out_dir) / "frames" / name
    folder.mkdir(parents=True, exist_ok=True)
    n = int(round(duration_s * fps))
    images, anns = [], []
    for i in range(n):
        t_ms = 1000.0 * i / fps
        img, labels = render_frame(rng, scene, actors, t_ms / 1000.0)
        Image.fromarray(img).save(folder / f"{i:06d}.jpg", quality=JPEG_QUALITY)
        images.append({"id": i + 1, "file_name": f"{name}/{i:06d}.jpg", "width": w, "height": h,
                       "vid_id": index + 1, "frame_id": i, "timestamp_ms": round(t_ms, 3), "nframes": n,
                       "is_labeled": True})
        for tid in sorted(labels):
            ann = _annotation(labels[tid], tid, h, w)
            if ann is not None:
                anns.append({"id": len(anns) + 1, "image_id": i + 1, **ann})
    video = {"id": index + 1, "name": name, "fps": float(fps), "num_frames": n, "width": w, "height": h}
    return {"video": video, "images": images, "annotations": anns}


def generate_clips(out_dir: str | Path, n: int = DEFAULT_NUM_CLIPS, seed: int = 0,
                   frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE, fps: float = DEFAULT_FPS,
                   duration_s: float = DEFAULT_DURATION_S) -> Path:
    """Write clips 0..n-1 (frames + one annotation file) under out_dir; returns the JSON's path.
    Same arguments, same bytes. Clip i's third person follows motion.KINDS[i % 3], so any
    three consecutive clips hold a person who leaves and comes back, one who walks in, and one
    standing while others pass; every clip has two people who cross, one covering the other."""
    out_dir = Path(out_dir)
    videos, images, anns = [], [], []
    for index in range(n):
        clip = generate_clip(out_dir, index, seed, frame_size, fps, duration_s)
        first_image = len(images)
        for img in clip["images"]:
            images.append({**img, "id": img["id"] + first_image})
        for a in clip["annotations"]:
            anns.append({**a, "id": len(anns) + 1, "image_id": a["image_id"] + first_image})
        videos.append(clip["video"])
    info = {"description": "kpose synthetic video clips (COCO-17 people with track ids)",
            "version": CLIPS_VERSION, "seed": int(seed), "fps": float(fps), "duration_s": float(duration_s),
            "frame_size": [int(frame_size[0]), int(frame_size[1])]}
    data = {"info": info, "licenses": [], "videos": videos, "images": images, "annotations": anns,
            "categories": _categories()}
    path = out_dir / ANNOTATIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- reading


@dataclass
class FrameGT:
    """Ground truth of one frame: track ids [N], keypoints [N, K, 3] (x, y, v), boxes [N, 4]
    (COCO x, y, w, h of the visible pixels)."""

    path: Path
    frame_id: int
    timestamp_ms: float
    track_ids: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray

    def image(self) -> np.ndarray:
        """The frame, uint8 RGB [H, W, 3]."""
        with Image.open(self.path) as im:
            return np.asarray(im.convert("RGB"))


@dataclass
class Clip:
    """One clip of a clip file, frames in order."""

    id: int
    name: str
    fps: float
    width: int
    height: int
    frames: list[FrameGT] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[np.ndarray, FrameGT]]:
        """(image, ground truth) per frame."""
        for f in self.frames:
            yield f.image(), f

    def video(self) -> Iterator[tuple[np.ndarray, float]]:
        """(image, timestamp_ms) per frame, as PoseModel.track takes them."""
        for f in self.frames:
            yield f.image(), f.timestamp_ms


def _need(path: Path, entry: dict, keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in entry]
    if missing:
        raise DataError(f"{path}: {what} {entry.get('id', '?')} lacks {missing}. Fix: clip files need "
                        f"PoseTrack-style fields; write them with kpose.data.synthetic.clips.generate_clips")


def read_clips(ann_path: str | Path, frames_dir: str | Path | None = None) -> list[Clip]:
    """The clips of a clip annotation file. frames_dir: where file_names are relative to
    (default: the `frames` folder beside the `annotations` folder)."""
    ann_path = Path(ann_path)
    try:
        data = json.loads(ann_path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{ann_path}: cannot read the clip annotation file ({e})") from None
    if not isinstance(data.get("videos"), list):
        raise DataError(f"{ann_path}: no 'videos' list: not a clip file. Fix: pass the JSON that "
                        f"generate_clips wrote ({ANNOTATIONS})")
    root = Path(frames_dir) if frames_dir is not None else ann_path.parent.parent / "frames"
    k = COCO17.num_keypoints
    clips: dict[int, Clip] = {}
    for v in data["videos"]:
        _need(ann_path, v, ("id", "name", "fps", "width", "height"), "video")
        clips[v["id"]] = Clip(v["id"], v["name"], float(v["fps"]), int(v["width"]), int(v["height"]))
    by_image: dict[int, list[dict]] = {}
    for a in data.get("annotations", []):
        _need(ann_path, a, ("image_id", "track_id", "keypoints", "bbox"), "annotation")
        if len(a["keypoints"]) != 3 * k:
            raise DataError(f"{ann_path}: annotation {a.get('id')} has {len(a['keypoints'])} keypoint values, "
                            f"expected {3 * k} (COCO-17 x, y, v). Fix: regenerate the clips")
        by_image.setdefault(a["image_id"], []).append(a)
    for img in data.get("images", []):
        _need(ann_path, img, ("id", "file_name", "vid_id", "frame_id", "timestamp_ms"), "image")
        if img["vid_id"] not in clips:
            raise DataError(f"{ann_path}: image {img['id']} has vid_id {img['vid_id']}, which no entry of "
                            f"'videos' has. Fix: regenerate the clips")
        anns = sorted(by_image.get(img["id"], []), key=lambda a: a["track_id"])
        clips[img["vid_id"]].frames.append(FrameGT(
            root / img["file_name"], int(img["frame_id"]), float(img["timestamp_ms"]),
            np.array([a["track_id"] for a in anns], np.int64),
            np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, k, 3),
            np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)))
    for clip in clips.values():
        clip.frames.sort(key=lambda f: f.frame_id)
    return [clips[i] for i in sorted(clips)]
