"""Body kinematics of the synthetic people: proportions, poses, and the 3D model.

A person is a kinematic skeleton with joint limits (elbows and knees bend one
way), random proportions and clothing colours, posed from a mix of everyday
archetypes (standing, walking, sitting, reaching ...) plus noise.
`build_person` turns (body, pose, orientation) into 3D keypoints and the
primitives (capsules, ellipsoids, a torso tube) that `canvas` ray-casts.

Model units are fractions of the standing height, camera-aligned (x right,
y up, z towards the camera), pelvis at the origin.
"""
from __future__ import annotations

import colorsys

import numpy as np

from kpose.skeletons import COCO17

K = COCO17.num_keypoints
KP = {name: i for i, name in enumerate(COCO17.keypoints)}
# Face points: hidden ones are left unlabelled (see scene.render_image).
FACE = np.isin(np.arange(K), [KP[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")])
D2R = np.pi / 180.0

# --------------------------------------------------------------------------- rotations


def rx(a: float) -> np.ndarray:
    """Rotation about x by `a` radians."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def ry(a: float) -> np.ndarray:
    """Rotation about y by `a` radians."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rz(a: float) -> np.ndarray:
    """Rotation about z by `a` radians."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _limb_frame(flex: float, abd: float, twist: float, side: float) -> np.ndarray:
    """Frame of a limb hanging from a ball joint (rest: pointing down, bending forward).

    flex swings the limb forward (+) or back (-), abd swings it out to the
    person's `side` (+1 left, -1 right); twist spins it about its own axis, so
    the one-way hinge below it (elbow/knee) bends in a rotated plane.
    """
    r = rz(side * abd) @ rx(-flex)
    return r @ ry(side * twist)


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


def sample_pose(rng: np.random.Generator) -> dict:
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


def sample_body(rng: np.random.Generator) -> dict:
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
    skin = SKIN[rng.integers(len(SKIN))] * u(0.9, 1.1, 3)
    b["skin"] = np.clip(skin, 0, 1)
    b["shirt"] = rand_colour(rng, sat=(0.1, 0.9), val=(0.15, 0.95))
    b["trousers"] = rand_colour(rng, sat=(0.0, 0.7), val=(0.1, 0.8))
    b["shoes"] = rand_colour(rng, sat=(0.0, 0.5), val=(0.05, 0.6))
    b["hair"] = HAIR[rng.integers(len(HAIR))] * u(0.85, 1.15)
    b["hat"] = rand_colour(rng) if rng.random() < 0.12 else None
    b["hairline"] = u(0.05, 0.4) if rng.random() > 0.06 else 9.0  # 9.0: bald
    b["long_sleeves"] = rng.random() < 0.5
    b["shorts"] = rng.random() < 0.3
    b["stripes"] = u(25, 70) if rng.random() < 0.3 else 0.0
    return b


SKIN = np.array([[0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.80, 0.58, 0.42],
                  [0.63, 0.42, 0.28], [0.45, 0.29, 0.18], [0.30, 0.19, 0.12]])
HAIR = np.array([[0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.45, 0.30, 0.15],
                  [0.80, 0.66, 0.38], [0.55, 0.22, 0.10], [0.62, 0.62, 0.62]])


def rand_colour(rng: np.random.Generator, sat=(0.0, 1.0), val=(0.1, 1.0)) -> np.ndarray:
    """RGB in 0..1 of a random hue with saturation and value drawn from the given ranges."""
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val)))


def unit(*v: float) -> np.ndarray:
    """The vector v scaled to length 1."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# Face features on the unit sphere of the head (x = person's left, y = up, z = forward).
_NOSE = unit(0, -0.2, 1)
EYES = (unit(0.36, 0.12, 0.92), unit(-0.36, 0.12, 0.92))
_EARS = (unit(1, 0.0, -0.12), unit(-1, 0.0, -0.12))
MOUTH = unit(0, -0.5, 0.87)
_HEAD_RADII = np.array([0.88, 1.1, 1.0])  # ellipsoid: narrower than tall


def build_person(body: dict, pose: dict, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """3D keypoints [17, 3], their front-surface radii [17], and render primitives.

    All in camera-aligned model units (x right, y up, z towards the camera),
    pelvis at the origin; `rot` is the person's global orientation.
    """
    b = body
    tp, ts, tt = pose["torso"] * D2R
    r_pel = rot
    r_chest = rot @ ry(tt) @ rz(ts) @ rx(tp)
    hy, hp, hr = pose["head"] * D2R
    r_head = r_chest @ ry(hy) @ rx(hp) @ rz(hr)
    neck = r_chest @ np.array([0, b["torso"], 0])
    head_r = b["head_r"]
    head_c = neck + r_chest @ np.array([0, b["neck"], 0.01]) + r_head @ np.array([0, 0.9 * head_r, 0.12 * head_r])
    radii = _HEAD_RADII * head_r

    kp = np.zeros((K, 3))
    rad = np.zeros(K)
    prims: list = []
    skin, shirt, trousers = b["skin"], b["shirt"], b["trousers"]

    def on_head(d: np.ndarray, scale: float = 1.0) -> np.ndarray:
        return head_c + r_head @ (radii * d * scale)

    kp[KP["nose"]] = on_head(_NOSE, 1.02)
    rad[KP["nose"]] = 0.15 * head_r
    prims.append(("ell", on_head(_NOSE, 0.97), r_head, np.array([0.12, 0.14, 0.17]) * head_r, skin * 0.93, None))
    for i, side in enumerate(("left", "right")):
        kp[KP[f"{side}_eye"]] = on_head(EYES[i])
        rad[KP[f"{side}_eye"]] = 0.05 * head_r
        kp[KP[f"{side}_ear"]] = on_head(_EARS[i], 0.97)
        rad[KP[f"{side}_ear"]] = 0.4 * head_r  # generous: annotators mark both ears of a frontal face
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
        fl, ab, tw_, el, wr = pose["arm"][i] * D2R
        sh = neck + r_chest @ np.array([sgn * b["shoulder"], -0.03, 0])
        fr = r_chest @ _limb_frame(fl, ab, tw_, sgn)
        elbow = sh + fr @ np.array([0, -b["upper_arm"], 0])
        f_fore = fr @ rx(-el)
        wrist = elbow + f_fore @ np.array([0, -b["forearm"], 0])
        tip = wrist + fr @ rx(-el - wr) @ np.array([0, -b["hand"], 0])
        kp[KP[f"{side}_shoulder"]], kp[KP[f"{side}_elbow"]], kp[KP[f"{side}_wrist"]] = sh, elbow, wrist
        rad[KP[f"{side}_shoulder"]] = b["r_upper_arm"] * 1.1
        rad[KP[f"{side}_elbow"]] = b["r_upper_arm"]
        rad[KP[f"{side}_wrist"]] = b["r_forearm"][1]
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
        fl, ab, tw_, kn, an = pose["leg"][i] * D2R
        hip = r_pel @ np.array([sgn * b["hip"], -0.015, 0])
        fr = r_pel @ _limb_frame(fl, ab, tw_, sgn)
        knee = hip + fr @ np.array([0, -b["thigh"], 0])
        f_shin = fr @ rx(kn)
        ankle = knee + f_shin @ np.array([0, -b["shin"], 0])
        # the foot hangs below the ankle so that, seen from the front, it does not hide it
        f_dir = f_shin @ np.array([0, -np.sin(an), np.cos(an)])
        sole = ankle + f_shin @ np.array([0, -(b["r_shin"][1] + b["r_foot"]) * 0.9, 0])
        heel, toe = sole - 0.025 * f_dir, sole + b["foot"] * f_dir
        kp[KP[f"{side}_hip"]], kp[KP[f"{side}_knee"]], kp[KP[f"{side}_ankle"]] = hip, knee, ankle
        rad[KP[f"{side}_hip"]] = b["r_thigh"][0]
        rad[KP[f"{side}_knee"]] = b["r_thigh"][1]
        rad[KP[f"{side}_ankle"]] = b["r_shin"][1]
        (rt0, rt1), (rs0, rs1) = b["r_thigh"], b["r_shin"]
        prims.append(("cap", hip, knee, rt0, rt1, trousers))
        prims.append(("cap", knee, ankle, rs0, rs1, skin if b["shorts"] else trousers))
        prims.append(("cap", heel, toe, b["r_foot"], b["r_foot"] * 0.9, b["shoes"]))
    return kp, rad, prims
