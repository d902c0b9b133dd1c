"""Part Affinity Fields (OpenPose) codec: multi-person encode and grouping decode.

PAFs live on the heatmap grid of the keypoint heatmaps (see
kpose.codecs.heatmap for the input <-> heatmap coordinate map). Channel layout:
``pafs[..., 2*l]`` and ``pafs[..., 2*l+1]`` are the x and y components of limb
l = limbs[l] = (a, b), pointing from keypoint a to keypoint b.

Encoding: a pixel whose centre lies within ``limb_width`` heatmap pixels of a
person's segment a -> b (both endpoints labelled) gets that limb's unit vector;
where several people's limbs cover a pixel, their vectors are averaged
(OpenPose's rule). Directions are taken in heatmap pixels.

Decoding (the reference for later TF / TFLite / JS ports; every step is
deterministic, ties broken by index):
1. peaks: pixels >= ``peak_threshold`` that are the maximum of their 3x3
   neighbourhood; on a plateau only the first pixel in raster order survives;
2. each peak is refined to sub-pixel with the heatmap codec's DARK step;
3. for each limb, every (a-peak, b-peak) pair is scored by the PAF line
   integral: ``num_samples`` evenly spaced points on the segment (nearest
   pixel, i.e. floor(p + 0.5)), dotted with the pair's unit vector. A pair is a
   candidate when the mean is > 0 and at least ``min_sample_fraction`` of the
   samples exceed ``paf_threshold``;
4. per limb, candidates are matched greedily by descending score (each peak used
   at most once per limb);
5. connections are assembled into people, limbs visited breadth-first along the
   limb graph from its best-connected keypoint: a connection extends the person
   owning one of its peaks, starts a new person, or merges two people whose
   keypoint slots do not collide (otherwise it is dropped);
6. people with fewer than ``min_keypoints`` keypoints are dropped; the rest are
   sorted by score (mean of keypoint and limb scores over all K + L slots).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from kpose.codecs.heatmap import HeatmapCodec, dark_refine

__all__ = ["PafCodec", "find_peaks", "limb_order"]


def find_peaks(heatmaps: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3x3 max-pool NMS on [h, w, K]: (k, iy, ix) of the peaks, sorted by (k, iy, ix).

    A peak must be >= every neighbour and > every neighbour that comes earlier in
    raster order, so a plateau (e.g. a Gaussian centred exactly between two
    pixels) yields a single peak.
    """
    hm = np.moveaxis(np.asarray(heatmaps, np.float32), -1, 0)
    _, h, w = hm.shape
    padded = np.pad(hm, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    keep = hm >= threshold
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            nb = padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            keep &= (hm > nb) if (dy, dx) < (0, 0) else (hm >= nb)
    return np.nonzero(keep)


def limb_order(limbs, num_keypoints: int) -> list[int]:
    """Limb indices breadth-first from the keypoint with most limbs (lowest index on ties)."""
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
    return order


@dataclass(frozen=True)
class PafCodec:
    """Keypoints of several people <-> part affinity fields, with grouping.

    input_size, heatmap_size: (H, W) and (h, w), as for HeatmapCodec.
    limbs: (a, b) keypoint index pairs (e.g. ``COCO17.limbs``).
    limb_width: half-width of a limb's field, in heatmap pixels.
    sigma, dark_radius: of the companion keypoint HeatmapCodec (peak refinement).
    peak_threshold, num_samples, paf_threshold, min_sample_fraction,
    min_keypoints: decode parameters, see the module docstring.
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    limbs: tuple[tuple[int, int], ...]
    limb_width: float = 1.0
    sigma: float = 2.0
    dark_radius: int | None = None
    peak_threshold: float = 0.1
    num_samples: int = 10
    paf_threshold: float = 0.05
    min_sample_fraction: float = 0.8
    min_keypoints: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        object.__setattr__(self, "heatmap_size", tuple(int(s) for s in self.heatmap_size))
        object.__setattr__(self, "limbs", tuple((int(a), int(b)) for a, b in self.limbs))
        if self.limb_width <= 0 or self.num_samples < 2:
            raise ValueError("limb_width must be > 0 and num_samples >= 2")

    @property
    def heatmap_codec(self) -> HeatmapCodec:
        """The keypoint heatmap codec on the same grid (targets and DARK refinement)."""
        return HeatmapCodec(self.input_size, self.heatmap_size, self.sigma, self.dark_radius)

    @property
    def num_limbs(self) -> int:
        return len(self.limbs)

    # -- encode ---------------------------------------------------------------
    def encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keypoints [P, K, 3] (x, y, v) in input pixels -> (pafs [h, w, 2L] float32, weights [L]).

        Weights are all ones: as for bottom-up heatmaps, an empty field is a valid
        "no limb here" label (masking unlabelled people is the pipeline's job).
        """
        keypoints = np.asarray(keypoints, np.float64).reshape(-1, *np.shape(keypoints)[-2:])
        h, w = self.heatmap_size
        num_limbs = self.num_limbs
        if not num_limbs:
            return np.zeros((h, w, 0), np.float32), np.zeros(0, np.float32)
        a_idx, b_idx = np.array(self.limbs).T
        uv = self.heatmap_codec.to_heatmap(keypoints[..., :2])
        start, end = uv[:, a_idx], uv[:, b_idx]                      # [P, L, 2]
        labelled = (keypoints[:, a_idx, 2] > 0) & (keypoints[:, b_idx, 2] > 0)
        delta = end - start
        length = np.linalg.norm(delta, axis=-1)
        drawn = labelled & (length > 1e-6)                           # a point has no direction
        unit = np.where(drawn[..., None], delta / np.where(drawn, length, 1.0)[..., None], 0.0)
        yy, xx = np.mgrid[0:h, 0:w]
        grid = np.stack([xx, yy], -1).astype(np.float64)             # [h, w, 2]
        rel = grid - start[:, :, None, None]                         # [P, L, h, w, 2]
        along = np.clip(np.einsum("plyxc,plc->plyx", rel, unit), 0.0, length[:, :, None, None])
        dist = np.linalg.norm(rel - along[..., None] * unit[:, :, None, None], axis=-1)
        on = drawn[:, :, None, None] & (dist <= self.limb_width)     # [P, L, h, w]
        total = np.einsum("plyx,plc->yxlc", on.astype(np.float64), unit)
        count = on.sum(axis=0).transpose(1, 2, 0)[..., None]         # [h, w, L, 1]
        pafs = total / np.maximum(count, 1)
        return pafs.reshape(h, w, 2 * num_limbs).astype(np.float32), np.ones(num_limbs, np.float32)

    def encode_heatmaps(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The matching keypoint heatmaps (max over people): [P, K, 3] -> ([h, w, K], [K])."""
        return self.heatmap_codec.encode_multi(keypoints)

    # -- decode ---------------------------------------------------------------
    def _limb_scores(self, pa: np.ndarray, pb: np.ndarray, field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """PAF line integral for all pairs of a-peaks [Na, 2] and b-peaks [Nb, 2] (heatmap px).

        field: [h, w, 2] for this limb. Returns (score [Na, Nb], candidate mask).
        """
        h, w = field.shape[:2]
        delta = pb[None] - pa[:, None]                               # [Na, Nb, 2]
        length = np.linalg.norm(delta, axis=-1)
        unit = delta / np.maximum(length, 1e-9)[..., None]
        t = np.linspace(0.0, 1.0, self.num_samples)
        pts = pa[:, None, None] + t[None, None, :, None] * delta[:, :, None]
        ix = np.clip(np.floor(pts[..., 0] + 0.5), 0, w - 1).astype(np.int64)
        iy = np.clip(np.floor(pts[..., 1] + 0.5), 0, h - 1).astype(np.int64)
        dots = np.einsum("absc,abc->abs", field[iy, ix].astype(np.float64), unit)
        score = dots.mean(-1)
        frac = (dots > self.paf_threshold).mean(-1)
        ok = (length > 1e-6) & (score > 0) & (frac >= self.min_sample_fraction)
        return score, ok

    def decode(self, heatmaps: np.ndarray, pafs: np.ndarray, return_scores: bool = False):
        """heatmaps [h, w, K], pafs [h, w, 2L] -> list of poses [K, 3] (x, y, score) in input pixels.

        Missing keypoints are (0, 0, 0). With ``return_scores`` also returns the
        people's scores [N]. People are ordered by descending score.
        """
        heatmaps = np.asarray(heatmaps, np.float32)
        pafs = np.asarray(pafs, np.float32)
        h, w, num_kp = heatmaps.shape
        if (h, w) != self.heatmap_size or pafs.shape != (h, w, 2 * self.num_limbs):
            raise ValueError(f"expected heatmaps {self.heatmap_size + (num_kp,)} and pafs "
                             f"{self.heatmap_size + (2 * self.num_limbs,)}, got {heatmaps.shape}, {pafs.shape}")
        codec = self.heatmap_codec
        pk, piy, pix = find_peaks(heatmaps, self.peak_threshold)
        maps = np.moveaxis(heatmaps, -1, 0)
        if len(pk):
            u, v = dark_refine(maps, piy, pix, codec.radius, rows=pk)
        else:
            u = v = np.zeros(0)
        peak_uv = np.stack([u, v], -1)
        peak_score = maps[pk, piy, pix].astype(np.float64)
        by_kp = [np.flatnonzero(pk == k) for k in range(num_kp)]      # global peak ids per keypoint

        owner = np.full(len(pk), -1)
        people: list[np.ndarray] = []                                  # [K] peak ids, -1 empty
        limb_total: list[float] = []
        fields = pafs.reshape(h, w, self.num_limbs, 2)
        for li in limb_order(self.limbs, num_kp):
            a, b = self.limbs[li]
            ids_a, ids_b = by_kp[a], by_kp[b]
            if not len(ids_a) or not len(ids_b):
                continue
            score, ok = self._limb_scores(peak_uv[ids_a], peak_uv[ids_b], fields[:, :, li])
            ia, ib = np.nonzero(ok)
            order = np.lexsort((ib, ia, -score[ia, ib]))
            used_a, used_b = set(), set()
            for i in order:
                if ia[i] in used_a or ib[i] in used_b:
                    continue
                used_a.add(ia[i])
                used_b.add(ib[i])
                self._connect(people, limb_total, owner, num_kp, a, b, ids_a[ia[i]], ids_b[ib[i]], score[ia[i], ib[i]])

        poses, scores, firsts = [], [], []
        for slots, limb_sum in zip(people, limb_total):
            found = slots >= 0
            if found.sum() < self.min_keypoints:
                continue
            pose = np.zeros((num_kp, 3), np.float64)
            pose[found, :2] = codec.to_input(peak_uv[slots[found]])
            pose[found, 2] = peak_score[slots[found]]
            poses.append(pose.astype(np.float32))
            scores.append((pose[:, 2].sum() + limb_sum) / (num_kp + self.num_limbs))
            firsts.append(slots[found].min())
        rank = np.lexsort((np.array(firsts), -np.array(scores))) if poses else []
        poses = [poses[i] for i in rank]
        scores = np.array([scores[i] for i in rank], np.float32)
        return (poses, scores) if return_scores else poses

    @staticmethod
    def _connect(people, limb_total, owner, num_kp, a, b, pa, pb, score) -> None:
        """Add connection pa (keypoint a) - pb (keypoint b) to the people being assembled."""
        oa, ob = owner[pa], owner[pb]
        if oa < 0 and ob < 0:
            people.append(np.full(num_kp, -1))
            limb_total.append(0.0)
            oa = ob = len(people) - 1
        elif oa >= 0 and ob >= 0 and oa != ob:
            pa_slots, pb_slots = people[oa], people[ob]
            if np.any((pa_slots >= 0) & (pb_slots >= 0)):
                return  # both people already have some keypoint: not the same person
            pa_slots[pb_slots >= 0] = pb_slots[pb_slots >= 0]
            owner[pb_slots[pb_slots >= 0]] = oa
            limb_total[oa] += limb_total[ob]
            people[ob] = np.full_like(pb_slots, -1)  # emptied; dropped as too small
            limb_total[ob] = 0.0
            ob = oa
        elif oa < 0:
            if people[ob][a] >= 0:
                return  # b's person already has an a
            oa = ob
        elif ob < 0:
            if people[oa][b] >= 0:
                return
            ob = oa
        people[oa][a], people[oa][b] = pa, pb
        owner[pa] = owner[pb] = oa
        limb_total[oa] += float(score)

    # -- metadata -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "type": "paf", "input_size": list(self.input_size), "heatmap_size": list(self.heatmap_size),
            "limbs": [list(p) for p in self.limbs], "limb_width": self.limb_width, "sigma": self.sigma,
            "dark_radius": self.dark_radius, "peak_threshold": self.peak_threshold,
            "num_samples": self.num_samples, "paf_threshold": self.paf_threshold,
            "min_sample_fraction": self.min_sample_fraction, "min_keypoints": self.min_keypoints,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PafCodec":
        d = dict(d)
        kind = d.pop("type", "paf")
        if kind != "paf":
            raise ValueError(f"not a PAF codec: type {kind!r}")
        return cls(**d)
