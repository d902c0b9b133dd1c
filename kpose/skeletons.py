"""Keypoint skeletons: the one place that defines names, flip pairs, limbs and OKS sigmas.

Every other module (codecs, data readers, augmentation, evaluation, drawing,
official-weight loading) takes these tables from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """A keypoint layout.

    name: short id used in recipes and model metadata ("coco17", "mpii16").
    keypoints: keypoint names in channel order.
    flip_pairs: index pairs (left, right) swapped by a horizontal flip.
    limbs: index pairs joined when drawing; also the PAF limbs of bottom-up models.
    sigmas: per-keypoint OKS sigmas (COCO), or None when the dataset defines none.
    """

    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def index(self, name: str) -> int:
        return self.keypoints.index(name)

    def flip_index(self) -> np.ndarray:
        """Permutation that maps channel i to its mirror channel after a horizontal flip."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def limb_flip(self) -> tuple[np.ndarray, np.ndarray]:
        """(perm [L], sign [L]) mapping limb fields through a horizontal flip.

        Limb l = (a, b) of a mirrored image is limb perm[l] = (flip(a), flip(b)) of the
        original, or that limb reversed when the table stores it as (flip(b), flip(a)),
        then sign[l] = -1. Flip test for PAFs: pafs_l(x, y) = sign[l] * (-px, py) of
        the mirrored output's limb perm[l] at (W-1-x, y).
        Raises when a limb's mirror is not in the table (the limbs are not symmetric).
        """
        flip = self.flip_index()
        index = {tuple(l): i for i, l in enumerate(self.limbs)}
        perm, sign = np.zeros(len(self.limbs), np.int64), np.ones(len(self.limbs), np.float32)
        for i, (a, b) in enumerate(self.limbs):
            fa, fb = int(flip[a]), int(flip[b])
            if (fa, fb) in index:
                perm[i] = index[(fa, fb)]
            elif (fb, fa) in index:
                perm[i], sign[i] = index[(fb, fa)], -1.0
            else:
                raise ValueError(f"skeleton {self.name!r}: limb {self.keypoints[a]}-{self.keypoints[b]} has "
                                 f"no mirror {self.keypoints[fa]}-{self.keypoints[fb]} among its limbs; add it "
                                 f"to the limbs or the flip pairs")
        return perm, sign

    def sigmas_array(self) -> np.ndarray:
        if self.sigmas is None:
            # Evaluating OKS on a skeleton without published sigmas would silently
            # give meaningless numbers; callers must use PCK instead.
            raise ValueError(f"skeleton {self.name!r} has no OKS sigmas; evaluate it with PCKh")
        return np.asarray(self.sigmas, dtype=np.float64)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "keypoints": list(self.keypoints),
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "limbs": [list(p) for p in self.limbs],
            "sigmas": None if self.sigmas is None else list(self.sigmas),
            "extra": {k: list(v) if isinstance(v, tuple) else v for k, v in self.extra.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Skeleton":
        """The skeleton `to_dict` wrote (a model's config carries it in full)."""
        try:
            return cls(name=str(d["name"]), keypoints=tuple(d["keypoints"]),
                       flip_pairs=tuple((int(a), int(b)) for a, b in d["flip_pairs"]),
                       limbs=tuple((int(a), int(b)) for a, b in d["limbs"]),
                       sigmas=None if d.get("sigmas") is None else tuple(float(s) for s in d["sigmas"]),
                       extra={k: tuple(v) if isinstance(v, list) else v
                              for k, v in (d.get("extra") or {}).items()})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"skeleton entry {d!r} is incomplete ({e}); it needs name, keypoints, "
                             f"flip_pairs, limbs and sigmas (null when none)") from None


def _pairs(names: tuple[str, ...], pairs) -> tuple[tuple[int, int], ...]:
    return tuple((names.index(a), names.index(b)) for a, b in pairs)


_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

COCO17 = Skeleton(
    name="coco17",
    keypoints=_COCO_NAMES,
    flip_pairs=_pairs(_COCO_NAMES, [
        ("left_eye", "right_eye"), ("left_ear", "right_ear"),
        ("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"),
        ("left_wrist", "right_wrist"), ("left_hip", "right_hip"),
        ("left_knee", "right_knee"), ("left_ankle", "right_ankle"),
    ]),
    # The 19 limbs of the COCO person category's "skeleton" field, 0-based.
    limbs=_pairs(_COCO_NAMES, [
        ("left_ankle", "left_knee"), ("left_knee", "left_hip"),
        ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
        ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"),
        ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
        ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
        ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"),
        ("left_eye", "left_ear"), ("right_eye", "right_ear"),
        ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
    ]),
    # COCO keypoint evaluation sigmas (cocoapi, cocoeval.py).
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
            0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
    # Keypoints on the head: weight transfer from a skeleton without them starts
    # their channels from that skeleton's head keypoints (kpose.training).
    extra={"head_keypoints": ("nose", "left_eye", "right_eye", "left_ear", "right_ear")},
)

# MPII Human Pose in the dataset's own joint order (joint ids 0..15).
_MPII_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "pelvis", "thorax", "upper_neck", "head_top",
    "right_wrist", "right_elbow", "right_shoulder",
    "left_shoulder", "left_elbow", "left_wrist",
)

_MPII_HEAD = ("upper_neck", "head_top")
MPII16 = Skeleton(
    name="mpii16",
    keypoints=_MPII_NAMES,
    flip_pairs=_pairs(_MPII_NAMES, [
        ("right_ankle", "left_ankle"), ("right_knee", "left_knee"), ("right_hip", "left_hip"),
        ("right_wrist", "left_wrist"), ("right_elbow", "left_elbow"),
        ("right_shoulder", "left_shoulder"),
    ]),
    # OpenPose's 14-limb MPI layout, in the PAF channel order of the official
    # EfficientPose releases (pass-1 channels 2k, 2k+1 = x, y of limb k), so
    # kpose's MPII models can load and fine-tune the official PAF head.
    limbs=_pairs(_MPII_NAMES, [
        ("head_top", "upper_neck"), ("upper_neck", "right_shoulder"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
        ("upper_neck", "left_shoulder"), ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"), ("upper_neck", "thorax"), ("thorax", "right_hip"),
        ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("thorax", "left_hip"),
        ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ]),
    sigmas=None,
    # PCKh normalises by head size: the head segment is (upper_neck, head_top).
    # Its only head keypoints are that segment's ends.
    extra={"head": _MPII_HEAD, "head_keypoints": _MPII_HEAD},
)

# The official EfficientPose releases (daniegr/EfficientPose) output MPII's 16
# joints in their own channel order, listed here by name.
EFFICIENTPOSE_MPII_ORDER = (
    "head_top", "upper_neck", "right_shoulder", "right_elbow", "right_wrist",
    "thorax", "left_shoulder", "left_elbow", "left_wrist", "pelvis",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
)


def efficientpose_to_mpii() -> np.ndarray:
    """Index array p with mpii_channels = official_channels[..., p]."""
    return np.array([EFFICIENTPOSE_MPII_ORDER.index(n) for n in MPII16.keypoints])


SKELETONS = {s.name: s for s in (COCO17, MPII16)}


def get_skeleton(name: str) -> Skeleton:
    try:
        return SKELETONS[name]
    except KeyError:
        raise ValueError(f"unknown skeleton {name!r}; known: {sorted(SKELETONS)}") from None


def skeleton_from_entry(entry: "dict | str | Skeleton") -> Skeleton:
    """A model config's skeleton: the full entry it stores, or (older files) a built-in name."""
    if isinstance(entry, Skeleton):
        return entry
    if isinstance(entry, dict):
        return Skeleton.from_dict(entry)
    return get_skeleton(entry)


# OpenPose's COCO-18 layout (the CMU models and tf-pose-estimation): COCO's 17 keypoints
# (kpose names) in OpenPose's part order, plus "neck" = midpoint of the shoulders.
# The released networks add a background heatmap after these 18 channels.
_CMU_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)

CMU18 = Skeleton(
    name="cmu18",
    keypoints=_CMU_NAMES,
    flip_pairs=_pairs(_CMU_NAMES, [
        ("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"),
        ("left_wrist", "right_wrist"), ("left_hip", "right_hip"), ("left_knee", "right_knee"),
        ("left_ankle", "right_ankle"), ("left_eye", "right_eye"), ("left_ear", "right_ear"),
    ]),
    # The 19 limbs in tf-pose-estimation's PAF channel order: limb i is channels 2i (x)
    # and 2i+1 (y) of the unit vector from its first to its second keypoint (its
    # training targets, pose_dataset.py CocoMetadata, and its decoder's CocoPairsNetwork
    # / pafprocess read x from the even channel). The release's output agrees (tests).
    limbs=_pairs(_CMU_NAMES, [
        ("neck", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
        ("neck", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
        ("neck", "right_shoulder"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
        ("right_shoulder", "right_ear"),
        ("neck", "left_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
        ("left_shoulder", "left_ear"),
        ("neck", "nose"), ("nose", "right_eye"), ("nose", "left_eye"),
        ("right_eye", "right_ear"), ("left_eye", "left_ear"),
    ]),
    # COCO publishes no OKS sigma for the neck; evaluate on COCO17 (the other 17 by name).
    sigmas=None,
    # OpenPose trains on COCO with the neck made from the shoulders (see convert_keypoints).
    extra={"head_keypoints": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
           "derived": {"neck": ("left_shoulder", "right_shoulder")}},
)
SKELETONS[CMU18.name] = CMU18


def convert_keypoints(keypoints: np.ndarray, src: Skeleton, dst: Skeleton) -> np.ndarray:
    """Keypoints [..., Ks, 3] of skeleton `src` as [..., Kd, 3] of `dst`, by keypoint name.

    A `dst` keypoint that `src` lacks is the midpoint of the two keypoints
    `dst.extra["derived"]` names for it (labelled when both are, with the lower
    visibility flag), as OpenPose makes the neck from the shoulders; ValueError when
    neither names it.
    """
    kps = np.asarray(keypoints, np.float32)
    out = np.zeros(kps.shape[:-2] + (dst.num_keypoints, 3), np.float32)
    derived = dst.extra.get("derived", {})
    for k, name in enumerate(dst.keypoints):
        if name in src.keypoints:
            out[..., k, :] = kps[..., src.index(name), :]
            continue
        if name not in derived or any(n not in src.keypoints for n in derived[name]):
            raise ValueError(f"skeleton {dst.name!r} needs keypoint {name!r}, which {src.name!r} data lacks "
                             f"and cannot derive; use data with {dst.name} keypoints or a {src.name} model")
        a, b = (kps[..., src.index(n), :] for n in derived[name])
        both = (a[..., 2] > 0) & (b[..., 2] > 0)
        out[..., k, :2] = np.where(both[..., None], 0.5 * (a[..., :2] + b[..., :2]), 0.0)
        out[..., k, 2] = np.where(both, np.minimum(a[..., 2], b[..., 2]), 0.0)
    return out


# CrowdPose (Li et al. 2019): 14 keypoints, named as its annotation files name them. Its
# files' own category skeleton lists COCO-17's limbs (indices up to 17), so the limbs here
# are kpose's: a tree (neck to head and shoulders, shoulders down each side), which PAF
# grouping needs. Sigmas: CrowdPose's published OKS sigmas.
_CROWDPOSE_NAMES = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
)
CROWDPOSE14 = Skeleton(
    name="crowdpose14",
    keypoints=_CROWDPOSE_NAMES,
    flip_pairs=_pairs(_CROWDPOSE_NAMES, [
        ("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"), ("left_wrist", "right_wrist"),
        ("left_hip", "right_hip"), ("left_knee", "right_knee"), ("left_ankle", "right_ankle"),
    ]),
    limbs=_pairs(_CROWDPOSE_NAMES, [
        ("neck", "head"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
        ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
        ("left_shoulder", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
        ("right_shoulder", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ]),
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
    extra={"head_keypoints": ("head", "neck")},
)
SKELETONS[CROWDPOSE14.name] = CROWDPOSE14
