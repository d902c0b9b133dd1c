"""Golden vectors of LimbHeatmapCodec.decode (SimplePose's limb heatmaps) for the JS
(web_demo/src/limb-heatmap.js) and Kotlin (export/android/KposeLimbHeatmap.kt) ports, in
the PAF cases' format (golden_common.grouping_case). Imported by write_golden.py.

* limb_heatmap.json: template people (exact, crossing, noisy, weakened and broken limbs),
  every decode parameter off its default (redundant limbs, flat-cut ends), blur and
  upsampling, one-keypoint people, ties at the limb threshold, no people;
* limb_heatmap_coco.json: real people, the COCO val2017 annotations of
  ../shared/data/coco_mini (not in the repository): encoded exactly, and as a network
  might give them (each limb at its own strength, some broken, noise), so that the
  limb threshold and the sample fraction reject candidates. Written only where ../shared
  is (CI); elsewhere the committed file stays as it is.

Where a case is meant to exercise the thresholds, the writer asserts that they reject
candidates that score > 0 (and change the people found).
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from kpose.codecs.limb_heatmap import LimbHeatmapCodec
from kpose.codecs.paf import limb_order
from kpose.codecs.paf_grouping import limb_candidates, limb_map_samples
from kpose.skeletons import COCO17

from golden_common import coco_person, crossing_people, encoded, grouping_case, noise, three_people  # noqa: E402  (this folder)

# The nose-shoulder limbs tests/test_paf_oracle.py adds: redundant limbs close cycles.
REDUNDANT = ((0, 5), (0, 6))
# Crowded coco_mini val2017 images: 13, 9 and 4 annotated people.
COCO_IMAGES = (217285, 350679, 151938)
COCO_STRIDE = 8
COCO_ANNOTATIONS = Path("data") / "coco_mini" / "annotations" / "person_keypoints_val2017.json"
STEP = 2.0 ** -12   # maps rounded to multiples of it: a short mantissa, the JSON compresses
LEVEL = 6           # zlib level of the maps: 9 would add ~2 s to every regeneration for 10%
# Every decode setting off its default, redundant limbs (cycles) and flat-cut ends: the
# all_parameters case, and the codec of write_golden.py's limb heatmap model metadata.
ALL_PARAMETERS = LimbHeatmapCodec((96, 128), (24, 32), COCO17.limbs + REDUNDANT, limb_sigma=1.5, round_ends=False,
                                  sigma=1.2, dark_radius=2, peak_threshold=0.15, num_samples=7, limb_threshold=0.2,
                                  min_sample_fraction=0.7, max_limb_fraction=0.8, min_keypoints=4)


def rounded(m: np.ndarray) -> np.ndarray:
    return (np.round(np.asarray(m, np.float64) / STEP) * STEP).astype(np.float32)


def threshold_rejections(codec: LimbHeatmapCodec, heatmaps: np.ndarray, limb_maps: np.ndarray) -> int:
    """Candidate pairs that score > 0 but that limb_threshold / min_sample_fraction reject."""
    g = codec.grouping
    pk, uv, _ = g.peaks(heatmaps)
    limbs = np.array(g.limbs, np.intp).reshape(-1, 2)
    order = np.array(limb_order(g.limbs, heatmaps.shape[-1]), np.intp)

    def count(threshold, fraction):
        return len(limb_candidates(uv, pk, limb_maps, limbs, order, g.num_samples, threshold, fraction,
                                   g.max_limb_fraction, limb_map_samples)[0])
    return count(-np.inf, 0.0) - count(g.paf_threshold, g.min_sample_fraction)


def thresholds_matter(codec: LimbHeatmapCodec, heatmaps, limb_maps, name: str) -> None:
    """The case must reject candidates by the thresholds, and the people must change with them."""
    assert threshold_rejections(codec, heatmaps, limb_maps) > 0, f"{name}: the limb thresholds reject nothing"
    loose = replace(codec, limb_threshold=-1.0, min_sample_fraction=0.0)
    a, b = codec.decode(heatmaps, limb_maps)[0], loose.decode(heatmaps, limb_maps)[0]
    assert a.shape != b.shape or not np.array_equal(a, b), f"{name}: the limb thresholds change no person"


def perturbed(codec: LimbHeatmapCodec, people: np.ndarray, rng, strength=(0.05, 1.0), gap_p=0.25,
              sd=0.03) -> np.ndarray:
    """Limb maps as a network might give them: each person's limbs at their own strength
    (uniform in `strength`), some (probability gap_p) broken in their middle (pixels that
    project onto t in (0.3, 0.7) of the segment zeroed), max over people, then noise."""
    h, w = codec.heatmap_size
    maps = np.zeros((h, w, codec.num_limbs))
    uv = codec.heatmap_codec.to_heatmap(people[..., :2])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for p, person in enumerate(people):
        m = codec.encode(person[None])[0].astype(np.float64) * rng.uniform(*strength, codec.num_limbs)
        for li, (a, b) in enumerate(codec.limbs):
            d = uv[p, b] - uv[p, a]
            if rng.random() < gap_p and d @ d > 1e-12:
                t = ((xx - uv[p, a, 0]) * d[0] + (yy - uv[p, a, 1]) * d[1]) / (d @ d)
                m[..., li] *= ~((t > 0.3) & (t < 0.7))
        maps = np.maximum(maps, m)
    return maps + noise(rng, maps.shape, sd)


def limb_heatmap_cases(rng) -> tuple[list[dict], Counter]:
    cases, branches = [], Counter()

    def add(name, codec, heatmaps, limb_maps, note, check_thresholds=False, exact=False):
        # exact: float32 values kept as they are (rounding would move them off the threshold).
        heatmaps, limb_maps = (np.float32(m) if exact else rounded(m) for m in (heatmaps, limb_maps))
        if check_thresholds:
            thresholds_matter(codec, heatmaps, limb_maps, name)
        cases.append(grouping_case(name, codec, heatmaps, limb_maps, note, branches, level=LEVEL))

    c = LimbHeatmapCodec((128, 128), (32, 32), COCO17.limbs, sigma=1.5)
    add("coco17_three_people", c, *encoded(c, three_people(rng)), "three separate people, exact targets")

    c = LimbHeatmapCodec((128, 128), (32, 32), COCO17.limbs, sigma=2.0)
    hm, lm = encoded(c, crossing_people(rng))
    add("coco17_crossing_noisy", c, hm + noise(rng, hm.shape, 0.02), lm + noise(rng, lm.shape, 0.04),
        "overlapping people with crossing arms, missing and truncated keypoints, noise")

    c = LimbHeatmapCodec((128, 160), (32, 40), COCO17.limbs, sigma=1.5)
    people = np.stack([coco_person(rng, x, 64, 80, jitter=1.0) for x in (30, 62, 94, 130)])
    hm = encoded(c, people)[0] + np.abs(noise(rng, (32, 40, 17), 0.02))
    add("weakened_broken_limbs", c, hm, perturbed(c, people, rng, strength=(0.05, 0.6), gap_p=0.3),
        "limbs at 5-60% strength, some broken in the middle, noise: the thresholds reject candidates",
        check_thresholds=True)

    c = ALL_PARAMETERS
    people = np.stack([coco_person(rng, x, 50, 64, missing=m) for x, m in ((28, ()), (64, (9, 10)), (100, (0,)))])
    hm = encoded(c, people)[0] + np.abs(noise(rng, (24, 32, 17), 0.03))
    add("all_parameters", c, hm, perturbed(c, people, rng, strength=(0.3, 1.0), gap_p=0.15, sd=0.05),
        "redundant limbs, flat-cut ends, 7 samples, limb threshold 0.2, sample fraction 0.7, prior 0.8, "
        "min_keypoints 4, dark_radius 2", check_thresholds=True)

    c = LimbHeatmapCodec((96, 128), (24, 32), COCO17.limbs, sigma=1.0, smooth_sigma=1.0, upsample=2)
    people = np.stack([coco_person(rng, x, 48, 70, jitter=1.0) for x in (30, 62, 100)])
    hm, lm = encoded(c, people)
    add("smooth1.0_upsample2", c, hm + noise(rng, hm.shape, 0.04), lm + noise(rng, lm.shape, 0.05),
        "noisy maps blurred and upsampled before the peaks")

    c = LimbHeatmapCodec((128, 128), (32, 32), COCO17.limbs, sigma=1.0, min_keypoints=1)
    people = np.stack([coco_person(rng, 40, 64, 90, missing=(1, 2, 3, 4)),     # nose alone
                       coco_person(rng, 96, 64, 80, missing=(7, 8)),           # wrists alone
                       coco_person(rng, 70, 20, 30, missing=range(1, 17))])    # only a nose
    add("single_keypoint_people", c, *encoded(c, people), "min_keypoints 1: peaks no limb joins are people")

    # Samples exactly at the threshold do not count (strictly above); equal scores: lower ids win.
    c = LimbHeatmapCodec((64, 64), (16, 16), [(0, 1), (1, 2)], sigma=1.5, limb_threshold=0.25, min_keypoints=2)
    hm = np.zeros((16, 16, 3))
    for k, (u, v) in [(0, (4, 3)), (1, (4, 8)), (1, (11, 8)), (2, (7, 13))]:
        yy, xx = np.mgrid[0:16, 0:16]
        hm[..., k] = np.maximum(hm[..., k], np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.5 ** 2)))
    lm = np.zeros((16, 16, 2))
    lm[..., 0] = 0.25                                             # == threshold: limb 0 rejected
    lm[..., 1] = float(np.nextafter(np.float32(0.25), np.float32(1)))   # just above: both pairs tie
    add("threshold_ties", c, hm, lm, "samples equal to the limb threshold fail; two equally good pairs "
        "(the lower peak id wins)", check_thresholds=True, exact=True)

    c = LimbHeatmapCodec((64, 64), (16, 16), COCO17.limbs)
    add("empty", c, np.zeros((16, 16, 17)), np.zeros((16, 16, 19)), "no peaks")
    return cases, branches


# ---------------------------------------------------------------------------
# real people: coco_mini val2017 (../shared)

def shared_coco_val() -> Path | None:
    """The annotations file in $KPOSE_SHARED (else ../shared beside the repository), or None."""
    repo = Path(__file__).resolve().parents[2]
    path = Path(os.environ.get("KPOSE_SHARED", repo.parent / "shared")) / COCO_ANNOTATIONS
    return path if path.is_file() else None


def coco_val_cases(annotations: Path) -> dict:
    data = json.loads(annotations.read_text())
    images = {i["id"]: i for i in data["images"]}
    people = defaultdict(list)
    for a in data["annotations"]:
        if not a["iscrowd"] and a["num_keypoints"] > 0:
            people[a["image_id"]].append(a["keypoints"])
    rng = np.random.default_rng(20240618)
    cases, branches = [], Counter()
    for image_id, (name, extra, how) in zip(COCO_IMAGES, [
            ("exact", {}, "exact"),
            ("perturbed", {}, "perturbed"),
            ("redundant_upsample", dict(limbs=COCO17.limbs + REDUNDANT, round_ends=False, smooth_sigma=0.5,
                                        upsample=2), "perturbed")]):
        image = images[image_id]
        gt = np.array(people[image_id], np.float64).reshape(-1, 17, 3)
        grid = (-(-image["height"] // COCO_STRIDE), -(-image["width"] // COCO_STRIDE))
        c = LimbHeatmapCodec((grid[0] * COCO_STRIDE, grid[1] * COCO_STRIDE), grid,
                             **{"limbs": COCO17.limbs, "sigma": 1.0, **extra})
        hm, lm = encoded(c, gt)
        if how == "perturbed":
            hm = hm * rng.uniform(0.5, 1.0, hm.shape[-1]) + np.abs(noise(rng, hm.shape, 0.02))
            lm = perturbed(c, gt, rng)
        hm, lm = rounded(hm), rounded(lm)
        label = f"coco_val_{image_id}_{name}"
        if how == "perturbed":
            thresholds_matter(c, hm, lm, label)
        cases.append(grouping_case(label, c, hm, lm, f"{image['file_name']}: {len(gt)} annotated people, "
                                   f"{how} maps at stride {COCO_STRIDE}", branches, level=LEVEL))
    return {"source": f"../shared/{COCO_ANNOTATIONS.as_posix()}", "images": list(COCO_IMAGES), "cases": cases,
            "branches": dict(sorted(branches.items()))}
