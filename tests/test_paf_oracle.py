"""Oracle round trip on real people: COCO ground truth -> PAF targets -> PafCodec.decode -> OKS AP.

For every coco_mini val2017 image, the non-crowd people with keypoints are encoded
at stride 8 of the native image (heatmap_size = ceil(size / 8), the input padded
at the bottom and right to a multiple of 8, so input pixels are image pixels),
decoded, and scored by pycocotools against the same annotations. The maps are
perfect, so every miss is the decoder's or the skeleton's. Each failure is
classified and explained (printed with -s):

- skeleton: the person's labelled keypoints form parts that no limb of the
  skeleton joins (COCO's skeleton joins the face to the body only through the
  ears, the nose only through the eyes), so no PAF evidence can unite them;
- collision: another person's keypoint of the same type lies within 2 heatmap
  pixels (16 image pixels), so both are one peak after NMS;
- unexplained: anything else, a grouping error; there must be none.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from kpose.codecs.paf import PafCodec
from kpose.metrics import coco_keypoint_ap
from kpose.skeletons import COCO17

STRIDE = 8
COLLISION = 2.0          # heatmap px (Chebyshev): two blobs closer than this share one NMS peak
MATCH = STRIDE / 2       # image px: a decoded keypoint farther than this from its truth is wrong
# OpenPose-style redundant limbs (nose-shoulders): the face stays attached without ears.
REDUNDANT = ((0, 5), (0, 6))


@pytest.fixture(scope="module")
def coco_val(shared):
    ann_file = shared / "data" / "coco_mini" / "annotations" / "person_keypoints_val2017.json"
    data = json.loads(ann_file.read_text())
    people = defaultdict(list)
    for a in data["annotations"]:
        if not a["iscrowd"] and a["num_keypoints"] > 0:
            people[a["image_id"]].append(a)
    return ann_file, data["images"], people


def _components(labelled: np.ndarray, limbs) -> np.ndarray:
    """Part id per keypoint: labelled keypoints joined by limbs with both ends labelled (-1: unlabelled)."""
    part = np.where(labelled, np.arange(len(labelled)), -1)
    for _ in range(len(labelled)):              # label propagation; converges in <= K rounds
        for a, b in limbs:
            if labelled[a] and labelled[b]:
                part[a] = part[b] = min(part[a], part[b])
    return part


def _classify(gt: np.ndarray, area: list, poses: np.ndarray, codec: PafCodec, image_id: int):
    """Failures of one image: [(kind, reason, detail)]."""
    labelled = gt[..., 2] > 0                                            # [G, K]
    found = poses[..., 2] > 0                                            # [N, K]
    dist = np.linalg.norm(poses[:, None, :, :2] - gt[None, :, :, :2], axis=-1)     # [N, G, K]
    dist = np.where(labelled[None], dist, np.inf)
    nearest = dist.argmin(1) if len(gt) else np.zeros(found.shape, int)            # [N, K]
    source = np.where(found & (np.take_along_axis(dist, nearest[:, None], 1)[:, 0] <= MATCH), nearest, -1)
    uv = codec.heatmap_codec.to_heatmap(gt[..., :2])
    gap = np.abs(uv[:, None] - uv[None]).max(-1)                        # [G, G, K]
    gap[np.arange(len(gt)), np.arange(len(gt))] = np.inf
    collide = labelled & (np.where(labelled[None], gap, np.inf).min(1) < COLLISION)  # [G, K]
    out = []
    for g in range(len(gt)):
        where = f"image {image_id} person {g} (area {area[g]:.0f}, {labelled[g].sum()} keypoints)"
        parts = _components(labelled[g], codec.limbs)
        sizes = Counter(parts[parts >= 0].tolist())
        holders = sorted(set(np.nonzero((source == g).any(1))[0].tolist()))
        held = (source == g).any(0)
        if not holders:
            largest = max(sizes.values())
            why = "skeleton" if largest < codec.min_keypoints else (
                "collision" if collide[g][labelled[g]].all() else "unexplained")
            out.append(("missed people", why, f"{where}: largest joined part {largest} keypoint(s), "
                        f"min_keypoints {codec.min_keypoints}"))
            continue
        if len(holders) > 1:
            one_part = all(len(set(parts[source[n] == g].tolist())) == 1 for n in holders)
            why = "skeleton" if one_part and len(sizes) > 1 else (
                "collision" if collide[g].any() else "unexplained")
            pieces = [np.nonzero(source[n] == g)[0].tolist() for n in holders]
            out.append(("split people", why, f"{where}: {len(sizes)} unjoined parts, decoded as {pieces}"))
        for k in np.nonzero(labelled[g] & ~held)[0]:
            small = sizes[parts[k]] < codec.min_keypoints
            why = "skeleton" if small else "collision" if collide[g, k] else "unexplained"
            out.append(("missing keypoints", why, f"{where}: {COCO17.keypoints[k]} not decoded"))
    for n in range(len(poses)):
        sources = sorted(set(source[n][source[n] >= 0].tolist()))
        if len(sources) > 1:
            minor = [(g, k) for g in sources for k in np.nonzero(source[n] == g)[0]]
            why = "collision" if any(collide[g, k] for g, k in minor) else "unexplained"
            out.append(("merged people", why, f"image {image_id}: decoded person {n} holds keypoints of people "
                        f"{sources}"))
        for k in np.nonzero(found[n] & (source[n] < 0))[0]:
            truth = nearest[n, k]
            why = "collision" if len(gt) and collide[truth, k] else "unexplained"
            out.append(("wrong keypoints", why, f"image {image_id}: decoded person {n} {COCO17.keypoints[k]} "
                        f"is {dist[n, truth, k]:.1f} px from the nearest truth"))
    return out


def _oracle(coco_val, codec_cls=PafCodec, **options):
    """AP, failures and people count of codec_cls (PafCodec, or any codec with its encode/decode) on val2017."""
    ann_file, images, people = coco_val
    results, failures, count = [], [], 0
    for image in images:
        anns = people.get(image["id"])
        if not anns:
            continue
        size = (-(-image["height"] // STRIDE), -(-image["width"] // STRIDE))
        codec = codec_cls((size[0] * STRIDE, size[1] * STRIDE), size, **options)
        gt = np.array([a["keypoints"] for a in anns], np.float64).reshape(len(anns), -1, 3)
        poses, scores = codec.decode(codec.encode_heatmaps(gt)[0], codec.encode(gt)[0])
        results += [{"image_id": image["id"], "category_id": 1, "score": float(s),
                     "keypoints": np.round(p.astype(np.float64), 3).ravel().tolist()}
                    for p, s in zip(poses, scores)]
        failures += _classify(gt, [a["area"] for a in anns], poses, codec, image["id"])
        count += len(anns)
    stats = coco_keypoint_ap(ann_file, results, COCO17.sigmas_array(), [i["id"] for i in images])
    return stats, failures, count


@pytest.mark.parametrize("name, options, floor", [
    ("COCO17 limbs, min_keypoints 1", dict(limbs=COCO17.limbs, sigma=1.0, min_keypoints=1), 0.90),
    ("COCO17 limbs, default min_keypoints 3", dict(limbs=COCO17.limbs, sigma=1.0), 0.80),
    ("COCO17 + nose-shoulder limbs, min_keypoints 1",
     dict(limbs=COCO17.limbs + REDUNDANT, sigma=1.0, min_keypoints=1), 0.95),
])
def test_oracle_round_trip(coco_val, name, options, floor):
    stats, failures, count = _oracle(coco_val, **options)
    kinds = Counter(kind for kind, _, _ in failures)
    print(f"\n[{name}] {count} people: AP {stats['AP']:.3f} AP50 {stats['AP50']:.3f} "
          f"AP75 {stats['AP75']:.3f} AR {stats['AR']:.3f}")
    for kind in ("missed people", "split people", "merged people", "wrong keypoints", "missing keypoints"):
        reasons = Counter(why for k, why, _ in failures if k == kind)
        print(f"  {kind}: {kinds[kind]}" + (f" ({', '.join(f'{r} {c}' for r, c in sorted(reasons.items()))})"
                                           if reasons else ""))
    for kind, why, detail in failures:
        print(f"    {kind} [{why}] {detail}")
    assert not [f for f in failures if f[1] == "unexplained"], "grouping errors on perfect maps"
    assert stats["AP"] >= floor, stats
