"""Batch inference: `kpose predict` over any number of images (files, folders, globs, lists)
and videos, with any model `kpose.load` reads (Keras, .tflite, .onnx, TF.js).

Memory stays bounded whatever the number of inputs: sources expand lazily (one folder's
names at a time, sorted), images are decoded a batch ahead by worker threads and dropped
once written, and results stream to the --json file line by line. `--resume` keeps only an
8-byte hash per file already written (kpose.results_file).
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from kpose.data.image_files import Input, iter_inputs
from kpose.data.images import ImageError, load_image
from kpose.data.video import is_video, read_video, video_fps, video_frame_count, write_video
from kpose.deploy.runtime import load
from kpose.models import BOTTOM_UP
from kpose.plots import annotate_image
from kpose.pose_model import Pose, PoseModel
from kpose.results_file import ResultsFile
from kpose.tracking import Tracker


def pose_record(pose: Pose, track_id: bool = False) -> dict:
    """A pose as the --json file holds it (pixels to 3 decimals); track_id for video frames."""
    rec = {"score": round(float(pose.score), 5), "box": np.round(np.asarray(pose.box, np.float64), 2).tolist(),
           "keypoints": np.round(np.asarray(pose.keypoints, np.float64), 3).tolist()}
    if track_id:
        rec["track_id"] = pose.track_id
    return rec


@dataclass
class _Crops:
    """A top-down model's inputs for one image: crops [n, H, W, 3] float32, image->crop
    affines [n, 2, 3] and the person boxes [n, 4] they came from."""

    crops: np.ndarray
    mats: np.ndarray
    boxes: np.ndarray


def _cropper(model: PoseModel, boxes, detector: PoseModel | None) -> Callable[[np.ndarray], _Crops] | None:
    """PoseModel.predict's top-down crops of an image (each box, or the whole image), as a
    function the decoding threads run; None for bottom-up models, which take whole images,
    and with a detector, whose boxes come from the image."""
    if model.task == BOTTOM_UP or detector is not None:
        return None
    return lambda img: _Crops(*model.person_crops(img, boxes))


def _read(path: str, crop: Callable[[np.ndarray], _Crops] | None) -> tuple[np.ndarray, _Crops | None] | ImageError:
    try:
        img = load_image(path)
    except ImageError as e:  # reported and counted by the caller; the run goes on
        return e
    return img, crop(img) if crop is not None else None


def _loaded(inputs: Iterator[tuple[int, Input]], batch_size: int, workers: int,
            crop: Callable[[np.ndarray], _Crops] | None) -> Iterator[tuple[str, object]]:
    """("images", [(index, Input, (image, crops) or ImageError)]) batches and ("video", (index,
    Input)), in input order. Worker threads decode and crop the next batch while the network
    runs (Pillow and NumPy release the GIL); at most batch_size + workers images are held."""
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()

        def take():
            return [(i, inp, fut.result()) for i, inp, fut in
                    (pending.popleft() for _ in range(min(batch_size, len(pending))))]

        for index, inp in inputs:
            if is_video(inp.path):
                while pending:
                    yield "images", take()
                yield "video", (index, inp)
            else:
                pending.append((index, inp, pool.submit(_read, inp.path, crop)))
                if len(pending) >= batch_size + workers:
                    yield "images", take()
        while pending:
            yield "images", take()


def _top_down(model: PoseModel, inputs: list[_Crops], flip_test: bool) -> list[list[Pose]]:
    """The crops of many images through the network in one call; poses per image."""
    if not inputs:
        return []
    crops = np.concatenate([c.crops for c in inputs])
    kps = model.decode_crops(model.heatmaps(crops, flip_test), np.concatenate([c.mats for c in inputs]))
    ends = np.cumsum([len(c.boxes) for c in inputs])
    return [model.poses(k, c.boxes) for k, c in zip(np.split(kps, ends[:-1]), inputs)]


def predict_video(model: PoseModel, video: str | os.PathLike, *, save_dir: str | os.PathLike | None = None,
                  track: bool = False, smooth: bool = False, flip_test: bool = False, scales=None,
                  max_frames: int | None = None, threshold: float = 0.2, progress: bool = True,
                  detector: PoseModel | None = None) -> dict:
    """Every frame of a video, tracked (and One Euro smoothed) when asked, drawn into
    <save_dir>/<name>_pose.mp4 when save_dir is given. Frames stream through; only the poses
    are kept: {"file", "width", "height", "fps", "frames": [{"timestamp_ms", "poses"}], "drawn"}.
    detector (top-down models): a bottom-up model that finds the people; with tracking it runs
    only when nobody is tracked and every person_boxes.DETECT_EVERY_MS (PoseModel.track)."""
    fps = video_fps(video)
    # tee: the drawing and the model read the same frames, at most one frame apart
    frames, for_model = itertools.tee(read_video(video, max_frames=max_frames))
    if track or smooth:
        per_frame = model.track(for_model, Tracker.for_skeleton(model.skeleton, smoothing=smooth),
                                flip_test=flip_test, scales=scales, detector=detector)
    else:
        per_frame = (model.predict(image, flip_test=flip_test, scales=scales, detector=detector)
                     for image, _ in for_model)
    record = {"file": str(video), "width": 0, "height": 0, "fps": fps, "frames": []}

    total = video_frame_count(video) if progress else None
    if total is not None and max_frames is not None:
        total = min(total, max_frames)

    def drawn():
        for (image, t_ms), poses in tqdm(zip(frames, per_frame), desc=Path(video).name, unit="frame",
                                         total=total, disable=not progress):
            record["height"], record["width"] = image.shape[:2]
            record["frames"].append({"timestamp_ms": t_ms, "poses": [pose_record(p, True) for p in poses]})
            if save_dir is not None:
                yield annotate_image(image, poses, model.skeleton.limbs, threshold)

    if save_dir is not None:
        record["drawn"] = str(write_video(Path(save_dir) / f"{Path(video).stem}_pose.mp4", drawn(), fps))
    else:
        for _ in drawn():
            pass
    return record


def _check(model: PoseModel, boxes, scales, jsonl, coco: bool, resume: bool, json_files: bool, save_dir,
           detector: PoseModel | None) -> None:
    if model.task == BOTTOM_UP and (boxes is not None or detector is not None):
        raise ValueError(f"{'boxes are' if boxes is not None else 'a detector is'} for top-down models; a "
                         f"bottom-up model finds every person in the whole image")
    if detector is not None and detector.task != BOTTOM_UP:
        raise ValueError(f"the detector must be a bottom-up model (it finds the people); got a {detector.task} model")
    if detector is not None and boxes is not None:
        raise ValueError("give boxes or a detector, not both: the detector's people replace the boxes")
    if model.task != BOTTOM_UP and scales is not None:
        raise ValueError("scales are for bottom-up models; a top-down model sees each person's crop at its "
                         "input size")
    if (coco or resume) and jsonl is None:
        raise ValueError(f"{'coco' if coco else 'resume'} is about the --json file: give one (jsonl=...)")
    if json_files and save_dir is None:
        raise ValueError("a JSON file per input goes beside its drawing: give save_dir, or use a --json FILE.jsonl")


def _show(file: str, poses: list[Pose], drawn: Path | None) -> None:
    print(f"{file}:")
    for i, pose in enumerate(poses):
        print(f"  person {i} score {pose.score:.3f}")
        for name, (x, y, s) in pose.as_dict().items():
            print(f"    {name:16s} x={x:8.1f} y={y:8.1f} score={s:.3f}")
    if drawn is not None:
        print(f"  drawn: {drawn}")


class _Run:
    """One predict_sources call: the model, its options, the outputs and the counts."""

    def __init__(self, model: PoseModel, results: ResultsFile | None, save: Path | None, opts: dict):
        self.model, self.results, self.save, self.o = model, results, save, opts
        self.counts = dict(images=0, failed=0, resumed=0, videos=0, frames=0, poses=0)
        self.few = False

    def todo(self, inputs: Iterable[tuple[int, Input]]) -> Iterator[tuple[int, Input]]:
        for index, inp in inputs:
            if self.results is not None and self.results.holds(inp.path):
                self.counts["resumed"] += 1
            else:
                yield index, inp

    def images(self, batch: list) -> None:
        for _, inp, read in batch:
            if isinstance(read, ImageError):
                tqdm.write(f"skipped: {read}", file=sys.stderr)
        good = [(i, inp, read) for i, inp, read in batch if not isinstance(read, ImageError)]
        o = self.o
        if self.model.task == BOTTOM_UP or o["detector"] is not None:
            # One image at a time: PAF grouping (the slow part on CPU), flip-test and multi-scale
            # inference are per image in PoseModel.predict; batching only the network call would
            # give the same poses for a second copy of that code.
            # (a detector too: its boxes decide the crops).
            per_image = [self.model.predict(img, flip_test=o["flip_test"], scales=o["scales"], detector=o["detector"])
                         for _, _, (img, _) in good]
        else:
            per_image = _top_down(self.model, [crops for _, _, (_, crops) in good], o["flip_test"])
        for (index, inp, (img, _)), poses in zip(good, per_image):
            self.output(index, inp, {"file": inp.path, "width": int(img.shape[1]), "height": int(img.shape[0]),
                                     "poses": [pose_record(p) for p in poses]}, img, poses)
            self.counts["poses"] += len(poses)
        self.counts["images"] += len(good)
        self.counts["failed"] += len(batch) - len(good)

    def video(self, index: int, inp: Input) -> None:
        o = self.o
        if o["boxes"] is not None or o["coco"]:
            raise ValueError(f"{inp.path}: {'boxes' if o['boxes'] is not None else 'coco'} are for images; "
                             f"predict videos in a run of their own")
        rec = predict_video(self.model, inp.path, save_dir=self.save and self.save / Path(inp.rel).parent,
                            track=o["track"], smooth=o["smooth"], flip_test=o["flip_test"], scales=o["scales"],
                            max_frames=o["max_frames"], threshold=o["threshold"], progress=o["progress"],
                            detector=o["detector"])
        self.output(index, inp, rec, None, [])
        poses = sum(len(f["poses"]) for f in rec["frames"])
        ids = {p["track_id"] for f in rec["frames"] for p in f["poses"] if p["track_id"] is not None}
        tqdm.write(f"{inp.path}: {len(rec['frames'])} frames, {poses} poses"
                   f"{f', {len(ids)} tracks' if o['track'] or o['smooth'] else ''}"
                   f"{'; drawn: ' + rec['drawn'] if 'drawn' in rec else ''}", file=sys.stdout)
        self.counts["videos"] += 1
        self.counts["frames"] += len(rec["frames"])
        self.counts["poses"] += poses

    def output(self, index: int, inp: Input, record: dict, img: np.ndarray | None, poses: list[Pose]) -> None:
        """The record to the --json file and on_result; the drawing (an image's) and the JSON
        file per input into save_dir when asked; the poses printed when the inputs are few."""
        if self.results is not None:
            self.results.write(index, record)
        if self.o["on_result"] is not None:
            self.o["on_result"](record)
        out = self.save / Path(inp.rel).parent / f"{Path(inp.rel).stem}_pose" if self.save is not None else None
        if out is not None and img is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            drawn = annotate_image(img, poses, self.model.skeleton.limbs, self.o["threshold"])
            Image.fromarray(drawn).save(f"{out}.png")
        if self.o["json_files"]:
            Path(f"{out}.json").write_text(json.dumps(
                {"names": list(self.model.skeleton.keypoints), "frames": record["frames"]} if img is None else
                [{"score": p.score, "box": np.asarray(p.box).tolist(), "keypoints": p.keypoints.tolist(),
                  "names": list(p.names)} for p in poses]))
        if self.few and img is not None:
            _show(inp.path, poses, Path(f"{out}.png") if out is not None else None)


def predict_sources(model: PoseModel | str | os.PathLike, sources: Iterable[str | os.PathLike] | str, *,
                    batch_size: int = 16, jsonl: str | os.PathLike | None = None, coco: bool = False,
                    save_dir: str | os.PathLike | None = None, json_files: bool = False, resume: bool = False,
                    boxes=None, flip_test: bool = False, scales=None, threshold: float = 0.2,
                    track: bool = False, smooth: bool = False, max_frames: int | None = None,
                    workers: int | None = None, progress: bool = True, print_limit: int = 0,
                    on_result: Callable[[dict], None] | None = None,
                    detector: PoseModel | str | os.PathLike | None = None) -> dict:
    """Predict every image and video the sources name (see kpose.data.image_files.iter_inputs).

    model: a PoseModel or anything kpose.load reads. Top-down models run batch_size images'
    crops through the network in one call; bottom-up models one image at a time.
    jsonl: results file (ResultsFile: JSONL, or COCO results when coco); resume: skip the files
    it holds and append. save_dir: annotated <name>_pose.png (videos: .mp4), under the
    folder's or glob's relative path; json_files: also <name>_pose.json there. Unreadable
    images are named on stderr, skipped and counted. print_limit: print every pose when
    the sources hold at most this many files. on_result: called with each file's record.
    detector (top-down models): a bottom-up model (or anything kpose.load reads) whose people
    are cropped instead of the whole image; on videos see predict_video.
    Returns counts: images, failed, resumed, videos, frames, poses, seconds, images_per_s.
    """
    boxes = boxes if boxes is not None and len(boxes) else None  # as predict: no boxes, the whole image
    opts = dict(coco=coco, json_files=json_files, boxes=boxes, flip_test=flip_test, scales=scales,
                threshold=threshold, track=track, smooth=smooth, max_frames=max_frames, progress=progress,
                on_result=on_result)
    name = None if isinstance(model, PoseModel) else str(model)
    model = model if isinstance(model, PoseModel) else load(model)
    detector = detector if detector is None or isinstance(detector, PoseModel) else load(detector)
    opts["detector"] = detector
    _check(model, boxes, scales, jsonl, coco, resume, json_files, save_dir, detector)
    if batch_size < 1 or (workers is not None and workers < 1):
        raise ValueError(f"batch size {batch_size}, workers {workers}: give 1 or more")
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else sources
    if isinstance(sources, (list, tuple)):
        for source in sources:  # every source's first file found before anything is written
            next(iter_inputs([source]))
    inputs = enumerate(iter_inputs(sources))
    head = list(itertools.islice(inputs, print_limit + 1))
    results = ResultsFile(jsonl, model, coco, resume, name) if jsonl is not None else None
    run = _Run(model, results, Path(save_dir) if save_dir is not None else None, opts)
    run.few = len(head) <= print_limit
    bar = tqdm(desc="predict", unit="img", disable=not progress or run.few, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for kind, batch in _loaded(run.todo(itertools.chain(head, inputs)), batch_size,
                                   workers or min(4, os.cpu_count() or 1), _cropper(model, boxes, detector)):
            if kind == "video":
                run.video(*batch)
            else:
                run.images(batch)
                bar.update(len(batch))
    finally:
        bar.close()
        if results is not None:
            results.close()
    seconds = time.perf_counter() - start
    return {**run.counts, "seconds": round(seconds, 3),
            "images_per_s": round(run.counts["images"] / seconds, 1) if seconds > 0 else 0.0}


def summary_line(counts: dict, jsonl=None, save_dir=None) -> str:
    """One line for the end of a run: what was predicted, how fast, what was skipped, where it went."""
    c = counts
    return (f"{c['images']} images ({c['images_per_s']}/s), {c['poses']} poses"
            + (f", {c['videos']} videos ({c['frames']} frames)" if c["videos"] else "")
            + (f", {c['resumed']} already in {jsonl}" if c["resumed"] else "")
            + (f", {c['failed']} unreadable images skipped (named above)" if c["failed"] else "")
            + (f"; results: {jsonl}" if jsonl else "") + (f"; drawn into: {save_dir}" if save_dir else ""))
