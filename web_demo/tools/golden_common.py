"""What the golden writers share (write_golden.py, golden_limb_heatmap.py): the array
format, the float64 variants of the decoders, and the grouping case that PafCodec and
LimbHeatmapCodec vectors are both written as (one format, so the JS and Kotlin tests read
both the same way). Imported by the scripts of this folder (run as scripts: this folder
is on sys.path).
"""
from __future__ import annotations

import base64
import json
import types
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

import kpose.codecs.paf as paf_module
from kpose.codecs.heatmap import LOG_FLOOR
from kpose.codecs.limb_heatmap import LimbHeatmapCodec
from kpose.codecs.paf import PafCodec, find_peaks, limb_order
from kpose.codecs.paf_grouping import (assemble, limb_candidates, limb_map_samples, paf_samples, smooth_maps,
                                       upsample_maps)


def arr(a: np.ndarray, dtype=np.float32, level: int = 9) -> dict:
    """level: zlib's (9 takes ~0.5 s on a noisy 300 kB map, for 10% less than 6)."""
    a = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<"))
    data = base64.b64encode(zlib.compress(a.tobytes(), level)).decode("ascii")
    return {"dtype": np.dtype(dtype).name, "shape": list(a.shape), "zlib_b64": data}


def floats(a) -> list:
    """float64 values as nested lists (JSON keeps every bit: repr round-trips)."""
    return np.asarray(a, np.float64).tolist()


def write(out: Path, name: str, payload: dict) -> None:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    (out / f"{name}.json").write_text(text + "\n")


class _Float64Numpy:
    """numpy, except that ``float32`` is float64."""

    float32 = np.float64

    def __getattr__(self, name):
        return getattr(np, name)


def float64_variant(func, module):
    """``func`` with its own body's numpy float32 casts made float64 (callees unchanged)."""
    g = dict(module.__dict__, np=_Float64Numpy())
    return types.FunctionType(func.__code__, g, func.__name__, func.__defaults__, func.__closure__)


# PafCodec.group before its final float32 casts; LimbHeatmapCodec.decode is the same
# function on its grouping codec with samples=limb_map_samples.
paf_group64 = float64_variant(PafCodec.group, paf_module)


def flat_windows(maps: np.ndarray, iy, ix, radius: int) -> list[bool]:
    """Whether each peak's DARK window is constant after flooring: the fitted
    quadratic is then flat, and only rounding decides NumPy's step (see decoders.js)."""
    _, h, w = maps.shape
    ry, rx = min(radius, (h - 1) // 2), min(radius, (w - 1) // 2)
    out = []
    for k, (y, x) in enumerate(zip(iy, ix)):
        cy, cx = min(max(y, ry), h - 1 - ry), min(max(x, rx), w - 1 - rx)
        win = maps[k, cy - ry:cy + ry + 1, cx - rx:cx + rx + 1].astype(np.float64)
        floor = LOG_FLOOR * max(float(maps[k, y, x]), 1e-30)
        win = np.maximum(win, floor)
        out.append(bool(np.all(win == win.flat[0])))
    return out


# A standing, front-facing COCO17 person, unit height, centred on the origin.
TEMPLATE = np.array([
    (0.0, -0.42), (0.03, -0.45), (-0.03, -0.45), (0.07, -0.43), (-0.07, -0.43),
    (0.15, -0.30), (-0.15, -0.30), (0.20, -0.10), (-0.20, -0.10), (0.22, 0.08), (-0.22, 0.08),
    (0.10, 0.05), (-0.10, 0.05), (0.11, 0.27), (-0.11, 0.27), (0.12, 0.50), (-0.12, 0.50),
])


def coco_person(rng, cx, cy, height, jitter=0.6, missing=()):
    xy = TEMPLATE * height + (cx, cy) + rng.normal(0, jitter, TEMPLATE.shape)
    v = np.full((17, 1), 2.0)
    v[list(missing)] = 0
    return np.concatenate([xy, v], -1)


def three_people(rng) -> np.ndarray:
    """Three separate COCO-17 people [3, 17, 3] in a 128x128 image."""
    return np.stack([coco_person(rng, 30, 50, 56), coco_person(rng, 70, 62, 70), coco_person(rng, 104, 40, 48)])


def crossing_people(rng) -> np.ndarray:
    """Three COCO-17 people [3, 17, 3] in a 128x128 image: the second one's wrists reach across
    the first, the third is truncated at the right border; each misses some keypoints."""
    a = coco_person(rng, 52, 64, 80, missing=(3, 4, 9))
    b = coco_person(rng, 70, 70, 76, missing=(0, 1, 2))
    b[[9, 10], 0] -= 30
    e = coco_person(rng, 118, 66, 72, missing=(5, 11, 13, 15))
    return np.stack([a, b, e])


def encoded(codec: PafCodec | LimbHeatmapCodec, people: np.ndarray):
    """(keypoint heatmaps, limb maps: PAFs or limb heatmaps) of people [P, K, 3], float64."""
    return codec.encode_heatmaps(people)[0].astype(np.float64), codec.encode(people)[0].astype(np.float64)


def noise(rng, shape, sd):
    """Gaussian noise in steps of 1/64: as realistic for the decoder, and it compresses."""
    return np.round(rng.normal(0, sd, shape) * 64) / 64


def grouping_case(name: str, codec: PafCodec | LimbHeatmapCodec, heatmaps, maps, note: str, branches: Counter,
                  step: float = 0.0, level: int = 9) -> dict:
    """One decode of the PAF grouping, step by step: a PafCodec's (maps: PAFs, stored as
    "pafs") or a LimbHeatmapCodec's (maps: limb heatmaps, stored as "limb_maps"; the same
    grouping, limb score = the limb map at the samples). step > 0: maps rounded to multiples
    of it first (a short mantissa: the JSON compresses); level: the maps' zlib level."""
    heatmaps, maps = (np.round(np.asarray(m) / step) * step if step else m for m in (heatmaps, maps))
    heatmaps = np.asarray(heatmaps, np.float32)
    maps = np.asarray(maps, np.float32)
    limb_maps = isinstance(codec, LimbHeatmapCodec)
    grouping, samples = (codec.grouping, limb_map_samples) if limb_maps else (codec, paf_samples)
    num_kp = heatmaps.shape[-1]
    poses, scores = codec.decode(heatmaps, maps)
    pk, uv, peak_score = grouping.peaks(heatmaps)
    poses64, scores64 = paf_group64(grouping, pk, uv, peak_score, maps, num_kp, samples)
    assert np.array_equal(poses64.astype(np.float32), poses), name
    assert np.array_equal(scores64.astype(np.float32), scores), name
    processed = upsample_maps(smooth_maps(heatmaps, grouping.smooth_sigma), grouping.upsample)
    k, iy, ix = find_peaks(processed, grouping.peak_threshold)
    order = np.array(limb_order(grouping.limbs, num_kp), np.intp)
    cand = limb_candidates(uv, pk, maps, np.array(grouping.limbs, np.intp).reshape(-1, 2), order,
                           grouping.num_samples, grouping.paf_threshold, grouping.min_sample_fraction,
                           grouping.max_limb_fraction, samples)
    log = []
    assemble(*cand, pk, num_kp, log=log)
    branches.update(log)
    hm = np.moveaxis(processed, -1, 0)
    flat = [flat_windows(hm[c:c + 1], [y], [x], grouping.peak_radius)[0] for c, y, x in zip(k, iy, ix)]
    return {
        "name": name, "note": note, "codec": codec.to_dict(),
        "heatmaps": arr(heatmaps, level=level), ("limb_maps" if limb_maps else "pafs"): arr(maps, level=level),
        "expected": {
            # Every 31st value of the blurred / upsampled maps (all of them would be megabytes).
            "processed": None if processed is heatmaps else {
                "shape": list(processed.shape), "every": 31, "values": arr(processed.reshape(-1)[::31])},
            "peaks": [[int(c), int(y), int(x)] for c, y, x in zip(k, iy, ix)],
            "peak_uv": floats(uv.reshape(-1, 2)), "peak_score": floats(peak_score),
            "flat_window": flat, "limb_order": order.tolist(),
            "candidates": {"limb_position": cand[0].tolist(), "a": cand[1].tolist(), "b": cand[2].tolist(),
                           "score": floats(cand[3])},
            "people": [{"keypoints": floats(p), "score": float(s)} for p, s in zip(poses64, scores64)],
        },
    }
