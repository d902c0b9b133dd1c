"""Rendering of a synthetic clip: one static camera, background and light for every frame.

The background, its distractors and the camera's exposure are drawn once per clip; each frame
draws the people at that time into a fresh canvas over it (nearest last, so the near one covers
the far one), then the clip's foreground object (the same one every frame), then fresh sensor
noise. Labels come from scene's renderer-based visibility, as for the still images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpose.data.synthetic.body import unit
from kpose.data.synthetic.canvas import Canvas
from kpose.data.synthetic.clips.motion import Actor, place, visible_span
# scene's drawing helpers are reused as they are: renaming them would change the still-image
# dataset's generator digest and make every cached copy of it rebuild.
from kpose.data.synthetic.scene import _background, _distractors, _draw_person, _occluder, _person_labels

OCCLUDER_P = 0.4  # chance of a static foreground object (post, table, blob) people pass behind


@dataclass
class ClipScene:
    """What stays fixed over a clip: background [3, H, W] float32 (distractors included),
    lighting, exposure, noise level, and the foreground object (seed and box, or None)."""

    background: np.ndarray
    light: np.ndarray
    ambient: float
    gain: np.float32
    bias: np.ndarray
    noise: float
    occluder: tuple[int, np.ndarray] | None


def sample_scene(rng: np.random.Generator, size: tuple[int, int]) -> ClipScene:
    """Background, light and camera of one clip."""
    h, w = size
    u = rng.uniform
    light = unit(u(-0.7, 0.7), u(0.0, 0.9), u(0.5, 1.2))
    ambient = u(0.3, 0.55)
    canvas = Canvas(_background(rng, h, w), light, ambient)
    _distractors(rng, canvas, int(rng.integers(0, 3)), float(h))
    gain = np.float32(255 * u(0.75, 1.2))
    bias = ((u(-0.06, 0.06) + rng.normal(0, 0.03, 3)) * 255 + 0.5).astype(np.float32)
    occluder = None
    if rng.random() < OCCLUDER_P:
        x = u(0.25, 0.75) * w
        occluder = (int(rng.integers(2 ** 31)), np.array([x - 0.08 * w, 0.35 * h, x + 0.08 * w, 0.95 * h]))
    return ClipScene(canvas.rgb.copy(), light, ambient, gain, bias, u(0.0, 0.03), occluder)


def render_frame(rng: np.random.Generator, scene: ClipScene, actors: list[Actor], t: float
                 ) -> tuple[np.ndarray, dict[int, dict]]:
    """Frame at time t: uint8 image [H, W, 3] and, per track_id of a person at least partly in
    view, scene's labels (keypoints [17, 3] with COCO visibility, visible mask)."""
    _, h, w = scene.background.shape
    canvas = Canvas(scene.background.copy(), scene.light, scene.ambient)
    ranks = np.argsort(np.argsort([a.depth for a in actors]))  # 0 = farthest
    drawn = []
    for actor, rank in sorted(zip(actors, ranks), key=lambda ar: ar[1]):
        lo, hi = visible_span(actor, w)
        if not lo <= actor.x(t) <= hi:
            continue  # out of view: building and drawing it would only cost time
        p = place(actor, t, int(rank), h)
        _draw_person(canvas, p, actor.track_id + 1)
        drawn.append((actor.track_id, p))
    if scene.occluder is not None:
        seed, box = scene.occluder
        _occluder(np.random.default_rng(seed), canvas, box, 1e9)  # same seed: same object every frame
    labels = {tid: _person_labels(canvas, p, tid + 1) for tid, p in drawn}
    img = canvas.rgb * scene.gain + scene.bias[:, None, None]
    img += (rng.random((3, h, w), np.float32) - np.float32(0.5)) * np.float32(255 * scene.noise * 12 ** 0.5)
    return np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8).transpose(1, 2, 0)), labels
