"""Stitching the tiles' raw maps into slide canvases, one band of rows at a time.

Input: the tile files of :mod:`camlens.slide.process` and their manifest entries. Output, in
``maps/``: one float32 ``.npy`` canvas per ``(method, map, class)`` — the signed raw maps in
logit units, blended across overlaps with :func:`camlens.slide.tiling.tile_window` and
**never normalised per tile** (per-tile min–max would make seams and break comparisons
between regions) — with NaN where no tile was explained (glass, or a tile that failed);
and ``prediction.npy``, the stitched class map (uint8; 255 = no tile).

The canvas is built band by band: a band of rows is touched by at most two rows of tiles
(the overlap is at most half a tile), so memory holds two tile rows and one band, whatever
the slide's height. Along the way every canvas gets its statistics: the largest |value|,
a log-spaced histogram of |value| for the display scale (:attr:`StitchedMap.limit`, the
99.5th percentile of |value| over the explained area: one fixed scale per slide, class and
method, stated in the outputs), and the share of positive map mass inside the area
predicted as its class — the slide-level "is the model looking at the right tissue?".
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camlens.slide.arrays import npy_rows_writer
from camlens.slide.tiling import TileGrid, tile_window

__all__ = ["Stitched", "StitchedMap", "stitch"]

#: Display scale: this percentile of |value| over the explained area.
LIMIT_PERCENTILE = 99.5
_BINS = np.logspace(-8, 8, 3201)  # |value| histogram edges: 0.5 % apart


@dataclass
class StitchedMap:
    """One stitched canvas and its statistics."""

    method: str
    label: str  # the method, or method@map when it has several maps
    class_id: int
    class_name: str
    path: Path
    max_abs: float = 0.0
    positive_mass: float = 0.0
    positive_in_class: float = 0.0
    pixels: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(len(_BINS) + 1, np.int64))

    @property
    def limit(self) -> float:
        """The display scale (see the module docstring); 1.0 for an all-zero map."""
        if self.pixels == 0 or self.max_abs == 0:
            return 1.0
        rank = self.histogram.cumsum()
        index = int(np.searchsorted(rank, self.pixels * LIMIT_PERCENTILE / 100.0))
        edge = float(_BINS[min(index, len(_BINS) - 1)])
        return min(edge, self.max_abs) if edge > 0 else self.max_abs

    @property
    def mass_in_class(self) -> float | None:
        """Share of the positive map mass inside the area predicted as the class."""
        return self.positive_in_class / self.positive_mass if self.positive_mass > 0 else None

    def add(self, values: np.ndarray, in_class: np.ndarray) -> None:
        known = np.isfinite(values)
        finite = values[known]
        if not finite.size:
            return
        magnitude = np.abs(finite)
        self.max_abs = max(self.max_abs, float(magnitude.max()))
        self.histogram += np.bincount(np.searchsorted(_BINS, magnitude), minlength=len(_BINS) + 1)
        self.pixels += int(finite.size)
        positive = np.clip(np.where(known, values, 0.0), 0.0, None)
        self.positive_mass += float(positive.sum(dtype=np.float64))
        self.positive_in_class += float(positive[in_class].sum(dtype=np.float64))


@dataclass
class Stitched:
    """What stitching wrote: the canvases, the class map and per-class canvas pixels."""

    maps: list[StitchedMap]
    prediction: Path
    canvas_size: tuple[int, int]
    class_pixels: list[int]


def map_label(method: str, name: str, pairs: Sequence[tuple[str, str]]) -> str:
    """``method``, or ``method@map`` when the method has several maps (layers)."""
    several = sum(1 for m, _ in pairs if m == method) > 1
    return f"{method}@{name}" if several else method


def slug(text: str) -> str:
    """A file-name-safe form of a class or method name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:48] or "x"


def stitch(
    out: Path,
    grid: TileGrid,
    entries: Mapping[str, Mapping[str, Any]],
    *,
    class_names: Sequence[str],
) -> Stitched:
    """Stitch the done tiles in ``entries`` (manifest entries by key) into ``out/maps``."""
    done = [entry for entry in entries.values() if entry.get("status") == "done"]
    if not done:
        raise ValueError("no tile was explained: nothing to stitch")
    pairs = [tuple(pair) for pair in done[0]["maps"]]
    classes = list(done[0]["classes"])
    count = len(done[0]["owned"])
    folder = out / "maps"
    folder.mkdir(parents=True, exist_ok=True)
    maps = [
        StitchedMap(
            method,
            map_label(method, name, pairs),
            class_id,
            class_names[class_id],
            folder / f"{slug(map_label(method, name, pairs))}"
            f"-c{class_id:02d}-{slug(class_names[class_id])}.npy",
        )
        for method, name in pairs
        for class_id in classes
    ]
    width, height = grid.canvas_size
    by_row: dict[int, dict[int, str]] = {}
    for entry in done:
        by_row.setdefault(entry["tile"]["row"], {})[entry["tile"]["col"]] = entry["key"]
    class_pixels = np.zeros(count, dtype=np.int64)
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(npy_rows_writer(m.path, (height, width), np.float32)) for m in maps
        ]
        prediction = folder / "prediction.npy"
        labels_out = stack.enter_context(npy_rows_writer(prediction, (height, width), np.uint8))
        bands = _Bands(out / "tiles", grid, by_row, len(maps), count)
        for values, labels in bands:
            class_pixels += np.bincount(labels[labels < 255], minlength=count)[:count]
            labels_out.write(labels.tobytes())
            for index, (stitched, writer) in enumerate(zip(maps, writers, strict=True)):
                writer.write(values[index].tobytes())
                stitched.add(values[index], labels == stitched.class_id)
    return Stitched(maps, prediction, (width, height), class_pixels.tolist())


class _Bands:
    """Iterates ``(values (M·K, h, W), labels (h, W))`` over the canvas's row bands."""

    def __init__(
        self,
        tiles: Path,
        grid: TileGrid,
        by_row: dict[int, dict[int, str]],
        layers: int,
        count: int,
    ) -> None:
        self.tiles = tiles
        self.grid = grid
        self.by_row = by_row
        self.layers = layers
        self.count = count
        step = grid.downsample
        self.side, self.stride = grid.tile // step, grid.stride // step
        self.window = tile_window(self.side, grid.overlap // step)
        self.cache: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}

    def _row(self, row: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        if row not in self.cache:
            loaded = {}
            # column order, not manifest order: float sums over overlaps then do not depend
            # on which tile finished first (a resumed or distributed run)
            for col, key in sorted(self.by_row.get(row, {}).items()):
                with np.load(self.tiles / f"{key}.npz") as data:
                    maps = data["maps"]
                    loaded[col] = (maps.reshape(-1, *maps.shape[-2:]), data["shares"])
            self.cache[row] = loaded
        return self.cache[row]

    def __iter__(self):
        width, height = self.grid.canvas_size
        rows = self.grid.rows
        for band in range(rows):
            top = band * self.stride
            bottom = height if band == rows - 1 else min(height, top + self.stride)
            if top >= bottom:
                continue
            for old in [r for r in self.cache if r < band - 1]:
                del self.cache[old]
            values = np.zeros((self.layers, bottom - top, width), dtype=np.float32)
            weights = np.zeros((bottom - top, width), dtype=np.float32)
            shares = np.zeros((self.count, bottom - top, width), dtype=np.float32)
            for row in (band - 1, band):
                if row < 0:
                    continue
                origin = row * self.stride
                y0, y1 = max(top, origin), min(bottom, origin + self.side)
                if y0 >= y1:
                    continue
                for col, (maps, share) in self._row(row).items():
                    x0 = col * self.stride
                    x1 = min(width, x0 + self.side)
                    ty = slice(y0 - origin, y1 - origin)
                    window = self.window[ty, : x1 - x0]
                    target = (slice(None), slice(y0 - top, y1 - top), slice(x0, x1))
                    values[target] += maps[:, ty, : x1 - x0] * window
                    shares[target] += share[:, ty, : x1 - x0] * window
                    weights[target[1:]] += window
            known = weights > 0
            with np.errstate(invalid="ignore", divide="ignore"):
                values = np.where(known, values / weights, np.float32(np.nan)).astype(np.float32)
            labels = np.where(known, shares.argmax(axis=0), 255).astype(np.uint8)
            yield values, labels
