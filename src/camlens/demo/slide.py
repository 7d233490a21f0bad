"""A seeded synthetic whole slide, rendered region by region, for the whole-slide demo and tests.

:class:`SyntheticSlide` looks like a ``(height, width, 3)`` uint8 array (``.shape``,
``.dtype``, ``slide[y0:y1, x0:x1]``) but renders only the regions asked for, so a
50,000 x 50,000 slide never exists in memory; :func:`write_synthetic_slide` streams it into a
pyramidal TIFF with :func:`camlens.slide.pyramid.write_pyramidal_tiff`.

What is on the slide, and why:

* **Glass**: near-white (RGB about 236-246) with slight pixel noise, as on a real scan, so
  that tissue detection cannot just look for pure white.
* **Sections**: one to three tissue sections side by side along the longer axis, each an
  ellipse whose outline is bent by a smooth random displacement (so it is wavy, not a
  conic), sometimes with a hole; together about 30-50 % of the slide.
* **Tissue**: inside a section, the slide is a mosaic of the demo's skin tiles
  (:func:`camlens.demo.tissue.make_tile`): a pool of distinct tiles of ``block`` pixels,
  drawn once, and for every ``block`` cell of the slide a seeded choice of tile and of one of
  its eight flips and quarter turns. A tile's own glass (class 0) stays as it is, so a
  section has gaps, as real tissue does. Drawing tiles once and placing them is what makes a
  large slide fast to render (a tile takes tens of milliseconds to draw, placing it a few
  microseconds).

Every pixel is a function of the seed and its position only: the pool, the sections and the
per-cell choices are drawn in the constructor, from generators seeded by ``(seed, stream)``;
a region is assembled from whole cells, each rendered the same way whatever region asked
for it, so two regions agree where they overlap, in any order. The section outline is
evaluated with additions, multiplications and comparisons only (correctly rounded in IEEE
arithmetic, so the same on any machine and in any array layout).

Which cells are all glass, all tissue or on an outline is decided once, from the outline
sampled at 9 x 9 points over each cell; only outline cells evaluate it per pixel. The
classification is part of the slide's definition (a cell found all inside is tissue
throughout), and :meth:`SyntheticSlide.labels` follows the same rule, so labels and pixels
always agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from camlens.demo.classes import BACKGROUND
from camlens.demo.tissue import make_tile

__all__ = ["SyntheticSlide", "write_synthetic_slide"]

#: How many distinct demo tiles a slide's mosaic is made of, and glass noise tiles.
POOL_SIZE = 24
GLASS_TILES = 8

#: Random streams: each use of randomness has its own generator ``(seed, stream, ...)``.
_POOL, _SECTIONS, _CELLS, _GLASS = range(4)

#: Cell kinds.
_GLASS_CELL, _TISSUE_CELL, _OUTLINE_CELL = range(3)

#: The outline's displacement grid: ``_WOBBLE_GRID`` x ``_WOBBLE_GRID`` values spanning
#: ``[-_WOBBLE_SPAN, _WOBBLE_SPAN]`` in a section's own coordinates (its ellipse is the unit
#: circle there), of amplitude up to ``_WOBBLE``.
_WOBBLE_GRID = 9
_WOBBLE_SPAN = 1.4
_WOBBLE = 0.1


class _Section(NamedTuple):
    """One tissue section: an ellipse (centre, semi-axes, rotation as cosine and sine) bent
    by a displacement grid, with holes (ellipses in the section's own coordinates)."""

    cy: float
    cx: float
    ry: float
    rx: float
    cos: float
    sin: float
    wobble: np.ndarray  # (_WOBBLE_GRID, _WOBBLE_GRID)
    holes: tuple[tuple[float, float, float, float], ...]  # (v, u, radius v, radius u)


class SyntheticSlide:
    """A synthetic H&E whole slide of ``width`` x ``height`` pixels, rendered lazily.

    Behaves as a read-only ``(height, width, 3)`` uint8 array for slicing:
    ``slide[y0:y1, x0:x1]`` (optionally ``[..., c0:c1]``; steps of 1 only) renders that
    region. ``mpp`` (micrometres per pixel) is only carried along, for writing. ``seed``
    fixes every pixel; ``block`` is the side of the mosaic's cells and of the demo tiles
    (at least 16).

    ::

        slide = SyntheticSlide(20_000, 15_000, seed=3)
        patch = slide[4096:4352, 8192:8448]  # (256, 256, 3) uint8
        truth = slide.labels(32)  # class ids, (469, 625)
    """

    def __init__(
        self, width: int, height: int, *, mpp: float = 0.5, seed: int = 0, block: int = 256
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"a slide needs at least one pixel; got {width} x {height}")
        if block < 16:
            raise ValueError(f"`block` must be at least 16 pixels (a demo tile); got {block}")
        self.width, self.height, self.mpp, self.seed, self.block = width, height, mpp, seed, block
        self.shape = (height, width, 3)
        self.dtype = np.dtype(np.uint8)
        self.grid = (-(-height // block), -(-width // block))
        self.sections = _plan_sections(np.random.default_rng((seed, _SECTIONS)), width, height)
        self._pool_rgb, self._pool_labels = _tile_pool(seed, block)
        self._glass = _glass_pool(np.random.default_rng((seed, _GLASS)), block)
        cells = np.random.default_rng((seed, _CELLS))
        self._tile_of = cells.integers(0, POOL_SIZE, self.grid)
        self._pose_of = cells.integers(0, 8, self.grid)
        self._glass_of = cells.integers(0, GLASS_TILES, self.grid)
        self._kind = self._classify_cells()

    def __repr__(self) -> str:
        return (
            f"SyntheticSlide({self.width}, {self.height}, mpp={self.mpp}, seed={self.seed}, "
            f"block={self.block})"
        )

    def __getitem__(self, key: Any) -> np.ndarray:
        """The pixels of a region, uint8 ``(y1 - y0, x1 - x0, channels)``."""
        rows, cols, channels = _region(key, self.shape)
        y0, y1 = rows
        x0, x1 = cols
        out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        b = self.block
        for by in range(y0 // b, -(-y1 // b)):
            top, bottom = max(y0, by * b), min(y1, (by + 1) * b)
            for bx in range(x0 // b, -(-x1 // b)):
                left, right = max(x0, bx * b), min(x1, (bx + 1) * b)
                rgb = self._cell_rgb(by, bx)
                out[top - y0 : bottom - y0, left - x0 : right - x0] = rgb[
                    top - by * b : bottom - by * b, left - bx * b : right - bx * b
                ]
        return out[..., channels[0] : channels[1]]

    def labels(self, downsample: int = 1) -> np.ndarray:
        """The true class of every ``downsample``-th pixel: uint8 ``(ceil(height / d),
        ceil(width / d))`` of class ids (:data:`camlens.demo.classes.CLASS_NAMES`; 0 is
        background: glass around the sections and the tiles' own glass inside them).

        Entry ``(i, j)`` is the class of pixel ``(i * d + d // 2, j * d + d // 2)`` (clipped
        to the slide), the centre of its ``d`` x ``d`` block: sampled, not a majority vote,
        so that ``labels(1)`` is exactly the label of each rendered pixel.
        """
        if downsample < 1:
            raise ValueError(f"`downsample` must be at least 1; got {downsample}")
        ys = np.minimum(np.arange(0, self.height, downsample) + downsample // 2, self.height - 1)
        xs = np.minimum(np.arange(0, self.width, downsample) + downsample // 2, self.width - 1)
        out = np.zeros((ys.size, xs.size), np.uint8)
        b = self.block
        col_groups = [(bx, np.flatnonzero(xs // b == bx)) for bx in np.unique(xs // b)]
        for by in np.unique(ys // b):
            row_index = np.flatnonzero(ys // b == by)
            for bx, col_index in col_groups:
                kind = self._kind[by, bx]
                if kind == _GLASS_CELL:
                    continue
                ry, rx = ys[row_index] - by * b, xs[col_index] - bx * b
                cell = self._posed(self._pool_labels, by, bx)[ry[:, None], rx[None, :]]
                if kind == _OUTLINE_CELL:
                    inside = self._inside(ys[row_index, None] + 0.5, xs[None, col_index] + 0.5)
                    cell = np.where(inside, cell, BACKGROUND)
                out[row_index[:, None], col_index[None, :]] = cell
        return out

    def tissue_mask(self, downsample: int = 1) -> np.ndarray:
        """Where there is tissue (any class but background), sampled as :meth:`labels`."""
        return self.labels(downsample) != BACKGROUND

    def _posed(self, pool: np.ndarray, by: int, bx: int) -> np.ndarray:
        """The pool tile of cell ``(by, bx)`` in the cell's pose (a view, not a copy)."""
        tile = np.rot90(pool[self._tile_of[by, bx]], int(self._pose_of[by, bx]) % 4)
        return tile[:, ::-1] if self._pose_of[by, bx] >= 4 else tile

    def _cell_rgb(self, by: int, bx: int) -> np.ndarray:
        """The ``block`` x ``block`` pixels of cell ``(by, bx)`` (beyond the slide's edge
        too: the caller crops)."""
        glass = self._glass[self._glass_of[by, bx]]
        kind = self._kind[by, bx]
        if kind == _GLASS_CELL:
            return glass
        tissue = self._posed(self._pool_rgb, by, bx)
        if kind == _TISSUE_CELL:
            return tissue
        b = self.block
        ys = np.arange(by * b, (by + 1) * b, dtype=np.float64) + 0.5
        xs = np.arange(bx * b, (bx + 1) * b, dtype=np.float64) + 0.5
        inside = self._inside(ys[:, None], xs[None, :])
        return np.where(inside[..., None], tissue, glass)

    def _inside(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Whether points (pixel coordinates, broadcast together) lie in a section."""
        inside = np.zeros(np.broadcast_shapes(np.shape(y), np.shape(x)), bool)
        for section in self.sections:
            inside |= _in_section(section, y, x)
        return inside

    def _classify_cells(self) -> np.ndarray:
        """Each cell's kind (glass, tissue, outline) from the outline sampled at 9 x 9
        points over it (its edges included); one row of cells at a time."""
        kind = np.empty(self.grid, np.int8)
        b = self.block
        steps = np.linspace(0.0, b, 9)
        xs = (np.arange(self.grid[1])[:, None] * b + steps[None, :]).ravel()
        for by in range(self.grid[0]):
            inside = self._inside((by * b + steps)[:, None], xs[None, :])
            per_cell = inside.reshape(9, self.grid[1], 9)
            every, some = per_cell.all(axis=(0, 2)), per_cell.any(axis=(0, 2))
            kind[by] = np.where(every, _TISSUE_CELL, np.where(some, _OUTLINE_CELL, _GLASS_CELL))
        return kind


def write_synthetic_slide(
    path: str | Path, width: int, height: int, *, mpp: float = 0.5, seed: int = 0
) -> SyntheticSlide:
    """Write a :class:`SyntheticSlide` to ``path`` as a pyramidal TIFF (zlib level 1, 256-px
    tiles, ``mpp`` as its resolution) and return the slide, e.g. for its :meth:`labels`.

    zlib's fastest level: the glass noise and the tissue hardly compress better at higher
    levels, which are several times slower. On 2 cores a 4096 x 4096 slide takes about 3 s,
    20,000 x 20,000 about 50 s and 50,000 x 50,000 about 7 minutes (5.4 GiB).
    """
    from camlens.slide.pyramid import write_pyramidal_tiff

    slide = SyntheticSlide(width, height, mpp=mpp, seed=seed)
    description = (
        f"camlens synthetic slide: seed={seed}, {width} x {height} px, mpp={mpp}, "
        "tissue from camlens.demo.tissue.make_tile"
    )
    write_pyramidal_tiff(path, slide, mpp=mpp, compression_level=1, description=description)
    return slide


def _region(key: Any, shape: tuple[int, int, int]) -> tuple[tuple[int, int], ...]:
    """``(start, stop)`` of rows, columns and channels selected by ``key`` (slices of step
    1; missing ones select everything)."""
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) > 3 or not all(isinstance(part, slice) for part in key):
        raise TypeError(f"a slide is sliced as slide[y0:y1, x0:x1]; got {key!r}")
    key = key + (slice(None),) * (3 - len(key))
    bounds = []
    for part, size in zip(key, shape, strict=True):
        start, stop, step = part.indices(size)
        if step != 1:
            raise ValueError(f"a slide is sliced with steps of 1 only; got {part!r}")
        bounds.append((start, max(start, stop)))
    return tuple(bounds)


def _in_section(section: _Section, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Whether points lie in one section: inside its bent ellipse and outside its holes.

    In the section's own coordinates ``(v, u)`` the ellipse is the unit circle; a point is
    inside when ``u**2 + v**2 < (1 + d)**2``, with ``d`` the displacement grid interpolated
    there (smoothstep-weighted bilinear), which bends the outline.
    """
    dy, dx = y - section.cy, x - section.cx
    u = (dx * section.cos + dy * section.sin) / section.rx
    v = (dy * section.cos - dx * section.sin) / section.ry
    d = _interpolate(section.wobble, v, u)
    inside = u * u + v * v < (1.0 + d) * (1.0 + d)
    for hv, hu, radius_v, radius_u in section.holes:
        hole_v, hole_u = (v - hv) / radius_v, (u - hu) / radius_u
        inside &= hole_v * hole_v + hole_u * hole_u >= 1.0
    return inside


def _interpolate(grid: np.ndarray, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``grid`` (spanning ``[-_WOBBLE_SPAN, _WOBBLE_SPAN]`` on both axes) at ``(v, u)``,
    clamped at its edges, smoothly between its nodes."""
    last = grid.shape[0] - 1
    scale = last / (2 * _WOBBLE_SPAN)
    gv = np.clip((v + _WOBBLE_SPAN) * scale, 0.0, last - 1e-9)
    gu = np.clip((u + _WOBBLE_SPAN) * scale, 0.0, last - 1e-9)
    iv, iu = np.floor(gv), np.floor(gu)
    fv, fu = gv - iv, gu - iu
    fv, fu = fv * fv * (3.0 - 2.0 * fv), fu * fu * (3.0 - 2.0 * fu)
    iv, iu = iv.astype(np.intp), iu.astype(np.intp)
    top = grid[iv, iu] * (1.0 - fu) + grid[iv, iu + 1] * fu
    bottom = grid[iv + 1, iu] * (1.0 - fu) + grid[iv + 1, iu + 1] * fu
    return top * (1.0 - fv) + bottom * fv


def _plan_sections(rng: np.random.Generator, width: int, height: int) -> tuple[_Section, ...]:
    """One to three sections side by side along the slide's longer axis, each filling about
    40 % of its share, slightly turned; zero to two holes among them."""
    count = int(rng.integers(1, 4))
    across, along = (height, width) if width >= height else (width, height)
    share = along / count
    sections = []
    for k in range(count):
        centre_along = share * (k + 0.5) + rng.uniform(-0.04, 0.04) * share
        centre_across = across * (0.5 + rng.uniform(-0.05, 0.05))
        radius_along = share / 2 * rng.uniform(0.65, 0.85)
        radius_across = across / 2 * rng.uniform(0.6, 0.8)
        angle = rng.uniform(-0.25, 0.25)
        wobble = rng.uniform(-_WOBBLE, _WOBBLE, (_WOBBLE_GRID, _WOBBLE_GRID))
        if width >= height:
            cy, cx, ry, rx = centre_across, centre_along, radius_across, radius_along
        else:
            cy, cx, ry, rx = centre_along, centre_across, radius_along, radius_across
        sections.append([cy, cx, ry, rx, float(np.cos(angle)), float(np.sin(angle)), wobble, []])
    for _ in range(int(rng.choice(3, p=[0.3, 0.45, 0.25]))):
        holes = sections[int(rng.integers(count))][7]
        hole = rng.uniform(-0.45, 0.45, 2).tolist() + rng.uniform(0.07, 0.16, 2).tolist()
        holes.append(tuple(float(value) for value in hole))
    return tuple(_Section(*section[:7], holes=tuple(section[7])) for section in sections)


def _tile_pool(seed: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """:data:`POOL_SIZE` demo tiles of ``block`` pixels, tile ``i`` drawn from the generator
    ``(seed, 0, i)``: uint8 RGB ``(POOL_SIZE, block, block, 3)`` and uint8 labels."""
    rgb = np.empty((POOL_SIZE, block, block, 3), np.uint8)
    labels = np.empty((POOL_SIZE, block, block), np.uint8)
    for i in range(POOL_SIZE):
        image, label = make_tile(np.random.default_rng((seed, _POOL, i)), size=block)
        rgb[i] = np.round(np.clip(image, 0.0, 1.0) * 255.0)
        labels[i] = label
    rgb.setflags(write=False)
    labels.setflags(write=False)
    return rgb, labels


def _glass_pool(rng: np.random.Generator, block: int) -> np.ndarray:
    """:data:`GLASS_TILES` tiles of bare glass: one slightly tinted near-white for the slide,
    brightness noise shared by the channels plus a little noise per channel (as a scanner
    gives), uint8 ``(GLASS_TILES, block, block, 3)``."""
    base = np.array([240.0, 238.0, 242.0]) + rng.uniform(-2.0, 2.0, 3)
    brightness = rng.normal(0.0, 1.5, (GLASS_TILES, block, block, 1))
    colour = rng.normal(0.0, 0.8, (GLASS_TILES, block, block, 3))
    glass = np.clip(np.round(base + brightness + colour), 0, 255).astype(np.uint8)
    glass.setflags(write=False)
    return glass
