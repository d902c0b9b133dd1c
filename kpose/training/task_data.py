"""What training does differently per task: its data, batches, validation and pictures.

Top-down trains on person crops (`Instances`, one row per person) and validates on
ground-truth boxes; bottom-up trains on whole images (`ImageRecords`, all people and
ignore regions) and validates on whole images with no boxes. The engine asks the
task's TaskData and branches on nothing else.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from kpose import plots
from kpose.data.coco_skeleton import SkeletonRequest, require_connected
from kpose.data.records import ImageRecords, Instances
from kpose.data.sources import load_images, load_instances
from kpose.metrics import evaluate_images, evaluate_instances
from kpose.models import BOTTOM_UP, TOP_DOWN
from kpose.pose_model import PoseModel
from kpose.skeletons import Skeleton, convert_keypoints
from kpose.training.targets import TargetSpec, bottom_up_batches, training_batches

# Recipe augment keys the bottom-up pipeline takes (box_padding is a crop setting).
BOTTOM_UP_AUGMENT = ("flip", "rotation", "rotation_prob", "scale", "shift", "color")


class TopDownData:
    """Person crops from ground-truth boxes."""

    unit = "person instances"

    def load(self, spec, split: str, skeleton: Skeleton | SkeletonRequest, progress: bool) -> Instances:
        """One split; a SkeletonRequest reads the data's own skeleton (recipe skeleton: from-data)."""
        if isinstance(skeleton, SkeletonRequest):
            return load_instances(spec, split, progress=progress, skeleton=skeleton)
        data = load_instances(spec, split, progress=progress)
        if data.skeleton.keypoints != skeleton.keypoints:
            raise ValueError(f"data.{split} = {spec[split]!r} has {data.skeleton.name} keypoints but the "
                             f"recipe's skeleton is {skeleton.name}; set skeleton: {data.skeleton.name} in "
                             f"the recipe (or --set skeleton={data.skeleton.name})")
        return data

    def skeleton(self, data: Instances) -> Skeleton:
        return data.skeleton

    def check(self, skeleton: Skeleton, cfg: dict) -> None:
        """Before training: any keypoint layout trains top-down (limbs only draw); a crop is seen
        at one input size, so multi-scale validation does not apply."""
        if cfg["eval"].get("scales") is not None:
            raise ValueError(f"recipe eval.scales={cfg['eval']['scales']}: multi-scale inference is for "
                             f"bottom-up models (a top-down model sees each crop at its input size); "
                             f"remove it")

    def subset(self, data: Instances, n: int) -> Instances:
        return data.select(np.arange(min(len(data), n)))

    def count(self, data: Instances) -> int:
        return len(data)

    def summary(self, data: Instances) -> str:
        return data.summary()

    def batches(self, data: Instances, size, specs: list[TargetSpec], cfg: dict, batch: int, seed: int,
                start_batch: int = 0):
        return training_batches(data, size, specs, cfg["augment"], batch, seed=seed,
                                shuffle_buffer=int(cfg["train"]["shuffle_buffer"]), start_batch=start_batch)

    def evaluate(self, model: PoseModel, data: Instances, cfg: dict, results_file: Path | None) -> dict:
        return evaluate_instances(model, data, batch_size=cfg["eval"]["batch_size"], results_file=results_file,
                                  flip_test=bool(cfg["eval"]["flip_test"]))

    def key(self, data: Instances) -> str:
        if data.skeleton.sigmas is not None:
            return "AP"
        return "PCKh@0.5" if np.isfinite(data.head_sizes).any() else "PCK@0.1"

    def plot(self, model: PoseModel, data: Instances, cfg: dict, png: Path) -> None:
        # As validation predicted them: the same flip test, and its graph function, traced
        # already (a second trace costs seconds per training run).
        plots.prediction_grid(model, data, png, flip_test=bool(cfg["eval"]["flip_test"]))


class BottomUpData:
    """Whole images with every person; keypoints converted to the model's skeleton by name
    for training (e.g. COCO-17 data for a CMU-18 model, neck from the shoulders), scored
    in the data's own skeleton."""

    unit = "images"

    def load(self, spec, split: str, skeleton: Skeleton | SkeletonRequest,
             progress: bool) -> tuple[ImageRecords, ImageRecords]:
        """(training records in the model's skeleton, records in the data's own for scoring)."""
        if isinstance(skeleton, SkeletonRequest):
            data = load_images(spec, split, progress=progress, skeleton=skeleton)
            return data, data
        data = load_images(spec, split, progress=progress)
        if data.skeleton.keypoints == skeleton.keypoints:
            return data, data
        kps = convert_keypoints(data.keypoints, data.skeleton, skeleton)
        return replace(data, keypoints=kps, skeleton=skeleton), data

    def skeleton(self, data: tuple) -> Skeleton:
        return data[0].skeleton

    def check(self, skeleton: Skeleton, cfg: dict) -> None:
        """Before training: PAF grouping assembles people along limbs, so every keypoint must be
        reachable."""
        require_connected(skeleton)

    def subset(self, data: tuple, n: int) -> tuple:
        pick = np.arange(min(len(data[0]), n))
        return data[0].select(pick), data[1].select(pick)

    def count(self, data: tuple) -> int:
        return len(data[0])

    def summary(self, data: tuple) -> str:
        return data[1].summary()

    def batches(self, data: tuple, size, specs: list[TargetSpec], cfg: dict, batch: int, seed: int,
                start_batch: int = 0):
        augment = {k: cfg["augment"][k] for k in BOTTOM_UP_AUGMENT}
        return bottom_up_batches(data[0], size, specs, augment, batch, seed=seed,
                                 shuffle_buffer=int(cfg["train"]["shuffle_buffer"]),
                                 max_people=min(int(cfg["data"]["max_people"]), max(data[0].max_people, 1)),
                                 start_batch=start_batch)

    def evaluate(self, model: PoseModel, data: tuple, cfg: dict, results_file: Path | None) -> dict:
        gt = data[1]
        return evaluate_images(model, gt.image_paths, gt.image_ids, gt.ann_file, gt.skeleton, results_file,
                               flip_test=bool(cfg["eval"]["flip_test"]), scales=cfg["eval"].get("scales"))

    def key(self, data: tuple) -> str:
        return "AP"

    def plot(self, model: PoseModel, data: tuple, cfg: dict, png: Path) -> None:
        # Single-scale, no flip: a look at the people found, not the validation score.
        plots.image_grid(model, data[1], png)


TASK_DATA = {TOP_DOWN: TopDownData(), BOTTOM_UP: BottomUpData()}
