"""Who moves where in a synthetic clip, and how their joints move.

An `Actor` is one person for the whole clip: body (proportions, clothes), depth in the scene
(which fixes their size, feet line and who covers whom), a piecewise-linear path of the pelvis
in x, and a gait whose phase advances with the distance walked, so feet do not slide much.
`sample_actors` scripts a clip so that every clip has a crossing pair, and by clip index a
person who leaves and comes back, one who walks in late, or one who stands and waves while
others pass; a fourth person walks by in half of the clips.

Angles in degrees, as body.sample_pose returns them; times in seconds; positions in pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpose.data.synthetic.body import D2R, build_person, rx, ry, sample_body

# Depth 0 is the far end of the walkable floor, 1 the near end: a near person is taller, has
# lower feet and covers the far ones (render sorts by depth).
HEIGHT_FRAC = (0.33, 0.75)       # standing height / frame height at depth 0 and 1
FEET_FRAC = (0.6, 0.93)          # feet line / frame height at depth 0 and 1
OUT_MARGIN = 0.4                 # pelvis this many heights past the border: the person is out of view
# Off-screen time of a person who leaves and comes back: longer than kpose.tracking's default
# max_age_ms (1 s), so a tracker without re-identification must start a new track.
RETURN_GAP_S = (1.15, 1.35)
KINDS = ("returner", "enterer", "stander")  # the third person of clip i is KINDS[i % 3]


@dataclass
class Actor:
    """One person of a clip. keys_t / keys_x: the pelvis path (x in pixels at those times,
    linear in between and constant outside); stands: waves in place instead of walking."""

    track_id: int
    body: dict
    depth: float
    height_px: float
    feet_y: float
    keys_t: np.ndarray
    keys_x: np.ndarray
    yaw: float            # |yaw| when walking (90 = profile), or the yaw when standing
    head_turn: float      # head yaw towards the camera, degrees
    elev: float           # camera elevation, degrees
    stride: float         # gait cycle length, in standing heights
    swing: float          # hip swing amplitude, degrees
    phase0: float
    arm_base: np.ndarray  # [2, 5] the person's resting arm angles (abduction, twist, elbow ...)
    stands: bool = False

    def x(self, t: float) -> float:
        """Pelvis x in pixels at time t."""
        return float(np.interp(t, self.keys_t, self.keys_x))

    def facing(self, t: float) -> float:
        """+1 walking right, -1 walking left, 0 standing."""
        i = int(np.clip(np.searchsorted(self.keys_t, t, side="right") - 1, 0, len(self.keys_t) - 2))
        return float(np.sign(self.keys_x[i + 1] - self.keys_x[i]))

    def walked(self, t: float) -> float:
        """Distance walked since the first key, in pixels (the gait phase follows it)."""
        cum = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(self.keys_x)))])
        return float(np.interp(t, self.keys_t, cum))


def pose_at(actor: Actor, t: float) -> tuple[dict, np.ndarray]:
    """Joint angles (body.sample_pose's layout) and global rotation of `actor` at time t."""
    arm = actor.arm_base.copy()
    leg = np.array([[4.0, 5.0, 0.0, 6.0, 5.0], [4.0, 5.0, 0.0, 6.0, 5.0]])
    torso = np.array([4.0, 0.0, 0.0])
    if actor.stands:
        # Waving with the left forearm; a slow sway keeps the standing person from being frozen.
        w = np.sin(2 * np.pi * 1.4 * t + actor.phase0)
        arm[0, 1], arm[0, 2], arm[0, 3] = 95.0, -45.0, 75.0 + 35.0 * w
        torso[1] = 3.0 * np.sin(2 * np.pi * 0.4 * t + actor.phase0)
        return ({"kind": "wave", "arm": arm, "leg": leg, "torso": torso,
                 "head": np.array([0.0, 5.0, 0.0])},
                rx(actor.elev * D2R) @ ry(actor.yaw * D2R))
    facing = actor.facing(t)
    phase = actor.phase0 + 2 * np.pi * actor.walked(t) / (actor.stride * actor.height_px)
    phases = np.array([phase, phase + np.pi])            # left, right leg half a cycle apart
    leg[:, 0] = 3.0 + actor.swing * np.sin(phases)       # hip flexion swings the leg
    leg[:, 3] = 6.0 + 50.0 * ((1 + np.cos(phases)) / 2) ** 2  # knee bends most in mid-swing
    leg[:, 4] = 5.0 + 8.0 * np.sin(phases)
    arm[:, 0] += -0.7 * actor.swing * np.sin(phases)     # each arm swings with the opposite leg
    arm[:, 3] += 12.0 * (1 + np.sin(phases[::-1])) / 2
    torso[2] = 5.0 * np.sin(phase)
    head = np.array([-facing * actor.head_turn, 5.0, 0.0])
    return ({"kind": "walk", "arm": arm, "leg": leg, "torso": torso, "head": head},
            rx(actor.elev * D2R) @ ry(facing * actor.yaw * D2R))


def place(actor: Actor, t: float, rank: int, frame_h: int) -> dict:
    """The person at time t as scene._draw_person takes it: primitives, 3D keypoints, scale,
    pixel origin of the pelvis (feet on the actor's feet line) and depth offset by `rank`."""
    pose, rot = pose_at(actor, t)
    kp, rad, prims = build_person(actor.body, pose, rot)
    s = actor.height_px
    # model y is up, pixels are down: the lowest ankle sits a foot's height above the feet line
    origin = np.array([actor.x(t), actor.feet_y - 0.045 * s + s * kp[:, 1].min()])
    return {"body": actor.body, "pose": pose, "kp": kp, "rad": rad, "prims": prims, "s": s,
            "origin": origin, "zoff": 10.0 * frame_h * (rank + 1)}


def visible_span(actor: Actor, width: int) -> tuple[float, float]:
    """Pelvis x range (pixels) within which some of the person can be in view."""
    m = OUT_MARGIN * actor.height_px
    return -m, width + m


def _actor(rng: np.random.Generator, track_id: int, depth: float, size: tuple[int, int],
           keys_t, keys_x, stands: bool = False) -> Actor:
    h, _ = size
    u = rng.uniform
    arm_base = np.array([[u(-5, 10), u(6, 16), u(-10, 10), u(10, 25), u(0, 10)] for _ in range(2)])
    return Actor(
        track_id=track_id, body=sample_body(rng), depth=float(depth),
        height_px=h * (HEIGHT_FRAC[0] + (HEIGHT_FRAC[1] - HEIGHT_FRAC[0]) * depth),
        feet_y=h * (FEET_FRAC[0] + (FEET_FRAC[1] - FEET_FRAC[0]) * depth),
        keys_t=np.asarray(keys_t, np.float64), keys_x=np.asarray(keys_x, np.float64),
        yaw=float(rng.normal(0, 20)) if stands else u(50, 90), head_turn=u(0, 30), elev=u(-4, 10),
        stride=u(0.75, 0.9), swing=u(18, 28), phase0=u(0, 2 * np.pi), arm_base=arm_base, stands=stands)


def _speed(rng: np.random.Generator, depth: float, h: int) -> float:
    """Walking speed in pixels per second: 0.55-0.85 standing heights per second."""
    return rng.uniform(0.55, 0.85) * h * (HEIGHT_FRAC[0] + (HEIGHT_FRAC[1] - HEIGHT_FRAC[0]) * depth)


def sample_actors(rng: np.random.Generator, index: int, size: tuple[int, int], duration: float) -> list[Actor]:
    """The people of clip `index` (2-4): a crossing pair, KINDS[index % 3], maybe a passer-by."""
    h, w = size
    u = rng.uniform
    far = u(0.0, 0.4)
    near = far + u(0.3, 0.6)
    t_meet, x_meet = u(0.35, 0.6) * duration, u(0.3, 0.7) * w
    d = 1.0 if rng.random() < 0.5 else -1.0
    ends = np.array([-1.0, duration + 1.0])
    actors = []
    for depth, sign in ((far, d), (near, -d)):  # they meet at (t_meet, x_meet), one behind the other
        v = _speed(rng, depth, h)
        actors.append(_actor(rng, len(actors), depth, size, ends, x_meet + sign * v * (ends - t_meet)))

    kind = KINDS[index % len(KINDS)]
    depth = u(0.15, 0.85)
    v = _speed(rng, depth, h)
    d = 1.0 if rng.random() < 0.5 else -1.0
    m = OUT_MARGIN * h * (HEIGHT_FRAC[0] + (HEIGHT_FRAC[1] - HEIGHT_FRAC[0]) * depth)
    border = w if d > 0 else 0.0
    if kind == "returner":
        # Out of view from t_out to t_out + gap: walks out, turns round off-screen, comes back.
        t_out, gap = u(1.0, 1.25), u(*RETURN_GAP_S)
        x_turn = border + d * (m + v * gap / 2)
        t_turn = t_out + gap / 2
        keys_t = [-1.0, t_turn, duration + 1.0]
        keys_x = [x_turn - d * v * (t_turn + 1.0), x_turn, x_turn - d * v * (duration + 1.0 - t_turn)]
        actors.append(_actor(rng, len(actors), depth, size, keys_t, keys_x))
    elif kind == "enterer":
        # Starts out of view and comes into view at t_in from the side it walks away from.
        t_in = u(0.4, 1.4)
        start = (w - border) - d * m
        actors.append(_actor(rng, len(actors), depth, size, ends, start + d * v * (ends - t_in)))
    else:
        x = u(0.2, 0.8) * w
        actors.append(_actor(rng, len(actors), depth, size, ends, [x, x], stands=True))
    if rng.random() < 0.5:
        depth = u(0.0, 1.0)
        v = _speed(rng, depth, h)
        d = 1.0 if rng.random() < 0.5 else -1.0
        x0 = u(0.0, 1.0) * w
        actors.append(_actor(rng, len(actors), depth, size, ends, x0 + d * v * (ends - u(0, duration))))
    return actors
