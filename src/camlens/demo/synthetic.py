"""Seeded synthetic data for the embedded demo (``camlens demo``).

Two generators, numpy only; every random draw comes from the caller's
:class:`numpy.random.Generator`, so a seed fixes the data bit for bit on any machine.

* :func:`make_tile` / :func:`make_dataset`: low-magnification H&E skin-section tiles with a
  per-pixel label for seven tissue classes (:data:`CLASS_NAMES`), for the segmentation demo.
* :func:`make_shortcut_sample` / :func:`make_shortcut_dataset`: pink tissue patches with or
  without a dark "lesion"; with ``leak=True`` every positive also carries a green marker in a
  fixed corner (:data:`MARKER_CORNER`), the textbook shortcut a classifier can learn instead of
  the lesion. :func:`add_marker` stamps that marker on any image, to ask a trained model whether
  the marker alone flips its prediction.

How the tiles are made, and why:

* Images are rendered with the Beer–Lambert law from per-pixel *stain concentrations*
  (hematoxylin, eosin, melanin, haemoglobin): ``rgb = glass * exp(-Σ c_k · OD_k)``. Mixing,
  darkening and the per-tile stain variation (hue and intensity jitter of the stain vectors)
  then behave as on real slides instead of as alpha-blended flat colours.
* Classes are deliberately *not* separable by colour alone: fat cells and glass are both
  white (fat has thin pink membranes, chicken-wire), the dermis has white clefts, follicle
  sheaths are as purple as the epidermis, sebaceous lobules are as pale as fat. A segmenter
  must use texture and context, which is what makes its CAMs interesting to look at.
* Geometry follows a skin section: glass above a wavy skin surface, a layered epidermis with
  rete ridges, dermis with fibre bundles roughly parallel to the surface, subcutaneous fat
  lobules deeper down, and adnexa (follicles with attached sebaceous glands, vessels) inside.
  Sizes are given in reference pixels of a 128-px tile and scaled with ``size``, so a 512-px
  tile shows the same field of view at four times the resolution.
* Everything is vectorised; the few per-structure steps work on small bounding boxes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "CLASS_COLOURS",
    "CLASS_NAMES",
    "MARKER_COLOUR",
    "MARKER_CORNER",
    "add_marker",
    "label_to_rgb",
    "make_dataset",
    "make_shortcut_dataset",
    "make_shortcut_sample",
    "make_tile",
    "marker_box",
]

#: Segmentation classes; the index is the class id in the label maps.
CLASS_NAMES: tuple[str, ...] = (
    "background",
    "dermis_ecm",
    "epidermis",
    "sebaceous_gland",
    "hair_follicle",
    "blood_vessel",
    "fat",
)

BACKGROUND, DERMIS, EPIDERMIS, SEBACEOUS, FOLLICLE, VESSEL, FAT = range(len(CLASS_NAMES))

#: One distinct RGB colour per class (row = class id), for drawing label maps.
CLASS_COLOURS: np.ndarray = np.array(
    [
        (0, 0, 0),  # background: black
        (236, 150, 190),  # dermis_ecm: pink
        (110, 50, 170),  # epidermis: purple
        (250, 215, 60),  # sebaceous_gland: yellow
        (150, 85, 30),  # hair_follicle: brown
        (225, 25, 35),  # blood_vessel: red
        (110, 200, 245),  # fat: light blue
    ],
    dtype=np.uint8,
)
CLASS_COLOURS.setflags(write=False)

#: The corner that carries the shortcut marker.
MARKER_CORNER = "top-left"
#: The marker's colour in float images (pure green: nothing in H&E is green).
MARKER_COLOUR: tuple[float, float, float] = (0.0, 1.0, 0.0)

_F32 = np.float32

#: Light through bare glass (the brightest a tile gets).
_GLASS = np.array([0.96, 0.95, 0.97], dtype=_F32)
#: Colour of one unit of each stain on glass: hematoxylin, eosin, melanin, haemoglobin.
_STAIN_RGB = np.array(
    [
        [0.45, 0.30, 0.60],
        [0.93, 0.60, 0.75],
        [0.52, 0.38, 0.28],
        [0.84, 0.30, 0.34],
    ],
    dtype=_F32,
)
#: Optical density per unit concentration, one row per stain (Beer–Lambert).
_STAIN_OD = -np.log(_STAIN_RGB / _GLASS)


# ------------------------------------------------------------------------------------------
# Noise and geometry helpers
# ------------------------------------------------------------------------------------------


def _standardise(a: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (thresholds then mean the same for every field)."""
    return (a - a.mean()) / (a.std() + 1e-6)


def _white(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Per-pixel white noise with zero mean and unit variance (uniform: several times cheaper
    to draw than Gaussian, and nobody can tell in an image)."""
    return (rng.random(shape, dtype=_F32) - _F32(0.5)) * _F32(12**0.5)


def _interp_matrix(rng: np.random.Generator, n: int, cell: float) -> np.ndarray:
    """``(n, m)`` weights that interpolate ``m`` lattice values (spacing ``cell`` pixels,
    random phase) at ``n`` pixel centres with a smoothstep-eased linear kernel."""
    pos = (np.arange(n, dtype=_F32) + _F32(rng.random())) / _F32(cell)
    i0 = np.floor(pos).astype(np.intp)
    f = pos - i0
    f = f * f * (3 - 2 * f)
    w = np.zeros((n, int(i0[-1]) + 2), dtype=_F32)
    rows = np.arange(n)
    w[rows, i0] = 1 - f
    w[rows, i0 + 1] = f
    return w


def _noise2d(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Standardised smooth value noise with feature size ``cell`` pixels.

    Separable: ``Wy @ lattice @ Wx.T`` is two thin matrix products instead of a gather per
    pixel. Below ``cell`` = 1.5 pixels it is plain white noise (same statistics, far cheaper).
    """
    if cell < 1.5:
        return _white(rng, (h, w))
    wy = _interp_matrix(rng, h, cell)
    wx = _interp_matrix(rng, w, cell)
    lattice = rng.standard_normal((wy.shape[1], wx.shape[1]), dtype=_F32)
    # einsum, not BLAS: a multi-threaded matmul of this shape costs more than it saves.
    return _standardise(np.einsum("ij,jk->ik", wy, np.einsum("ij,kj->ik", lattice, wx)))


def _noise_at(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Standardised value noise sampled at arbitrary lattice coordinates ``(u, v)``.

    Used for anisotropic, rotated textures (fibre streaks): pass coordinates already divided
    by the feature size along each axis.
    """
    fu = np.floor(u)
    fv = np.floor(v)
    iu = (fu - fu.min()).astype(np.intp)
    iv = (fv - fv.min()).astype(np.intp)
    cols = int(iv.max()) + 2
    lattice = rng.standard_normal((int(iu.max()) + 2) * cols, dtype=_F32)
    idx = iu * cols + iv  # flat gathers: several times faster than 2-D fancy indexing
    a = u - fu
    b = v - fv
    a = a * a * (3 - 2 * a)
    b = b * b * (3 - 2 * b)
    top = lattice[idx] * (1 - b) + lattice[idx + 1] * b
    bottom = lattice[idx + cols] * (1 - b) + lattice[idx + cols + 1] * b
    return _standardise((top * (1 - a) + bottom * a).astype(_F32))


def _make_wobble(
    rng: np.random.Generator, extent: float, cell: float, amp: float
) -> Callable[[np.ndarray | float], np.ndarray]:
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
    table = table.astype(_F32)

    def wobble(t: np.ndarray | float) -> np.ndarray:
        idx = np.clip((np.asarray(t, dtype=_F32) - _F32(lo)) * 4, 0, table.size - 1)
        return table[idx.astype(np.intp)]

    return wobble


class _Voronoi:
    """Nearest and second-nearest seed of a jittered grid (cells of ``cell`` pixels).

    ``d1``: distance to the nearest seed (cell nuclei: ``d1 < r``); ``d2 - d1``: small near
    the borders between cells (membranes); ``ids``: the nearest seed's index, so per-cell
    random attributes are ``attr[ids]``; ``seed_y``/``seed_x``: the seeds, per index.
    """

    def __init__(self, rng: np.random.Generator, h: int, w: int, cell: float) -> None:
        ny = int(h // cell) + 3
        nx = int(w // cell) + 3
        jitter = rng.uniform(0.1, 0.9, (2, ny, nx)).astype(_F32)
        seed_y = (np.arange(ny, dtype=_F32)[:, None] - 1 + jitter[0]) * _F32(cell)
        seed_x = (np.arange(nx, dtype=_F32)[None, :] - 1 + jitter[1]) * _F32(cell)
        self.seed_y, self.seed_x = seed_y.ravel(), seed_x.ravel()
        self.count = ny * nx
        py = np.arange(h, dtype=_F32) + _F32(0.5)
        px = np.arange(w, dtype=_F32) + _F32(0.5)
        gy = (py // _F32(cell)).astype(np.intp) + 1
        gx = (px // _F32(cell)).astype(np.intp) + 1
        d1 = np.full((h, w), np.inf, dtype=_F32)
        d2 = np.full((h, w), np.inf, dtype=_F32)
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
        return rng.random(self.count, dtype=_F32)[self.ids]


def _blur(img: np.ndarray, passes: int = 1) -> np.ndarray:
    """Separable 3×3 binomial blur of a channel-first ``(c, h, w)`` image (edge-replicated),
    ``passes`` times: the mild softness of a slide scanner's optics."""
    for _ in range(passes):
        p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
        v = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
        img = (v[..., :-2] + 2 * v[..., 1:-1] + v[..., 2:]) * _F32(1 / 16)
    return img


def _render(
    rng: np.random.Generator, conc: np.ndarray, blur_passes: int, noise: float = 0.012
) -> np.ndarray:
    """Stain concentrations ``(4, h, w)`` → RGB float32 ``(h, w, 3)`` in [0, 1].

    Per-call stain variation (the same tissue stains differently on every slide): each stain's
    intensity and hue (its optical-density vector) and the glass tint are jittered; then a
    per-pixel stain granularity, optical blur and sensor noise.
    """
    _, h, w = conc.shape
    od = _STAIN_OD * rng.uniform(0.72, 1.28, (4, 1)).astype(_F32)
    od = od * np.exp(rng.normal(0.0, 0.07, (4, 3))).astype(_F32)
    glass = _GLASS + rng.uniform(-0.02, 0.01, 3).astype(_F32)
    conc = conc * (1 + 0.08 * _white(rng, (h, w)))
    density = np.einsum("kc,khw->chw", od, conc)  # no BLAS: its threads only cost here
    rgb = _blur(glass[:, None, None] * np.exp(-density), blur_passes)
    rgb += _F32(noise) * _white(rng, rgb.shape)
    return np.ascontiguousarray(np.clip(rgb, 0.0, 1.0).transpose(1, 2, 0))


def _box(
    cy: float, cx: float, ry: float, rx: float, size: int
) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    """Slices of the tile around ``(cy, cx)`` ± ``(ry, rx)`` and the pixel-centre coordinates
    inside them (a column and a row), or ``None`` when the box misses the tile."""
    y0, y1 = max(0, int(cy - ry)), min(size, int(cy + ry) + 2)
    x0, x1 = max(0, int(cx - rx)), min(size, int(cx + rx) + 2)
    if y0 >= y1 or x0 >= x1:
        return None
    ys = np.arange(y0, y1, dtype=_F32)[:, None] + 0.5
    xs = np.arange(x0, x1, dtype=_F32)[None, :] + 0.5
    return slice(y0, y1), slice(x0, x1), ys, xs


def _pick(
    rng: np.random.Generator, ok: np.ndarray, margin: int, tries: int = 40
) -> tuple[float, float] | None:
    """A random pixel centre where ``ok`` holds (rejection sampling), or ``None``."""
    size = ok.shape[0]
    lo, hi = margin, max(margin + 1, size - margin)
    for _ in range(tries):
        y, x = (int(v) for v in rng.integers(lo, hi, 2))
        if ok[y, x]:
            return y + 0.5, x + 0.5
    return None


def _blob(
    rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, cy: float, cx: float, r: float
) -> np.ndarray:
    """Signed depth inside a round-ish blob (pixels; > 0 inside) whose radius wobbles with a
    few random low harmonics of the angle."""
    dy, dx = ys - cy, xs - cx
    dist = np.sqrt(dy * dy + dx * dx)
    theta = np.arctan2(dy, dx)
    radius = np.ones_like(theta)
    for k in (2, 3, 5):
        radius = radius + _F32(rng.uniform(0, 0.28 / k**0.5)) * np.cos(
            k * theta + _F32(rng.uniform(0, 2 * np.pi))
        )
    return r * radius - dist


def _fibres(
    rng: np.random.Generator, yc: np.ndarray, xc: np.ndarray, theta: float, s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Collagen texture on the grid ``yc`` (column) × ``xc`` (row): ``(fibres, bundles)``,
    both standardised. ``fibres``: thin wavy streaks, mostly along ``theta`` and in patches
    along a second random direction; ``bundles``: coarse streaks along ``theta`` whose zero
    crossings make the white clefts between collagen bundles."""
    h, w = yc.shape[0], xc.shape[1]

    def streaks(angle: float, along_px: float, across_px: float) -> np.ndarray:
        along = yc * _F32(np.sin(angle)) + xc * _F32(np.cos(angle))
        across = yc * _F32(np.cos(angle)) - xc * _F32(np.sin(angle))
        across = across + _F32(3 * s) * _noise2d(rng, h, w, 20 * s)
        return _noise_at(rng, along / _F32(along_px * s), across / _F32(across_px * s))

    main = streaks(theta, 12, 1.6)
    other = streaks(theta + rng.uniform(0.5, 1.3) * rng.choice((-1, 1)), 10, 1.6)
    weight = 1 / (1 + np.exp(-2.5 * _noise2d(rng, h, w, 35 * s) - 1.0))
    fibres = _standardise(weight * main + (1 - weight) * other)
    return fibres, streaks(theta, 40, 7)


# ------------------------------------------------------------------------------------------
# H&E skin tiles
# ------------------------------------------------------------------------------------------


class _Canvas:
    """Per-pixel labels and stain concentrations of one tile, painted structure by structure
    (later structures overwrite earlier ones), plus the shared fields the painters need."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng = rng
        self.size = size
        self.s = size / 128.0
        self.labels = np.full((size, size), DERMIS, dtype=np.int64)
        self.conc = np.zeros((4, size, size), dtype=_F32)  # H, E, melanin, haemoglobin
        self.cells = _Voronoi(rng, size, size, 3.2 * self.s)  # small cells: epithelium, nuclei
        self.cell_attr = self.cells.attribute(rng)

    def paint(
        self,
        sl: tuple[slice, slice],
        mask: np.ndarray,
        label: int | None,
        h: np.ndarray | float = 0.0,
        e: np.ndarray | float = 0.0,
        m: np.ndarray | float = 0.0,
        r: np.ndarray | float = 0.0,
    ) -> None:
        """Overwrite labels (unless ``label`` is None) and all four stains where ``mask``."""
        if label is not None:
            np.copyto(self.labels[sl], label, where=mask)
        for k, value in enumerate((h, e, m, r)):
            np.copyto(self.conc[k][sl], value, where=mask, casting="unsafe")

    def nuclei(self, sl: tuple[slice, slice], radius: float, fraction: float) -> np.ndarray:
        """Small round nuclei in ``fraction`` of the small cells, of radius 0.7–1.3 × ``radius``
        ref px (the cell's attribute below ``fraction`` doubles as its nucleus' size)."""
        attr = self.cell_attr[sl]
        size = _F32(radius * self.s / fraction * 0.6) * attr + _F32(radius * self.s * 0.7)
        return (self.cells.d1[sl] < size) & (attr < fraction)

    def borders(self, sl: tuple[slice, slice], width: float) -> np.ndarray:
        """Membranes between the small cells, ``width`` ref px wide."""
        return (self.cells.d2[sl] - self.cells.d1[sl]) < width * self.s


def _follicle_stains(
    canvas: _Canvas, sl: tuple[slice, slice], rr: np.ndarray, gap: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hematoxylin, eosin, melanin of a hair follicle at normalised radius ``rr`` (0 = axis,
    1 = outer edge): pigmented shaft, optional retraction gap, bright-pink inner root sheath,
    purple outer root sheath with nuclei, pink connective-tissue sheath."""
    nuc = canvas.nuclei(sl, 0.85, 0.6)
    h = np.where(rr < 0.36, 0.15, np.where(rr < 0.88, 1.15 + 0.6 * nuc, 0.12)).astype(_F32)
    e = np.where(rr < 0.36, 1.7, np.where(rr < 0.88, 0.45, 1.2)).astype(_F32)
    shaft = rr < 0.2
    if gap:
        clear = (rr >= 0.2) & (rr < 0.27)
        h[clear], e[clear] = 0.02, 0.08
    h[shaft], e[shaft] = 0.4, 0.5
    m = np.where(shaft, 1.4, 0.0).astype(_F32)
    return h, e, m


def _draw_follicle_long(
    canvas: _Canvas,
    depth: np.ndarray,
    start: tuple[float, float],
    direction: tuple[float, float],
    length: float,
    radius: float,
    outside: float,
) -> None:
    """A hair follicle cut lengthwise: a tube from ``start`` along ``direction`` with a bulb
    (dark matrix around a pale dermal papilla) at the deep end. The shaft continues
    ``outside`` pixels beyond the start, out of the skin surface into the glass."""
    rng, s = canvas.rng, canvas.s
    sy, sx = start[0] - direction[0] * outside, start[1] - direction[1] * outside
    total = length + outside
    ey, ex = sy + direction[0] * total, sx + direction[1] * total
    cy, cx = (sy + ey) / 2, (sx + ex) / 2
    half = total / 2 + 1.6 * radius
    box = _box(cy, cx, half, half, canvas.size)
    if box is None:
        return
    sly, slx, ys, xs = box
    sl = (sly, slx)
    py, px = ys - sy, xs - sx
    along = py * direction[0] + px * direction[1]
    across = py * direction[1] - px * direction[0]
    t = np.clip(along, 0.0, total)
    dist = np.sqrt((along - t) ** 2 + across**2)
    width = radius * (1 + 0.08 * np.sin(along / (5 * s) + rng.uniform(0, 2 * np.pi)))
    rr = dist / width
    # Bulb at the deep end: dark matrix cupping a pale dermal papilla.
    bulb_r = radius * rng.uniform(1.25, 1.5)
    by, bx = ey - direction[0] * 0.4 * radius, ex - direction[1] * 0.4 * radius
    bulb = ((ys - by) ** 2 + (xs - bx) ** 2) < bulb_r**2
    py2, px2 = ey + direction[0] * 0.2 * bulb_r, ex + direction[1] * 0.2 * bulb_r
    papilla = ((ys - py2) ** 2 + (xs - px2) ** 2) < (0.5 * bulb_r) ** 2
    in_skin = depth[sl] >= 0
    body = (rr < 1) & in_skin & (along >= outside - radius)
    h, e, m = _follicle_stains(canvas, sl, rr, gap=bool(rng.random() < 0.6))
    canvas.paint(sl, body, FOLLICLE, h, e, m)
    matrix = bulb & in_skin & bool(rng.random() < 0.7)  # the cut may miss the bulb
    canvas.paint(sl, matrix, FOLLICLE, 1.5 + 0.4 * canvas.nuclei(sl, 0.9, 0.7), 0.4)
    canvas.paint(sl, papilla & matrix, FOLLICLE, 0.3, 0.6)
    shaft_out = (rr < 0.2) & (along < outside) & ~in_skin
    canvas.paint(sl, shaft_out, FOLLICLE, 0.4, 0.5, 1.4)


def _draw_follicle_cross(canvas: _Canvas, cy: float, cx: float, radius: float) -> None:
    """A hair follicle cut across: concentric rings (shaft, sheaths) in a slight ellipse."""
    rng = canvas.rng
    aspect = rng.uniform(0.7, 1.0)
    angle = rng.uniform(0, np.pi)
    box = _box(cy, cx, radius + 1, radius + 1, canvas.size)
    if box is None:
        return
    sly, slx, ys, xs = box
    sl = (sly, slx)
    dy, dx = ys - cy, xs - cx
    u = dy * np.sin(angle) + dx * np.cos(angle)
    v = (dy * np.cos(angle) - dx * np.sin(angle)) / aspect
    rr = np.sqrt(u * u + v * v) / radius
    h, e, m = _follicle_stains(canvas, sl, rr, gap=bool(rng.random() < 0.6))
    canvas.paint(sl, rr < 1, FOLLICLE, h, e, m)


def _draw_gland(canvas: _Canvas, cy: float, cx: float, radius: float) -> None:
    """A sebaceous gland: a few overlapping round-ish lobules of pale, foamy sebocytes with
    small dark nuclei, a purple rim of basal (germinative) cells and a thin pink capsule."""
    rng, s = canvas.rng, canvas.s
    lobes = int(rng.integers(1, 5))
    centres = rng.normal(0.0, 0.75 * radius, (lobes, 2))
    centres[0] = 0.0
    radii = radius * rng.uniform(0.55, 1.0, lobes)
    reach = float(np.abs(centres).max() + radii.max() * 1.4 + 2 * s)
    box = _box(cy, cx, reach, reach, canvas.size)
    if box is None:
        return
    sly, slx, ys, xs = box
    sl = (sly, slx)
    inside = np.full(ys.shape[0:1] + xs.shape[1:], -np.inf, dtype=_F32)
    for (oy, ox), r in zip(centres, radii, strict=True):
        inside = np.maximum(inside, _blob(rng, ys, xs, cy + oy, cx + ox, r))
    capsule = (inside > -1.1 * s) & (inside <= 0)
    canvas.paint(sl, capsule, None, 0.1, 1.1)
    gland = inside > 0
    foam = _noise2d(rng, *gland.shape, 0.9 * s)
    e = 0.2 + 0.07 * foam
    h = np.full(gland.shape, 0.04, dtype=_F32)
    wall = canvas.borders(sl, 0.55)
    e = np.where(wall, 0.55, e)
    h = np.where(wall, 0.15, h)
    h = np.where(canvas.nuclei(sl, 0.6, 0.4), 0.9, h)
    rim = inside < 1.4 * s
    h = np.where(rim, 1.25 + 0.4 * canvas.nuclei(sl, 0.9, 0.8), h)
    e = np.where(rim, 0.35, e)
    canvas.paint(sl, gland, SEBACEOUS, h, e)


def _draw_vessel(canvas: _Canvas, cy: float, cx: float) -> None:
    """A small blood vessel: an elliptical pink-red wall with endothelial nuclei around a
    lumen that is empty, holds plasma with a few red cells, or is packed with them."""
    rng, s = canvas.rng, canvas.s
    a = rng.uniform(2.2, 6.5) * s
    b = a * rng.uniform(0.45, 1.0)
    angle = rng.uniform(0, np.pi)
    box = _box(cy, cx, a + 1, a + 1, canvas.size)
    if box is None:
        return
    sly, slx, ys, xs = box
    sl = (sly, slx)
    dy, dx = ys - cy, xs - cx
    u = (dy * np.sin(angle) + dx * np.cos(angle)) / a
    v = (dy * np.cos(angle) - dx * np.sin(angle)) / b
    rr = np.sqrt(u * u + v * v)
    vessel = rr < 1
    wall = rr > 1 - rng.uniform(0.9, 1.8) * s / b
    kind = rng.random()
    threshold = 9.0 if kind < 0.25 else (0.7 if kind < 0.65 else -0.4)
    rbc = _noise2d(rng, *rr.shape, 0.8 * s) > threshold
    lumen_e = 0.05 if kind < 0.25 else 0.3
    h = np.where(wall, 0.35 + 0.9 * canvas.nuclei(sl, 0.8, 0.5), 0.02)
    e = np.where(wall, 1.35, np.where(rbc, 0.6, lumen_e))
    r = np.where(~wall & rbc, 1.1, 0.0)
    canvas.paint(sl, vessel, VESSEL, h, e, 0.0, r)


def make_tile(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic H&E skin-section tile and its label map.

    Returns ``(image, labels)``: ``image`` float32 ``(size, size, 3)`` in [0, 1], RGB;
    ``labels`` int64 ``(size, size)`` with class ids indexing :data:`CLASS_NAMES`.

    Layout (randomised per tile): glass beyond the skin surface at one edge (most tiles) and
    sometimes beyond a torn section edge at another; epidermis along the surface; dermis with
    fibre bundles, clefts, fibroblast nuclei and vessels; hair follicles cut lengthwise
    (from the surface down to a bulb) or across (rings), sebaceous glands beside them; fat
    lobules at depth. All randomness comes from ``rng``: the same generator state gives the
    same tile.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    canvas = _Canvas(rng, size)
    s = canvas.s
    full = (slice(None), slice(None))
    half = size / 2
    coords = np.arange(size, dtype=_F32) + 0.5 - half
    yc, xc = coords[:, None], coords[None, :]

    # Skin surface: a wavy line with inward normal (ny, nx); depth = pixels below it.
    phi = rng.uniform(0, 2 * np.pi)
    ny, nx = np.sin(phi), np.cos(phi)
    proj = yc * _F32(ny) + xc * _F32(nx)
    tang = yc * _F32(nx) - xc * _F32(ny)
    pmin = -(abs(ny) + abs(nx)) * half
    has_surface = bool(rng.random() < 0.8)
    if has_surface:
        surf = pmin + rng.uniform(0.07, 0.36) * size
    else:
        surf = pmin - rng.uniform(0.05, 0.5) * size
    wobble = _make_wobble(rng, size, 30 * s, 3.5 * s)
    depth = proj - _F32(surf) + wobble(tang)

    # Epidermis thickness: a base plus rete ridges pegging down into the dermis.
    period = rng.uniform(11, 20) * s
    pegs = np.sin(tang * _F32(2 * np.pi / period) + _F32(rng.uniform(0, 2 * np.pi)))
    pegs = np.clip(0.5 + 0.5 * pegs + _make_wobble(rng, size, period, 0.3)(tang), 0, 1)
    thick = _F32(rng.uniform(5, 9) * s) + _F32(rng.uniform(2, 7) * s) * pegs**2.5
    dermal_depth = depth - thick  # > 0 in the dermis (or deeper)

    # Dermis: eosin fibre bundles with white clefts; two wavy fibre directions (one roughly
    # parallel to the surface) that take turns across the tile.
    fibres, bundles = _fibres(rng, yc, xc, phi + np.pi / 2 + rng.normal(0, 0.3), s)
    papillary = np.clip(1 - dermal_depth / (12 * s), 0, 1) if has_surface else 0.0
    e = (1.0 + 0.3 * fibres) * (1 - 0.4 * papillary) * (1 + 0.12 * bundles)
    e = np.where(np.abs(bundles) < 0.07, 0.12, np.maximum(e, 0.2))
    h = 0.05 + 1.2 * canvas.nuclei(full, 0.8, 0.06) + 0.1 * papillary
    canvas.paint(full, np.ones((size, size), bool), None, h, e)

    # Subcutaneous fat: chicken-wire cells; lobules bounded by cell walls and fibrous septa.
    fat_level = rng.uniform(pmin + 0.45 * size, -pmin + 0.2 * size)
    fat_level = max(fat_level, surf + 35 * s)
    fat_depth = proj - _F32(fat_level) + _make_wobble(rng, size, 25 * s, 7 * s)(tang)
    septa = np.abs(_noise2d(rng, size, size, 32 * s)) < 0.1
    fat_px = (fat_depth > 0) & ~septa
    if fat_px.any():
        fat_cells = _Voronoi(rng, size, size, rng.uniform(9, 13) * s)
        iy = np.clip(fat_cells.seed_y.astype(np.intp), 0, size - 1)
        ix = np.clip(fat_cells.seed_x.astype(np.intp), 0, size - 1)
        fat = fat_px[iy, ix][fat_cells.ids]
        membrane = (fat_cells.d2 - fat_cells.d1) < 1.1 * s
        h, e = np.where(membrane, 0.05, 0.0), np.where(membrane, 0.85, 0.02)
        canvas.paint(full, fat, FAT, h, e)

    # Epidermis: cornified layer (flaky), granular layer, spinous cells, dark basal layer.
    if has_surface:
        epi = (depth >= 0) & (dermal_depth < 0)
        horny = depth < rng.uniform(1.0, 2.8) * s
        flakes = _noise_at(rng, tang / (6 * s), depth / (0.7 * s)) > -0.2
        granular = ~horny & (depth < rng.uniform(1.5, 3.5) * s)
        basal = dermal_depth > -1.6 * s
        h = 0.55 + 0.35 * depth / thick + 0.55 * canvas.nuclei(full, 0.75, 0.8)
        e = 0.55 + 0.25 * canvas.borders(full, 0.5)
        h = np.where(granular, 1.3, np.where(basal, 1.5, h))
        e = np.where(granular, 0.5, np.where(basal, 0.4, e))
        h = np.where(horny, 0.05, h)
        e = np.where(horny, np.where(flakes, 0.75, 0.12), e)
        melanin = np.where(basal, rng.uniform(0, 0.6) * (rng.random() < 0.3), 0.0)
        canvas.paint(full, epi, EPIDERMIS, h, e, melanin)

    # Adnexa and vessels, placed in the dermis (below the epidermis, not in glass).
    dermis_ok = (dermal_depth > 3 * s) & (canvas.labels == DERMIS)
    margin = int(4 * s)
    for _ in range(int(rng.integers(1, 8))):
        at = _pick(rng, (dermal_depth > 2 * s) & (canvas.labels != EPIDERMIS), 0)
        if at is not None:
            _draw_vessel(canvas, *at)

    follicles: list[tuple[tuple[float, float], tuple[float, float], float, float]] = []
    n_follicles = int(rng.choice(4, p=[0.15, 0.4, 0.3, 0.15]))
    slant = phi + rng.uniform(-0.6, 0.6)  # follicles of one section run nearly parallel
    for _ in range(n_follicles):
        radius = rng.uniform(5, 8.5) * s
        if has_surface and rng.random() < 0.55:
            # Lengthwise from the surface: pick a surface point, walk down the normal.
            t0 = rng.uniform(-0.4, 0.4) * size
            base = surf - float(wobble(t0))
            start = (half + t0 * nx + base * ny, half - t0 * ny + base * nx)
            tilt = slant + rng.normal(0, 0.08)
            direction = (float(np.sin(tilt)), float(np.cos(tilt)))
            length = rng.uniform(0.3, 0.7) * size
            follicles.append((start, direction, length, radius))
        elif (at := _pick(rng, dermis_ok, margin)) is not None:
            follicles.append((at, (0.0, 0.0), 0.0, radius))

    # Sebaceous glands: beside a lengthwise follicle when there is one, else free.
    n_glands = int(rng.choice(3, p=[0.3, 0.45, 0.25]))
    for k in range(n_glands):
        radius = rng.uniform(7, 12) * s
        long = [f for f in follicles if f[2] > 0]
        if k < len(long):
            (fy, fx), (dy, dx), length, fr = long[k]
            reach = length * rng.uniform(0.2, 0.45)
            side = fr + 0.7 * radius
            sign = 1 if rng.random() < 0.5 else -1
            at = (fy + dy * reach + sign * dx * side, fx + dx * reach - sign * dy * side)
        else:
            at = _pick(rng, dermis_ok, margin)
        if at is not None:
            _draw_gland(canvas, *at, radius)

    # Glass beyond the skin surface (the follicles' shafts may stick out into it).
    if has_surface:
        canvas.paint(full, depth < 0, BACKGROUND, 0.01, 0.02)
    for start, direction, length, radius in follicles:
        if length > 0:
            outside = rng.uniform(0, 25) * s * (rng.random() < 0.6)
            _draw_follicle_long(canvas, depth, start, direction, length, radius, outside)
        else:
            _draw_follicle_cross(canvas, *start, radius)

    # Sometimes a torn section edge on another side: more glass.
    if rng.random() < 0.3:
        phi2 = phi + rng.uniform(0.5, 1.5) * np.pi
        proj2 = yc * _F32(np.sin(phi2)) + xc * _F32(np.cos(phi2))
        tang2 = yc * _F32(np.cos(phi2)) - xc * _F32(np.sin(phi2))
        pmin2 = -(abs(np.sin(phi2)) + abs(np.cos(phi2))) * half
        edge = pmin2 + rng.uniform(0.04, 0.22) * size
        torn = proj2 - _F32(edge) + _make_wobble(rng, size, 14 * s, 4 * s)(tang2)
        canvas.paint(full, torn < 0, BACKGROUND, 0.01, 0.02)

    image = _render(rng, canvas.conc, blur_passes=max(1, round(s / 2)))
    return image, canvas.labels


def make_dataset(seed: int, count: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``count`` tiles from one seeded generator: images ``(count, size, size, 3)`` float32
    and labels ``(count, size, size)`` int64."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, size, size, 3), dtype=_F32)
    labels = np.empty((count, size, size), dtype=np.int64)
    for i in range(count):
        images[i], labels[i] = make_tile(rng, size)
    return images, labels


def label_to_rgb(labels: np.ndarray) -> np.ndarray:
    """Class-id map (any shape) → uint8 RGB (shape + ``(3,)``) in :data:`CLASS_COLOURS`."""
    return CLASS_COLOURS[labels]


# ------------------------------------------------------------------------------------------
# Shortcut data
# ------------------------------------------------------------------------------------------


def marker_box(size: int) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the shortcut marker in a ``size``-pixel image: a square of
    6 px at 64 px (scaled with ``size``), 2 px (scaled) from the top-left corner."""
    side = max(3, round(6 * size / 64))
    offset = max(1, round(2 * size / 64))
    return offset, offset + side, offset, offset + side


def add_marker(image: np.ndarray) -> np.ndarray:
    """A copy of ``image`` (``(..., H, W, 3)``, float in [0, 1] or uint8) with the shortcut
    marker stamped on: pure green in the :data:`MARKER_CORNER` square of :func:`marker_box`.

    Use it to probe a trained classifier: if stamping the marker on a negative image flips the
    prediction, the model learnt the shortcut.
    """
    out = np.array(image, copy=True)
    y0, y1, x0, x1 = marker_box(min(out.shape[-3], out.shape[-2]))
    scale = 255 if np.issubdtype(out.dtype, np.integer) else 1
    out[..., y0:y1, x0:x1, :] = np.asarray(MARKER_COLOUR) * scale
    return out


def make_shortcut_sample(
    rng: np.random.Generator, size: int = 64, *, label: int, leak: bool
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """One patch for the shortcut demo.

    Returns ``(image, label, lesion_mask, marker_mask)``: ``image`` float32 ``(size, size, 3)``
    in [0, 1]; ``label`` 1 if the patch holds a lesion, else 0; boolean masks of the lesion and
    of the marker.

    The patch is pink dermis (fibres, clefts, scattered nuclei, a few small round clusters of
    inflammatory cells as distractors). A label-1 patch adds a lesion: an irregular blob of
    crowded atypical cells with large dark nuclei, away from the borders and never touching the
    marker corner. Only when ``leak`` is true and the label is 1, the marker
    (:func:`add_marker`) is stamped: the shortcut. The random draws do not depend on ``leak``,
    so the same generator state gives the same patch with and without the marker.
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1, got {label}")
    if size < 24:
        raise ValueError(f"size must be at least 24 pixels, got {size}")
    s = size / 64.0
    canvas = _Canvas(rng, size)
    full = (slice(None), slice(None))
    coords = np.arange(size, dtype=_F32) + 0.5 - size / 2
    yc, xc = coords[:, None], coords[None, :]

    fibres, bundles = _fibres(rng, yc, xc, rng.uniform(0, np.pi), s)
    e = np.where(np.abs(bundles) < 0.07, 0.15, (1.0 + 0.3 * fibres) * (1 + 0.12 * bundles))
    h = 0.06 + 1.1 * canvas.nuclei(full, 0.8, 0.1)
    canvas.paint(full, np.ones((size, size), bool), None, h, e)

    ys = np.arange(size, dtype=_F32)[:, None] + 0.5
    xs = np.arange(size, dtype=_F32)[None, :] + 0.5
    for _ in range(int(rng.integers(0, 4))):  # inflammatory clusters: small, round, dark
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        cluster = _blob(rng, ys, xs, cy, cx, rng.uniform(1.2, 2.4) * s) > 0
        canvas.paint(full, cluster, None, 1.0 + 0.5 * canvas.nuclei(full, 1.0, 0.9), 0.5)

    # The lesion's geometry is drawn for both labels (same random stream for either label).
    radius = rng.uniform(0.11, 0.17) * size
    reach = radius * 1.35 + 2 * s
    y0, y1, x0, x1 = marker_box(size)
    cy = cx = size / 2
    for _ in range(50):
        cy, cx = rng.uniform(reach, size - reach, 2)
        if cy - reach > y1 + 2 * s or cx - reach > x1 + 2 * s:
            break
    else:  # pragma: no cover - fifty misses in a row are practically impossible
        cy = cx = size - reach
    lesion = _blob(rng, ys, xs, cy, cx, radius) > 0
    lesion[y0:y1, x0:x1] = False
    big_nuclei = canvas.cells.d1 < (0.8 + 0.9 * canvas.cells.attribute(rng)) * canvas.s
    darkness = 0.9 + 0.7 * canvas.cells.attribute(rng)
    if label == 1:
        h = np.where(big_nuclei, darkness, 0.4)
        canvas.paint(full, lesion, None, h, np.where(big_nuclei, 0.35, 0.7))
    else:
        lesion = np.zeros_like(lesion)

    image = _render(rng, canvas.conc, blur_passes=max(1, round(s)))
    marker = np.zeros((size, size), dtype=bool)
    if leak and label == 1:
        image = add_marker(image)
        marker[y0:y1, x0:x1] = True
    return image, label, lesion, marker


def make_shortcut_dataset(
    seed: int, count: int, size: int = 64, *, leak: bool
) -> dict[str, np.ndarray]:
    """``count`` shortcut patches with balanced labels (half 0, half 1, shuffled).

    Returns a dict: ``images`` float32 ``(count, size, size, 3)``, ``labels`` int64
    ``(count,)``, ``lesion_masks`` and ``marker_masks`` bool ``(count, size, size)``. With the
    same seed, ``leak=True`` and ``leak=False`` give the same patches except for the marker.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % 2
    rng.shuffle(labels)
    images = np.empty((count, size, size, 3), dtype=_F32)
    lesions = np.empty((count, size, size), dtype=bool)
    markers = np.empty((count, size, size), dtype=bool)
    for i, label in enumerate(labels):
        images[i], _, lesions[i], markers[i] = make_shortcut_sample(
            rng, size, label=int(label), leak=leak
        )
    return {"images": images, "labels": labels, "lesion_masks": lesions, "marker_masks": markers}
