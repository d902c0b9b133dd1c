"""The software renderer of the synthetic dataset: shaded primitives into a z-buffer.

Bodies are ray-cast as shaded quadrics and capsules, so near limbs cover far
ones and a face is only seen from the front. Besides colour the canvas keeps
depth and, per pixel, which person (label) owns the surface seen there: the
scene reads keypoint visibility and the people's masks from it.
"""
from __future__ import annotations

import numpy as np

from kpose.data.synthetic.body import EYES, MOUTH


class Canvas:
    """RGB float image [3, H, W] + z-buffer (larger z = nearer) + per-pixel owner label.

    Channel-first because every blend broadcasts a [h, w] alpha over colour:
    numpy is many times faster on a contiguous last axis than on a size-3 one.
    """

    def __init__(self, rgb: np.ndarray, light: np.ndarray, ambient: float):
        self.rgb = rgb
        self.h, self.w = rgb.shape[1:]
        self.z = np.full((self.h, self.w), -np.inf, np.float32)
        self.lab = np.zeros((self.h, self.w), np.uint8)
        self.light = light
        self.ambient = float(ambient)
        self.xs = np.arange(self.w, dtype=np.float32)
        self.ys = np.arange(self.h, dtype=np.float32)

    def _window(self, x0: float, x1: float, y0: float, y1: float):
        ix0, ix1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, self.w)
        iy0, iy1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, self.h)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return (slice(iy0, iy1), slice(ix0, ix1)), self.xs[None, ix0:ix1], self.ys[iy0:iy1, None]

    def _shade(self, nx, ny, nz) -> np.ndarray:
        """Lambert shading factor [h, w]; normals in camera coords (y up)."""
        lx, ly, lz = self.light.tolist()
        lam = np.maximum(nx * lx + ny * ly + nz * lz, 0)
        return self.ambient + (1 - self.ambient) * lam

    def _commit(self, sl, alpha, depth, colour, label: int) -> None:
        zp = self.z[sl]
        m = (alpha > 0) & (depth > zp)
        if not m.any():
            return
        a = np.where(m, alpha, 0).astype(np.float32)
        rgb = self.rgb[:, sl[0], sl[1]]
        rgb += (colour - rgb) * a
        solid = m & (alpha >= 0.5)
        zp[solid] = depth[solid]
        lab = self.lab[sl]
        lab[solid] = label

    def capsule(self, a, b, ra: float, rb: float, colour, label: int) -> None:
        """Tapered capsule between 3D points a and b (pixel x, y; depth z)."""
        # Python floats keep the per-pixel arithmetic in float32 (NumPy 2 promotes
        # float32 arrays to float64 against np.float64 scalars).
        (ax, ay, az), (bx, by, bz), ra, rb = a.tolist(), b.tolist(), float(ra), float(rb)
        r = max(ra, rb)
        win = self._window(min(ax, bx) - r - 1, max(ax, bx) + r + 1, min(ay, by) - r - 1, max(ay, by) + r + 1)
        if win is None:
            return
        sl, x, y = win
        abx, aby = bx - ax, by - ay
        l2 = abx * abx + aby * aby
        if l2 > 1e-9:
            t = np.minimum(np.maximum(((x - ax) * (abx / l2) + (y - ay) * (aby / l2)), 0), 1)
        else:
            t = np.zeros((y.shape[0], x.shape[1]), np.float32)
        dx, dy = x - (ax + t * abx), y - (ay + t * aby)
        d = np.sqrt(dx * dx + dy * dy)
        rad = ra + t * (rb - ra)
        alpha = np.minimum(np.maximum(rad - d + 0.5, 0), 1)
        nz = np.sqrt(np.maximum(1 - (d / rad) ** 2, 0))
        depth = az + t * (bz - az) + rad * nz
        shade = self._shade(dx / rad, -dy / rad, nz)
        self._commit(sl, alpha, depth, _tint(colour, shade), label)

    def ellipsoid(self, c, rot: np.ndarray, radii, colour, label: int, body: dict | None = None) -> None:
        """Ellipsoid with local axes `rot` (camera coords, y up) and semi-axes `radii` (pixels).

        With `body` given it is a head: hair, eyes and mouth are painted from the
        hit point on the head's own unit sphere, so the face turns with the head.
        """
        e = rot * np.array([[1.0], [-1.0], [1.0]])  # camera (y up) -> pixel (y down)
        ext = np.sqrt(((e * radii) ** 2).sum(1))
        cx, cy, cz = c.tolist()
        win = self._window(cx - ext[0] - 1, cx + ext[0] + 1, cy - ext[1] - 1, cy + ext[1] + 1)
        if win is None:
            return
        sl, x, y = win
        du, dv = x - cx, y - cy
        # local point along the pixel's ray: q(Z) = o + Z * dz, scaled to the unit sphere
        es = (e / radii).tolist()
        o = [du * es[0][k] + dv * es[1][k] for k in range(3)]
        dz = es[2]
        qa = dz[0] ** 2 + dz[1] ** 2 + dz[2] ** 2
        qb = 2 * (o[0] * dz[0] + o[1] * dz[1] + o[2] * dz[2])
        qc = o[0] ** 2 + o[1] ** 2 + o[2] ** 2 - 1
        disc = qb * qb - 4 * qa * qc
        qmin = qc + 1 - qb * qb / (4 * qa)
        alpha = np.minimum(np.maximum((1 - np.sqrt(np.maximum(qmin, 0))) * float(radii.min()) + 0.5, 0), 1)
        zz = (-qb + np.sqrt(np.maximum(disc, 0))) / (2 * qa)
        n = [o[k] + zz * dz[k] for k in range(3)]           # hit point on the unit sphere
        # camera-space normal: rot @ (n / radii), unnormalised
        rn = (rot / radii).tolist()
        ncam = [rn[j][0] * n[0] + rn[j][1] * n[1] + rn[j][2] * n[2] for j in range(3)]
        inv = 1 / (np.sqrt(ncam[0] ** 2 + ncam[1] ** 2 + ncam[2] ** 2) + 1e-9)
        shade = self._shade(ncam[0] * inv, ncam[1] * inv, ncam[2] * inv)
        col = _tint(colour, shade)
        if body is not None:
            self._face(n, body, col, shade)
        self._commit(sl, alpha, cz + zz, col, label)

    @staticmethod
    def _face(n, body: dict, col: np.ndarray, shade: np.ndarray) -> None:
        """Paint hair, eyes and mouth into col [3, h, w] from unit-sphere head coords n."""
        nx, ny, nz = n

        def paint(mask, rgb) -> None:
            for ch in range(3):
                col[ch][mask] = rgb[ch] * shade[mask]

        if body["hat"] is not None:
            paint(ny > 0.35 + 0.1 * nz, body["hat"])
        elif body["hairline"] < 5:
            # the hairline is high on the forehead and drops to the nape at the back
            paint(ny - 0.9 * np.minimum(nz, 0) - 0.35 * np.maximum(nz, 0) > body["hairline"], body["hair"])
        for eye in EYES:
            dot = nx * eye[0] + ny * eye[1] + nz * eye[2]
            paint(dot > 0.985, (0.95, 0.95, 0.95))
            paint(dot > 0.995, (0.05, 0.04, 0.04))
        dot = nx * MOUTH[0] + ny * MOUTH[1] + nz * MOUTH[2]
        paint((dot > 0.975) & (np.abs(ny - MOUTH[1]) < 0.05), (0.45, 0.12, 0.12))

    def torso(self, p0, rot: np.ndarray, length: float, w_knots, d_knots, body: dict, label: int) -> None:
        """Elliptic tube from p0 along the local y axis, half-width/depth tapering over 4 knots."""
        e = rot * np.array([[1.0], [-1.0], [1.0]])  # camera (y up) -> pixel (y down)
        top = p0 + e[:, 1] * length
        r = max(w_knots.max(), d_knots.max())
        win = self._window(min(p0[0], top[0]) - r - 1, max(p0[0], top[0]) + r + 1,
                           min(p0[1], top[1]) - r - 1, max(p0[1], top[1]) + r + 1)
        if win is None:
            return
        sl, x, y = win
        e = e.tolist()
        length = float(length)
        du, dv = x - float(p0[0]), y - float(p0[1])
        oa, ob, oc = (e[0][k] * du + e[1][k] * dv for k in range(3))  # ray depth relative to p0
        ea, eb, ec = e[2]
        knots = np.array([0, 0.35, 0.7, 1.0]) * length
        # half sizes depend on height along the spine: take them where the ray
        # passes closest to the axis, then intersect the tube at that size
        wm, dm = float(w_knots.mean()), float(d_knots.mean())
        qa = max((ea / wm) ** 2 + (ec / dm) ** 2, 1e-6)
        z0 = -((oa * ea) / wm ** 2 + (oc * ec) / dm ** 2) / qa
        hb = np.minimum(np.maximum(ob + z0 * eb, 0), length)
        w = np.interp(hb, knots, w_knots).astype(np.float32)
        d = np.interp(hb, knots, d_knots).astype(np.float32)
        qa = np.maximum((ea / w) ** 2 + (ec / d) ** 2, 1e-6)
        qb = 2 * (oa * ea / w ** 2 + oc * ec / d ** 2)
        qc = (oa / w) ** 2 + (oc / d) ** 2 - 1
        disc = qb * qb - 4 * qa * qc
        qmin = qc + 1 - qb * qb / (4 * qa)
        zz = (-qb + np.sqrt(np.maximum(disc, 0))) / (2 * qa)
        hb = ob + zz * eb
        alpha = np.minimum(np.maximum((1 - np.sqrt(np.maximum(qmin, 0))) * np.minimum(w, d) + 0.5, 0), 1)
        alpha = np.where((hb >= 0) & (hb <= length), alpha, 0)
        la, lc = (oa + zz * ea) / w ** 2, (oc + zz * ec) / d ** 2
        r = rot.tolist()
        ncam = [r[j][0] * la + r[j][2] * lc for j in range(3)]
        norm = np.sqrt(ncam[0] ** 2 + ncam[1] ** 2 + ncam[2] ** 2) + 1e-9
        shade = self._shade(ncam[0] / norm, ncam[1] / norm, ncam[2] / norm)
        belt = hb < 0.2 * length
        if body["stripes"]:
            shade = shade * np.where((np.sin(hb * (body["stripes"] / length)) > 0) & ~belt, 0.7, 1.0)
        col = np.where(belt, _tint(body["trousers"], shade), _tint(body["shirt"], shade))
        self._commit(sl, alpha, float(p0[2]) + zz, col, label)

    def mask_shape(self, mask: np.ndarray, x0: int, y0: int, colour: np.ndarray, depth: float, label: int) -> None:
        """A flat object given as a 0/1 mask placed at (x0, y0), with a soft vertical gradient."""
        h, w = mask.shape
        win = self._window(x0, x0 + w - 1, y0, y0 + h - 1)
        if win is None:
            return
        sl, x, y = win
        m = mask[sl[0].start - y0:sl[0].stop - y0, sl[1].start - x0:sl[1].stop - x0].astype(np.float32)
        grad = 0.85 + 0.3 * (y - y.min()) / max(float(y.max() - y.min()), 1.0) + 0 * x
        self._commit(sl, m, np.full(m.shape, depth, np.float32), _tint(colour, grad), label)


def _tint(colour, shade: np.ndarray) -> np.ndarray:
    """colour (3,) times a shading factor [h, w] -> [3, h, w] float32."""
    return np.asarray(colour, np.float32)[:, None, None] * shade.astype(np.float32)[None]
