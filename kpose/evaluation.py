"""kpose.evaluate: top-down models on ground-truth boxes or given detections; bottom-up models
on whole images (no boxes), every image of the annotation file."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from kpose.data.records import Instances
from kpose.data.shards import shard_image_refs
from kpose.data.sources import load_images, load_instances, parse_data_spec, resolve_named
from kpose.deploy.runtime import load
from kpose.metrics import evaluate_images, evaluate_instances
from kpose.models import BOTTOM_UP
from kpose.pose_model import PoseModel


def detections_to_instances(gt: Instances, detections: str | Path,
                            min_score: float = 0.0) -> tuple[Instances, np.ndarray]:
    """Person boxes from a COCO detection results JSON -> Instances over the same images."""
    dets = json.loads(Path(detections).read_text())
    if not isinstance(dets, list):
        raise ValueError(f"{detections}: expected a COCO results list [{{image_id, bbox, score}}, ...]")
    by_image = {int(i): k for k, i in enumerate(gt.image_ids)}
    rows, scores = [], []
    for j, d in enumerate(dets):
        for field in ("image_id", "bbox", "score"):
            if field not in d:
                raise ValueError(f"{detections}: detection {j} has no {field!r}; each entry needs "
                                 f"image_id, bbox [x, y, w, h] and score")
        if d.get("category_id", 1) != 1 or d["score"] < min_score or int(d["image_id"]) not in by_image:
            continue
        rows.append((by_image[int(d["image_id"])], d["bbox"]))
        scores.append(d["score"])
    idx = np.array([r[0] for r in rows], np.int64)
    sub = gt.select(idx)
    sub.bboxes = np.asarray([r[1] for r in rows], np.float32).reshape(-1, 4)
    # Detections carry no ground truth: PCKh and OKS are computed from the GT file.
    sub.keypoints = np.zeros_like(sub.keypoints)
    sub.head_sizes = np.full(len(sub), np.nan, np.float32)
    return sub, np.asarray(scores, np.float32)


def evaluate(model: PoseModel | str | Path, data: str | dict = "synthetic", split: str = "val",
             detections: str | Path | None = None, results_file: str | Path | None = None,
             batch_size: int = 32, progress: bool = True, flip_test: bool = False,
             scales=None) -> dict[str, float]:
    """Evaluate a model (PoseModel or a path kpose.load accepts) on a data spec.

    Top-down on ground-truth boxes, or on the person boxes of a COCO detection
    results file. `split` ("train"/"val") applies to the synthetic dataset, and picks the
    spec of a {"train": spec, "val": spec} dict (as kpose.train takes); a "coco:...",
    "mpii:..." or "tfrecord:..." spec is evaluated as given (against the shard folder's
    annotations file, the source's ground truth in COCO form). Returns {"AP": .., "AP50": .., ...} and/or PCKh.
    scales: bottom-up multi-scale inference (see PoseModel.predict).
    """
    if not isinstance(model, PoseModel):
        model = load(model)
    if isinstance(data, dict):
        # {"train": spec, "val": spec} as kpose.train takes it: `split` picks the spec.
        splits = [k for k in ("train", "val") if data.get(k)]
        if split not in splits:
            raise ValueError(f"data has splits {splits}; split={split!r} is not one of them")
        data = data[split]
    # A coco/mpii spec names exactly the data to evaluate; `split` picks a part
    # of the synthetic dataset only.
    data = resolve_named(data, split, progress)  # coco2017[-val]: the split's files, downloaded once
    spec = parse_data_spec(data)
    if spec["format"] != "synthetic":
        split = "train"
    if model.task == BOTTOM_UP:
        if detections is not None:
            raise ValueError("detections are person boxes for top-down models; a bottom-up model "
                             "finds the people itself")
        return evaluate_whole_images(model, data, split, spec, results_file, progress, flip_test, scales)
    if scales is not None:
        raise ValueError("scales are for bottom-up models (multi-scale whole-image inference)")
    gt = load_instances(data, split, progress=progress)
    if gt.skeleton.name != model.skeleton.name:
        raise ValueError(f"data {data!r} has {gt.skeleton.name} keypoints but the model predicts "
                         f"{model.skeleton.name}; evaluate on data with the model's skeleton")
    if detections is None:
        return evaluate_instances(model, gt, batch_size, results_file, progress=progress,
                                  flip_test=flip_test)
    inst, scores = detections_to_instances(gt, detections)
    return evaluate_instances(model, inst, batch_size, results_file, box_scores=scores,
                              progress=progress, flip_test=flip_test)


def evaluate_whole_images(model: PoseModel, data: str, split: str, spec: dict,
                          results_file: str | Path | None = None, progress: bool = True,
                          flip_test: bool = False, scales=None) -> dict[str, float]:
    """Bottom-up OKS AP over every image of the data's annotation file, people or not
    (images without people count for false positives, as in COCO)."""
    records = load_images(data, split, progress=progress)
    paths = {int(i): str(p) for i, p in zip(records.image_ids, records.image_paths)}
    images = json.loads(Path(records.ann_file).read_text())["images"]
    if spec["format"] == "coco":
        for im in images:
            paths.setdefault(int(im["id"]), os.path.join(spec["image_dir"], im["file_name"]))
    elif spec["format"] == "tfrecord":
        for image_id, ref in shard_image_refs(spec["dir"]).items():
            paths.setdefault(image_id, ref)
    ids = sorted(i for i in paths if i in {int(im["id"]) for im in images})
    metrics = evaluate_images(model, [paths[i] for i in ids], ids, records.ann_file, records.skeleton,
                              results_file, progress=progress, flip_test=flip_test, scales=scales)
    metrics["people_annotated"] = float(records.num_people.sum())
    metrics["images"] = float(len(ids))
    return metrics

