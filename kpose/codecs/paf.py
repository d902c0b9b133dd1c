"""Part Affinity Fields (OpenPose) codec: multi-person encode, grouping decode, flip test.

PAFs live on the heatmap grid of the keypoint heatmaps (see
kpose.codecs.heatmap for the input <-> heatmap coordinate map). Channel layout:
``pafs[..., 2*l]`` and ``pafs[..., 2*l+1]`` are the x and y components of limb
l = limbs[l] = (a, b), pointing from keypoint a to keypoint b.

Encoding: a pixel whose centre lies within ``limb_width`` heatmap pixels of a
person's segment a -> b (both endpoints labelled) gets that limb's unit vector;
where several people's limbs cover a pixel, their vectors are averaged
(OpenPose's rule). Directions are taken in heatmap pixels.

Decoding (the reference for the TF / TFLite / JS ports; deterministic, ties
broken by index; the steps are in kpose.codecs.paf_grouping):
1. heatmaps are optionally blurred (``smooth_sigma``, heatmap pixels, edges
   replicated) and then upsampled ``upsample`` times (bilinear, pixel centres
   aligned) -- both off by default;
2. peaks: 3x3 NMS at >= ``peak_threshold`` (a plateau keeps its first pixel in
   raster order), refined to sub-pixel by the heatmap codec's DARK step (window
   radius scaled by ``upsample``); the score is the (processed) map's value;
3. for each limb, every (a-peak, b-peak) pair is scored on the network's PAF
   grid by the line integral: ``num_samples`` evenly spaced points (nearest
   pixel, floor(p + 0.5)) dotted with the pair's unit vector, averaged, plus
   OpenPose's distance prior min(0, max_limb_fraction * h / length - 1), which
   penalises limbs longer than that fraction of the map height h (0: off). A
   pair is a candidate when that score is > 0 and at least
   ``min_sample_fraction`` of the samples exceed ``paf_threshold``;
4. per limb, candidates are matched greedily by descending score (each peak used
   at most once per limb), limbs taken breadth-first along the skeleton tree
   from its best-connected keypoint (limb_order);
5. each match extends the person owning one of its peaks, starts a person, or
   merges two partial people whose keypoint slots do not collide (else it is
   dropped);
6. people with fewer than ``min_keypoints`` keypoints are dropped (with 1, every
   peak no limb joined is a person of its own: a keypoint whose skeleton
   neighbours are all unlabelled or unseen); person score = (sum of keypoint
   scores + sum of limb scores) / (K + L), so missing parts lower it; people
   are sorted by descending score, then by their first peak.

Flip test: ``flip_back`` maps the outputs for the mirrored image back to the
original frame; average them with the original outputs before decoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from kpose.codecs.heatmap import HeatmapCodec, dark_refine, default_dark_radius
from kpose.codecs.paf_grouping import (assemble, find_peaks, limb_candidates, limb_order,
                                       paf_samples, smooth_maps, upsample_maps)

__all__ = ["PafCodec", "find_peaks", "limb_order", "flip_back"]


def flip_back(heatmaps_mirrored: np.ndarray, pafs_mirrored: np.ndarray, flip_index, limb_perm,
              limb_sign) -> tuple[np.ndarray, np.ndarray]:
    """Outputs for the horizontally mirrored image -> the original image's frame.

    heatmaps [..., h, w, K] and pafs [..., h, w, 2L] of the mirrored image;
    flip_index from Skeleton.flip_index(), (limb_perm, limb_sign) from
    Skeleton.limb_flip(). Heatmaps: width reversed, channel k taken from
    flip_index[k]. PAFs: width reversed, limb l taken from limb_perm[l], its x
    component negated (the image is mirrored) and the vector times limb_sign[l]
    (the mirror limb is stored in the other direction).
    """
    hm = np.asarray(heatmaps_mirrored)
    pf = np.asarray(pafs_mirrored)
    perm, sign = np.asarray(limb_perm), np.asarray(limb_sign, np.float32)
    if pf.shape[-1] != 2 * len(perm) or hm.shape[-1] != len(flip_index):
        raise ValueError(f"flip_back: pafs have {pf.shape[-1]} channels and heatmaps {hm.shape[-1]}, but "
                         f"limb_perm has {len(perm)} limbs and flip_index {len(flip_index)} keypoints; "
                         f"pass the model's own Skeleton.flip_index() and Skeleton.limb_flip()")
    hm = hm[..., ::-1, :][..., np.asarray(flip_index)]
    limbs = pf[..., ::-1, :].reshape(*pf.shape[:-1], len(perm), 2)[..., perm, :]
    pf = (limbs * (sign[:, None] * np.array([-1, 1], np.float32))).reshape(pf.shape)   # exact: +-1
    return np.ascontiguousarray(hm), pf


@dataclass(frozen=True)
class PafCodec:
    """Keypoints of several people <-> part affinity fields, with grouping.

    input_size, heatmap_size: (H, W) and (h, w), as for HeatmapCodec.
    limbs: (a, b) keypoint index pairs (e.g. ``COCO17.limbs``).
    limb_width: half-width of a limb's field, in heatmap pixels.
    sigma, dark_radius: of the companion keypoint HeatmapCodec (peak refinement).
    peak_threshold, smooth_sigma, upsample, num_samples, paf_threshold,
    min_sample_fraction, max_limb_fraction, min_keypoints: decode parameters,
    see the module docstring.
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    limbs: tuple[tuple[int, int], ...]
    limb_width: float = 1.0
    sigma: float = 2.0
    dark_radius: int | None = None
    peak_threshold: float = 0.1
    smooth_sigma: float = 0.0
    upsample: int = 1
    num_samples: int = 10
    paf_threshold: float = 0.05
    min_sample_fraction: float = 0.8
    max_limb_fraction: float = 0.5
    min_keypoints: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        object.__setattr__(self, "heatmap_size", tuple(int(s) for s in self.heatmap_size))
        object.__setattr__(self, "limbs", tuple((int(a), int(b)) for a, b in self.limbs))
        if self.limb_width <= 0:
            raise ValueError(f"limb_width must be > 0 (heatmap pixels), got {self.limb_width}")
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 (points on a limb), got {self.num_samples}")
        if int(self.upsample) != self.upsample or self.upsample < 1:
            raise ValueError(f"upsample must be an integer >= 1 (1: off), got {self.upsample}")
        object.__setattr__(self, "upsample", int(self.upsample))
        if self.smooth_sigma < 0:
            raise ValueError(f"smooth_sigma must be >= 0 (0: off), got {self.smooth_sigma}")
        if self.min_keypoints < 1:
            raise ValueError(f"min_keypoints must be >= 1, got {self.min_keypoints}")
        if any(a == b or min(a, b) < 0 for a, b in self.limbs):
            raise ValueError(f"limbs must join two different keypoints (non-negative indices), got {self.limbs}")

    @cached_property
    def heatmap_codec(self) -> HeatmapCodec:
        """The keypoint heatmap codec on the same grid (targets and DARK refinement)."""
        return HeatmapCodec(self.input_size, self.heatmap_size, self.sigma, self.dark_radius)

    @property
    def num_limbs(self) -> int:
        return len(self.limbs)

    @property
    def peak_radius(self) -> int:
        """DARK window radius on the processed (blurred, upsampled) maps, in their pixels."""
        # The blurred blob's sigma; sqrt of the sum (not hypot) so that ports round alike.
        base = self.dark_radius if self.dark_radius is not None else default_dark_radius(
            float(np.sqrt(self.sigma * self.sigma + self.smooth_sigma * self.smooth_sigma)))
        return base * self.upsample

    # -- encode ---------------------------------------------------------------
    def flip_back(self, heatmaps_mirrored: np.ndarray, pafs_mirrored: np.ndarray, flip_index, limb_perm,
                  limb_sign) -> tuple[np.ndarray, np.ndarray]:
        """This codec's outputs for the mirrored image -> the original's frame (module `flip_back`)."""
        return flip_back(heatmaps_mirrored, pafs_mirrored, flip_index, limb_perm, limb_sign)

    def encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keypoints [P, K, 3] (x, y, v) in input pixels -> (pafs [h, w, 2L] float32, weights [L]).

        Weights are all ones: as for bottom-up heatmaps, an empty field is a valid
        "no limb here" label (masking unlabelled people is the pipeline's job).
        """
        keypoints = np.asarray(keypoints, np.float64).reshape(-1, *np.shape(keypoints)[-2:])
        h, w = self.heatmap_size
        num_limbs = self.num_limbs
        total = np.zeros((h, w, num_limbs, 2))
        count = np.zeros((h, w, num_limbs, 1))
        if not num_limbs:
            return np.zeros((h, w, 0), np.float32), np.zeros(0, np.float32)
        a_idx, b_idx = np.array(self.limbs).T
        uv = self.heatmap_codec.to_heatmap(keypoints[..., :2])
        yy, xx = np.mgrid[0:h, 0:w]
        grid = np.stack([xx, yy], -1).astype(np.float64)               # [h, w, 2]
        # One person at a time: memory stays [L, h, w] however many people there are.
        for person, vis in zip(uv, keypoints[..., 2]):
            start, end = person[a_idx], person[b_idx]                   # [L, 2]
            delta = end - start
            length = np.linalg.norm(delta, axis=-1)
            drawn = (vis[a_idx] > 0) & (vis[b_idx] > 0) & (length > 1e-6)  # a point has no direction
            if not drawn.any():
                continue
            unit = np.where(drawn[:, None], delta / np.where(drawn, length, 1.0)[:, None], 0.0)
            rel = grid[:, :, None] - start                              # [h, w, L, 2]
            along = np.clip((rel * unit).sum(-1), 0.0, length)
            dist = np.linalg.norm(rel - along[..., None] * unit, axis=-1)
            on = (drawn & (dist <= self.limb_width))[..., None]         # [h, w, L, 1]
            total += on * unit
            count += on
        pafs = total / np.maximum(count, 1)
        return pafs.reshape(h, w, 2 * num_limbs).astype(np.float32), np.ones(num_limbs, np.float32)

    def encode_heatmaps(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The matching keypoint heatmaps (max over people): [P, K, 3] -> ([h, w, K], [K])."""
        return self.heatmap_codec.encode_multi(keypoints)

    # -- decode ---------------------------------------------------------------
    def peaks(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps 1-2: heatmaps [h, w, K] -> (keypoint [N], (u, v) [N, 2] on the heatmap grid, score [N])."""
        maps = smooth_maps(heatmaps, self.smooth_sigma)
        maps = upsample_maps(maps, self.upsample)
        pk, piy, pix = find_peaks(maps, self.peak_threshold)
        score = maps[piy, pix, pk].astype(np.float64)
        if not len(pk):
            return pk, np.zeros((0, 2)), score
        u, v = dark_refine(np.moveaxis(maps, -1, 0), piy, pix, self.peak_radius, rows=pk)
        uv = np.stack([u, v], -1)
        if self.upsample > 1:
            uv = (uv + 0.5) / self.upsample - 0.5
        return pk, uv, score

    def decode(self, heatmaps: np.ndarray, pafs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """heatmaps [h, w, K], pafs [h, w, 2L] -> (keypoints [N, K, 3] (x, y, score), scores [N]).

        Keypoints are in input pixels, float32; a keypoint not found is (0, 0, 0).
        People are ordered by descending score.
        """
        heatmaps = np.asarray(heatmaps, np.float32)
        pafs = np.asarray(pafs, np.float32)
        if heatmaps.ndim != 3 or heatmaps.shape[:2] != self.heatmap_size \
                or pafs.shape != (*self.heatmap_size, 2 * self.num_limbs):
            raise ValueError(f"decode expects heatmaps {self.heatmap_size + ('K',)} and pafs "
                             f"{self.heatmap_size + (2 * self.num_limbs,)} (heatmap_size, 2 x limbs), "
                             f"got {heatmaps.shape} and {pafs.shape}")
        num_kp = heatmaps.shape[-1]
        if self.limbs and max(max(p) for p in self.limbs) >= num_kp:
            raise ValueError(f"limbs use keypoint {max(max(p) for p in self.limbs)} but heatmaps have "
                             f"{num_kp} channels; pass the skeleton's limbs for this model")
        return self.group(*self.peaks(heatmaps), pafs, num_kp)

    def group(self, pk: np.ndarray, uv: np.ndarray, peak_score: np.ndarray, pafs: np.ndarray,
              num_keypoints: int, samples=paf_samples) -> tuple[np.ndarray, np.ndarray]:
        """Steps 3-6 on the output of ``peaks``: -> (keypoints [N, K, 3], scores [N]), as ``decode``.

        ``samples`` scores limbs (paf_grouping.limb_candidates); LimbHeatmapCodec passes its own.
        """
        limbs = np.array(self.limbs, np.intp).reshape(-1, 2)
        order = np.array(limb_order(self.limbs, num_keypoints), np.intp)
        cand = limb_candidates(uv, pk, pafs, limbs, order, self.num_samples, self.paf_threshold,
                               self.min_sample_fraction, self.max_limb_fraction, samples)
        people, totals = assemble(*cand, pk, num_keypoints)
        slots = np.array(people, np.intp).reshape(-1, num_keypoints)
        if self.min_keypoints == 1:
            # A peak no limb joined to anything is a person of one keypoint.
            alone = np.setdiff1d(np.arange(len(pk)), slots[slots >= 0])
            single = np.full((len(alone), num_keypoints), -1, np.intp)
            single[np.arange(len(alone)), pk[alone]] = alone
            slots, totals = np.concatenate([slots, single]), list(totals) + [0.0] * len(alone)
        found = slots >= 0
        keep = found.sum(1) >= self.min_keypoints
        slots, found, totals = slots[keep], found[keep], np.array(totals)[keep]
        kp_score = np.where(found, peak_score[slots], 0.0)                   # [N, K]; -1 masked
        scores = (kp_score.sum(1) + totals) / (num_keypoints + self.num_limbs)
        xy = self.heatmap_codec.to_input(uv[slots])
        keypoints = np.where(found[..., None], np.concatenate([xy, kp_score[..., None]], -1), 0.0)
        first = np.where(found, slots, np.iinfo(np.intp).max).min(1)
        rank = np.lexsort((first, -scores))
        return keypoints[rank].astype(np.float32), scores[rank].astype(np.float32)

    # -- metadata -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "type": "paf", "input_size": list(self.input_size), "heatmap_size": list(self.heatmap_size),
            "limbs": [list(p) for p in self.limbs], "limb_width": self.limb_width, "sigma": self.sigma,
            "dark_radius": self.dark_radius, "peak_threshold": self.peak_threshold,
            "smooth_sigma": self.smooth_sigma, "upsample": self.upsample,
            "num_samples": self.num_samples, "paf_threshold": self.paf_threshold,
            "min_sample_fraction": self.min_sample_fraction, "max_limb_fraction": self.max_limb_fraction,
            "min_keypoints": self.min_keypoints,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "PafCodec":
        d = dict(d)
        kind = d.pop("type", "paf")
        if kind != "paf":
            raise ValueError(f"not a PAF codec: type {kind!r}")
        return cls(**d)
