"""Scene composition of the synthetic dataset: background, people, occluders, camera.

`render_image` draws one image: textured clutter, limb-like distractors, 1-4
people (or a crowd, see `CROWD_SCENE`) placed with limited overlap and ordered
in depth, foreground occluders, then exposure, colour cast and sensor noise.

Labels come from the renderer itself: a keypoint is v=2 when the surface seen at
its pixel is this person's own surface at the joint's depth, v=1 when something
(another person, a foreground object, the person's own torso) is in front, v=0
with x=y=0 outside the image, and v=0 for a face point hidden by the person's
own head (COCO's annotators leave those unlabelled). Keypoints are in the
pixel-centre frame of kpose.transforms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from kpose.data.synthetic.body import (
    D2R, FACE, KP, K, SKIN, build_person, rand_colour, rx, ry, rz, sample_body, sample_pose, unit,
)
from kpose.data.synthetic.canvas import Canvas

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

_OCCLUDER = 255  # canvas label of foreground objects (people are 1..n)
_FAR = -1e9


@dataclass(frozen=True)
class SceneConfig:
    """The knobs of one dataset variant (see DEFAULT_SCENE and CROWD_SCENE).

    people_p: probability of 1, 2, ... people; person_height: (lo, hi) standing
    height / image height, log-uniform; truncation_p, occluder_p, distractors:
    as the module constants; max_overlap, max_iou: how much two people's boxes
    may overlap (intersection over the smaller box, and IoU); cluster_p: chance
    that a person is placed beside one already placed rather than anywhere.
    """

    people_p: tuple[float, ...] = PEOPLE_PER_IMAGE_P
    person_height: tuple[float, float] = PERSON_HEIGHT
    truncation_p: float = TRUNCATION_P
    occluder_p: float = OCCLUDER_P
    distractors: tuple[int, int] = DISTRACTORS
    max_overlap: float = 0.55
    max_iou: float = 0.35
    cluster_p: float = 0.0


DEFAULT_SCENE = SceneConfig()
# Crowds stress multi-person grouping: 3-10 people, mostly standing next to each
# other, allowed to cover up to 3/4 of each other's boxes (heavily covered people
# are kept by the dataset as keypoint-less ignore regions, as COCO does).
CROWD_SCENE = SceneConfig(
    people_p=(0.0, 0.0, 0.04, 0.06, 0.09, 0.12, 0.14, 0.16, 0.18, 0.21),
    person_height=(0.22, 0.6), truncation_p=0.15, occluder_p=0.1,
    max_overlap=0.75, max_iou=0.5, cluster_p=0.7,
)



def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textured clutter: gradient, low-frequency noise, a pattern, random shapes."""
    u = rng.uniform
    f32 = np.float32
    c1 = rand_colour(rng, val=(0.15, 0.95)).astype(f32)[:, None, None]
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
    c3 = rand_colour(rng).astype(f32)[:, None, None]
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


def _distractors(rng: np.random.Generator, canvas: Canvas, n: int, scale: float) -> None:
    """Limb-like shaded sticks (sometimes jointed chains) that are not people."""
    h, w = canvas.h, canvas.w
    for i in range(n):
        col = SKIN[rng.integers(len(SKIN))] if rng.random() < 0.3 else rand_colour(rng)
        p = np.array([rng.uniform(0, w), rng.uniform(0, h), _FAR + i])
        r = rng.uniform(0.015, 0.05) * scale
        for _ in range(rng.integers(1, 4)):
            ang = rng.uniform(0, 2 * np.pi)
            q = p + np.array([np.cos(ang), np.sin(ang), 0]) * rng.uniform(0.1, 0.3) * scale
            canvas.capsule(p, q, r, r * rng.uniform(0.6, 1.1), col, 0)
            p = q


def _occluder(rng: np.random.Generator, canvas: Canvas, box: np.ndarray, depth: float) -> None:
    """A foreground object (post, bar, table, blob) overlapping part of a person's box."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    col = rand_colour(rng, val=(0.2, 0.9))
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
    return rz(tilt * D2R) @ rx(elev * D2R) @ ry(yaw * D2R)



def render_image(rng: np.random.Generator, image_size: tuple[int, int] = (256, 256),
                 scene: SceneConfig = DEFAULT_SCENE) -> tuple[np.ndarray, list[dict]]:
    """One scene: uint8 image [H, W, 3] and one dict per person drawn.

    Each dict has keypoints [17, 3] (x, y, v as in COCO), mask [H, W] bool (the
    person's visible pixels), pose (the archetype's name) and facing_camera.
    Every person drawn is returned, including ones too hidden to annotate;
    `generate` decides which become annotations.
    """
    h, w = image_size
    u = rng.uniform
    light = unit(u(-0.7, 0.7), u(0.0, 0.9), u(0.5, 1.2))
    canvas = Canvas(_background(rng, h, w), light, u(0.3, 0.55))
    _distractors(rng, canvas, int(rng.integers(scene.distractors[0], scene.distractors[1] + 1)), float(h))

    people = _place_people(rng, scene, h, w)
    # Bigger people are mostly nearer; a few break the rule.
    order = np.argsort([p["s"] + rng.normal(0, 0.1 * h) for p in people])
    for rank, idx in enumerate(order):
        people[idx]["zoff"] = 10.0 * h * (rank + 1)
    for pi, p in enumerate(people):
        _draw_person(canvas, p, pi + 1)

    n_occ = rng.integers(1, 3) if (people and rng.random() < scene.occluder_p) else 0
    for i in range(n_occ):
        target = people[rng.integers(len(people))]["box"]
        _occluder(rng, canvas, target, 1e9 + i)
    out = [_person_labels(canvas, p, pi + 1) for pi, p in enumerate(people)]

    # camera: exposure, colour cast, sensor noise
    gain = np.float32(255 * u(0.7, 1.25))
    bias = ((u(-0.08, 0.08) + rng.normal(0, 0.03, 3)) * 255 + 0.5).astype(np.float32)
    img = canvas.rgb * gain + bias[:, None, None]
    # uniform noise with sigma in [0, 0.04]: cheaper to draw than Gaussian, looks the same
    img += (rng.random((3, h, w), np.float32) - np.float32(0.5)) * np.float32(255 * u(0.0, 0.04) * 12 ** 0.5)
    img8 = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0))
    return img8, out


def _place_people(rng: np.random.Generator, scene: SceneConfig, h: int, w: int) -> list[dict]:
    """Sample people and place their boxes; one that finds no free spot in 20 tries is left out."""
    u = rng.uniform
    n = int(rng.choice(len(scene.people_p), p=scene.people_p)) + 1
    people: list[dict] = []
    placed: list[np.ndarray] = []
    for _ in range(n):
        body = sample_body(rng)
        pose = sample_pose(rng)
        rot = _orientation(rng)
        kp, rad, prims = build_person(body, pose, rot)
        lo, hi = kp[:, :2].min(0) - 0.08, kp[:, :2].max(0) + 0.08
        lo_h, hi_h = scene.person_height
        frac = np.exp(u(np.log(lo_h), np.log(hi_h))) if n > 1 else u(max(lo_h, 0.35), hi_h)
        s = frac * h
        bw, bh = (hi - lo) * s
        for _try in range(20):
            trunc = rng.random() < scene.truncation_p
            mx, my = (0.4 * bw, 0.4 * bh) if trunc else (-2.0, -2.0)
            x_hi, y_hi = max(w - bw + mx, -mx + 1e-3), max(h - bh + my, -my + 1e-3)
            # (the draw is skipped when cluster_p is 0 so the default scenes keep their random stream)
            if scene.cluster_p > 0 and placed and rng.random() < scene.cluster_p:
                left, top = _beside(rng, placed[rng.integers(len(placed))], bw, bh)
                left, top = min(max(left, -mx), x_hi), min(max(top, -my), y_hi)
            else:
                left = u(-mx, x_hi)
                top = u(-my, y_hi)
            box = np.array([left, top, left + bw, top + bh])
            if all(_overlap_ok(box, o, scene.max_overlap, scene.max_iou) for o in placed):
                break
        else:
            continue
        placed.append(box)
        # model (x right, y up) -> pixels (x right, y down); box corner <- (lo.x, hi.y)
        origin = np.array([left - lo[0] * s, top + hi[1] * s])
        people.append({"body": body, "pose": pose, "kp": kp, "rad": rad, "prims": prims,
                       "s": s, "origin": origin, "box": box})
    return people


def _beside(rng: np.random.Generator, other: np.ndarray, bw: float, bh: float) -> tuple[float, float]:
    """Top-left corner of a bw x bh box standing next to box `other`, on about the same ground."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    cx = (other[0] + other[2]) / 2 + side * rng.uniform(0.25, 0.9) * (other[2] - other[0] + bw) / 2
    bottom = other[3] + rng.uniform(-0.25, 0.25) * bh
    return cx - bw / 2, bottom - bh


def _draw_person(canvas: Canvas, p: dict, label: int) -> None:
    """Draw a placed person's primitives back to front; sets p["kp_px"] (x, y, depth in pixels)."""
    s, (ox, oy), zoff = p["s"], p["origin"], p["zoff"]

    def px(v: np.ndarray) -> np.ndarray:
        return np.array([ox + s * v[0], oy - s * v[1], zoff + s * v[2]])

    items = []
    for prim in p["prims"]:
        kind = prim[0]
        if kind == "cap":
            _, a, b, ra, rb, col = prim
            items.append(((a[2] + b[2]) / 2, lambda a=a, b=b, ra=ra, rb=rb, col=col:
                          canvas.capsule(px(a), px(b), ra * s, rb * s, col, label)))
        elif kind == "ell":
            _, c, r, radii, col, body = prim
            items.append((c[2], lambda c=c, r=r, radii=radii, col=col, body=body:
                          canvas.ellipsoid(px(c), r, radii * s, col, label, body)))
        else:
            _, p0, r, ln, tw, td, body = prim
            items.append((r[2, 1] * ln / 2, lambda p0=p0, r=r, ln=ln, tw=tw, td=td, body=body:
                          canvas.torso(px(p0), r, ln * s, tw * s, td * s, body, label)))
    for _, draw in sorted(items, key=lambda t: t[0]):
        draw()
    p["kp_px"] = np.stack([px(v) for v in p["kp"]])


def _person_labels(canvas: Canvas, p: dict, label: int) -> dict:
    """Keypoints with visibility, visible mask, pose name and facing, read from the finished canvas."""
    h, w = canvas.h, canvas.w
    # Visibility from the renderer: a joint is seen when its pixel shows this
    # person's surface no deeper than the joint's own front surface.
    kp = p["kp_px"]
    ix, iy = np.floor(kp[:, 0] + 0.5).astype(int), np.floor(kp[:, 1] + 0.5).astype(int)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    cx, cy = np.clip(ix, 0, w - 1), np.clip(iy, 0, h - 1)
    surf = kp[:, 2] + p["rad"] * p["s"]
    tol = np.maximum(1.0, 0.35 * p["rad"] * p["s"])
    own = canvas.lab[cy, cx] == label
    seen = own & (canvas.z[cy, cx] <= surf + tol)
    # A face point hidden by the person's own head or body (a face seen from
    # behind, the far ear in profile) is left unlabelled, as COCO's annotators
    # do: unlike a limb behind the torso, nothing in the image places it.
    # Face points behind another person or an object stay labelled occluded.
    unplaceable = FACE & own & ~seen
    v = np.where(inside & ~unplaceable, np.where(seen, 2, 1), 0)
    kps = np.zeros((K, 3))
    kps[:, :2] = np.where((v > 0)[:, None], kp[:, :2], 0)
    kps[:, 2] = v
    yaw_front = p["kp"][KP["left_shoulder"], 0] > p["kp"][KP["right_shoulder"], 0]
    return {"keypoints": kps, "mask": canvas.lab == label, "pose": p["pose"]["kind"],
            "facing_camera": bool(yaw_front)}


def _overlap_ok(a: np.ndarray, b: np.ndarray, max_overlap: float, max_iou: float) -> bool:
    """Allow partial overlap but not one person (almost) covering another."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return True
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / min(area_a, area_b) < max_overlap and inter / (area_a + area_b - inter) < max_iou
