"""Write the golden vectors that the JS decoders (web_demo/src/decoders.js) are tested against.

Every expected value comes from kpose's Python reference code (HeatmapCodec.decode,
PafCodec.decode and its steps, LimbHeatmapCodec.decode from golden_limb_heatmap.py (real
people from ../shared's coco_mini where it is), flip_back, limb_order, the affine helpers,
PoseModel.predict with a stand-in network for top-down and bottom-up models, fit_matrix,
instance_scores, kpose.tracking.Tracker's traces from golden_tracking.py, top-down video
(kpose.person_boxes.pose_boxes, Tracker.distinct and a PoseModel.track trace) from
golden_person_boxes.py, and the metadata an export carries, for the Android reader). The
Kotlin ports (export/android/) are tested against the same files. Run with the kpose environment from the repository root:

    python web_demo/tools/write_golden.py [--out web_demo/test/golden]

The decoders cast their results to float32 at the end; to compare the float64 JS
ports to float64 rounding, the decode bodies are also run with numpy's float32
replaced by float64 (golden_common.float64_variant: same code, only the final casts differ;
their inputs are float32 values, so upcasting them is exact). The writer asserts
that those results cast to float32 equal the real decoders' outputs bit for bit.

Arrays are stored as {"dtype", "shape", "zlib_b64"} (little-endian, zlib, base64).
"""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace
from collections import Counter
from dataclasses import MISSING, fields, replace
from pathlib import Path

import numpy as np

import kpose.codecs.heatmap as heatmap_module
from kpose.codecs.heatmap import HeatmapCodec, savgol_quadratic_2d
from kpose.codecs.limb_heatmap import LimbHeatmapCodec
from kpose.codecs.paf import PafCodec, flip_back, limb_order
from kpose.deploy.metadata import model_metadata
from kpose.metrics import instance_scores
from kpose.pose_model import PoseModel, model_config
from kpose.models import BOTTOM_UP, TOP_DOWN
from kpose.skeletons import CMU18, COCO17, MPII16, Skeleton
from kpose.transforms import affine_matrix, apply_affine, box_to_center_scale, fit_matrix, invert_affine

# This folder's modules (run as a script: the folder is on sys.path).
from golden_common import (TEMPLATE, arr, coco_person, crossing_people, encoded, flat_windows, float64_variant,  # noqa: E402
                           floats, grouping_case, noise, paf_group64, three_people, write)
from golden_limb_heatmap import ALL_PARAMETERS, coco_val_cases, limb_heatmap_cases, shared_coco_val  # noqa: E402
from golden_person_boxes import person_box_vectors  # noqa: E402
from golden_tracking import tracking_traces  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "test" / "golden"


# ---------------------------------------------------------------------------
# helpers

heatmap_decode64 = float64_variant(HeatmapCodec.decode, heatmap_module)


# ---------------------------------------------------------------------------
# heatmap decode

def heatmap_case(name: str, codec: HeatmapCodec, heatmaps: np.ndarray, note: str) -> dict:
    heatmaps = np.asarray(heatmaps, np.float32)
    h, w, k = heatmaps.shape
    dark = codec.decode(heatmaps)
    dark64 = heatmap_decode64(codec, heatmaps)
    assert np.array_equal(dark64.astype(np.float32), dark), name
    plain = codec.decode(heatmaps, refine="none")
    maps = np.moveaxis(heatmaps, -1, 0)
    idx = maps.reshape(k, -1).argmax(1)
    iy, ix = np.divmod(idx, w)
    return {
        "name": name, "note": note, "codec": codec.to_dict(), "heatmaps": arr(heatmaps),
        "expected": {
            "keypoints": floats(dark64), "keypoints_none": floats(plain),
            "argmax": [[int(y), int(x)] for y, x in zip(iy, ix)],
            "flat_window": flat_windows(maps, iy, ix, codec.radius),
        },
    }


def random_keypoints(rng, n, width, height, margin=0.0):
    xy = rng.uniform([margin - 0.5, margin - 0.5], [width - 0.5 - margin, height - 0.5 - margin], (n, 2))
    return np.concatenate([xy, np.full((n, 1), 2.0)], -1)


def gaussian(h, w, u, v, sigma_u, sigma_v=None, rho=0.0):
    sigma_v = sigma_u if sigma_v is None else sigma_v
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    du, dv = (xx - u) / sigma_u, (yy - v) / sigma_v
    return np.exp(-(du * du - 2 * rho * du * dv + dv * dv) / (2 * (1 - rho * rho)))


def heatmap_cases(rng) -> list[dict]:
    cases = []

    c = HeatmapCodec((128, 96), (32, 24), sigma=2.0)
    kps = random_keypoints(rng, 8, 96, 128, margin=6)
    cases.append(heatmap_case("exact_subpixel", c, c.encode(kps)[0],
                              "encoded Gaussians at random sub-pixel positions (DARK is exact)"))

    # Border: on the outer pixel edges, in corners, just inside, outside and unlabelled.
    kps = np.array([[-0.5, 60.2, 2], [95.5, 10.7, 2], [-0.4, -0.45, 2], [95.3, 127.4, 1],
                    [1.3, 126.9, 2], [47.1, -0.2, 2], [120.0, 40.0, 2], [30.0, 30.0, 0]], np.float64)
    cases.append(heatmap_case("exact_border", c, c.encode(kps)[0],
                              "blobs at the border (shifted window); outside and unlabelled -> empty maps"))

    c = HeatmapCodec((256, 192), (64, 48), sigma=2.0)
    kps = random_keypoints(rng, 5, 192, 256, margin=2)
    hm = c.encode(kps)[0].astype(np.float64)
    hm[..., 0] += 0.6 * gaussian(64, 48, 10.3, 50.7, 2.5)        # a weaker second person
    hm[..., 1] *= 0.35                                              # a low-confidence joint
    hm[..., 2] = 0.8 * gaussian(64, 48, 20.4, 33.2, 3.0, 1.7, 0.5)  # anisotropic, correlated
    hm += rng.normal(0, 0.03, hm.shape)
    cases.append(heatmap_case("noisy_prediction", c, hm,
                              "prediction-like: noise, negative values, second blob, anisotropic blob"))

    c = HeatmapCodec((100, 75), (24, 18), sigma=1.5)
    kps = random_keypoints(rng, 4, 75, 100, margin=3)
    hm = c.encode(kps)[0].astype(np.float64)
    hm[..., 3] += rng.normal(0, 0.05, hm.shape[:2])
    cases.append(heatmap_case("non_integer_stride", c, hm, "strides 75/18 and 100/24, radius 1"))

    c = HeatmapCodec((90, 130), (21, 37), sigma=2.5, dark_radius=3)
    kps = random_keypoints(rng, 3, 130, 90, margin=1)
    cases.append(heatmap_case("explicit_radius", c, c.encode(kps)[0], "dark_radius 3, non-integer strides"))

    c = HeatmapCodec((20, 80), (5, 20), sigma=3.0)
    kps = np.array([[40.3, 9.1, 2], [2.2, 17.6, 2], [77.0, 1.0, 2]])
    cases.append(heatmap_case("rect_window", c, c.encode(kps)[0], "5x20 maps: window 5x7 (ry 2, rx 3)"))

    c = HeatmapCodec((12, 12), (3, 3), sigma=1.0)
    kps = np.array([[5.1, 6.3, 2], [0.2, 11.0, 2]])
    hm = c.encode(kps)[0]
    cases.append(heatmap_case("tiny_3x3", c, hm, "3x3 maps, the smallest DARK accepts"))

    c = HeatmapCodec((56, 56), (56, 56), sigma=8.0)
    hm = np.stack([gaussian(56, 56, 20.37, 31.81, 8.0),
                   0.7 * gaussian(56, 56, 3.2, 50.4, 9.0, 6.5, -0.3) + rng.normal(0, 0.02, (56, 56))], -1)
    cases.append(heatmap_case("stride1_sigma8", c, hm, "official-like stride-1 maps, 17x17 window"))

    c = HeatmapCodec((64, 64), (16, 16), sigma=2.0)
    hm = np.zeros((16, 16, 6), np.float64)
    hm[..., 1] = 0.5
    hm[..., 2] = -0.1
    hm[6:8, 9:11, 3] = 1.0                                           # flat-topped 2x2 plateau
    hm[..., 4] = gaussian(16, 16, 7.5, 4.5, 2.0)                     # centred between four pixels
    hm[11, 3, 5] = 1.0                                               # a single spike
    cases.append(heatmap_case("flat_and_ties", c, hm,
                              "zero, constant and negative maps; plateau; half-pixel centre (tied argmax); spike"))
    return cases


# ---------------------------------------------------------------------------
# PAF decode

def lying_person(rng, cx, cy, length, jitter=0.4):
    """A COCO17 person lying along x (head on the left)."""
    xy = TEMPLATE[:, ::-1] * (length, -length) + (cx, cy) + rng.normal(0, jitter, TEMPLATE.shape)
    return np.concatenate([xy, np.full((17, 1), 2.0)], -1)


def paf_cases(rng) -> tuple[list[dict], Counter]:
    cases, branches = [], Counter()
    c = PafCodec((128, 128), (32, 32), COCO17.limbs, sigma=1.5)
    cases.append(grouping_case("coco17_three_people", c, *encoded(c, three_people(rng)),
                          "three separate people, exact targets", branches))

    c = PafCodec((128, 128), (32, 32), COCO17.limbs, sigma=2.0)
    hm, pf = encoded(c, crossing_people(rng))
    hm += rng.normal(0, 0.02, hm.shape)
    pf += np.round(rng.normal(0, 0.05, pf.shape) * 128) / 128         # coarse noise: compresses
    cases.append(grouping_case("coco17_crossing_noisy", c, hm, pf,
                          "overlapping people with crossing arms, missing and truncated keypoints, noise",
                          branches))

    c = PafCodec((112, 112), (28, 28), MPII16.limbs, sigma=1.5, min_keypoints=2)
    mp = np.zeros((3, 16, 3))
    for i, (cx, cy, s) in enumerate([(30, 56, 70), (60, 50, 60), (90, 60, 66)]):
        # A rough MPII stick figure (ankles .. head top, wrists .. shoulders).
        base = np.array([(-.1, .5), (-.1, .27), (-.1, .05), (.1, .05), (.1, .27), (.1, .5),
                         (0, .05), (0, -.3), (0, -.36), (0, -.5), (-.22, .08), (-.2, -.1),
                         (-.15, -.3), (.15, -.3), (.2, -.1), (.22, .08)])
        mp[i, :, :2] = base * s + (cx, cy) + rng.normal(0, 0.8, base.shape)
        mp[i, :, 2] = 2
    mp[1, [10, 11], 2] = 0                                        # one arm missing
    mp[2, 8:10, 2] = 0                                            # head missing
    hm, pf = encoded(c, mp)
    hm += rng.normal(0, 0.01, hm.shape)
    cases.append(grouping_case("mpii16_three_people", c, hm, pf, "MPII limbs, missing parts, min_keypoints 2",
                          branches))

    # Exact ties: Gaussians at integer positions (DARK returns the integers exactly)
    # and uniform fields, so equal scores are equal to the last bit.
    c = PafCodec((96, 96), (24, 24), [(0, 1), (1, 2)], sigma=1.5, min_keypoints=2)
    hm = np.zeros((24, 24, 4))
    # (14.5, 16) and (18.5, 5.5) are plateaus (centred between pixels): one peak each.
    for k, (u, v) in [(0, (10, 6)), (1, (6, 10)), (1, (14, 10)), (2, (6, 16)), (2, (14.5, 16)),
                      (3, (18.5, 5.5))]:
        hm[..., k] = np.maximum(hm[..., k], gaussian(24, 24, u, v, 1.5))
    pf = np.zeros((24, 24, 4))
    pf[..., 1] = 1.0                                              # both limbs point down
    pf[..., 3] = 1.0
    cases.append(grouping_case("matching_ties", c, hm, pf,
                          "a peak with two equally good partners (lower index wins); plateau peaks; "
                          "a keypoint without limbs", branches))

    # Two identical people one integer offset apart: equal scores, ranked by first peak.
    c = PafCodec((96, 96), (24, 24), [(0, 1), (1, 2), (2, 3), (1, 3)], sigma=1.5)
    kp = np.array([[10, 3], [10, 8], [8, 13], [12, 13]], np.float64)
    people = []
    for off in [(9, 5), (0, 5), (5, 0)]:                          # heatmap px offsets
        uv = kp + off
        xy = (uv + 0.5) * 4 - 0.5                                  # exact inverse of to_heatmap
        people.append(np.concatenate([xy, np.full((4, 1), 2.0)], -1))
    hm, pf = encoded(c, np.stack(people))
    cases.append(grouping_case("rank_ties", c, hm, pf, "identical translated people: equal scores, order by first peak",
                          branches))

    # Fragments that only join late: a chain whose middle keypoint is weak.
    c = PafCodec((80, 80), (20, 20), [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)], sigma=1.0,
                 peak_threshold=0.7, min_keypoints=2)
    people = np.array([[[10, 10, 2], [30, 12, 2], [50, 10, 2], [60, 40, 2], [20, 40, 2]],
                       [[12, 60, 2], [30, 70, 2], [48, 64, 2], [70, 70, 2], [8, 76, 2]]], np.float64)
    hm, pf = encoded(c, people)
    hm[..., 2] *= 0.6                                              # the second person's is dropped
    hm[np.unravel_index(hm[..., 2].argmax(), hm.shape[:2]) + (2,)] = 0.7  # float32(0.7) < 0.7: kept
    hm[..., 4] += rng.normal(0, 0.05, hm.shape[:2])
    pf[..., 2:4] *= -1                                             # limb 1 reversed: no candidates
    cases.append(grouping_case("cycle_threshold", c, hm, pf,
                          "a cycle of limbs, a peak at exactly float32(0.7) threshold, a reversed field",
                          branches))

    # Every refusal in the assembly: square-cycle people whose last limb points elsewhere.
    c = PafCodec((160, 160), (40, 40), [(0, 1), (1, 2), (2, 3), (3, 0)], sigma=1.5)
    X = [(4, 4), (10, 4), (10, 10), (4, 10)]
    Y = [(24, 4), (30, 4), (30, 10), (24, 10)]
    Z = [(4, 24), (10, 24), (10, 30), (4, 30)]
    W2, V3 = (4, 38), (36, 18)
    points = {k: [X[k], Y[k], Z[k]] for k in range(4)}
    points[2].append(W2)
    points[3].append(V3)
    segments = {li: [(P[a], P[b]) for P in (X, Y, Z)] for li, (a, b) in enumerate(c.limbs[:2])}
    segments[3] = [(P[3], P[0]) for P in (X, Y, Z)]
    segments[2] = [(X[2], Y[3]), (Y[2], V3), (W2, Z[3])]
    cases.append(grouping_case("connect_refusals", c, *handmade(c, points, segments),
                          "a merge with clashing slots, a person that already has the a / the b keypoint",
                          branches))

    c = PafCodec((64, 64), (16, 16), COCO17.limbs)
    cases.append(grouping_case("empty", c, np.zeros((16, 16, 17)), np.zeros((16, 16, 38)), "no peaks", branches))

    # The cases above draw from the shared generator (the geometry vectors after them
    # depend on it); the ones below have their own.
    rng = np.random.default_rng(20240612)
    c = PafCodec((192, 256), (48, 64), COCO17.limbs, sigma=1.0)
    crowd = np.stack([coco_person(rng, x, y, hgt, jitter=1.5, missing=rng.choice(17, m, replace=False))
                      for x, y, hgt, m in zip(rng.uniform(40, 216, 9), rng.uniform(70, 120, 9),
                                              rng.uniform(60, 130, 9), rng.integers(0, 5, 9))])
    hm, pf = encoded(c, crowd)
    hm += noise(rng, hm.shape, 0.03)
    pf += noise(rng, pf.shape, 0.05)
    cases.append(grouping_case("coco17_crowd", c, hm, pf, "nine overlapping people of different sizes, missing "
                          "keypoints, noisy maps", branches, 2.0 ** -12))

    # People lying along a short, wide map: thighs, shins and upper arms are longer than
    # half the map height, so the distance prior lowers their scores; with the fields
    # weakened some fall to <= 0 and are rejected (the same maps without the prior keep them).
    c = PafCodec((64, 256), (16, 64), COCO17.limbs, sigma=1.0, min_keypoints=2)
    people = np.stack([lying_person(rng, 60, 24, 170), lying_person(rng, 190, 40, 150)])
    hm, pf = encoded(c, people)
    pf = np.round((pf * 0.45 + noise(rng, pf.shape, 0.03)) * 4096) / 4096
    hm = np.round((hm + noise(rng, hm.shape, 0.02)) * 4096) / 4096
    cases.append(grouping_case("distance_prior", c, hm, pf,
                          "limbs up to 0.9 of the map height: the prior lowers and rejects some", branches))
    with_prior = c.decode(hm.astype(np.float32), pf.astype(np.float32))[0]
    without = replace(c, max_limb_fraction=0.0).decode(hm.astype(np.float32), pf.astype(np.float32))[0]
    assert len(with_prior) != len(without), "the distance prior must change this case's people"

    for smooth, up, sig in [(1.5, 2, 1.0), (0.75, 3, 1.0), (0.0, 4, 1.5)]:
        c = PafCodec((96, 128), (24, 32), COCO17.limbs, sigma=sig, smooth_sigma=smooth, upsample=up)
        people = np.stack([coco_person(rng, x, 48, 70, jitter=1.0) for x in (30, 62, 100)])
        hm, pf = encoded(c, people)
        hm += noise(rng, hm.shape, 0.04)
        pf += noise(rng, pf.shape, 0.05)
        cases.append(grouping_case(f"smooth{smooth}_upsample{up}", c, hm, pf,
                              "noisy maps blurred and upsampled before the peaks", branches, 2.0 ** -12))

    # Keypoints that no labelled limb joins become one-keypoint people at min_keypoints 1.
    c = PafCodec((128, 128), (32, 32), COCO17.limbs, sigma=1.0, min_keypoints=1)
    people = np.stack([coco_person(rng, 40, 64, 90, missing=(1, 2, 3, 4)),     # nose alone
                       coco_person(rng, 96, 64, 80, missing=(7, 8)),           # wrists alone
                       coco_person(rng, 70, 20, 30, missing=range(1, 17))])    # only a nose
    cases.append(grouping_case("single_keypoint_people", c, *encoded(c, people),
                          "min_keypoints 1: peaks no limb joins are people of one keypoint", branches, 2.0 ** -12))
    return cases, branches


def flip_cases(rng) -> list[dict]:
    cases = []
    for skeleton, (h, w) in [(COCO17, (12, 10)), (MPII16, (9, 14))]:
        hm = rng.normal(0, 1, (h, w, skeleton.num_keypoints)).astype(np.float32)
        pf = rng.normal(0, 1, (h, w, 2 * len(skeleton.limbs))).astype(np.float32)
        perm, sign = skeleton.limb_flip()
        back_hm, back_pf = flip_back(hm, pf, skeleton.flip_index(), perm, sign)
        cases.append({"name": skeleton.name, "heatmaps": arr(hm), "pafs": arr(pf),
                      "flip_index": skeleton.flip_index().tolist(), "limb_perm": perm.tolist(),
                      "limb_sign": sign.tolist(), "expected": {"heatmaps": arr(back_hm), "pafs": arr(back_pf)}})
    return cases


def handmade(codec: PafCodec, points: dict, segments: dict):
    """Targets from peak positions {k: [(u, v), ...]} and limb segments {limb: [((u, v), (u, v)), ...]}
    in heatmap pixels (fields drawn by PafCodec.encode, one limb at a time)."""
    stride = np.asarray(codec.heatmap_codec.stride)
    num_kp = 1 + max(max(p) for p in codec.limbs)
    h, w = codec.heatmap_size

    def xy(uv):
        return (*((np.asarray(uv, np.float64) + 0.5) * stride - 0.5), 2.0)

    people = np.zeros((max(len(v) for v in points.values()), num_kp, 3))
    for k, uvs in points.items():
        for i, uv in enumerate(uvs):
            people[i, k] = xy(uv)
    pafs = np.zeros((h, w, 2 * codec.num_limbs))
    for li, segs in segments.items():
        a, b = codec.limbs[li]
        fake = np.zeros((len(segs), num_kp, 3))
        for i, (pa, pb) in enumerate(segs):
            fake[i, a], fake[i, b] = xy(pa), xy(pb)
        pafs[..., 2 * li:2 * li + 2] = codec.encode(fake)[0][..., 2 * li:2 * li + 2]
    return codec.encode_heatmaps(people)[0], pafs


# ---------------------------------------------------------------------------
# affine geometry, the top-down pipeline, instance scores

def affine_cases(rng) -> list[dict]:
    cases = []
    specs = [([10, 20, 50, 100], 0.75, 1.25, (256, 192), 0.0, False),
             ([0, 0, 640, 480], 1.0, 1.0, (224, 224), 0.0, False),
             ([3.5, 7.25, 12.0, 40.0], 1.5, 1.1, (64, 96), 30.0, False),
             ([100, 50, 80, 60], 0.75, 1.25, (256, 192), -45.0, True),
             ([5, 5, 1, 1], 1.0, 2.0, (17, 13), 90.0, True),
             ([-20, -10, 300, 200], 0.8, 1.25, (80, 80), 180.0, False)]
    for _ in range(6):
        box = np.round(rng.uniform([-50, -50, 5, 5], [500, 400, 300, 400]), 2).tolist()
        specs.append((box, float(rng.uniform(0.5, 2.0)), float(rng.uniform(1.0, 1.5)),
                      (int(rng.integers(8, 300)), int(rng.integers(8, 300))),
                      float(rng.uniform(-180, 180)), bool(rng.integers(2))))
    for box, aspect, padding, size, rot, flip in specs:
        center, scale = box_to_center_scale(box, aspect, padding)
        m = affine_matrix(center, scale, size, rot, flip)
        inv = invert_affine(m)
        pts = rng.uniform(-100, 600, (5, 2))
        cases.append({
            "box": box, "aspect_ratio": aspect, "padding": padding, "output_size": list(size),
            "rotation": rot, "flip": flip, "points": floats(pts),
            "expected": {"center": floats(center), "scale": floats(scale), "matrix": floats(m),
                         "inverse": floats(inv), "mapped": floats(apply_affine(pts, m)),
                         "unmapped": floats(apply_affine(pts, inv))},
        })
    return cases


class _StandIn:
    """A 'network' that returns prepared heatmaps: PoseModel.predict's own geometry,
    flip test, decoding and scoring run unchanged around it."""

    def __init__(self, outputs):
        self.outputs = list(outputs)

    def __call__(self, crops, training=False):
        out = self.outputs.pop(0)
        if len(crops) == 2 * out.shape[0] and self.outputs:  # flip test: crops and mirrors, one batch
            out = np.concatenate([out, self.outputs.pop(0)])
        assert out.shape[0] == len(crops)
        return out


def pose_cases(rng) -> list[dict]:
    cases = []
    specs = [("whole_image_mpii", MPII16, (48, 48), (12, 12), 1.5, (300, 200), None, False),
             ("boxes_coco", COCO17, (64, 48), (16, 12), 2.0, (120, 160),
              [[10, 20, 50, 100], [80.5, 5.25, 60, 40]], False),
             ("flip_test_coco", COCO17, (64, 48), (16, 12), 2.0, (90, 70), [[5, 5, 40, 70]], True)]
    for name, skel, size, hsize, sigma, (img_h, img_w), boxes, flip in specs:
        codec = HeatmapCodec(size, hsize, sigma)
        config = model_config("efficientpose", "rt", size, skel, codec)  # a stand-in network runs
        n = 1 if boxes is None else len(boxes)
        outs = []
        for _ in range(2 if flip else 1):
            kps = np.stack([random_keypoints(rng, skel.num_keypoints, size[1], size[0], margin=2)
                            for _ in range(n)])
            hm = codec.batch_encode(kps)[0] * rng.uniform(0.1, 1.0, (n, 1, 1, skel.num_keypoints))
            outs.append((hm + rng.normal(0, 0.01, hm.shape)).astype(np.float32))
        model = PoseModel(_StandIn(outs), config)
        poses = model.predict(np.zeros((img_h, img_w, 3), np.uint8), boxes=boxes, flip_test=flip)
        cases.append({
            "name": name, "codec": codec.to_dict(), "image_size": [img_h, img_w], "boxes": boxes,
            "flip_test": flip, "flip_index": skel.flip_index().tolist(),
            "heatmaps": [arr(o) for o in outs],
            "expected": {"keypoints": [floats(p.keypoints) for p in poses],
                         "scores": [p.score for p in poses], "boxes": [floats(p.box) for p in poses]},
        })
    return cases


def fit_cases() -> list[dict]:
    specs = [((627, 1200), (368, 432)), ((1348, 1313), (368, 432)), ((480, 640), (256, 256)),
             ((100, 30), (64, 48)), ((368, 432), (368, 432)), ((1, 1), (17, 13)), ((720, 1280), (192, 224))]
    return [{"image_size": list(i), "input_size": list(s), "expected": floats(fit_matrix(i, s))} for i, s in specs]


def cmu18_person(rng, cx, cy, height, missing=()):
    """A CMU18 person from the COCO template (the neck between the shoulders)."""
    coco = coco_person(rng, cx, cy, height)
    xy = {name: coco[i] for i, name in enumerate(COCO17.keypoints)}
    xy["neck"] = 0.5 * (xy["left_shoulder"] + xy["right_shoulder"])
    person = np.stack([xy[name] for name in CMU18.keypoints])
    person[list(missing), 2] = 0
    return person


def bottom_up_cases(rng) -> list[dict]:
    """PoseModel.predict of bottom-up models with a stand-in network returning prepared
    PafCodec maps: the whole-image fit, the decode and the map back to the image."""
    cases = []
    specs = [("wide_image_cmu18", CMU18, PafCodec((96, 112), (12, 14), CMU18.limbs, sigma=1.0), (200, 320),
              lambda: [cmu18_person(rng, 30, 50, 60, missing=[3, 4]), cmu18_person(rng, 62, 55, 70),
                       cmu18_person(rng, 90, 45, 40, missing=[9, 10, 12, 13])]),
             ("tall_image_coco17", COCO17, PafCodec((64, 48), (16, 12), COCO17.limbs, sigma=1.5), (300, 130),
              lambda: [coco_person(rng, 16, 30, 36), coco_person(rng, 33, 35, 40, missing=[15, 16])]),
             ("no_people", CMU18, PafCodec((32, 32), (8, 8), CMU18.limbs), (50, 70), lambda: [])]
    for name, skel, codec, (img_h, img_w), people in specs:
        people = people()
        h, w = codec.heatmap_size
        if people:
            heatmaps, pafs = encoded(codec, np.stack(people))
            heatmaps = heatmaps + np.abs(noise(rng, heatmaps.shape, 0.02))
            pafs = pafs + noise(rng, pafs.shape, 0.02)
        else:
            heatmaps, pafs = np.zeros((h, w, skel.num_keypoints)), np.zeros((h, w, 2 * len(skel.limbs)))
        heatmaps, pafs = np.float32(heatmaps), np.float32(pafs)
        config = model_config("openpose_mobilenet_v2", "stand_in", codec.input_size, skel, codec)
        model = PoseModel(lambda x, training=False: (heatmaps[None], pafs[None]), config)
        poses = model.predict(np.zeros((img_h, img_w, 3), np.uint8))
        # What predict computes before its final float32 cast: the float32 decode mapped
        # back in float64 (the JS port keeps float64).
        m = fit_matrix((img_h, img_w), codec.input_size)
        decoded, scores = codec.decode(heatmaps, pafs)
        decoded = np.asarray(decoded, np.float64).reshape(-1, skel.num_keypoints, 3)
        pk, uv, peak_score = codec.peaks(heatmaps)
        _, scores64 = paf_group64(codec, pk, uv, peak_score, pafs, skel.num_keypoints)
        mapped = np.where(decoded[..., 2:] > 0, apply_affine(decoded, invert_affine(m)), 0.0)
        assert len(poses) == len(mapped) == len(people), name
        for pose, kps in zip(poses, mapped):
            assert np.array_equal(kps.astype(np.float32), pose.keypoints), name
        cases.append({
            "name": name, "codec": codec.to_dict(), "image_size": [img_h, img_w],
            "heatmaps": arr(heatmaps), "pafs": arr(pafs),
            "expected": {"keypoints": [floats(k) for k in mapped], "scores": floats(scores64),
                         "boxes": [floats(p.box) for p in poses]},
        })
    return cases


def score_cases(rng) -> list[dict]:
    s = rng.uniform(0, 0.5, (6, 17))
    s[0] = 0.0                                                        # nothing confident -> 0
    s[1, :5] = 0.2                                                    # exactly the threshold: not counted
    s[2, :5] = np.float32(0.2)                                        # float32(0.2) > 0.2: counted
    s = s.astype(np.float32).astype(np.float64)                       # scores are float32 values
    kps = np.concatenate([rng.uniform(0, 100, (6, 17, 2)), s[..., None]], -1)
    return [{"keypoints": floats(kps), "expected": floats(instance_scores(kps))}]


def savgol_cases() -> list[dict]:
    return [{"ry": ry, "rx": rx, "expected": floats(savgol_quadratic_2d(ry, rx))}
            for ry, rx in [(1, 1), (2, 2), (1, 3), (3, 2), (8, 8)]]


# ---------------------------------------------------------------------------
# exported metadata (read by the Android loader, export/android/KposeMetadata.kt)

# A made-up five-keypoint skeleton: the reader must take K, names, limbs and sigmas from the
# metadata, not from COCO.
FISH = Skeleton("fish5", ("head", "left_fin", "right_fin", "body", "tail"), ((1, 2),),
                ((0, 3), (1, 3), (2, 3), (3, 4)), (0.05, 0.08, 0.08, 0.06, 0.1))


def metadata_cases() -> dict:
    """model_metadata of a top-down model with FISH (whose codec decodes heatmap.json's
    noisy_prediction maps, five channels), of a bottom-up CMU-18 PAF model and of a bottom-up
    COCO-17 limb heatmap model (its codec, with two redundant limbs beyond the skeleton's and
    every decode setting off its default, decodes limb_heatmap.json's all_parameters maps);
    and broken ones the reader must reject: a heatmaps output that disagrees with the
    skeleton, and a codec type no runtime knows."""
    specs = [("top_down_fish5", TOP_DOWN, FISH, HeatmapCodec((256, 192), (64, 48), sigma=2.0), 1.1,
              "noisy_prediction"),
             ("bottom_up_cmu18", BOTTOM_UP, CMU18, PafCodec((96, 112), (12, 14), CMU18.limbs, sigma=1.0), 1.0, None),
             ("bottom_up_limb_heatmap_coco17", BOTTOM_UP, COCO17, ALL_PARAMETERS, 1.0, "all_parameters")]
    models = []
    for name, task, skel, codec, padding, decodes in specs:
        model = SimpleNamespace(config={"family": "stand_in", "variant": name}, skeleton=skel, codec=codec,
                                input_size=codec.input_size, task=task, crop_padding=padding)
        meta = dict(model_metadata(model), kpose_version="(any)")  # the vectors outlive version bumps
        expected = {"task": task, "keypoints": list(skel.keypoints), "limbs": [list(p) for p in skel.limbs],
                    "flip_pairs": [list(p) for p in skel.flip_pairs],
                    "sigmas": None if skel.sigmas is None else list(skel.sigmas), "crop_padding": padding,
                    "outputs": [o["name"] for o in meta["outputs"]],
                    "output_channels": [o["shape"][3] for o in meta["outputs"]],
                    "codec_type": meta["codec"]["type"],
                    "codec_limbs": [list(p) for p in codec.limbs] if task == BOTTOM_UP else []}
        if decodes:
            expected["decodes"] = decodes   # a case of heatmap.json (top-down) or limb_heatmap.json
        models.append({"name": name, "metadata": meta, "expected": expected})
    broken = json.loads(json.dumps(models[0]["metadata"]))
    broken["outputs"][0]["shape"][3] += 1
    unknown = json.loads(json.dumps(models[2]["metadata"]))
    unknown["codec"]["type"] = "limb_heatmap_v2"
    return {"models": models, "broken_k": json.dumps(broken), "unknown_codec_type": json.dumps(unknown)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240611)
    write(args.out, "heatmap", {"cases": heatmap_cases(rng)})
    cases, branches = paf_cases(rng)
    defaults = {f.name: f.default for f in fields(PafCodec) if f.default is not MISSING}
    write(args.out, "paf", {"cases": cases, "flip_back": flip_cases(np.random.default_rng(20240613)),
                            "defaults": defaults,
                            "limb_orders": [
        {"limbs": [list(p) for p in limbs], "num_keypoints": k, "expected": limb_order(limbs, k)}
        for limbs, k in [(COCO17.limbs, 17), (MPII16.limbs, 16), ([(0, 1), (2, 3), (4, 5), (3, 4)], 7),
                         ([(5, 6), (0, 1), (1, 2), (2, 0)], 8), ([], 3)]]})
    write(args.out, "geometry", {"affine": affine_cases(rng), "pose": pose_cases(rng),
                                 "instance_scores": score_cases(rng), "savgol": savgol_cases(),
                                 # Own generator: the vectors above stay as they were.
                                 "fit": fit_cases(), "bottom_up": bottom_up_cases(np.random.default_rng(20240615))})
    write(args.out, "tracking", tracking_traces())
    write(args.out, "person_boxes", person_box_vectors())
    write(args.out, "metadata", metadata_cases())
    cases, limb_branches = limb_heatmap_cases(np.random.default_rng(20240617))
    defaults = {f.name: f.default for f in fields(LimbHeatmapCodec) if f.default is not MISSING}
    write(args.out, "limb_heatmap", {"cases": cases, "defaults": defaults})
    coco = shared_coco_val()
    if coco is not None:
        write(args.out, "limb_heatmap_coco", coco_val_cases(coco))
    else:
        print("limb_heatmap_coco.json not written: it needs ../shared/data/coco_mini (or $KPOSE_SHARED)")
    sizes = {p.name: p.stat().st_size for p in sorted(args.out.glob("*.json"))}
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sizes.items()))
    print("PAF assembly cases covered: " + ", ".join(f"{k} {v}" for k, v in sorted(branches.items())))
    print("limb heatmap assembly cases covered: " + ", ".join(f"{k} {v}" for k, v in sorted(limb_branches.items())))

if __name__ == "__main__":
    main()
