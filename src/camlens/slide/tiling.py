"""The tile grid of a slide at the analysis resolution, and how overlapping tiles blend.

Tiles are ``tile × tile`` analysis pixels, ``stride = tile - overlap`` apart, in raster order;
the grid covers the whole slide (the last row and column reach past its edge and are read as
white glass). Only tiles with enough tissue under them (on the thumbnail's tissue mask) are
explained.

Stitching happens on a *canvas* ``downsample`` times coarser than the analysis grid, so tile
size and overlap are multiples of it and every tile lands on whole canvas pixels. Overlaps
blend with a separable linear ramp (:func:`tile_window`): a tile's weight rises from near 0
at its edge to 1 at ``overlap`` from it, so where two tiles overlap their weights sum to a
constant and the stitched map moves continuously from one tile's values to the other's —
no seam. Away from the overlaps a single tile covers a pixel and the stitched value is that
tile's value exactly (the weight divides out).

Each analysis pixel also has one *owner* tile (:meth:`TileGrid.core`: the tile's area minus
half the overlap on sides with a neighbour), so area statistics count every pixel once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Tile", "TileGrid", "plan_tiles", "tile_window"]


@dataclass(frozen=True)
class Tile:
    """One tile: its grid position and its top-left analysis pixel."""

    index: int
    row: int
    col: int
    x: int
    y: int

    @property
    def key(self) -> str:
        """The tile's name in file names and the manifest."""
        return f"r{self.row:04d}c{self.col:04d}"


@dataclass(frozen=True)
class TileGrid:
    """The grid's geometry (analysis pixels) and its canvas (``downsample`` coarser)."""

    width: int
    height: int
    tile: int
    overlap: int
    downsample: int

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def cols(self) -> int:
        return max(1, math.ceil((self.width - self.overlap) / self.stride))

    @property
    def rows(self) -> int:
        return max(1, math.ceil((self.height - self.overlap) / self.stride))

    @property
    def canvas_size(self) -> tuple[int, int]:
        """Canvas ``(width, height)``: the slide's analysis size, ``downsample`` coarser."""
        return math.ceil(self.width / self.downsample), math.ceil(self.height / self.downsample)

    def tile_at(self, row: int, col: int, index: int = -1) -> Tile:
        return Tile(index, row, col, col * self.stride, row * self.stride)

    def core(self, tile: Tile) -> tuple[int, int, int, int]:
        """The pixels this tile owns, ``(y0, y1, x0, x1)`` inside the tile, clipped to the slide."""
        half = self.overlap // 2
        y0 = half if tile.row > 0 else 0
        x0 = half if tile.col > 0 else 0
        y1 = self.tile - half if tile.row < self.rows - 1 else self.tile
        x1 = self.tile - half if tile.col < self.cols - 1 else self.tile
        return y0, min(y1, self.height - tile.y), x0, min(x1, self.width - tile.x)


def check_geometry(tile: int, overlap: int, downsample: int) -> None:
    """Refuse a tile / overlap / canvas downsample that cannot stitch (``ValueError``)."""
    if tile < 16:
        raise ValueError(f"--tile {tile}: tiles must be at least 16 pixels")
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"--overlap {overlap}: must be between 0 and half the tile ({tile // 2})")
    if overlap % 2:
        raise ValueError(f"--overlap {overlap}: must be even (each tile owns half of it)")
    if downsample < 1 or tile % downsample or overlap % downsample:
        raise ValueError(
            f"--downsample {downsample}: the tile ({tile}) and the overlap ({overlap}) must be "
            "multiples of it, so that tiles land on whole canvas pixels"
        )


def plan_tiles(
    grid: TileGrid,
    tissue: np.ndarray | None,
    *,
    min_tissue: float,
) -> list[Tile]:
    """The tiles to explain: those whose share of tissue on ``tissue`` (a boolean mask over
    the whole slide at any resolution; ``None`` = everything is tissue) is ≥ ``min_tissue``."""
    tiles = []
    for row in range(grid.rows):
        for col in range(grid.cols):
            tile = grid.tile_at(row, col)
            if tissue is None or _tissue_share(grid, tile, tissue) >= max(min_tissue, 1e-9):
                tiles.append(Tile(len(tiles), row, col, tile.x, tile.y))
    return tiles


def _tissue_share(grid: TileGrid, tile: Tile, tissue: np.ndarray) -> float:
    """The mask's mean over the tile's footprint (at least one mask pixel)."""
    mh, mw = tissue.shape
    fy, fx = mh / grid.height, mw / grid.width
    y0, x0 = math.floor(tile.y * fy), math.floor(tile.x * fx)
    y1 = max(y0 + 1, math.ceil(min(tile.y + grid.tile, grid.height) * fy))
    x1 = max(x0 + 1, math.ceil(min(tile.x + grid.tile, grid.width) * fx))
    window = tissue[min(y0, mh - 1) : min(y1, mh), min(x0, mw - 1) : min(x1, mw)]
    return float(window.mean()) if window.size else 0.0


def tile_window(size: int, ramp: int) -> np.ndarray:
    """The ``(size, size)`` blending weights of a tile on the canvas: a separable linear
    ramp over ``ramp`` pixels at each edge, 1 inside (see the module docstring)."""
    if ramp <= 0:
        return np.ones((size, size), dtype=np.float32)
    positions = np.arange(size, dtype=np.float64)
    rise = np.minimum((positions + 0.5) / ramp, (size - positions - 0.5) / ramp)
    line = np.clip(rise, 0.0, 1.0)
    return np.outer(line, line).astype(np.float32)
