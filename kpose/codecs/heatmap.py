"""Gaussian heatmap codec with unbiased encoding and DARK decoding (NumPy reference).

Coordinates follow kpose.transforms: pixel centres at integer positions, so
with strides (sx, sy) = (W/w, H/h) an input (crop) pixel coordinate x maps to
the heatmap coordinate u = (x + 0.5) / sx - 0.5 and back with
x = (u + 0.5) * sx - 0.5 (both frames' outer pixel edges coincide).

Encoding is *unbiased*: each keypoint becomes an isotropic Gaussian of peak 1
centred at its exact sub-pixel heatmap position (no rounding to the grid).

Decoding is argmax + DARK: the log of a Gaussian is a quadratic, so a Newton
step from the argmax using the gradient and Hessian of the log-heatmap finds
the sub-pixel centre. The derivatives are estimated by a least-squares
quadratic fit of the log-heatmap over a (2r+1)^2 window (Savitzky-Golay
derivative filters). For a target produced by ``encode`` the log is exactly
quadratic, so the fit and the decoded position are exact to float precision,
also next to the heatmap border where the window is shifted inward rather than
padded. On real predictions the fit averages over the window, which is the
noise-robustness that mmpose's DARK gets from blurring the heatmap first
(blurring is not used here: a finite blur kernel and the border break the
exact round trip). The fitting filters are fixed linear maps of the window,
so the same decode ports to TF, TFLite and JS as a gather plus a small matmul.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["HeatmapCodec", "dark_refine", "savgol_quadratic_2d"]

# Log-heatmap values are floored at this fraction of the peak: real predictions
# can be <= 0; exact Gaussians stay above it inside the fit window for sigma >= 1.
LOG_FLOOR = 1e-4


def savgol_quadratic_2d(ry: int, rx: int) -> np.ndarray:
    """[6, (2ry+1)(2rx+1)] least-squares map from a row-major window to the
    coefficients (c, gx, gy, hxx/2, hxy, hyy/2) of a quadratic about its centre."""
    dy, dx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    dx, dy = dx.ravel().astype(np.float64), dy.ravel().astype(np.float64)
    design = np.stack([np.ones_like(dx), dx, dy, dx * dx, dx * dy, dy * dy], -1)
    return np.linalg.pinv(design)


def default_dark_radius(sigma: float) -> int:
    """Fit-window radius: about one sigma, where a predicted blob is still Gaussian."""
    return max(1, int(np.floor(sigma)))


def dark_refine(heatmaps: np.ndarray, iy: np.ndarray, ix: np.ndarray, radius: int,
                rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel centres (u, v) of the blobs at integer maxima (ix, iy).

    heatmaps: [M, h, w]; iy, ix: [N] integer peak positions in map ``rows[i]``
    (default: one peak per map, rows = arange(M)).
    Returns float64 (u, v) [N] in heatmap pixels. Falls back to the integer
    position where the fitted quadratic has no maximum.
    """
    heatmaps = np.asarray(heatmaps)
    _, h, w = heatmaps.shape
    ry, rx = min(radius, (h - 1) // 2), min(radius, (w - 1) // 2)
    if ry < 1 or rx < 1:
        raise ValueError(f"DARK needs a heatmap of at least 3x3, got {h}x{w}")
    iy, ix = np.asarray(iy, np.int64), np.asarray(ix, np.int64)
    rows = np.arange(len(iy)) if rows is None else np.asarray(rows, np.int64)
    # Shift the window inward at the border: a one-sided fit is still exact.
    cy, cx = np.clip(iy, ry, h - 1 - ry), np.clip(ix, rx, w - 1 - rx)
    dy, dx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    window = heatmaps[rows[:, None], cy[:, None] + dy.ravel(), cx[:, None] + dx.ravel()].astype(np.float64)
    peak = heatmaps[rows, iy, ix].astype(np.float64)
    floor = LOG_FLOOR * np.maximum(peak, 1e-30)[:, None]
    # Log relative to the peak: the fit of a flat window is then exactly zero (the
    # documented integer fallback) instead of BLAS rounding noise around log(peak).
    logw = np.log(np.maximum(window, floor)) - np.log(np.maximum(peak, floor[:, 0]))[:, None]
    coef = logw @ savgol_quadratic_2d(ry, rx).T
    gx, gy, hxx, hxy, hyy = coef[:, 1], coef[:, 2], 2 * coef[:, 3], coef[:, 4], 2 * coef[:, 5]
    det = hxx * hyy - hxy * hxy
    ok = (hxx < 0) & (det > 0)
    safe = np.where(ok, det, 1.0)
    # Newton step to the stationary point of the fitted quadratic: -H^-1 g.
    ox = -(hyy * gx - hxy * gy) / safe
    oy = -(hxx * gy - hxy * gx) / safe
    # An exact Gaussian's centre is within half a pixel of its argmax; the clip
    # only guards degenerate fits on real predictions.
    u = np.where(ok, np.clip(cx + ox, ix - 1.0, ix + 1.0), ix)
    v = np.where(ok, np.clip(cy + oy, iy - 1.0, iy + 1.0), iy)
    return u, v


@dataclass(frozen=True)
class HeatmapCodec:
    """Keypoints <-> Gaussian heatmaps.

    input_size: (H, W) of the model input (the crop), in pixels.
    heatmap_size: (h, w) of the heatmaps; strides W/w and H/h need not be integers.
    sigma: Gaussian standard deviation in heatmap pixels.
    dark_radius: DARK fit-window radius in heatmap pixels (None: from sigma).
    """

    input_size: tuple[int, int] = (256, 192)
    heatmap_size: tuple[int, int] = (64, 48)
    sigma: float = 2.0
    dark_radius: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        object.__setattr__(self, "heatmap_size", tuple(int(s) for s in self.heatmap_size))
        object.__setattr__(self, "sigma", float(self.sigma))
        if self.dark_radius is not None:
            object.__setattr__(self, "dark_radius", int(self.dark_radius))
        if len(self.input_size) != 2 or len(self.heatmap_size) != 2:
            raise ValueError("input_size and heatmap_size are (height, width)")
        if min(self.heatmap_size) < 3:
            raise ValueError(f"heatmap_size {self.heatmap_size} is too small (need >= 3x3)")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")

    # -- geometry -------------------------------------------------------------
    @property
    def stride(self) -> tuple[float, float]:
        """(sx, sy): input pixels per heatmap pixel."""
        return (self.input_size[1] / self.heatmap_size[1], self.input_size[0] / self.heatmap_size[0])

    @property
    def radius(self) -> int:
        return self.dark_radius if self.dark_radius is not None else default_dark_radius(self.sigma)

    def to_heatmap(self, xy: np.ndarray) -> np.ndarray:
        """Input-pixel (x, y) [..., 2] -> heatmap-pixel (u, v)."""
        return (np.asarray(xy, np.float64) + 0.5) / np.asarray(self.stride) - 0.5

    def to_input(self, uv: np.ndarray) -> np.ndarray:
        """Heatmap-pixel (u, v) [..., 2] -> input-pixel (x, y)."""
        return (np.asarray(uv, np.float64) + 0.5) * np.asarray(self.stride) - 0.5

    # -- encode ---------------------------------------------------------------
    def encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keypoints [..., K, 3] (x, y, v) in input pixels -> (heatmaps [..., h, w, K], weights [..., K]).

        Weight 0 (and an empty channel) for unlabelled keypoints (v == 0) and for
        keypoints outside the heatmap's pixel area [-0.5, w-0.5] x [-0.5, h-0.5],
        whose partial Gaussian at the border would teach a wrong in-crop position.
        """
        keypoints = np.asarray(keypoints, np.float64)
        h, w = self.heatmap_size
        uv = self.to_heatmap(keypoints[..., :2])
        u, v = uv[..., 0], uv[..., 1]
        with np.errstate(invalid="ignore"):
            valid = ((keypoints[..., 2] > 0) & (u >= -0.5) & (u <= w - 0.5)
                     & (v >= -0.5) & (v <= h - 0.5))
        u, v = np.where(valid, u, 0.0), np.where(valid, v, 0.0)
        inv2s2 = 1.0 / (2.0 * self.sigma ** 2)
        # Separable: the 2-D Gaussian is the outer product of two 1-D ones.
        gx = np.exp(-((np.arange(w) - u[..., None]) ** 2) * inv2s2) * valid[..., None]
        gy = np.exp(-((np.arange(h) - v[..., None]) ** 2) * inv2s2)
        heatmaps = np.einsum("...ky,...kx->...yxk", gy, gx).astype(np.float32)
        return heatmaps, valid.astype(np.float32)

    def batch_encode(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B, K, 3] -> ([B, h, w, K], [B, K])."""
        keypoints = np.asarray(keypoints)
        if keypoints.ndim != 3:
            raise ValueError(f"batch_encode expects [B, K, 3], got {keypoints.shape}")
        return self.encode(keypoints)

    def encode_multi(self, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Several people in one map (bottom-up): [P, K, 3] -> ([h, w, K], weights [K]).

        Channels are the per-pixel maximum over people (overlapping peaks stay 1).
        Weights are all ones: in a bottom-up target an empty channel is a valid
        "no such keypoint here" label, unlike the top-down case.
        """
        keypoints = np.asarray(keypoints, np.float64).reshape(-1, *np.shape(keypoints)[-2:])
        heatmaps, _ = self.encode(keypoints)
        h, w = self.heatmap_size
        k = keypoints.shape[-2]
        merged = heatmaps.max(axis=0) if len(heatmaps) else np.zeros((h, w, k), np.float32)
        return merged, np.ones(k, np.float32)

    # -- decode ---------------------------------------------------------------
    def decode(self, heatmaps: np.ndarray, refine: str = "dark") -> np.ndarray:
        """heatmaps [..., h, w, K] -> keypoints [..., K, 3] (x, y, score) in input pixels.

        refine: "dark" (argmax + DARK, the default) or "none" (plain argmax).
        score is the heatmap maximum.
        """
        heatmaps = np.asarray(heatmaps)
        *lead, h, w, k = heatmaps.shape
        if (h, w) != self.heatmap_size:
            raise ValueError(f"heatmaps are {h}x{w}, codec expects {self.heatmap_size}")
        maps = np.moveaxis(heatmaps, -1, -3).reshape(-1, h, w)
        flat = maps.reshape(len(maps), -1)
        idx = np.argmax(flat, axis=1)
        score = flat[np.arange(len(flat)), idx].astype(np.float64)
        iy, ix = np.divmod(idx, w)
        if refine == "dark":
            u, v = dark_refine(maps, iy, ix, self.radius)
        elif refine == "none":
            u, v = ix.astype(np.float64), iy.astype(np.float64)
        else:
            raise ValueError(f"refine must be 'dark' or 'none', got {refine!r}")
        xy = self.to_input(np.stack([u, v], -1))
        out = np.concatenate([xy, score[:, None]], -1).astype(np.float32)
        return out.reshape(*lead, k, 3)

    def batch_decode(self, heatmaps: np.ndarray, refine: str = "dark") -> np.ndarray:
        """[B, h, w, K] -> [B, K, 3]."""
        heatmaps = np.asarray(heatmaps)
        if heatmaps.ndim != 4:
            raise ValueError(f"batch_decode expects [B, h, w, K], got {heatmaps.shape}")
        return self.decode(heatmaps, refine)

    # -- metadata -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"], d["heatmap_size"] = list(self.input_size), list(self.heatmap_size)
        return {"type": "heatmap", **d}

    @classmethod
    def from_dict(cls, d: dict) -> "HeatmapCodec":
        d = dict(d)
        kind = d.pop("type", "heatmap")
        if kind != "heatmap":
            raise ValueError(f"not a heatmap codec: type {kind!r}")
        return cls(**d)
