"""Target encodings: each codec owns its encode/decode pair (pure NumPy reference).

    from kpose.codecs import HeatmapCodec, LimbHeatmapCodec, PafCodec, codec_from_dict
"""
from __future__ import annotations

import numpy as np

from kpose.codecs.heatmap import HeatmapCodec
from kpose.codecs.limb_heatmap import LimbHeatmapCodec
from kpose.codecs.paf import PafCodec

# The score threshold above which a decoded keypoint counts as found (person scores,
# drawing, parity checks): defined once here.
KEYPOINT_SCORE_THRESHOLD = 0.2

CODECS = {"heatmap": HeatmapCodec, "paf": PafCodec, "limb_heatmap": LimbHeatmapCodec}


def codec_from_dict(d: dict) -> HeatmapCodec | PafCodec | LimbHeatmapCodec:
    """The codec a model config or export metadata describes (`type`; older files: heatmap)."""
    kind = d.get("type", "heatmap")
    if kind not in CODECS:
        raise ValueError(f"codec type {kind!r}; known: {', '.join(CODECS)}")
    return CODECS[kind].from_dict(d)


def pose_scores(keypoints: np.ndarray, threshold: float = KEYPOINT_SCORE_THRESHOLD) -> np.ndarray:
    """Person score = mean score of its confident keypoints (the usual top-down rescoring)."""
    s = keypoints[..., 2]
    confident = s > threshold
    total = np.where(confident, s, 0.0).sum(-1)
    count = confident.sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


__all__ = ["HeatmapCodec", "PafCodec", "LimbHeatmapCodec", "CODECS", "codec_from_dict", "pose_scores",
           "KEYPOINT_SCORE_THRESHOLD"]
