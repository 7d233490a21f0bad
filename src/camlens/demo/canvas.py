"""The square image a synthetic tile is painted on, before it is rendered to colour.

A :class:`Canvas` holds per-pixel class labels and stain concentrations; structures are
painted on it one after another (later ones overwrite earlier ones), then
:func:`camlens.demo.stain.render` turns the concentrations into RGB. Also here: the tile's
coordinate grids (:class:`Grid`, :func:`window`) and random placement (:func:`pick_point`).

Sizes of structures are given in *reference pixels* of a 128-px tile and multiplied by
:attr:`Canvas.scale`, so a 512-px tile shows the same field of view at four times the
resolution.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from camlens.demo.stain import F32
from camlens.demo.texture import Voronoi

__all__ = ["FULL", "Canvas", "Grid", "Region", "Window", "pick_point", "window"]

#: A rectangular part of a tile: ``(rows, columns)``.
Region = tuple[slice, slice]
#: The whole tile.
FULL: Region = (slice(None), slice(None))


class Grid(NamedTuple):
    """Pixel-centre coordinates of a square tile measured from its centre: ``yc`` a column,
    ``xc`` a row, so that ``yc * a + xc * b`` broadcasts to a whole-tile field."""

    size: int
    #: Half the tile's side, in pixels.
    half: float
    yc: np.ndarray
    xc: np.ndarray

    @classmethod
    def centred(cls, size: int) -> Grid:
        """The grid of a ``size`` × ``size`` tile."""
        half = size / 2
        coords = np.arange(size, dtype=F32) + 0.5 - half
        return cls(size, half, coords[:, None], coords[None, :])


class Window(NamedTuple):
    """A box of a tile: its ``region`` and the pixel-centre coordinates inside it (tile
    coordinates, not centred: ``ys`` a column, ``xs`` a row)."""

    region: Region
    ys: np.ndarray
    xs: np.ndarray


def window(cy: float, cx: float, ry: float, rx: float, size: int) -> Window | None:
    """The box around ``(cy, cx)`` ± ``(ry, rx)`` clipped to a ``size``-pixel tile, or ``None``
    when it misses the tile. Structures are drawn inside such boxes: far cheaper than on the
    whole tile."""
    y0, y1 = max(0, int(cy - ry)), min(size, int(cy + ry) + 2)
    x0, x1 = max(0, int(cx - rx)), min(size, int(cx + rx) + 2)
    if y0 >= y1 or x0 >= x1:
        return None
    ys = np.arange(y0, y1, dtype=F32)[:, None] + 0.5
    xs = np.arange(x0, x1, dtype=F32)[None, :] + 0.5
    return Window((slice(y0, y1), slice(x0, x1)), ys, xs)


def pick_point(
    rng: np.random.Generator, ok: np.ndarray, margin: int, tries: int = 40
) -> tuple[float, float] | None:
    """A random pixel centre at least ``margin`` px inside the tile where ``ok`` holds
    (rejection sampling), or ``None`` when ``tries`` draws all miss."""
    size = ok.shape[0]
    lo, hi = margin, max(margin + 1, size - margin)
    for _ in range(tries):
        y, x = (int(v) for v in rng.integers(lo, hi, 2))
        if ok[y, x]:
            return y + 0.5, x + 0.5
    return None


class Canvas:
    """Per-pixel labels and stain concentrations of one tile, painted structure by structure
    (later structures overwrite earlier ones), plus the small cells the painters share.

    ``labels`` (int64, filled with ``fill_label``) and ``conc`` (float32 ``(4, size, size)``,
    hematoxylin, eosin, melanin, haemoglobin) are the result; ``rng`` is the generator every
    painter draws from; ``cells`` is a fine Voronoi tessellation (cells of 3.2 reference px)
    with one random attribute per cell, from which epithelial cells and nuclei are cut.
    """

    def __init__(self, rng: np.random.Generator, size: int, fill_label: int = 0) -> None:
        self.rng = rng
        self.size = size
        #: Pixels per reference pixel (a 128-px tile is the reference).
        self.scale = size / 128.0
        self.labels = np.full((size, size), fill_label, dtype=np.int64)
        self.conc = np.zeros((4, size, size), dtype=F32)
        self.cells = Voronoi(rng, size, size, 3.2 * self.scale)
        self.cell_attr = self.cells.attribute(rng)

    def paint(
        self,
        region: Region,
        mask: np.ndarray,
        label: int | None,
        h: np.ndarray | float = 0.0,
        e: np.ndarray | float = 0.0,
        m: np.ndarray | float = 0.0,
        r: np.ndarray | float = 0.0,
    ) -> None:
        """Inside ``region``, where ``mask``: set the label (unless ``label`` is None) and all
        four stain concentrations (hematoxylin ``h``, eosin ``e``, melanin ``m``, haemoglobin
        ``r``; arrays shaped like the region, or scalars)."""
        if label is not None:
            np.copyto(self.labels[region], label, where=mask)
        for k, value in enumerate((h, e, m, r)):
            np.copyto(self.conc[k][region], value, where=mask, casting="unsafe")

    def nuclei(self, region: Region, radius: float, fraction: float) -> np.ndarray:
        """Small round nuclei in ``fraction`` of the small cells, of radius 0.7–1.3 × ``radius``
        ref px (the cell's attribute below ``fraction`` doubles as its nucleus' size)."""
        attr = self.cell_attr[region]
        size = F32(radius * self.scale / fraction * 0.6) * attr + F32(radius * self.scale * 0.7)
        return (self.cells.d1[region] < size) & (attr < fraction)

    def borders(self, region: Region, width: float) -> np.ndarray:
        """Membranes between the small cells, ``width`` ref px wide."""
        return (self.cells.d2[region] - self.cells.d1[region]) < width * self.scale
