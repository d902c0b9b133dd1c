"""Limb heatmap codec (SimplePose, Li et al., AAAI 2020): one scalar map per limb.

Instead of a PAF's two channels, limb l = limbs[l] = (a, b) is one channel
``limb_maps[..., l]`` on the keypoint heatmap grid (see kpose.codecs.heatmap for
the input <-> heatmap coordinate map):

    limb_maps[y, x, l] = max over people of exp(-d^2 / (2 limb_sigma^2))

where d is the distance (heatmap pixels) from the pixel centre to the person's
segment a -> b; limbs with an unlabelled end or of zero length add nothing.
``round_ends`` (default) takes the true point-to-segment distance, so the map
has round caps around a and b; ``round_ends=False`` is the flat-cut reading: only
pixels whose projection onto the segment's line falls within the segment
(0 <= t <= |b - a|) count, d the perpendicular distance. The cut costs the
grouping: a sample at a segment end reads its nearest pixel, which can project
just outside the extent (map 0) -- half the samples of a ~1 px face limb at
stride 8 -- and the coco_mini oracle AP drops from 0.90 to 0.65 (round caps
match the PAF codec; tests/test_limb_heatmap_codec.py). The maximum (not
the PAF's average) keeps overlapping limbs at 1, as keypoint heatmaps do. The
paper adds redundant limbs beyond the skeleton tree (30 for 18 keypoints): pass
them in ``limbs``; the grouping handles cycles.

Decoding is PafCodec's (kpose.codecs.paf_grouping) with one change: a candidate
pair's samples along the segment are the limb map's values (limb_map_samples)
instead of the PAF dotted with the unit vector; score = their mean plus the
distance prior; a pair is a candidate when that score is > 0 and at least
``min_sample_fraction`` of the samples exceed ``limb_threshold``.

Flip test: ``flip_back`` maps the mirrored image's outputs back; limb maps only
permute (limb_perm) -- a scalar map has no direction, so no sign change.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from kpose.codecs.heatmap import HeatmapCodec
from kpose.codecs.paf import PafCodec
from kpose.codecs.paf_grouping import limb_map_samples

__all__ = ["LimbHeatmapCodec", "flip_back"]


def flip_back(heatmaps_mirrored: np.ndarray, limb_maps_mirrored: np.ndarray, flip_index, limb_perm,
              limb_sign=None) -> tuple[np.ndarray, np.ndarray]:
    """Outputs for the horizontally mirrored image -> the original image's frame.

    heatmaps [..., h, w, K], limb_maps [..., h, w, L]; flip_index from
    Skeleton.flip_index(), limb_perm from Skeleton.limb_flip() (its sign is
    accepted, so ``*skeleton.limb_flip()`` works, and ignored: a limb map is the
    same whichever way the limb is stored). Width reversed, channels permuted.
    """
    hm, lm = np.asarray(heatmaps_mirrored), np.asarray(limb_maps_mirrored)
    perm = np.asarray(limb_perm)
    if lm.shape[-1] != len(perm) or hm.shape[-1] != len(flip_index):
        raise ValueError(f"flip_back: limb maps have {lm.shape[-1]} channels and heatmaps {hm.shape[-1]}, but "
                         f"limb_perm has {len(perm)} limbs and flip_index {len(flip_index)} keypoints; "
                         f"pass the model's own Skeleton.flip_index() and Skeleton.limb_flip()")
    hm = hm[..., ::-1, :][..., np.asarray(flip_index)]
    lm = lm[..., ::-1, :][..., perm]
    return np.ascontiguousarray(hm), np.ascontiguousarray(lm)


@dataclass(frozen=True)
class LimbHeatmapCodec:
    """Keypoints of several people <-> keypoint heatmaps + limb heatmaps, with grouping.

    input_size, heatmap_size: (H, W) and (h, w), as for HeatmapCodec.
    limbs: (a, b) keypoint index pairs (a skeleton's limbs, plus any redundant ones).
    limb_sigma: the limb Gaussian's sigma across the segment, in heatmap pixels.
    round_ends: distance to the segment (True) or, within its extent only, to its line.
    sigma, dark_radius: of the companion keypoint HeatmapCodec (peak refinement).
    peak_threshold, smooth_sigma, upsample, num_samples, limb_threshold,
    min_sample_fraction, max_limb_fraction, min_keypoints: decode parameters, as
    PafCodec's (limb_threshold plays paf_threshold's part).
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    limbs: tuple[tuple[int, int], ...]
    limb_sigma: float = 1.0
    round_ends: bool = True
    sigma: float = 2.0
    dark_radius: int | None = None
    peak_threshold: float = 0.1
    smooth_sigma: float = 0.0
    upsample: int = 1
    num_samples: int = 10
    limb_threshold: float = 0.1
    min_sample_fraction: float = 0.8
    max_limb_fraction: float = 0.5
    min_keypoints: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        object.__setattr__(self, "heatmap_size", tuple(int(s) for s in self.heatmap_size))
        object.__setattr__(self, "limbs", tuple((int(a), int(b)) for a, b in self.limbs))
        if self.limb_sigma <= 0:
            raise ValueError(f"limb_sigma must be > 0 (heatmap pixels), got {self.limb_sigma}")
        # Validates the shared decode parameters now, with PafCodec's messages.
        object.__setattr__(self, "upsample", self.grouping.upsample)

    @cached_property
    def grouping(self) -> PafCodec:
        """The PAF codec whose peak finding and grouping this codec reuses (same decode parameters)."""
        return PafCodec(self.input_size, self.heatmap_size, self.limbs, sigma=self.sigma,
                        dark_radius=self.dark_radius, peak_threshold=self.peak_threshold,
                        smooth_sigma=self.smooth_sigma, upsample=self.upsample, num_samples=self.num_samples,
                        paf_threshold=self.limb_threshold, min_sample_fraction=self.min_sample_fraction,
                        max_limb_fraction=self.max_limb_fraction, min_keypoints=self.min_keypoints)

    @property
    def heatmap_codec(self) -> HeatmapCodec:
        """The keypoint heatmap codec on the same grid (targets and DARK refinement)."""
        return self.grouping.heatmap_codec

    @property
    def num_limbs(self) -> int:
        return len(self.limbs)

    # -- encode ---------------------------------------------------------------
    def flip_back(self, heatmaps_mirrored: np.ndarray, limb_maps_mirrored: np.ndarray, flip_index, limb_perm,
                  limb_sign=None) -> tuple[np.ndarray, np.ndarray]:
        """This codec's outputs for the mirrored image -> the original's frame (module `flip_back`)."""
        return flip_back(heatmaps_mirrored, limb_maps_mirrored, flip_index, limb_perm, limb_sign)

    def encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keypoints [P, K, 3] (x, y, v) in input pixels -> (limb maps [h, w, L] float32, weights [L]).

        Weights are all ones: an empty map is a valid "no limb here" label.
        """
        keypoints = np.asarray(keypoints, np.float64).reshape(-1, *np.shape(keypoints)[-2:])
        h, w = self.heatmap_size
        num_limbs = self.num_limbs
        maps = np.zeros((h, w, num_limbs))
        if not num_limbs:
            return np.zeros((h, w, 0), np.float32), np.zeros(0, np.float32)
        a_idx, b_idx = np.array(self.limbs).T
        uv = self.heatmap_codec.to_heatmap(keypoints[..., :2])
        yy, xx = np.mgrid[0:h, 0:w]
        grid = np.stack([xx, yy], -1).astype(np.float64)[:, :, None]   # [h, w, 1, 2]
        # One person at a time: memory stays [h, w, L, 2] however many people there are.
        for person, vis in zip(uv, keypoints[..., 2]):
            start, end = person[a_idx], person[b_idx]                   # [L, 2]
            delta = end - start
            length = np.linalg.norm(delta, axis=-1)
            drawn = (vis[a_idx] > 0) & (vis[b_idx] > 0) & (length > 1e-6)
            if not drawn.any():
                continue
            unit = np.where(drawn[:, None], delta / np.where(drawn, length, 1.0)[:, None], 0.0)
            rel = grid - start                                          # [h, w, L, 2]
            along = (rel * unit).sum(-1)                                # [h, w, L]
            inside = drawn & (along >= 0.0) & (along <= length)
            if self.round_ends:
                along, inside = np.clip(along, 0.0, length), drawn
            across = rel - along[..., None] * unit
            d2 = (across * across).sum(-1)
            np.maximum(maps, np.where(inside, np.exp(-d2 / (2.0 * self.limb_sigma ** 2)), 0.0), out=maps)
        return maps.astype(np.float32), np.ones(num_limbs, np.float32)

    def encode_heatmaps(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The matching keypoint heatmaps (max over people): [P, K, 3] -> ([h, w, K], [K])."""
        return self.heatmap_codec.encode_multi(keypoints)

    # -- decode ---------------------------------------------------------------
    def decode(self, heatmaps: np.ndarray, limb_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """heatmaps [h, w, K], limb maps [h, w, L] -> (keypoints [N, K, 3] (x, y, score), scores [N]).

        Keypoints are in input pixels, float32; a keypoint not found is (0, 0, 0).
        People are ordered by descending score (PafCodec.decode's rules).
        """
        heatmaps = np.asarray(heatmaps, np.float32)
        limb_maps = np.asarray(limb_maps, np.float32)
        if heatmaps.ndim != 3 or heatmaps.shape[:2] != self.heatmap_size \
                or limb_maps.shape != (*self.heatmap_size, self.num_limbs):
            raise ValueError(f"decode expects heatmaps {self.heatmap_size + ('K',)} and limb maps "
                             f"{self.heatmap_size + (self.num_limbs,)} (heatmap_size, limbs), "
                             f"got {heatmaps.shape} and {limb_maps.shape}")
        num_kp = heatmaps.shape[-1]
        if self.limbs and max(max(p) for p in self.limbs) >= num_kp:
            raise ValueError(f"limbs use keypoint {max(max(p) for p in self.limbs)} but heatmaps have "
                             f"{num_kp} channels; pass the skeleton's limbs for this model")
        grouping = self.grouping
        return grouping.group(*grouping.peaks(heatmaps), limb_maps, num_kp, samples=limb_map_samples)

    # -- metadata -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "type": "limb_heatmap", "input_size": list(self.input_size),
            "heatmap_size": list(self.heatmap_size), "limbs": [list(p) for p in self.limbs],
            "limb_sigma": self.limb_sigma, "round_ends": self.round_ends, "sigma": self.sigma,
            "dark_radius": self.dark_radius,
            "peak_threshold": self.peak_threshold, "smooth_sigma": self.smooth_sigma,
            "upsample": self.upsample, "num_samples": self.num_samples,
            "limb_threshold": self.limb_threshold, "min_sample_fraction": self.min_sample_fraction,
            "max_limb_fraction": self.max_limb_fraction, "min_keypoints": self.min_keypoints,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LimbHeatmapCodec":
        d = dict(d)
        kind = d.pop("type", "limb_heatmap")
        if kind != "limb_heatmap":
            raise ValueError(f"not a limb heatmap codec: type {kind!r}")
        return cls(**d)
