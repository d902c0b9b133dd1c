"""The steps of PafCodec.decode (NumPy reference): map preprocessing, peaks, limb
candidates, greedy matching and assembly into people. LimbHeatmapCodec reuses them
with another limb score (``samples``: limb_map_samples instead of paf_samples).

Every function is deterministic with ties broken by index, and written so that a
port that does the same operations (float64; float32 where stated) in the same
order (web_demo's decoders.js) reproduces every discrete decision: the
elementwise arithmetic is spelled out instead of left to einsum / BLAS, whose
summation order is not fixed.
"""
from __future__ import annotations

from collections import deque
from functools import lru_cache

import numpy as np

__all__ = ["gaussian_kernel", "smooth_maps", "upsample_maps", "find_peaks", "limb_order",
           "paf_samples", "limb_map_samples", "limb_candidates", "assemble"]


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps, radius ceil(3 sigma) (at least 1), float64."""
    r = max(1, int(np.ceil(3.0 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


def smooth_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of [h, w, C] maps over h and w, edges replicated; float32.

    Replicating the edge (rather than zero padding) keeps a blob that touches the
    border from being pulled inward. Accumulates in float64, tap by tap.
    """
    maps = np.asarray(maps, np.float32)
    if sigma <= 0:
        return maps
    k = gaussian_kernel(sigma)
    r = len(k) // 2
    x = maps.astype(np.float64)
    for axis in (0, 1):
        n = x.shape[axis]
        padded = np.take(x, np.clip(np.arange(-r, n + r), 0, n - 1), axis=axis)
        part = (lambda j: padded[j:j + n]) if axis == 0 else (lambda j: padded[:, j:j + n])
        out = k[0] * part(0)
        tap = np.empty_like(out)
        for j in range(1, 2 * r + 1):
            out += np.multiply(k[j], part(j), out=tap)
        x = out
    return x.astype(np.float32)


def _lerp_weights(n: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows (lo, hi) and weight t of each of n * factor upsampled rows.

    Pixel centres align as everywhere in kpose: fine pixel Y sits at coarse
    (Y + 0.5) / factor - 0.5; beyond the outer centres the edge value is held.
    """
    src = (np.arange(n * factor) + 0.5) / factor - 0.5
    i0 = np.floor(src)
    t = src - i0
    return np.clip(i0, 0, n - 1).astype(np.intp), np.clip(i0 + 1, 0, n - 1).astype(np.intp), t


def upsample_maps(maps: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear x``factor`` upsampling of [h, w, C] maps (pixel-centre aligned).

    float32 throughout (the output is as large as it gets): a * (1 - t) + b * t
    with t rounded to float32, columns first (on the small map), then rows.
    """
    maps = np.asarray(maps, np.float32)
    if factor == 1:
        return maps
    lo, hi, t = _lerp_weights(maps.shape[1], factor)
    t = np.repeat(t.astype(np.float32), maps.shape[2]).reshape(1, -1, maps.shape[2])   # long inner loops
    x = maps[:, lo] * (1 - t) + maps[:, hi] * t
    lo, hi, t = _lerp_weights(x.shape[0], factor)
    t = t.astype(np.float32)[:, None, None]
    out, other = x[lo], x[hi]                                           # whole rows, in place
    out *= 1 - t
    other *= t
    out += other
    return out


# The 8 neighbours, and whether each comes earlier in raster order (must be strictly lower).
_NEIGHBOURS = ((0, -1, True), (0, 1, False), (-1, 0, True), (1, 0, False),
               (-1, -1, True), (-1, 1, True), (1, -1, False), (1, 1, False))


def find_peaks(heatmaps: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3x3 NMS on channels-last [h, w, K]: (k, iy, ix) of the peaks, sorted by (k, iy, ix).

    A peak is >= threshold, >= every neighbour and > every neighbour that comes
    earlier in raster order, so a plateau (e.g. a Gaussian centred exactly between
    two pixels) yields a single peak. NaN is never a peak nor next to one.
    """
    hm = np.ascontiguousarray(heatmaps)
    h, w, k = hm.shape
    flat = hm.reshape(-1)
    # Only pixels above the threshold can be peaks, a few percent of a map: their
    # neighbours are gathered, and each test shrinks the set for the next one.
    mask = hm >= threshold
    if 16 * np.count_nonzero(mask) > hm.size:
        # Many (a crowd on large maps): two dense passes along the rows are cheaper and
        # leave one pixel per row of a blob. The tests below repeat them harmlessly.
        mask[:, 1:] &= hm[:, 1:] > hm[:, :-1]
        mask[:, :-1] &= hm[:, :-1] >= hm[:, 1:]
    idx = np.flatnonzero(mask)
    pix = idx // k
    iy, ix = pix // w, pix % w
    inner = (iy > 0) & (iy < h - 1) & (ix > 0) & (ix < w - 1)
    ii, vi = idx[inner], flat[idx[inner]]
    bi, by, bx = idx[~inner], iy[~inner], ix[~inner]       # the outer ring: bounds checked
    bv = flat[bi]
    for dy, dx, earlier in _NEIGHBOURS:
        nb = flat[ii + (dy * w + dx) * k]
        keep = (vi > nb) if earlier else (vi >= nb)
        ii, vi = ii[keep], vi[keep]
        y, x = by + dy, bx + dx
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        nb = flat[np.where(inside, bi + (dy * w + dx) * k, bi)]
        keep = ~inside | ((bv > nb) if earlier else (bv >= nb))
        bi, by, bx, bv = bi[keep], by[keep], bx[keep], bv[keep]
    idx = np.concatenate([ii, bi])
    pix, kk = idx // k, idx % k
    iy, ix = pix // w, pix % w
    order = np.lexsort((ix, iy, kk))
    return kk[order], iy[order], ix[order]


@lru_cache(maxsize=64)
def _limb_order_cached(limbs: tuple, num_keypoints: int) -> tuple[int, ...]:
    adjacency = [[] for _ in range(num_keypoints)]
    for i, (a, b) in enumerate(limbs):
        adjacency[a].append((b, i))
        adjacency[b].append((a, i))
    order, seen_limb, seen_kp = [], set(), set()
    degree = [len(n) for n in adjacency]
    # Several components are walked one after the other, best-connected first.
    for root in sorted(range(num_keypoints), key=lambda k: (-degree[k], k)):
        if root in seen_kp or not degree[root]:
            continue
        queue = deque([root])
        seen_kp.add(root)
        while queue:
            k = queue.popleft()
            for other, i in adjacency[k]:
                if i not in seen_limb:
                    seen_limb.add(i)
                    order.append(i)
                if other not in seen_kp:
                    seen_kp.add(other)
                    queue.append(other)
    return tuple(order)


def limb_order(limbs, num_keypoints: int) -> list[int]:
    """Limb indices breadth-first from the keypoint with most limbs (lowest index on ties)."""
    return list(_limb_order_cached(tuple((int(a), int(b)) for a, b in limbs), int(num_keypoints)))


def _sample_index(shape, ax, ay, dx, dy, t: np.ndarray) -> np.ndarray:
    """Flat index of channel 0 at the nearest pixel of points a + t (b - a): [len(t), pairs]."""
    h, w, channels = shape
    t = t[:, None]
    # clip(floor(p + 0.5), 0, w - 1), with the floor done by the integer cast (>= 0 after the clip).
    ix = np.clip(ax + t * dx + 0.5, 0, w - 1).astype(np.intp)
    iy = np.clip(ay + t * dy + 0.5, 0, h - 1).astype(np.intp)
    return (iy * w + ix) * channels


def paf_samples(pafs: np.ndarray, limb: np.ndarray, ax, ay, dx, dy, ux, uy, t: np.ndarray) -> np.ndarray:
    """PAF limb score samples: field . unit vector at points a + t (b - a) of each pair: [len(t), pairs] float64.

    pafs [h, w, 2L], limb [pairs]: each pair's limb index (channels 2 limb, 2 limb + 1).
    Samples are the outer axis so every operation runs along the long pair axis.
    """
    at = _sample_index(pafs.shape, ax, ay, dx, dy, t) + 2 * limb
    flat = pafs.reshape(-1)
    return flat[at] * ux + flat[at + 1] * uy


def limb_map_samples(limb_maps: np.ndarray, limb: np.ndarray, ax, ay, dx, dy, ux, uy,
                     t: np.ndarray) -> np.ndarray:
    """Limb heatmap score samples (SimplePose): the limb's map at the same points, float64.

    limb_maps [h, w, L]; same signature as paf_samples (the unit vector is unused:
    a scalar map has no direction).
    """
    at = _sample_index(limb_maps.shape, ax, ay, dx, dy, t) + limb
    return limb_maps.reshape(-1)[at].astype(np.float64)


# Pairs scored in one go: bounds memory (a few arrays of [samples, pairs]) when a
# noisy map yields hundreds of peaks per keypoint; typical maps fit in one batch.
PAIR_BATCH = 1 << 18


def limb_candidates(uv: np.ndarray, kp: np.ndarray, pafs: np.ndarray, limbs: np.ndarray,
                    order: np.ndarray, num_samples: int, paf_threshold: float,
                    min_sample_fraction: float, max_limb_fraction: float,
                    samples=paf_samples) -> tuple[np.ndarray, ...]:
    """Scored candidate connections of all limbs at once, in greedy order.

    uv [N, 2]: peak positions on the PAF grid, kp [N]: their keypoint (sorted);
    pafs [h, w, 2L] (or whatever maps ``samples`` reads); limbs [L, 2]; order:
    limb indices in assembly order. ``samples`` gives a limb's evidence at points
    of the segment (paf_samples: the field dotted with the segment's unit vector;
    limb_map_samples: the scalar limb map). Every (a-peak, b-peak) pair of a limb
    is scored by the mean, over ``num_samples`` points of the segment (nearest
    pixel), of those samples, plus the distance prior
    min(0, max_limb_fraction * h / length - 1) (off when max_limb_fraction <= 0).
    A pair is a candidate when that score is > 0 and at least
    ``min_sample_fraction`` of the samples exceed ``paf_threshold``.
    Returns (position in order, a-peak id, b-peak id, score) of the candidates,
    sorted by position, then descending score, then peak ids.
    """
    empty = (np.zeros(0, np.intp),) * 3 + (np.zeros(0),)
    # The fewest samples above the threshold that pass, in the test's own arithmetic.
    need = next((c for c in range(num_samples + 1) if c / num_samples >= min_sample_fraction), None)
    counts = np.bincount(kp, minlength=int(limbs.max(initial=-1)) + 1)
    npair = counts[limbs[order, 0]] * counts[limbs[order, 1]]
    if not npair.sum() or need is None:
        return empty
    rule = (samples, np.linspace(0.0, 1.0, num_samples), need, paf_threshold, min_sample_fraction, max_limb_fraction)
    ends, parts, start = np.cumsum(npair), [], 0
    while start < len(order):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - npair[start] + PAIR_BATCH, "right")))
        parts.append(_scored_pairs(uv, counts, pafs, limbs, order, start, stop, *rule))
        start = stop
    pos, ga, gb, score = (np.concatenate(c) for c in zip(*parts))
    rank = np.lexsort((gb, ga, -score, pos))
    return pos[rank], ga[rank], gb[rank], score[rank]


def _scored_pairs(uv, counts, pafs, limbs, order, start, stop, samples, t, need, paf_threshold, min_sample_fraction,
                  max_limb_fraction) -> tuple[np.ndarray, ...]:
    """limb_candidates for the limbs at positions start:stop of ``order``, unsorted."""
    first = np.cumsum(counts) - counts
    la, lb = limbs[order[start:stop], 0], limbs[order[start:stop], 1]
    nb = counts[lb]
    npair = counts[la] * nb
    rel = np.repeat(np.arange(stop - start), npair)
    within = np.arange(int(npair.sum())) - np.repeat(np.cumsum(npair) - npair, npair)
    ga = first[la][rel] + within // nb[rel]
    gb = first[lb][rel] + within % nb[rel]
    ax, ay = uv[ga, 0], uv[ga, 1]
    dx, dy = uv[gb, 0] - ax, uv[gb, 1] - ay
    length = np.sqrt(dx * dx + dy * dy)
    denom = np.maximum(length, 1e-9)
    ux, uy = dx / denom, dy / denom
    limb = order[start:stop][rel]
    alive = length > 1e-6
    num_samples = len(t)
    misses = num_samples - need
    if misses + 1 < num_samples:
        # Exact shortcut: a pair failing misses + 1 spread-out samples cannot pass, and
        # most pairs (different people) fail them; only the rest get all samples.
        probe = t[(np.arange(1, misses + 2) * num_samples) // (misses + 2)]
        alive &= (samples(pafs, limb, ax, ay, dx, dy, ux, uy, probe) > paf_threshold).any(0)
    sel = np.flatnonzero(alive)
    dots = samples(pafs, limb[sel], ax[sel], ay[sel], dx[sel], dy[sel], ux[sel], uy[sel], t)
    score = dots.mean(0)                                              # in sample order
    if max_limb_fraction > 0:
        score = score + np.minimum(0.0, max_limb_fraction * pafs.shape[0] / denom[sel] - 1.0)
    frac = (dots > paf_threshold).mean(0)
    ok = (score > 0) & (frac >= min_sample_fraction)
    sel, score = sel[ok], score[ok]
    return start + rel[sel], ga[sel], gb[sel], score


def assemble(pos: np.ndarray, ga: np.ndarray, gb: np.ndarray, score: np.ndarray, kp: np.ndarray,
             num_keypoints: int, log: list | None = None) -> tuple[list[list[int]], list[float]]:
    """Greedy matching per limb, then assembly into people.

    Candidates come in limb order, best first (limb_candidates). Within a limb
    each peak is used at most once. A kept connection a-b extends the person
    owning one of its peaks (unless that person already has another peak of the
    other keypoint), starts a new person when neither is owned, merges two people
    whose keypoint slots do not collide (else it is dropped), or closes a cycle
    inside one person. Returns the people's slots ([K] peak ids, -1 empty) and
    their summed limb scores. ``log`` (for coverage reports) gets each
    connection's case: new, extend, extend_refused, merge, merge_refused, cycle.
    """
    def note(case):
        if log is not None:
            log.append(case)

    owner = [-1] * len(kp)
    kp_of = kp.tolist()
    people: list[list[int] | None] = []
    totals: list[float] = []
    current, used = -1, set()
    for p, pa, pb, s in zip(pos.tolist(), ga.tolist(), gb.tolist(), score.tolist()):
        if p != current:
            current, used = p, set()
        if pa in used or pb in used:
            continue
        used.add(pa)
        used.add(pb)
        a, b = kp_of[pa], kp_of[pb]
        oa, ob = owner[pa], owner[pb]
        if oa < 0 and ob < 0:
            note("new")
            people.append([-1] * num_keypoints)
            totals.append(0.0)
            oa = len(people) - 1
        elif oa >= 0 and ob >= 0:
            if oa == ob:
                note("cycle")
            else:
                slots_a, slots_b = people[oa], people[ob]
                if any(x >= 0 and y >= 0 for x, y in zip(slots_a, slots_b)):
                    note("merge_refused")
                    continue  # both have some keypoint: two different people
                note("merge")
                for k, peak in enumerate(slots_b):
                    if peak >= 0:
                        slots_a[k] = peak
                        owner[peak] = oa
                totals[oa] += totals[ob]
                people[ob] = None
        elif (people[ob][a] if oa < 0 else people[oa][b]) >= 0:
            note("extend_refused")
            continue  # the owner already has another peak of the other keypoint
        else:
            note("extend")
            oa = ob if oa < 0 else oa
        people[oa][a], people[oa][b] = pa, pb
        owner[pa] = owner[pb] = oa
        totals[oa] += s
    kept = [i for i, slots in enumerate(people) if slots is not None]
    return [people[i] for i in kept], [totals[i] for i in kept]
