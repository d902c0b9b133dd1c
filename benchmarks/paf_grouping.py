"""PafCodec.decode speed vs number of people: preprocessing, peaks, grouping.

Maps are PafCodec's own targets for random standing COCO-17 people (heights 60-250
input pixels, placed at random, overlaps allowed) plus noise (sd 0.02 on heatmaps and
fields), for a 368x432 input:

- 46x54 maps (stride 8, sigma 1): the network's output, decoded as is;
- 184x216 maps (stride 2, sigma 4): tf-pose-estimation's x4 upsampled size, given
  directly (its graph upsamples and smooths before its C++ ``pafprocess``);
- 46x54 maps decoded with ``upsample=4, smooth_sigma=0.75``: kpose doing that whole
  post-processing itself (tf-pose blurs the x4 maps with sigma 3, i.e. 0.75 here).

Columns (median over --repeats, milliseconds): ``pre`` = blur + upsample, ``peaks`` =
NMS + DARK, ``group`` = line integrals + matching + assembly + output (the part that
tf-pose's compiled ``pafprocess`` does, 0.56-0.81 ms per photo on this kind of
machine), ``total`` = PafCodec.decode end to end.

    python benchmarks/paf_grouping.py [--repeats 50] [--people 1 5 20]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from kpose.codecs.paf import PafCodec
from kpose.codecs.paf_grouping import smooth_maps, upsample_maps
from kpose.skeletons import COCO17

# A standing, front-facing COCO17 person, unit height, centred on the origin.
TEMPLATE = np.array([
    (0.0, -0.42), (0.03, -0.45), (-0.03, -0.45), (0.07, -0.43), (-0.07, -0.43),
    (0.15, -0.30), (-0.15, -0.30), (0.20, -0.10), (-0.20, -0.10), (0.22, 0.08), (-0.22, 0.08),
    (0.10, 0.05), (-0.10, 0.05), (0.11, 0.27), (-0.11, 0.27), (0.12, 0.50), (-0.12, 0.50),
])
INPUT = (368, 432)


def people(rng, n: int) -> np.ndarray:
    """n random people [n, 17, 3] inside a 368x432 input."""
    out = []
    for _ in range(n):
        height = rng.uniform(60, 250)
        cx = rng.uniform(0.25 * height, INPUT[1] - 0.25 * height)
        cy = rng.uniform(0.5 * height, INPUT[0] - 0.5 * height)
        xy = TEMPLATE * height * rng.uniform(0.8, 1.2, 2) + (cx, cy) + rng.normal(0, 2, TEMPLATE.shape)
        out.append(np.concatenate([xy, np.full((17, 1), 2.0)], -1))
    return np.stack(out)


def maps(codec: PafCodec, kps: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    hm, pf = codec.encode_heatmaps(kps)[0], codec.encode(kps)[0]
    hm = hm + rng.normal(0, 0.02, hm.shape)
    pf = pf + rng.normal(0, 0.02, pf.shape)
    return hm.astype(np.float32), pf.astype(np.float32)


def medians_ms(fns: dict, repeats: int) -> dict:
    """Median time of each function, run round-robin so that load on the machine hits all alike."""
    for fn in fns.values():
        fn()  # warm caches (limb order, heatmap codec)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def row(name: str, codec: PafCodec, hm: np.ndarray, pf: np.ndarray, n: int, repeats: int) -> str:
    peaks = codec.peaks(hm)
    found, _ = codec.decode(hm, pf)
    t = medians_ms({
        "pre": lambda: upsample_maps(smooth_maps(hm, codec.smooth_sigma), codec.upsample),
        "peaks": lambda: codec.peaks(hm),
        "group": lambda: codec.group(*peaks, pf, hm.shape[-1]),
        "total": lambda: codec.decode(hm, pf),
    }, repeats)
    pre = t["pre"] if codec.upsample > 1 or codec.smooth_sigma > 0 else 0.0
    return (f"| {name:<34} | {n:>6} | {len(found):>5} | {len(peaks[0]):>5} | {pre:>6.2f} | {t['peaks'] - pre:>6.2f} "
            f"| {t['group']:>6.2f} | {t['total']:>6.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--people", type=int, nargs="+", default=[1, 5, 20])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    limbs = COCO17.limbs
    configs = [
        ("46x54 (stride 8)", PafCodec(INPUT, (46, 54), limbs, sigma=1.0)),
        ("184x216 (x4 size, given)", PafCodec(INPUT, (184, 216), limbs, sigma=4.0, limb_width=4.0)),
        ("46x54, upsample 4 + smooth 0.75", PafCodec(INPUT, (46, 54), limbs, sigma=1.0, upsample=4,
                                                     smooth_sigma=0.75)),
    ]
    print("| maps                               | people | found | peaks |    pre |  peaks |  group |  total |")
    print("|------------------------------------|--------|-------|-------|--------|--------|--------|--------|")
    for name, codec in configs:
        for n in args.people:
            rng = np.random.default_rng(args.seed + n)
            hm, pf = maps(codec, people(rng, n), rng)
            print(row(name, codec, hm, pf, n, args.repeats), flush=True)
    print("ms, median of", args.repeats, "runs; tf-pose-estimation's C++ pafprocess: 0.56-0.81 ms per photo")


if __name__ == "__main__":
    main()
