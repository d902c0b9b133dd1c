"""Pose metrics: COCO OKS AP/AR through pycocotools, MPII PCKh. Pure NumPy + pycocotools."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kpose.codecs import pose_scores as instance_scores
from kpose.data.records import Instances
from kpose.skeletons import Skeleton

COCO_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def coco_results(instances: Instances, keypoints: np.ndarray,
                 box_scores: np.ndarray | None = None) -> list[dict]:
    """Predictions [N, K, 3] (x, y, score) in image pixels -> COCO results-format dicts."""
    scores = instance_scores(keypoints)
    if box_scores is not None:
        scores = scores * box_scores
    out = []
    for i in range(len(instances)):
        kp = keypoints[i].astype(np.float64)
        out.append({
            "image_id": int(instances.image_ids[i]),
            "category_id": 1,
            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
            "score": round(float(scores[i]), 5),
        })
    return out


def coco_keypoint_ap(ann_file: str | Path, results: list[dict], sigmas: np.ndarray,
                     image_ids: list[int] | None = None) -> dict[str, float]:
    """OKS AP/AR of `results` against the COCO-format ground truth in `ann_file`; a statistic
    with no ground truth to measure (e.g. APl when no person is large) is left out.

    image_ids restricts evaluation to the images that were predicted (a subset of
    a large validation file must not count the rest as misses).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {k: 0.0 for k in COCO_STATS}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        if image_ids is not None:
            ev.params.imgIds = sorted(set(int(i) for i in image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # COCOeval gives -1 where it has nothing to measure (no ground truth in an area range):
    # that statistic is missing, not 0.
    return {k: float(v) for k, v in zip(COCO_STATS, ev.stats) if v != -1}


def pckh(pred: np.ndarray, gt: np.ndarray, head_sizes: np.ndarray,
         thresholds: tuple[float, ...] = (0.5, 0.1),
         exclude: tuple[int, ...] = ()) -> dict[str, float]:
    """PCKh: fraction of labelled joints within threshold x head size of the truth.

    pred [N, K, >=2], gt [N, K, 3] (x, y, v), head_sizes [N]. Joints listed in
    `exclude` (MPII convention: pelvis and thorax) are left out of the mean.
    """
    labelled = gt[..., 2] > 0
    labelled[:, list(exclude)] = False
    valid = labelled & np.isfinite(head_sizes)[:, None] & (head_sizes[:, None] > 0)
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1) / np.where(
        head_sizes > 0, head_sizes, 1.0)[:, None]
    out = {}
    for t in thresholds:
        hits = (dist <= t) & valid
        out[f"PCKh@{t}"] = float(hits.sum() / max(valid.sum(), 1))
    return out


def pck(pred: np.ndarray, gt: np.ndarray, boxes: np.ndarray,
        thresholds: tuple[float, ...] = (0.05, 0.1, 0.2)) -> dict[str, float]:
    """PCK: fraction of labelled keypoints within threshold x the person box's longer side of
    the truth. Needs no OKS sigmas and no head sizes, so it scores any skeleton (animals,
    hands) where OKS sigmas would only be a guess.

    pred [N, K, >=2], gt [N, K, 3] (x, y, v), boxes [N, 4] (x, y, w, h).
    """
    size = np.max(np.asarray(boxes, np.float64)[:, 2:4], axis=1)
    valid = (gt[..., 2] > 0) & (size[:, None] > 0)
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1) / np.where(size > 0, size, 1.0)[:, None]
    return {f"PCK@{t}": float(((dist <= t) & valid).sum() / max(valid.sum(), 1)) for t in thresholds}


def write_results(results: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))
    return path


def evaluate_instances(model, instances: Instances, batch_size: int = 32,
                       results_file: str | Path | None = None, box_scores: np.ndarray | None = None,
                       progress: bool = False, flip_test: bool = False) -> dict[str, float]:
    """Predict every instance box with a top-down PoseModel and score: OKS AP/AR (skeletons
    with sigmas), PCKh (instances with head sizes) and PCK of the box size (always).
    Predictions are written in COCO results format."""
    pred = model.predict_instances(instances, batch_size=batch_size, progress=progress,
                                   flip_test=flip_test)
    results = coco_results(instances, pred, box_scores)
    if results_file is not None:
        write_results(results, results_file)
    metrics: dict[str, float] = {}
    sk = instances.skeleton
    if sk.sigmas is not None and instances.ann_file:
        metrics.update(coco_keypoint_ap(instances.ann_file, results, sk.sigmas_array(),
                                        image_ids=list(instances.image_ids)))
    if np.isfinite(instances.head_sizes).any():
        exclude = tuple(sk.index(n) for n in ("pelvis", "thorax") if n in sk.keypoints)
        metrics.update(pckh(pred, instances.keypoints, instances.head_sizes, exclude=exclude))
    metrics.update(pck(pred, instances.keypoints, instances.bboxes))
    return metrics


def keypoint_columns(model_skeleton: Skeleton, data_skeleton: Skeleton) -> np.ndarray:
    """Index array taking the data skeleton's keypoints, by name, from a model's output
    (a model may predict more: OpenPose's neck is used for grouping, not scored on COCO)."""
    missing = [n for n in data_skeleton.keypoints if n not in model_skeleton.keypoints]
    if missing:
        raise ValueError(f"the model ({model_skeleton.name}) does not predict {missing} of the data's "
                         f"{data_skeleton.name} keypoints; evaluate on data with the model's keypoints")
    return np.array([model_skeleton.index(n) for n in data_skeleton.keypoints])


def evaluate_images(model, image_paths, image_ids, ann_file: str | Path, skeleton: Skeleton,
                    results_file: str | Path | None = None, progress: bool = False,
                    flip_test: bool = False, scales=None) -> dict[str, float]:
    """Bottom-up evaluation: every person `model.predict` finds in each whole image (no boxes
    given), scored with pycocotools OKS AP against `ann_file` over these images."""
    take = keypoint_columns(model.skeleton, skeleton)
    results = []
    for path, image_id in tqdm(list(zip(image_paths, image_ids)), disable=not progress, desc="predict"):
        for pose in model.predict(str(path), flip_test=flip_test, scales=scales):
            kp = pose.keypoints[take].astype(np.float64)
            results.append({"image_id": int(image_id), "category_id": 1,
                            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                            "score": round(float(pose.score), 5)})
    if results_file is not None:
        write_results(results, results_file)
    metrics = coco_keypoint_ap(ann_file, results, skeleton.sigmas_array(), image_ids=list(image_ids))
    metrics["people_found"] = float(len(results))
    return metrics

