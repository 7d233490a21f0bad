"""Painters of the small structures inside the dermis of a synthetic skin tile: hair
follicles (cut lengthwise or across), sebaceous glands and blood vessels.

Each painter draws one structure at a given place on a :class:`~camlens.demo.canvas.Canvas`,
inside a small :func:`~camlens.demo.canvas.window` around it (cheap), taking its remaining
random shape and staining from ``canvas.rng``. Where the structures go is decided by
:mod:`camlens.demo.layout` and :mod:`camlens.demo.tissue`.
"""

from __future__ import annotations

import numpy as np

from camlens.demo.canvas import Canvas, Region, window
from camlens.demo.classes import FOLLICLE, SEBACEOUS, VESSEL
from camlens.demo.layout import Follicle
from camlens.demo.stain import F32
from camlens.demo.texture import blob_depth, smooth_noise

__all__ = ["draw_follicle_across", "draw_follicle_lengthwise", "draw_gland", "draw_vessel"]


def _follicle_stains(
    canvas: Canvas, region: Region, rr: np.ndarray, gap: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hematoxylin, eosin, melanin of a hair follicle at normalised radius ``rr`` (0 = axis,
    1 = outer edge): pigmented shaft, optional retraction gap, bright-pink inner root sheath,
    purple outer root sheath with nuclei, pink connective-tissue sheath."""
    nuc = canvas.nuclei(region, 0.85, 0.6)
    h = np.where(rr < 0.36, 0.15, np.where(rr < 0.88, 1.15 + 0.6 * nuc, 0.12)).astype(F32)
    e = np.where(rr < 0.36, 1.7, np.where(rr < 0.88, 0.45, 1.2)).astype(F32)
    shaft = rr < 0.2
    if gap:
        clear = (rr >= 0.2) & (rr < 0.27)
        h[clear], e[clear] = 0.02, 0.08
    h[shaft], e[shaft] = 0.4, 0.5
    m = np.where(shaft, 1.4, 0.0).astype(F32)
    return h, e, m


def draw_follicle_lengthwise(
    canvas: Canvas, depth: np.ndarray, follicle: Follicle, outside: float
) -> None:
    """A hair follicle cut lengthwise: a tube from ``follicle.start`` along its direction with
    a bulb (dark matrix around a pale dermal papilla) at the deep end. The shaft continues
    ``outside`` pixels beyond the start, out of the skin surface (``depth`` < 0, the tile's
    depth below it) into the glass."""
    rng, s = canvas.rng, canvas.scale
    (dir_y, dir_x), radius = follicle.direction, follicle.radius
    sy, sx = follicle.start[0] - dir_y * outside, follicle.start[1] - dir_x * outside
    total = follicle.length + outside
    ey, ex = sy + dir_y * total, sx + dir_x * total
    half = total / 2 + 1.6 * radius
    box = window((sy + ey) / 2, (sx + ex) / 2, half, half, canvas.size)
    if box is None:
        return
    region, ys, xs = box
    py, px = ys - sy, xs - sx
    along = py * dir_y + px * dir_x
    across = py * dir_x - px * dir_y
    t = np.clip(along, 0.0, total)
    dist = np.sqrt((along - t) ** 2 + across**2)
    width = radius * (1 + 0.08 * np.sin(along / (5 * s) + rng.uniform(0, 2 * np.pi)))
    rr = dist / width
    # Bulb at the deep end: dark matrix cupping a pale dermal papilla.
    bulb_r = radius * rng.uniform(1.25, 1.5)
    by, bx = ey - dir_y * 0.4 * radius, ex - dir_x * 0.4 * radius
    bulb = ((ys - by) ** 2 + (xs - bx) ** 2) < bulb_r**2
    py2, px2 = ey + dir_y * 0.2 * bulb_r, ex + dir_x * 0.2 * bulb_r
    papilla = ((ys - py2) ** 2 + (xs - px2) ** 2) < (0.5 * bulb_r) ** 2
    in_skin = depth[region] >= 0
    body = (rr < 1) & in_skin & (along >= outside - radius)
    h, e, m = _follicle_stains(canvas, region, rr, gap=bool(rng.random() < 0.6))
    canvas.paint(region, body, FOLLICLE, h, e, m)
    matrix = bulb & in_skin & bool(rng.random() < 0.7)  # the cut may miss the bulb
    canvas.paint(region, matrix, FOLLICLE, 1.5 + 0.4 * canvas.nuclei(region, 0.9, 0.7), 0.4)
    canvas.paint(region, papilla & matrix, FOLLICLE, 0.3, 0.6)
    shaft_out = (rr < 0.2) & (along < outside) & ~in_skin
    canvas.paint(region, shaft_out, FOLLICLE, 0.4, 0.5, 1.4)


def draw_follicle_across(canvas: Canvas, cy: float, cx: float, radius: float) -> None:
    """A hair follicle cut across: concentric rings (shaft, sheaths) in a slight ellipse."""
    rng = canvas.rng
    aspect = rng.uniform(0.7, 1.0)
    angle = rng.uniform(0, np.pi)
    box = window(cy, cx, radius + 1, radius + 1, canvas.size)
    if box is None:
        return
    region, ys, xs = box
    dy, dx = ys - cy, xs - cx
    u = dy * np.sin(angle) + dx * np.cos(angle)
    v = (dy * np.cos(angle) - dx * np.sin(angle)) / aspect
    rr = np.sqrt(u * u + v * v) / radius
    h, e, m = _follicle_stains(canvas, region, rr, gap=bool(rng.random() < 0.6))
    canvas.paint(region, rr < 1, FOLLICLE, h, e, m)


def draw_gland(canvas: Canvas, cy: float, cx: float, radius: float) -> None:
    """A sebaceous gland: a few overlapping round-ish lobules of pale, foamy sebocytes with
    small dark nuclei, a purple rim of basal (germinative) cells and a thin pink capsule."""
    rng, s = canvas.rng, canvas.scale
    lobes = int(rng.integers(1, 5))
    centres = rng.normal(0.0, 0.75 * radius, (lobes, 2))
    centres[0] = 0.0
    radii = radius * rng.uniform(0.55, 1.0, lobes)
    reach = float(np.abs(centres).max() + radii.max() * 1.4 + 2 * s)
    box = window(cy, cx, reach, reach, canvas.size)
    if box is None:
        return
    region, ys, xs = box
    inside = np.full(ys.shape[0:1] + xs.shape[1:], -np.inf, dtype=F32)
    for (oy, ox), r in zip(centres, radii, strict=True):
        inside = np.maximum(inside, blob_depth(rng, ys, xs, cy + oy, cx + ox, r))
    capsule = (inside > -1.1 * s) & (inside <= 0)
    canvas.paint(region, capsule, None, 0.1, 1.1)
    gland = inside > 0
    foam = smooth_noise(rng, *gland.shape, 0.9 * s)
    e = 0.2 + 0.07 * foam
    h = np.full(gland.shape, 0.04, dtype=F32)
    wall = canvas.borders(region, 0.55)
    e = np.where(wall, 0.55, e)
    h = np.where(wall, 0.15, h)
    h = np.where(canvas.nuclei(region, 0.6, 0.4), 0.9, h)
    rim = inside < 1.4 * s
    h = np.where(rim, 1.25 + 0.4 * canvas.nuclei(region, 0.9, 0.8), h)
    e = np.where(rim, 0.35, e)
    canvas.paint(region, gland, SEBACEOUS, h, e)


def draw_vessel(canvas: Canvas, cy: float, cx: float) -> None:
    """A small blood vessel: an elliptical pink-red wall with endothelial nuclei around a
    lumen that is empty, holds plasma with a few red cells, or is packed with them."""
    rng, s = canvas.rng, canvas.scale
    a = rng.uniform(2.2, 6.5) * s
    b = a * rng.uniform(0.45, 1.0)
    angle = rng.uniform(0, np.pi)
    box = window(cy, cx, a + 1, a + 1, canvas.size)
    if box is None:
        return
    region, ys, xs = box
    dy, dx = ys - cy, xs - cx
    u = (dy * np.sin(angle) + dx * np.cos(angle)) / a
    v = (dy * np.cos(angle) - dx * np.sin(angle)) / b
    rr = np.sqrt(u * u + v * v)
    vessel = rr < 1
    wall = rr > 1 - rng.uniform(0.9, 1.8) * s / b
    kind = rng.random()  # lumen: < 0.25 empty, < 0.65 plasma and a few red cells, else packed
    threshold = 9.0 if kind < 0.25 else (0.7 if kind < 0.65 else -0.4)
    rbc = smooth_noise(rng, *rr.shape, 0.8 * s) > threshold
    lumen_e = 0.05 if kind < 0.25 else 0.3
    h = np.where(wall, 0.35 + 0.9 * canvas.nuclei(region, 0.8, 0.5), 0.02)
    e = np.where(wall, 1.35, np.where(rbc, 0.6, lumen_e))
    r = np.where(~wall & rbc, 1.1, 0.0)
    canvas.paint(region, vessel, VESSEL, h, e, 0.0, r)
