"""Random fields for the demo's synthetic tissue: smooth noise, wavy lines, cells, blobs and
collagen fibres.

Every draw comes from the caller's :class:`numpy.random.Generator`. All fields are float32 and
vectorised; sizes are in pixels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from camlens.demo.stain import F32, white_noise

__all__ = [
    "Voronoi",
    "Wobble",
    "blob_depth",
    "collagen",
    "make_wobble",
    "noise_at",
    "smooth_noise",
    "standardise",
]

#: A smooth random function of the position along a line (see :func:`make_wobble`).
Wobble = Callable[[np.ndarray | float], np.ndarray]


def standardise(a: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (thresholds then mean the same for every field)."""
    return (a - a.mean()) / (a.std() + 1e-6)


def _interpolation_weights(rng: np.random.Generator, n: int, cell: float) -> np.ndarray:
    """``(n, m)`` weights that interpolate ``m`` lattice values (spacing ``cell`` pixels,
    random phase) at ``n`` pixel centres with a smoothstep-eased linear kernel."""
    pos = (np.arange(n, dtype=F32) + F32(rng.random())) / F32(cell)
    i0 = np.floor(pos).astype(np.intp)
    f = pos - i0
    f = f * f * (3 - 2 * f)
    w = np.zeros((n, int(i0[-1]) + 2), dtype=F32)
    rows = np.arange(n)
    w[rows, i0] = 1 - f
    w[rows, i0 + 1] = f
    return w


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Standardised smooth value noise of shape ``(h, w)`` with feature size ``cell`` pixels.

    Separable: ``Wy @ lattice @ Wx.T`` is two thin matrix products instead of a gather per
    pixel. Below ``cell`` = 1.5 pixels it is plain white noise (same statistics, far cheaper).
    """
    if cell < 1.5:
        return white_noise(rng, (h, w))
    wy = _interpolation_weights(rng, h, cell)
    wx = _interpolation_weights(rng, w, cell)
    lattice = rng.standard_normal((wy.shape[1], wx.shape[1]), dtype=F32)
    # einsum, not BLAS: a multi-threaded matmul of this shape costs more than it saves.
    return standardise(np.einsum("ij,jk->ik", wy, np.einsum("ij,kj->ik", lattice, wx)))


def noise_at(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Standardised value noise sampled at arbitrary lattice coordinates ``(u, v)``.

    Used for anisotropic, rotated textures (fibre streaks): pass coordinates already divided
    by the feature size along each axis.
    """
    fu = np.floor(u)
    fv = np.floor(v)
    iu = (fu - fu.min()).astype(np.intp)
    iv = (fv - fv.min()).astype(np.intp)
    cols = int(iv.max()) + 2
    lattice = rng.standard_normal((int(iu.max()) + 2) * cols, dtype=F32)
    idx = iu * cols + iv  # flat gathers: several times faster than 2-D fancy indexing
    a = u - fu
    b = v - fv
    a = a * a * (3 - 2 * a)
    b = b * b * (3 - 2 * b)
    top = lattice[idx] * (1 - b) + lattice[idx + 1] * b
    bottom = lattice[idx + cols] * (1 - b) + lattice[idx + cols + 1] * b
    return standardise((top * (1 - a) + bottom * a).astype(F32))


def make_wobble(rng: np.random.Generator, extent: float, cell: float, amp: float) -> Wobble:
    """A smooth random 1-D function on ``[-extent, extent]`` (two octaves, amplitude ~``amp``);
    used for wavy boundaries as a function of the position along them.

    Tabulated every quarter pixel and looked up by index: ``np.interp`` on a whole tile is
    an order of magnitude slower.
    """
    lo = -extent - 1.0
    grid = np.arange(lo, extent + 1.0, 0.25)
    table = np.zeros(grid.size)
    for c, a in ((cell, amp), (cell / 3, amp / 3)):
        knots = np.arange(lo - c, extent + 2 * c, c)
        table += np.interp(grid, knots, rng.uniform(-a, a, knots.size))
    table = table.astype(F32)

    def wobble(t: np.ndarray | float) -> np.ndarray:
        idx = np.clip((np.asarray(t, dtype=F32) - F32(lo)) * 4, 0, table.size - 1)
        return table[idx.astype(np.intp)]

    return wobble


class Voronoi:
    """Nearest and second-nearest seed of a jittered grid (cells of ``cell`` pixels).

    ``d1``: distance to the nearest seed (cell nuclei: ``d1 < r``); ``d2 - d1``: small near
    the borders between cells (membranes); ``ids``: the nearest seed's index, so per-cell
    random attributes are ``attr[ids]``; ``seed_y``/``seed_x``: the seeds, per index.
    """

    def __init__(self, rng: np.random.Generator, h: int, w: int, cell: float) -> None:
        ny = int(h // cell) + 3
        nx = int(w // cell) + 3
        jitter = rng.uniform(0.1, 0.9, (2, ny, nx)).astype(F32)
        seed_y = (np.arange(ny, dtype=F32)[:, None] - 1 + jitter[0]) * F32(cell)
        seed_x = (np.arange(nx, dtype=F32)[None, :] - 1 + jitter[1]) * F32(cell)
        self.seed_y, self.seed_x = seed_y.ravel(), seed_x.ravel()
        self.count = ny * nx
        py = np.arange(h, dtype=F32) + F32(0.5)
        px = np.arange(w, dtype=F32) + F32(0.5)
        gy = (py // F32(cell)).astype(np.intp) + 1
        gx = (px // F32(cell)).astype(np.intp) + 1
        d1 = np.full((h, w), np.inf, dtype=F32)
        d2 = np.full((h, w), np.inf, dtype=F32)
        best = np.zeros((h, w), dtype=np.int8)
        offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        for k, (dy, dx) in enumerate(offsets):
            # Seeds of the neighbouring cell, gathered a row of cells then a column at a time.
            ry, rx = gy + dy, gx + dx
            d = (py[:, None] - seed_y[ry][:, rx]) ** 2
            d += (px[None, :] - seed_x[ry][:, rx]) ** 2
            np.minimum(d2, np.maximum(d1, d), out=d2)
            closer = d < d1
            np.minimum(d1, d, out=d1)
            best[closer] = k
        dyx = np.array(offsets, dtype=np.intp)[best]
        self.ids = (gy[:, None] + dyx[..., 0]) * nx + (gx[None, :] + dyx[..., 1])
        self.d1 = np.sqrt(d1)
        self.d2 = np.sqrt(d2)

    def attribute(self, rng: np.random.Generator) -> np.ndarray:
        """A fresh uniform [0, 1) value per cell, as a per-pixel map."""
        return rng.random(self.count, dtype=F32)[self.ids]


def blob_depth(
    rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, cy: float, cx: float, r: float
) -> np.ndarray:
    """Signed depth inside a round-ish blob (pixels; > 0 inside) whose radius wobbles with a
    few random low harmonics of the angle. ``ys`` is a column, ``xs`` a row of pixel centres."""
    dy, dx = ys - cy, xs - cx
    dist = np.sqrt(dy * dy + dx * dx)
    theta = np.arctan2(dy, dx)
    radius = np.ones_like(theta)
    for k in (2, 3, 5):
        radius = radius + F32(rng.uniform(0, 0.28 / k**0.5)) * np.cos(
            k * theta + F32(rng.uniform(0, 2 * np.pi))
        )
    return r * radius - dist


def _streaks(
    rng: np.random.Generator,
    yc: np.ndarray,
    xc: np.ndarray,
    angle: float,
    along_px: float,
    across_px: float,
    scale: float,
) -> np.ndarray:
    """Standardised streaks along ``angle``: noise stretched to ``along_px`` × ``across_px``
    reference pixels (times ``scale``), its lines bent by a smooth displacement."""
    h, w = yc.shape[0], xc.shape[1]
    along = yc * F32(np.sin(angle)) + xc * F32(np.cos(angle))
    across = yc * F32(np.cos(angle)) - xc * F32(np.sin(angle))
    across = across + F32(3 * scale) * smooth_noise(rng, h, w, 20 * scale)
    return noise_at(rng, along / F32(along_px * scale), across / F32(across_px * scale))


def collagen(
    rng: np.random.Generator, yc: np.ndarray, xc: np.ndarray, theta: float, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Collagen texture on the grid ``yc`` (column) × ``xc`` (row): ``(fibres, bundles)``,
    both standardised; ``scale`` is the size of a reference pixel in pixels.

    ``fibres``: thin wavy streaks, mostly along ``theta`` and in patches along a second random
    direction; ``bundles``: coarse streaks along ``theta`` whose zero crossings make the white
    clefts between collagen bundles.
    """
    h, w = yc.shape[0], xc.shape[1]
    main = _streaks(rng, yc, xc, theta, 12, 1.6, scale)
    other_angle = theta + rng.uniform(0.5, 1.3) * rng.choice((-1, 1))
    other = _streaks(rng, yc, xc, other_angle, 10, 1.6, scale)
    weight = 1 / (1 + np.exp(-2.5 * smooth_noise(rng, h, w, 35 * scale) - 1.0))
    fibres = standardise(weight * main + (1 - weight) * other)
    return fibres, _streaks(rng, yc, xc, theta, 40, 7, scale)
