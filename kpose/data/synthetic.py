"""The embedded synthetic COCO-17 dataset: cartoon people in clutter, made on first use.

Each image holds 1-4 articulated people. A person is a kinematic skeleton with
joint limits (elbows and knees bend one way), random proportions, clothing and
global orientation (front, side and back views, in-plane tilt), posed from a
mix of everyday archetypes (standing, walking, sitting, reaching ...) plus
noise. Bodies are ray-cast as shaded quadrics and capsules into a z-buffer, so
near limbs cover far ones and a face is only seen from the front: that is what
makes left and right learnable without colour-coding them.

Labels come from the renderer itself: a keypoint is v=2 when the surface seen at
its pixel is this person's own surface at the joint's depth, v=1 when something
(another person, a foreground object, the person's own torso) is in front, v=0
with x=y=0 outside the image, and v=0 for a face point hidden by the person's
own head (COCO's annotators leave those unlabelled). bbox, area and the RLE segmentation
are those of the person's visible pixels.

Coordinates follow kpose.transforms: keypoints in the pixel-centre frame, boxes
in COCO's edge frame (a box covering pixel columns c0..c1 has x=c0, w=c1-c0+1).
Everything is drawn from `np.random.default_rng([seed, crc32(split), index])`,
so an image depends only on (seed, split, index): same seed -> same bytes.
"""
from __future__ import annotations

import colorsys
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kpose.skeletons import COCO17

log = logging.getLogger(__name__)

__all__ = ["generate", "ensure_dataset", "preview", "render_image", "DATASET_VERSION",
           "DEFAULT_NUM_TRAIN", "DEFAULT_NUM_VAL"]

# Bump when the generator's output changes, so stale caches are not reused.
DATASET_VERSION = "v2"
DEFAULT_NUM_TRAIN = 3000
DEFAULT_NUM_VAL = 300
DEFAULT_SEED = 0
_VAL_SEED_OFFSET = 1_000_003  # val people come from a disjoint seed stream

# Scene statistics: the difficulty knobs. A model that has not learned scores
# ~0 AP (mean pose in the GT box); these keep the task learnable by a small net
# in the quick start's CPU budget. v1 had (0.38, 0.30, 0.19, 0.13) people, 0.22
# truncation, 0.35 occluders, 0-6 decoys and 30% back views: at the same 6-minute
# budget the recipe's model scored AP 0.001 on it against 0.016 on these rates.
PEOPLE_PER_IMAGE_P = (0.55, 0.27, 0.12, 0.06)  # 1, 2, 3, 4 people
PERSON_HEIGHT = (0.2, 0.9)   # standing height / image height, log-uniform (one person: >= 0.35)
TRUNCATION_P = 0.12          # chance a person may extend past the border (up to 40% of its box)
OCCLUDER_P = 0.15            # chance of 1-2 foreground objects over a person
DISTRACTORS = (0, 2)         # limb-like sticks in the background, min/max count
YAW_FRONT_SIDE_BACK_P = (0.65, 0.20, 0.15)

_IN_WORKER_HOST = False  # set when this module runs as the generator process (see generate)
_K = COCO17.num_keypoints
_KP = {name: i for i, name in enumerate(COCO17.keypoints)}
_FACE = np.isin(np.arange(_K), [_KP[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")])
_D2R = np.pi / 180.0
_OCCLUDER = 255
_FAR = -1e9

# --------------------------------------------------------------------------- rotations


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _limb_frame(flex: float, abd: float, twist: float, side: float) -> np.ndarray:
    """Frame of a limb hanging from a ball joint (rest: pointing down, bending forward).

    flex swings the limb forward (+) or back (-), abd swings it out to the
    person's `side` (+1 left, -1 right); twist spins it about its own axis, so
    the one-way hinge below it (elbow/knee) bends in a rotated plane.
    """
    r = _rz(side * abd) @ _rx(-flex)
    return r @ _ry(side * twist)


# --------------------------------------------------------------------------- body and pose

# Limits in degrees. Arms: flex, abd, twist, elbow, wrist. Legs: flex, abd, twist, knee, ankle.
_ARM_LO = np.array([-60, -35, -70, 0, -40.0])
_ARM_HI = np.array([180, 175, 70, 150, 60.0])
_LEG_LO = np.array([-35, -20, -35, 0, -15.0])
_LEG_HI = np.array([125, 60, 35, 155, 50.0])
_TORSO_LO = np.array([-25, -25, -35.0])   # pitch (bend forward +), side bend, twist
_TORSO_HI = np.array([95, 25, 35.0])
_HEAD_LO = np.array([-70, -35, -25.0])    # yaw, pitch (look down +), roll
_HEAD_HI = np.array([70, 45, 25.0])

_ARCHETYPES = (
    ("stand", 0.17), ("walk", 0.15), ("run", 0.08), ("arms_up", 0.05), ("wave", 0.06),
    ("hips", 0.05), ("reach", 0.07), ("sit", 0.07), ("squat", 0.05), ("bend", 0.05),
    ("kick", 0.04), ("star", 0.04), ("lunge", 0.04), ("kneel", 0.03), ("random", 0.05),
)
_ARCH_NAMES = [a for a, _ in _ARCHETYPES]
_ARCH_P = np.array([p for _, p in _ARCHETYPES]) / sum(p for _, p in _ARCHETYPES)


def _sample_pose(rng: np.random.Generator) -> dict:
    """Joint angles (degrees) from a random archetype plus noise, within the joint limits."""
    u = rng.uniform
    arm = np.array([[u(-15, 25), u(5, 20), u(-20, 20), u(5, 30), u(-10, 20)] for _ in range(2)])
    leg = np.array([[u(-5, 10), u(2, 10), u(-10, 10), u(0, 12), u(-5, 10)] for _ in range(2)])
    torso = np.array([u(-5, 12), u(-6, 6), u(-10, 10)])
    head = np.array([u(-35, 35), u(-15, 20), u(-10, 10)])
    kind = _ARCH_NAMES[rng.choice(len(_ARCH_NAMES), p=_ARCH_P)]
    if kind == "walk" or kind == "run":
        a = u(15, 35) if kind == "walk" else u(35, 70)
        leg[0, 0], leg[1, 0] = a, -0.6 * a
        leg[0, 3], leg[1, 3] = u(5, 30), u(10, 40)
        if kind == "run":
            leg[0, 3], leg[1, 3] = u(40, 110), u(30, 100)
            arm[:, 3] = u(70, 110)
            torso[0] = u(5, 25)
        arm[0, 0], arm[1, 0] = -0.8 * a, 0.8 * a
    elif kind == "arms_up":
        if rng.random() < 0.5:
            arm[:, 1] = u(130, 170)
        else:
            arm[:, 0] = u(140, 175)
        arm[:, 3] = u(0, 40)
    elif kind == "wave":
        arm[0, 1], arm[0, 3], arm[0, 2] = u(70, 130), u(50, 120), u(-60, -20)
    elif kind == "hips":
        arm[:, 1], arm[:, 0], arm[:, 3], arm[:, 2] = u(35, 55), u(-15, 10), u(90, 120), u(50, 70)
    elif kind == "reach":
        arm[0, 0], arm[0, 1], arm[0, 3] = u(60, 120), u(-10, 50), u(0, 25)
        if rng.random() < 0.4:
            arm[1, 0], arm[1, 3] = u(40, 110), u(0, 60)
    elif kind == "sit":
        leg[:, 0], leg[:, 3], leg[:, 1] = u(75, 100), u(70, 110), u(3, 20)
        arm[:, 0], arm[:, 3] = u(10, 40), u(40, 90)
    elif kind == "squat":
        leg[:, 0], leg[:, 3], leg[:, 1] = u(90, 120), u(110, 150), u(10, 30)
        torso[0] = u(20, 50)
        arm[:, 0], arm[:, 3] = u(30, 90), u(0, 60)
    elif kind == "bend":
        torso[0] = u(45, 90)
        arm[:, 0] = torso[0] + u(-20, 20)
        arm[:, 3] = u(0, 40)
        leg[:, 3] = u(0, 25)
    elif kind == "kick":
        leg[0, 0], leg[0, 3] = u(50, 100), u(0, 60)
        arm[:, 1] = u(20, 70)
        torso[0] = u(-15, 5)
    elif kind == "star":
        arm[:, 1], arm[:, 3] = u(90, 160), u(0, 30)
        leg[:, 1], leg[:, 3] = u(20, 45), u(0, 20)
    elif kind == "lunge":
        leg[0, 0], leg[0, 3] = u(60, 90), u(70, 100)
        leg[1, 0], leg[1, 3] = u(-35, -15), u(0, 40)
        torso[0] = u(-5, 20)
    elif kind == "kneel":
        leg[0, 0], leg[0, 3] = u(80, 100), u(80, 100)
        leg[1, 0], leg[1, 3] = u(-20, 5), u(80, 110)
        arm[:, 0], arm[:, 3] = u(0, 40), u(0, 70)
    elif kind == "random":
        arm = rng.uniform(_ARM_LO, _ARM_HI, size=(2, 5))
        leg = rng.uniform(_LEG_LO * 0.7, _LEG_HI * 0.8, size=(2, 5))
        torso = rng.uniform(_TORSO_LO * 0.5, _TORSO_HI * 0.5)
    arm += rng.normal(0, [14, 12, 15, 12, 10], size=(2, 5))
    leg += rng.normal(0, [7, 5, 8, 8, 8], size=(2, 5))
    torso += rng.normal(0, [4, 3, 5])
    head += rng.normal(0, [5, 5, 4])
    if rng.random() < 0.5:  # asymmetric archetypes are drawn left-handed; mirror half of them
        arm, leg = arm[::-1].copy(), leg[::-1].copy()
        torso[1:] *= -1
        head[0::2] *= -1
    # An arm swung inwards would pass through the chest unless it is also raised forward.
    arm[:, 1] = np.maximum(arm[:, 1], np.where(arm[:, 0] > 35, -35, -8))
    return {
        "kind": kind,
        "arm": np.clip(arm, _ARM_LO, _ARM_HI), "leg": np.clip(leg, _LEG_LO, _LEG_HI),
        "torso": np.clip(torso, _TORSO_LO, _TORSO_HI), "head": np.clip(head, _HEAD_LO, _HEAD_HI),
    }


def _sample_body(rng: np.random.Generator) -> dict:
    """Proportions in units of standing height, and clothing colours."""
    u = rng.uniform
    build = u(0.8, 1.3)
    hips = u(0.9, 1.15)            # wide hips / narrow shoulders and vice versa
    head = u(0.9, 1.2)
    limb = u(0.93, 1.07)
    b = {
        "head_r": 0.062 * head, "neck": 0.035, "torso": 0.29 * u(0.94, 1.06),
        "shoulder": 0.1 * u(0.9, 1.12) / hips ** 0.5, "hip": 0.058 * hips,
        "upper_arm": 0.165 * limb, "forearm": 0.145 * limb, "hand": 0.08 * limb,
        "thigh": 0.245 * limb, "shin": 0.245 * limb, "foot": 0.11 * limb,
        "r_upper_arm": 0.03 * build, "r_forearm": (0.025 * build, 0.019 * build),
        "r_hand": 0.019 * build ** 0.5, "r_thigh": (0.052 * build * hips ** 0.5, 0.037 * build),
        "r_shin": (0.034 * build, 0.024 * build), "r_foot": 0.021, "r_neck": 0.027 * build ** 0.5,
        # torso half-width / half-depth at hip, waist, chest, shoulder levels
        "torso_w": np.array([0.085 * hips, 0.07 * build ** 0.5, 0.088, 0.09]) * build ** 0.5,
        "torso_d": np.array([0.055, 0.05, 0.06, 0.05]) * build,
    }
    skin = _SKIN[rng.integers(len(_SKIN))] * u(0.9, 1.1, 3)
    b["skin"] = np.clip(skin, 0, 1)
    b["shirt"] = _rand_colour(rng, sat=(0.1, 0.9), val=(0.15, 0.95))
    b["trousers"] = _rand_colour(rng, sat=(0.0, 0.7), val=(0.1, 0.8))
    b["shoes"] = _rand_colour(rng, sat=(0.0, 0.5), val=(0.05, 0.6))
    b["hair"] = _HAIR[rng.integers(len(_HAIR))] * u(0.85, 1.15)
    b["hat"] = _rand_colour(rng) if rng.random() < 0.12 else None
    b["hairline"] = u(0.05, 0.4) if rng.random() > 0.06 else 9.0  # 9.0: bald
    b["long_sleeves"] = rng.random() < 0.5
    b["shorts"] = rng.random() < 0.3
    b["stripes"] = u(25, 70) if rng.random() < 0.3 else 0.0
    return b


_SKIN = np.array([[0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.80, 0.58, 0.42],
                  [0.63, 0.42, 0.28], [0.45, 0.29, 0.18], [0.30, 0.19, 0.12]])
_HAIR = np.array([[0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.45, 0.30, 0.15],
                  [0.80, 0.66, 0.38], [0.55, 0.22, 0.10], [0.62, 0.62, 0.62]])


def _rand_colour(rng: np.random.Generator, sat=(0.0, 1.0), val=(0.1, 1.0)) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val)))


def _unit(*v: float) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# Face features on the unit sphere of the head (x = person's left, y = up, z = forward).
_NOSE = _unit(0, -0.2, 1)
_EYES = (_unit(0.36, 0.12, 0.92), _unit(-0.36, 0.12, 0.92))
_EARS = (_unit(1, 0.0, -0.12), _unit(-1, 0.0, -0.12))
_MOUTH = _unit(0, -0.5, 0.87)
_HEAD_RADII = np.array([0.88, 1.1, 1.0])  # ellipsoid: narrower than tall


def _build_person(body: dict, pose: dict, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """3D keypoints [17, 3], their front-surface radii [17], and render primitives.

    All in camera-aligned model units (x right, y up, z towards the camera),
    pelvis at the origin; `rot` is the person's global orientation.
    """
    b = body
    tp, ts, tt = pose["torso"] * _D2R
    r_pel = rot
    r_chest = rot @ _ry(tt) @ _rz(ts) @ _rx(tp)
    hy, hp, hr = pose["head"] * _D2R
    r_head = r_chest @ _ry(hy) @ _rx(hp) @ _rz(hr)
    neck = r_chest @ np.array([0, b["torso"], 0])
    head_r = b["head_r"]
    head_c = neck + r_chest @ np.array([0, b["neck"], 0.01]) + r_head @ np.array([0, 0.9 * head_r, 0.12 * head_r])
    radii = _HEAD_RADII * head_r

    kp = np.zeros((_K, 3))
    rad = np.zeros(_K)
    prims: list = []
    skin, shirt, trousers = b["skin"], b["shirt"], b["trousers"]

    def on_head(d: np.ndarray, scale: float = 1.0) -> np.ndarray:
        return head_c + r_head @ (radii * d * scale)

    kp[_KP["nose"]] = on_head(_NOSE, 1.02)
    rad[_KP["nose"]] = 0.15 * head_r
    prims.append(("ell", on_head(_NOSE, 0.97), r_head, np.array([0.12, 0.14, 0.17]) * head_r, skin * 0.93, None))
    for i, side in enumerate(("left", "right")):
        kp[_KP[f"{side}_eye"]] = on_head(_EYES[i])
        rad[_KP[f"{side}_eye"]] = 0.05 * head_r
        kp[_KP[f"{side}_ear"]] = on_head(_EARS[i], 0.97)
        rad[_KP[f"{side}_ear"]] = 0.4 * head_r  # generous: annotators mark both ears of a frontal face
        prims.append(("ell", on_head(_EARS[i], 0.97), r_head, np.array([0.1, 0.24, 0.17]) * head_r,
                      skin * 0.9, None))
    prims.append(("ell", head_c, r_head, radii, skin, b))
    prims.append(("cap", neck - r_chest @ np.array([0, 0.02, 0]), head_c, b["r_neck"], b["r_neck"], skin))

    # Torso: an elliptic tube from the pelvis to the neck, capped by ellipsoids.
    tw, td = b["torso_w"], b["torso_d"]
    prims.append(("torso", np.zeros(3), r_chest, b["torso"], tw, td, b))
    prims.append(("ell", r_chest @ np.array([0, b["torso"] * 0.88, 0]), r_chest,
                  np.array([tw[3], b["torso"] * 0.14, td[3]]), shirt, None))
    prims.append(("ell", r_pel @ np.array([0, 0.02, 0]), r_pel,
                  np.array([tw[0], b["torso"] * 0.16, td[0]]), trousers, None))

    for i, (side, sgn) in enumerate((("left", 1.0), ("right", -1.0))):
        # arm, in the chest frame
        fl, ab, tw_, el, wr = pose["arm"][i] * _D2R
        sh = neck + r_chest @ np.array([sgn * b["shoulder"], -0.03, 0])
        fr = r_chest @ _limb_frame(fl, ab, tw_, sgn)
        elbow = sh + fr @ np.array([0, -b["upper_arm"], 0])
        f_fore = fr @ _rx(-el)
        wrist = elbow + f_fore @ np.array([0, -b["forearm"], 0])
        tip = wrist + fr @ _rx(-el - wr) @ np.array([0, -b["hand"], 0])
        kp[_KP[f"{side}_shoulder"]], kp[_KP[f"{side}_elbow"]], kp[_KP[f"{side}_wrist"]] = sh, elbow, wrist
        rad[_KP[f"{side}_shoulder"]] = b["r_upper_arm"] * 1.1
        rad[_KP[f"{side}_elbow"]] = b["r_upper_arm"]
        rad[_KP[f"{side}_wrist"]] = b["r_forearm"][1]
        ra, (rf0, rf1) = b["r_upper_arm"], b["r_forearm"]
        prims.append(("cap", sh, sh + 0.3 * (elbow - sh), ra * 1.15, ra, shirt))
        if b["long_sleeves"]:
            prims.append(("cap", sh, elbow, ra, ra * 0.95, shirt))
            prims.append(("cap", elbow, wrist, rf0, rf1, shirt))
        else:
            mid = sh + 0.45 * (elbow - sh)
            prims.append(("cap", sh, mid, ra * 1.05, ra * 1.02, shirt))
            prims.append(("cap", mid, elbow, ra * 0.9, ra * 0.85, skin))
            prims.append(("cap", elbow, wrist, rf0 * 0.9, rf1, skin))
        prims.append(("cap", wrist, tip, b["r_hand"], b["r_hand"] * 0.85, skin * 0.97))

        # leg, in the pelvis frame
        fl, ab, tw_, kn, an = pose["leg"][i] * _D2R
        hip = r_pel @ np.array([sgn * b["hip"], -0.015, 0])
        fr = r_pel @ _limb_frame(fl, ab, tw_, sgn)
        knee = hip + fr @ np.array([0, -b["thigh"], 0])
        f_shin = fr @ _rx(kn)
        ankle = knee + f_shin @ np.array([0, -b["shin"], 0])
        # the foot hangs below the ankle so that, seen from the front, it does not hide it
        f_dir = f_shin @ np.array([0, -np.sin(an), np.cos(an)])
        sole = ankle + f_shin @ np.array([0, -(b["r_shin"][1] + b["r_foot"]) * 0.9, 0])
        heel, toe = sole - 0.025 * f_dir, sole + b["foot"] * f_dir
        kp[_KP[f"{side}_hip"]], kp[_KP[f"{side}_knee"]], kp[_KP[f"{side}_ankle"]] = hip, knee, ankle
        rad[_KP[f"{side}_hip"]] = b["r_thigh"][0]
        rad[_KP[f"{side}_knee"]] = b["r_thigh"][1]
        rad[_KP[f"{side}_ankle"]] = b["r_shin"][1]
        (rt0, rt1), (rs0, rs1) = b["r_thigh"], b["r_shin"]
        prims.append(("cap", hip, knee, rt0, rt1, trousers))
        prims.append(("cap", knee, ankle, rs0, rs1, skin if b["shorts"] else trousers))
        prims.append(("cap", heel, toe, b["r_foot"], b["r_foot"] * 0.9, b["shoes"]))
    return kp, rad, prims


# --------------------------------------------------------------------------- renderer


class _Canvas:
    """RGB float image [3, H, W] + z-buffer (larger z = nearer) + per-pixel owner label.

    Channel-first because every blend broadcasts a [h, w] alpha over colour:
    numpy is many times faster on a contiguous last axis than on a size-3 one.
    """

    def __init__(self, rgb: np.ndarray, light: np.ndarray, ambient: float):
        self.rgb = rgb
        self.h, self.w = rgb.shape[1:]
        self.z = np.full((self.h, self.w), -np.inf, np.float32)
        self.lab = np.zeros((self.h, self.w), np.uint8)
        self.light = light
        self.ambient = float(ambient)
        self.xs = np.arange(self.w, dtype=np.float32)
        self.ys = np.arange(self.h, dtype=np.float32)

    def _window(self, x0: float, x1: float, y0: float, y1: float):
        ix0, ix1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, self.w)
        iy0, iy1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, self.h)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return (slice(iy0, iy1), slice(ix0, ix1)), self.xs[None, ix0:ix1], self.ys[iy0:iy1, None]

    def _shade(self, nx, ny, nz) -> np.ndarray:
        """Lambert shading factor [h, w]; normals in camera coords (y up)."""
        lx, ly, lz = self.light.tolist()
        lam = np.maximum(nx * lx + ny * ly + nz * lz, 0)
        return self.ambient + (1 - self.ambient) * lam

    def _commit(self, sl, alpha, depth, colour, label: int) -> None:
        zp = self.z[sl]
        m = (alpha > 0) & (depth > zp)
        if not m.any():
            return
        a = np.where(m, alpha, 0).astype(np.float32)
        rgb = self.rgb[:, sl[0], sl[1]]
        rgb += (colour - rgb) * a
        solid = m & (alpha >= 0.5)
        zp[solid] = depth[solid]
        lab = self.lab[sl]
        lab[solid] = label

    def capsule(self, a, b, ra: float, rb: float, colour, label: int) -> None:
        """Tapered capsule between 3D points a and b (pixel x, y; depth z)."""
        # Python floats keep the per-pixel arithmetic in float32 (NumPy 2 promotes
        # float32 arrays to float64 against np.float64 scalars).
        (ax, ay, az), (bx, by, bz), ra, rb = a.tolist(), b.tolist(), float(ra), float(rb)
        r = max(ra, rb)
        win = self._window(min(ax, bx) - r - 1, max(ax, bx) + r + 1, min(ay, by) - r - 1, max(ay, by) + r + 1)
        if win is None:
            return
        sl, x, y = win
        abx, aby = bx - ax, by - ay
        l2 = abx * abx + aby * aby
        if l2 > 1e-9:
            t = np.minimum(np.maximum(((x - ax) * (abx / l2) + (y - ay) * (aby / l2)), 0), 1)
        else:
            t = np.zeros((y.shape[0], x.shape[1]), np.float32)
        dx, dy = x - (ax + t * abx), y - (ay + t * aby)
        d = np.sqrt(dx * dx + dy * dy)
        rad = ra + t * (rb - ra)
        alpha = np.minimum(np.maximum(rad - d + 0.5, 0), 1)
        nz = np.sqrt(np.maximum(1 - (d / rad) ** 2, 0))
        depth = az + t * (bz - az) + rad * nz
        shade = self._shade(dx / rad, -dy / rad, nz)
        self._commit(sl, alpha, depth, _tint(colour, shade), label)

    def ellipsoid(self, c, rot: np.ndarray, radii, colour, label: int, body: dict | None = None) -> None:
        """Ellipsoid with local axes `rot` (camera coords, y up) and semi-axes `radii` (pixels).

        With `body` given it is a head: hair, eyes and mouth are painted from the
        hit point on the head's own unit sphere, so the face turns with the head.
        """
        e = rot * np.array([[1.0], [-1.0], [1.0]])  # camera (y up) -> pixel (y down)
        ext = np.sqrt(((e * radii) ** 2).sum(1))
        cx, cy, cz = c.tolist()
        win = self._window(cx - ext[0] - 1, cx + ext[0] + 1, cy - ext[1] - 1, cy + ext[1] + 1)
        if win is None:
            return
        sl, x, y = win
        du, dv = x - cx, y - cy
        # local point along the pixel's ray: q(Z) = o + Z * dz, scaled to the unit sphere
        es = (e / radii).tolist()
        o = [du * es[0][k] + dv * es[1][k] for k in range(3)]
        dz = es[2]
        qa = dz[0] ** 2 + dz[1] ** 2 + dz[2] ** 2
        qb = 2 * (o[0] * dz[0] + o[1] * dz[1] + o[2] * dz[2])
        qc = o[0] ** 2 + o[1] ** 2 + o[2] ** 2 - 1
        disc = qb * qb - 4 * qa * qc
        qmin = qc + 1 - qb * qb / (4 * qa)
        alpha = np.minimum(np.maximum((1 - np.sqrt(np.maximum(qmin, 0))) * float(radii.min()) + 0.5, 0), 1)
        zz = (-qb + np.sqrt(np.maximum(disc, 0))) / (2 * qa)
        n = [o[k] + zz * dz[k] for k in range(3)]           # hit point on the unit sphere
        # camera-space normal: rot @ (n / radii), unnormalised
        rn = (rot / radii).tolist()
        ncam = [rn[j][0] * n[0] + rn[j][1] * n[1] + rn[j][2] * n[2] for j in range(3)]
        inv = 1 / (np.sqrt(ncam[0] ** 2 + ncam[1] ** 2 + ncam[2] ** 2) + 1e-9)
        shade = self._shade(ncam[0] * inv, ncam[1] * inv, ncam[2] * inv)
        col = _tint(colour, shade)
        if body is not None:
            self._face(n, body, col, shade)
        self._commit(sl, alpha, cz + zz, col, label)

    @staticmethod
    def _face(n, body: dict, col: np.ndarray, shade: np.ndarray) -> None:
        """Paint hair, eyes and mouth into col [3, h, w] from unit-sphere head coords n."""
        nx, ny, nz = n

        def paint(mask, rgb) -> None:
            for ch in range(3):
                col[ch][mask] = rgb[ch] * shade[mask]

        if body["hat"] is not None:
            paint(ny > 0.35 + 0.1 * nz, body["hat"])
        elif body["hairline"] < 5:
            # the hairline is high on the forehead and drops to the nape at the back
            paint(ny - 0.9 * np.minimum(nz, 0) - 0.35 * np.maximum(nz, 0) > body["hairline"], body["hair"])
        for eye in _EYES:
            dot = nx * eye[0] + ny * eye[1] + nz * eye[2]
            paint(dot > 0.985, (0.95, 0.95, 0.95))
            paint(dot > 0.995, (0.05, 0.04, 0.04))
        dot = nx * _MOUTH[0] + ny * _MOUTH[1] + nz * _MOUTH[2]
        paint((dot > 0.975) & (np.abs(ny - _MOUTH[1]) < 0.05), (0.45, 0.12, 0.12))

    def torso(self, p0, rot: np.ndarray, length: float, w_knots, d_knots, body: dict, label: int) -> None:
        """Elliptic tube from p0 along the local y axis, half-width/depth tapering over 4 knots."""
        e = rot * np.array([[1.0], [-1.0], [1.0]])  # camera (y up) -> pixel (y down)
        top = p0 + e[:, 1] * length
        r = max(w_knots.max(), d_knots.max())
        win = self._window(min(p0[0], top[0]) - r - 1, max(p0[0], top[0]) + r + 1,
                           min(p0[1], top[1]) - r - 1, max(p0[1], top[1]) + r + 1)
        if win is None:
            return
        sl, x, y = win
        e = e.tolist()
        length = float(length)
        du, dv = x - float(p0[0]), y - float(p0[1])
        oa, ob, oc = (e[0][k] * du + e[1][k] * dv for k in range(3))  # ray depth relative to p0
        ea, eb, ec = e[2]
        knots = np.array([0, 0.35, 0.7, 1.0]) * length
        # half sizes depend on height along the spine: take them where the ray
        # passes closest to the axis, then intersect the tube at that size
        wm, dm = float(w_knots.mean()), float(d_knots.mean())
        qa = max((ea / wm) ** 2 + (ec / dm) ** 2, 1e-6)
        z0 = -((oa * ea) / wm ** 2 + (oc * ec) / dm ** 2) / qa
        hb = np.minimum(np.maximum(ob + z0 * eb, 0), length)
        w = np.interp(hb, knots, w_knots).astype(np.float32)
        d = np.interp(hb, knots, d_knots).astype(np.float32)
        qa = np.maximum((ea / w) ** 2 + (ec / d) ** 2, 1e-6)
        qb = 2 * (oa * ea / w ** 2 + oc * ec / d ** 2)
        qc = (oa / w) ** 2 + (oc / d) ** 2 - 1
        disc = qb * qb - 4 * qa * qc
        qmin = qc + 1 - qb * qb / (4 * qa)
        zz = (-qb + np.sqrt(np.maximum(disc, 0))) / (2 * qa)
        hb = ob + zz * eb
        alpha = np.minimum(np.maximum((1 - np.sqrt(np.maximum(qmin, 0))) * np.minimum(w, d) + 0.5, 0), 1)
        alpha = np.where((hb >= 0) & (hb <= length), alpha, 0)
        la, lc = (oa + zz * ea) / w ** 2, (oc + zz * ec) / d ** 2
        r = rot.tolist()
        ncam = [r[j][0] * la + r[j][2] * lc for j in range(3)]
        norm = np.sqrt(ncam[0] ** 2 + ncam[1] ** 2 + ncam[2] ** 2) + 1e-9
        shade = self._shade(ncam[0] / norm, ncam[1] / norm, ncam[2] / norm)
        belt = hb < 0.2 * length
        if body["stripes"]:
            shade = shade * np.where((np.sin(hb * (body["stripes"] / length)) > 0) & ~belt, 0.7, 1.0)
        col = np.where(belt, _tint(body["trousers"], shade), _tint(body["shirt"], shade))
        self._commit(sl, alpha, float(p0[2]) + zz, col, label)

    def mask_shape(self, mask: np.ndarray, x0: int, y0: int, colour: np.ndarray, depth: float, label: int) -> None:
        """A flat object given as a 0/1 mask placed at (x0, y0), with a soft vertical gradient."""
        h, w = mask.shape
        win = self._window(x0, x0 + w - 1, y0, y0 + h - 1)
        if win is None:
            return
        sl, x, y = win
        m = mask[sl[0].start - y0:sl[0].stop - y0, sl[1].start - x0:sl[1].stop - x0].astype(np.float32)
        grad = 0.85 + 0.3 * (y - y.min()) / max(float(y.max() - y.min()), 1.0) + 0 * x
        self._commit(sl, m, np.full(m.shape, depth, np.float32), _tint(colour, grad), label)


def _tint(colour, shade: np.ndarray) -> np.ndarray:
    """colour (3,) times a shading factor [h, w] -> [3, h, w] float32."""
    return np.asarray(colour, np.float32)[:, None, None] * shade.astype(np.float32)[None]


# --------------------------------------------------------------------------- scene


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textured clutter: gradient, low-frequency noise, a pattern, random shapes."""
    u = rng.uniform
    f32 = np.float32
    c1 = _rand_colour(rng, val=(0.15, 0.95)).astype(f32)[:, None, None]
    c2 = np.clip(c1 + rng.normal(0, 0.25, (3, 1, 1)), 0, 1).astype(f32)
    ang = u(0, 2 * np.pi)
    xx = np.arange(w, dtype=f32)[None, :]
    yy = np.arange(h, dtype=f32)[:, None]
    g = (xx * f32(np.cos(ang)) + yy * f32(np.sin(ang))) / f32(2 * max(h, w)) + f32(0.5)
    img = c1 + (c2 - c1) * g[None]
    # low-frequency blotches: a few separable random waves per channel
    amp = u(0.03, 0.15)
    for _ in range(3):
        fx, fy = rng.uniform(0.5, 6, 2) * 2 * np.pi / np.array([w, h])
        wx = np.sin(fx * xx + u(0, 6.3)).astype(f32)
        wy = np.sin(fy * yy + u(0, 6.3)).astype(f32)
        img += rng.normal(0, amp, (3, 1, 1)).astype(f32) * (wx * wy)[None]
    kind = rng.integers(5)
    c3 = _rand_colour(rng).astype(f32)[:, None, None]
    pattern = None
    if kind == 0:      # stripes
        a, period = u(0, np.pi), u(4, 40)
        phase = (xx * f32(np.cos(a) / period) + yy * f32(np.sin(a) / period)) % f32(1)
        pattern, mix = phase < u(0.2, 0.8), 0.4
    elif kind == 1:    # tiles
        t = u(8, 48)
        pattern, mix = ((xx // t + yy // t) % 2).astype(bool), 0.25
    elif kind == 2:    # floor and wall
        pattern, mix = np.broadcast_to(yy > u(0.3, 0.8) * h, (h, w)), 0.6
    if pattern is not None:
        img = np.where(pattern[None], img * f32(1 - mix) + c3 * f32(mix), img)
    # flat clutter shapes, drawn as an index map and coloured from a palette
    n = int(rng.integers(2, 14))
    index = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(index)
    for k in range(1, n + 1):
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * (w, h)
        sw, sh = rng.uniform(0.03, 0.5, 2) * (w, h)
        shape = rng.integers(4)
        if shape == 0:
            draw.rectangle([x0, y0, x0 + sw, y0 + sh], fill=k)
        elif shape == 1:
            draw.ellipse([x0, y0, x0 + sw, y0 + sh], fill=k)
        elif shape == 2:
            pts = rng.uniform(0, 1, (rng.integers(3, 7), 2)) * (sw, sh) + (x0, y0)
            draw.polygon([tuple(p) for p in pts], fill=k)
        else:
            draw.line([x0, y0, x0 + rng.uniform(-1, 1) * sw, y0 + rng.uniform(-1, 1) * sh],
                      fill=k, width=int(rng.integers(1, 8)))
    palette = np.concatenate([np.zeros((3, 1)), rng.random((3, n))], 1).astype(f32)
    index = np.asarray(index)
    shapes = np.stack([ch[index] for ch in palette])  # per-channel take: far faster than palette[:, index]
    img = np.where(index[None] > 0, shapes * (f32(0.85) + f32(0.3) * g)[None], img)
    return np.clip(img, 0, 1)


def _distractors(rng: np.random.Generator, canvas: _Canvas, n: int, scale: float) -> None:
    """Limb-like shaded sticks (sometimes jointed chains) that are not people."""
    h, w = canvas.h, canvas.w
    for i in range(n):
        col = _SKIN[rng.integers(len(_SKIN))] if rng.random() < 0.3 else _rand_colour(rng)
        p = np.array([rng.uniform(0, w), rng.uniform(0, h), _FAR + i])
        r = rng.uniform(0.015, 0.05) * scale
        for _ in range(rng.integers(1, 4)):
            ang = rng.uniform(0, 2 * np.pi)
            q = p + np.array([np.cos(ang), np.sin(ang), 0]) * rng.uniform(0.1, 0.3) * scale
            canvas.capsule(p, q, r, r * rng.uniform(0.6, 1.1), col, 0)
            p = q


def _occluder(rng: np.random.Generator, canvas: _Canvas, box: np.ndarray, depth: float) -> None:
    """A foreground object (post, bar, table, blob) overlapping part of a person's box."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    col = _rand_colour(rng, val=(0.2, 0.9))
    kind = rng.integers(4)
    if kind == 3:
        a = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), depth])
        ang = rng.uniform(0, np.pi)
        ln = rng.uniform(0.3, 0.8) * bh
        d = np.array([np.cos(ang), np.sin(ang), 0]) * ln / 2
        r = rng.uniform(0.03, 0.08) * bh
        canvas.capsule(a - d, a + d, r, r, col, _OCCLUDER)
        return
    if kind == 0:      # vertical post
        ww, hh = rng.uniform(0.08, 0.22) * bw, canvas.h * rng.uniform(0.5, 1.2)
        cx, cy = rng.uniform(x0, x1), rng.uniform(0, canvas.h)
    elif kind == 1:    # table / low wall from below
        ww, hh = bw * rng.uniform(0.6, 1.6), bh * rng.uniform(0.15, 0.4)
        cx, cy = rng.uniform(x0, x1), y1 - hh * rng.uniform(0.0, 0.5)
    else:              # blob
        ww, hh = rng.uniform(0.2, 0.5, 2) * (bw + bh) / 2
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
    ww, hh = max(int(ww), 2), max(int(hh), 2)
    m = Image.new("L", (ww, hh), 0)
    draw = ImageDraw.Draw(m)
    if kind == 2 and rng.random() < 0.5:
        draw.ellipse([0, 0, ww - 1, hh - 1], fill=1)
    elif kind == 2:
        ang = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 9)))
        rr = rng.uniform(0.6, 1.0, ang.size)
        pts = np.stack([(1 + rr * np.cos(ang)) * (ww - 1) / 2, (1 + rr * np.sin(ang)) * (hh - 1) / 2], 1)
        draw.polygon([tuple(p) for p in pts], fill=1)
    else:
        draw.rectangle([0, 0, ww - 1, hh - 1], fill=1)
    canvas.mask_shape(np.asarray(m), int(cx - ww / 2), int(cy - hh / 2), col, depth, _OCCLUDER)


def _orientation(rng: np.random.Generator) -> np.ndarray:
    """Global rotation: yaw mostly frontal but with side and back views, small tilt/elevation."""
    r = rng.random()
    front, side, _ = YAW_FRONT_SIDE_BACK_P
    if r < front:
        yaw = rng.normal(0, 25)
    elif r < front + side:
        yaw = rng.choice([-1, 1]) * rng.uniform(50, 130)
    else:
        yaw = 180 + rng.normal(0, 30)
    tilt = rng.normal(0, 7) if rng.random() < 0.88 else rng.uniform(-70, 70)
    elev = float(np.clip(rng.normal(0, 10), -30, 30))
    return _rz(tilt * _D2R) @ _rx(elev * _D2R) @ _ry(yaw * _D2R)


def _people_count(rng: np.random.Generator) -> int:
    return int(rng.choice(len(PEOPLE_PER_IMAGE_P), p=PEOPLE_PER_IMAGE_P)) + 1


def render_image(rng: np.random.Generator, image_size: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, list[dict]]:
    """One scene: uint8 image [H, W, 3] and one dict per person drawn.

    Each dict has keypoints [17, 3] (x, y, v as in COCO), mask [H, W] bool (the
    person's visible pixels), pose (the archetype's name) and facing_camera.
    Every person drawn is returned, including ones too hidden to annotate;
    `generate` decides which become annotations.
    """
    h, w = image_size
    u = rng.uniform
    light = _unit(u(-0.7, 0.7), u(0.0, 0.9), u(0.5, 1.2))
    canvas = _Canvas(_background(rng, h, w), light, u(0.3, 0.55))
    _distractors(rng, canvas, int(rng.integers(DISTRACTORS[0], DISTRACTORS[1] + 1)), float(h))

    n = _people_count(rng)
    people = []
    placed: list[np.ndarray] = []
    for _ in range(n):
        body = _sample_body(rng)
        pose = _sample_pose(rng)
        rot = _orientation(rng)
        kp, rad, prims = _build_person(body, pose, rot)
        lo, hi = kp[:, :2].min(0) - 0.08, kp[:, :2].max(0) + 0.08
        lo_h, hi_h = PERSON_HEIGHT
        frac = np.exp(u(np.log(lo_h), np.log(hi_h))) if n > 1 else u(max(lo_h, 0.35), hi_h)
        s = frac * h
        bw, bh = (hi - lo) * s
        for _try in range(20):
            trunc = rng.random() < TRUNCATION_P
            mx, my = (0.4 * bw, 0.4 * bh) if trunc else (-2.0, -2.0)
            left = u(-mx, max(w - bw + mx, -mx + 1e-3))
            top = u(-my, max(h - bh + my, -my + 1e-3))
            box = np.array([left, top, left + bw, top + bh])
            if all(_overlap_ok(box, o) for o in placed):
                break
        else:
            continue
        placed.append(box)
        # model (x right, y up) -> pixels (x right, y down); box corner <- (lo.x, hi.y)
        origin = np.array([left - lo[0] * s, top + hi[1] * s])
        people.append({"body": body, "pose": pose, "kp": kp, "rad": rad, "prims": prims,
                       "s": s, "origin": origin, "box": box})
    # Bigger people are mostly nearer; a few break the rule.
    order = np.argsort([p["s"] + rng.normal(0, 0.1 * h) for p in people])
    for rank, idx in enumerate(order):
        people[idx]["zoff"] = 10.0 * h * (rank + 1)

    for pi, p in enumerate(people):
        s, (ox, oy), zoff = p["s"], p["origin"], p["zoff"]

        def px(v: np.ndarray) -> np.ndarray:
            return np.array([ox + s * v[0], oy - s * v[1], zoff + s * v[2]])

        items = []
        for prim in p["prims"]:
            kind = prim[0]
            if kind == "cap":
                _, a, b, ra, rb, col = prim
                items.append(((a[2] + b[2]) / 2, lambda a=a, b=b, ra=ra, rb=rb, col=col:
                              canvas.capsule(px(a), px(b), ra * s, rb * s, col, pi + 1)))
            elif kind == "ell":
                _, c, r, radii, col, body = prim
                items.append((c[2], lambda c=c, r=r, radii=radii, col=col, body=body:
                              canvas.ellipsoid(px(c), r, radii * s, col, pi + 1, body)))
            else:
                _, p0, r, ln, tw, td, body = prim
                items.append((r[2, 1] * ln / 2, lambda p0=p0, r=r, ln=ln, tw=tw, td=td, body=body:
                              canvas.torso(px(p0), r, ln * s, tw * s, td * s, body, pi + 1)))
        for _, draw in sorted(items, key=lambda t: t[0]):
            draw()
        p["kp_px"] = np.stack([px(v) for v in p["kp"]])

    n_occ = rng.integers(1, 3) if (people and rng.random() < OCCLUDER_P) else 0
    for i in range(n_occ):
        target = people[rng.integers(len(people))]["box"]
        _occluder(rng, canvas, target, 1e9 + i)

    # Visibility from the renderer: a joint is seen when its pixel shows this
    # person's surface no deeper than the joint's own front surface.
    out = []
    for pi, p in enumerate(people):
        kp = p["kp_px"]
        ix, iy = np.floor(kp[:, 0] + 0.5).astype(int), np.floor(kp[:, 1] + 0.5).astype(int)
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        cx, cy = np.clip(ix, 0, w - 1), np.clip(iy, 0, h - 1)
        surf = kp[:, 2] + p["rad"] * p["s"]
        tol = np.maximum(1.0, 0.35 * p["rad"] * p["s"])
        own = canvas.lab[cy, cx] == pi + 1
        seen = own & (canvas.z[cy, cx] <= surf + tol)
        # A face point hidden by the person's own head or body (a face seen from
        # behind, the far ear in profile) is left unlabelled, as COCO's annotators
        # do: unlike a limb behind the torso, nothing in the image places it.
        # Face points behind another person or an object stay labelled occluded.
        unplaceable = _FACE & own & ~seen
        v = np.where(inside & ~unplaceable, np.where(seen, 2, 1), 0)
        kps = np.zeros((_K, 3))
        kps[:, :2] = np.where((v > 0)[:, None], kp[:, :2], 0)
        kps[:, 2] = v
        yaw_front = p["kp"][_KP["left_shoulder"], 0] > p["kp"][_KP["right_shoulder"], 0]
        out.append({"keypoints": kps, "mask": canvas.lab == pi + 1, "pose": p["pose"]["kind"],
                    "facing_camera": bool(yaw_front)})

    # camera: exposure, colour cast, sensor noise
    gain = np.float32(255 * u(0.7, 1.25))
    bias = ((u(-0.08, 0.08) + rng.normal(0, 0.03, 3)) * 255 + 0.5).astype(np.float32)
    img = canvas.rgb * gain + bias[:, None, None]
    # uniform noise with sigma in [0, 0.04]: cheaper to draw than Gaussian, looks the same
    img += (rng.random((3, h, w), np.float32) - np.float32(0.5)) * np.float32(255 * u(0.0, 0.04) * 12 ** 0.5)
    img8 = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0))
    return img8, out


def _overlap_ok(a: np.ndarray, b: np.ndarray) -> bool:
    """Allow partial overlap but not one person (almost) covering another."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return True
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / min(area_a, area_b) < 0.55 and inter / (area_a + area_b - inter) < 0.35


# --------------------------------------------------------------------------- dataset files


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode())


def _annotation(person: dict, ann_id: int, image_id: int, h: int, w: int) -> dict | None:
    """COCO annotation of one rendered person, or None when too little of it is visible."""
    from pycocotools import mask as mask_utils

    kps = person["keypoints"]
    mask = person["mask"]
    num = int((kps[:, 2] > 0).sum())
    area = int(mask.sum())
    if num < 3 or (kps[:, 2] == 2).sum() < 2 or area < 80:
        return None
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    flat: list = []
    for x, y, v in kps:
        flat += [round(float(x), 2), round(float(y), 2), int(v)]
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "keypoints": flat, "num_keypoints": num, "bbox": bbox, "area": area,
        "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
    }


def _categories() -> list[dict]:
    return [{
        "id": 1, "name": "person", "supercategory": "person",
        "keypoints": list(COCO17.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in COCO17.limbs],
    }]


def _make_image(job: tuple) -> list[dict]:
    """Render, save and annotate image `index` (a top-level function so worker processes can run it)."""
    img_dir, seed, split, index, h, w = job
    rng = np.random.default_rng([seed, _split_code(split), index])
    img, people = render_image(rng, (h, w))
    Image.fromarray(img).save(Path(img_dir) / f"{index:06d}.jpg", quality=int(rng.integers(55, 96)))
    anns = (_annotation(person, 0, index + 1, h, w) for person in people)
    return [a for a in anns if a is not None]


def generate(out_dir: str | Path, num_images: int, seed: int, image_size: tuple[int, int] = (256, 256),
             split: str = "train", progress: bool = True, workers: int = 1) -> Path:
    """Write `num_images` synthetic images and their COCO keypoint annotations.

    Images go to out_dir/<split>/NNNNNN.jpg, annotations to
    out_dir/annotations/person_keypoints_<split>.json, which is returned.
    image_size is (height, width). Output depends only on (seed, split, index),
    so it is the same for any number of worker processes.
    """
    out_dir = Path(out_dir)
    h, w = int(image_size[0]), int(image_size[1])
    if workers > 1 and num_images > 1 and not _IN_WORKER_HOST:
        # Spawned workers re-import the caller's __main__: a user's script that
        # calls kpose.train() at top level, without a main guard, would run again
        # in every worker. A fresh interpreter running this module hosts the pool.
        cmd = [sys.executable, "-m", "kpose.data.synthetic", str(out_dir), str(num_images),
               str(seed), f"{h}x{w}", split, str(int(progress)), str(workers)]
        subprocess.run(cmd, check=True)
        return out_dir / "annotations" / f"person_keypoints_{split}.json"
    img_dir = out_dir / split
    ann_dir = out_dir / "annotations"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(str(img_dir), seed, split, i, h, w) for i in range(num_images)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=num_images, desc=f"synthetic {split}", unit="img")
    images, anns = [], []
    pool = None
    try:
        if workers > 1 and num_images > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            # spawn, not fork: the caller may already hold TensorFlow's threads
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            results = pool.map(_make_image, jobs, chunksize=16)
        else:
            results = map(_make_image, jobs)
        for i, image_anns in enumerate(results):
            images.append({"id": i + 1, "file_name": f"{i:06d}.jpg", "width": w, "height": h})
            for a in image_anns:
                a["id"] = len(anns) + 1
                anns.append(a)
            if bar is not None:
                bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    data = {
        "info": {"description": "kpose synthetic COCO-17 people", "version": DATASET_VERSION,
                 "seed": seed, "split": split},
        "licenses": [],
        "images": images, "annotations": anns, "categories": _categories(),
    }
    ann_path = ann_dir / f"person_keypoints_{split}.json"
    tmp = ann_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, ann_path)
    return ann_path


def _default_root() -> Path:
    from kpose.data.images import default_cache_dir
    return default_cache_dir() / f"synthetic-{DATASET_VERSION}"


def _generator_digest() -> str:
    """Fingerprint of this generator's code: a cache made by other code is rebuilt, not reused."""
    import hashlib
    return hashlib.sha1(Path(__file__).read_bytes().replace(b"\r\n", b"\n")).hexdigest()[:12]


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / "dataset.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_dataset(root: str | Path | None = None, *, num_train: int = DEFAULT_NUM_TRAIN,
                   num_val: int = DEFAULT_NUM_VAL, seed: int = DEFAULT_SEED,
                   image_size: tuple[int, int] = (256, 256), progress: bool = True,
                   workers: int | None = None) -> dict[str, Path]:
    """Generate the train/val splits into a cache folder once; return their paths.

    root defaults to <kpose cache dir>/synthetic-v1 (kpose.data.images.default_cache_dir: $KPOSE_CACHE, else ~/.cache/kpose)
    (non-default sizes or seeds get a sibling folder of their own). The splits
    are built in a temporary folder and renamed into place, so an interrupted
    run leaves nothing half-made. Validation images come from a separate seed
    stream: they hold new people. workers: processes (default: up to 4 CPUs).
    Returns {"train", "val"} annotation files and {"train_images", "val_images"} folders.
    """
    params = {"version": DATASET_VERSION, "num_train": int(num_train), "num_val": int(num_val),
              "seed": int(seed), "image_size": [int(image_size[0]), int(image_size[1])]}
    if root is None:
        root = _default_root()
        if (num_train, num_val, seed, tuple(params["image_size"])) != (
                DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL, DEFAULT_SEED, (256, 256)):
            tag = zlib.crc32(json.dumps(params, sort_keys=True).encode())
            root = root.with_name(f"{root.name}-{tag:08x}")
    params["generator"] = _generator_digest()
    root = Path(root).expanduser()
    paths = {
        "train": root / "annotations" / "person_keypoints_train.json",
        "val": root / "annotations" / "person_keypoints_val.json",
        "train_images": root / "train", "val_images": root / "val",
    }
    found = _read_manifest(root)
    if found == params:
        return paths
    if root.exists() and any(root.iterdir()):
        if found is None:
            # never delete a folder we did not make
            raise FileExistsError(f"{root} exists and is not a kpose synthetic dataset "
                                  f"(no dataset.json). Fix: pass an empty or new folder as root.")
        shutil.rmtree(root)  # ours, from other parameters or generator version: rebuild
    root.parent.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    log.info("generating the synthetic dataset (%d train + %d val images) into %s",
                                     num_train, num_val, root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        generate(tmp, num_train, seed, image_size, "train", progress, workers)
        generate(tmp, num_val, seed + _VAL_SEED_OFFSET, image_size, "val", progress, workers)
        (tmp / "dataset.json").write_text(json.dumps(params, sort_keys=True))
        if root.exists():
            root.rmdir()  # empty (checked above); rename cannot replace it otherwise on every OS
        try:
            os.rename(tmp, root)
        except OSError:
            # another process finished first; its copy is identical
            if _read_manifest(root) != params:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


# --------------------------------------------------------------------------- looking at it


def preview(ann_path: str | Path, out_png: str | Path, n: int = 8, seed: int = 0,
            image_dir: str | Path | None = None) -> Path:
    """Save a grid of n random images with their skeletons and boxes (v=1 joints hollow)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    ann_path = Path(ann_path)
    data = json.loads(ann_path.read_text())
    if image_dir is None:
        split = ann_path.stem.replace("person_keypoints_", "")
        image_dir = ann_path.parent.parent / split
    by_image: dict[int, list] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    imgs = data["images"]
    pick = np.random.default_rng(seed).choice(len(imgs), size=min(n, len(imgs)), replace=False)
    cols = min(4, len(pick))
    rows = int(np.ceil(len(pick) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    left = {i for i, name in enumerate(COCO17.keypoints) if name.startswith("left")}
    right = {i for i, name in enumerate(COCO17.keypoints) if name.startswith("right")}
    for ax in axes.ravel():
        ax.axis("off")
    for ax, k in zip(axes.ravel(), pick):
        info = imgs[k]
        ax.imshow(Image.open(Path(image_dir) / info["file_name"]))
        for a in by_image.get(info["id"], []):
            kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
            x, y, bw, bh = a["bbox"]
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), bw, bh, fill=False, ec="yellow", lw=0.8))
            for i, j in COCO17.limbs:
                if kp[i, 2] > 0 and kp[j, 2] > 0:
                    c = "tab:orange" if (i in left or j in left) else "tab:blue" if (i in right or j in right) else "w"
                    ax.plot(kp[[i, j], 0], kp[[i, j], 1], color=c, lw=1.2)
            for i in range(len(kp)):
                if kp[i, 2] == 0:
                    continue
                c = "tab:orange" if i in left else "tab:blue" if i in right else "w"
                ax.plot(kp[i, 0], kp[i, 1], "o", ms=3.5, mec=c, mfc=c if kp[i, 2] == 2 else "none", mew=1)
        ax.set_title(f"{info['file_name']}  ({len(by_image.get(info['id'], []))} ann)", fontsize=8)
    fig.suptitle("orange = person's left, blue = right; hollow = occluded (v=1)", fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


if __name__ == "__main__":
    # The worker-pool host started by generate(): out_dir n seed HxW split progress workers
    _IN_WORKER_HOST = True
    _out, _n, _seed, _size, _split, _progress, _workers = sys.argv[1:8]
    _h, _w = (int(v) for v in _size.split("x"))
    generate(_out, int(_n), int(_seed), (_h, _w), _split, bool(int(_progress)), int(_workers))
