"""Deep Zoom pyramids of large images, written stripe by stripe in bounded memory.

A Deep Zoom image (the format OpenSeadragon reads) is a descriptor ``<name>.dzi`` and a
folder ``<name>_files/`` with one sub-folder per level: level ``max_level`` is the image at
full size, every level below is half the size of the one above (rounded up), and level 0 is
1 × 1 pixel, so there are ``ceil(log2(max(width, height))) + 1`` levels. Each level is cut into
tiles ``<level>/<col>_<row>.<format>`` of ``tile_size`` pixels, every tile extended by
``overlap`` pixels on each side that has a neighbour (so viewers can blend tile seams).

Whole-slide heatmaps are large (25,000 × 25,000 pixels in an :class:`numpy.memmap` is
common), so :func:`write_deepzoom` never holds a whole level in memory. It reads the source
in stripes of ``tile_size`` rows and pushes them through a cascade of levels: each level
keeps only the rows that its next row of tiles still needs, writes that row of tiles as soon
as it is complete, and hands pairs of rows, averaged 2 × 2, down to the level below. Peak
memory is a few stripes of the full width, ``O(width × tile_size)``, and no temporary files
are needed.

Averaging keeps transparency right: RGBA pixels are averaged with alpha as the weight (so
the colour of a heatmap next to fully transparent background does not darken at low zoom),
and alpha itself is the plain mean. For opaque pixels this is the plain 2 × 2 mean, rounded
half up.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import numpy as np
from PIL import Image

from camlens.atomic import atomic_open, write_text

__all__ = ["DEEPZOOM_XMLNS", "DeepZoomImage", "halve", "read_deepzoom", "write_deepzoom"]

#: The XML namespace of Deep Zoom descriptors (the 2008 schema, which OpenSeadragon reads).
DEEPZOOM_XMLNS = "http://schemas.microsoft.com/deepzoom/2008"

#: Tile formats: what callers may write -> the Deep Zoom ``Format`` (the tiles' extension).
_FORMATS = {"jpeg": "jpg", "jpg": "jpg", "png": "png"}

#: Characters a Deep Zoom name may not hold: it is one file name (URLs are percent-encoded).
_NOT_IN_NAME = re.compile(r"[/\\\x00-\x1f]")


@dataclass(frozen=True)
class DeepZoomImage:
    """A Deep Zoom pyramid on disk: ``<folder>/<name>.dzi`` and ``<folder>/<name>_files/``.

    ``fmt`` is the Deep Zoom ``Format``, which is also the tiles' file extension:
    ``"jpg"`` or ``"png"``.
    """

    name: str
    width: int
    height: int
    tile_size: int
    overlap: int
    fmt: str
    folder: Path

    @property
    def descriptor(self) -> Path:
        """The ``.dzi`` XML descriptor."""
        return self.folder / f"{self.name}.dzi"

    @property
    def tiles_folder(self) -> Path:
        """The ``<name>_files`` folder holding one folder of tiles per level."""
        return self.folder / f"{self.name}_files"

    @property
    def max_level(self) -> int:
        """The full-size level: ``ceil(log2(max(width, height)))`` (0 for a 1 × 1 image)."""
        return (max(self.width, self.height) - 1).bit_length()

    @property
    def levels(self) -> int:
        """How many levels the pyramid has (level 0 is 1 × 1 pixel)."""
        return self.max_level + 1

    def level_size(self, level: int) -> tuple[int, int]:
        """``(width, height)`` of a level: the full size halved ``max_level - level`` times,
        rounding up."""
        if not 0 <= level <= self.max_level:
            raise ValueError(f"level must be in 0..{self.max_level}; got {level}")
        shift = self.max_level - level
        return -(-self.width >> shift), -(-self.height >> shift)

    def tile_grid(self, level: int) -> tuple[int, int]:
        """``(columns, rows)`` of tiles at a level."""
        width, height = self.level_size(level)
        return math.ceil(width / self.tile_size), math.ceil(height / self.tile_size)

    def tile_path(self, level: int, column: int, row: int) -> Path:
        """Where the tile at ``(column, row)`` of ``level`` is."""
        return self.tiles_folder / str(level) / f"{column}_{row}.{self.fmt}"

    def tile_box(self, level: int, column: int, row: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the pixels of ``level`` a tile holds, overlap included."""
        width, height = self.level_size(level)
        size, overlap = self.tile_size, self.overlap
        return (
            max(0, column * size - overlap),
            max(0, row * size - overlap),
            min(width, (column + 1) * size + overlap),
            min(height, (row + 1) * size + overlap),
        )

    def descriptor_xml(self) -> str:
        """The text of the ``.dzi`` descriptor."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Image xmlns="{DEEPZOOM_XMLNS}" Format="{self.fmt}" Overlap="{self.overlap}" '
            f'TileSize="{self.tile_size}">\n'
            f'  <Size Width="{self.width}" Height="{self.height}"/>\n'
            "</Image>\n"
        )

    def tile_source(self, relative_to: Path) -> dict[str, Any]:
        """OpenSeadragon's inline tile source for this image, for a page in ``relative_to``.

        Inline (the descriptor's content as JSON, with the tiles' URL relative to the page)
        because a page opened from ``file://`` may not read the ``.dzi`` file with a
        request. The URL is percent-encoded and ends with ``/``.
        """
        relative = os.path.relpath(self.tiles_folder, relative_to)
        url = "/".join(quote(part) for part in Path(relative).parts) + "/"
        return {
            "Image": {
                "xmlns": DEEPZOOM_XMLNS,
                "Url": url,
                "Format": self.fmt,
                "Overlap": str(self.overlap),
                "TileSize": str(self.tile_size),
                "Size": {"Width": str(self.width), "Height": str(self.height)},
            }
        }


def read_deepzoom(descriptor: Path) -> DeepZoomImage:
    """The :class:`DeepZoomImage` a ``.dzi`` descriptor written by :func:`write_deepzoom`
    describes (its tiles are not checked)."""
    descriptor = Path(descriptor)
    if descriptor.suffix != ".dzi":
        raise ValueError(f"a Deep Zoom descriptor ends with .dzi; got {descriptor}")
    root = ElementTree.fromstring(descriptor.read_bytes())
    size = root.find(f"{{{DEEPZOOM_XMLNS}}}Size")
    if root.tag != f"{{{DEEPZOOM_XMLNS}}}Image" or size is None:
        raise ValueError(f"{descriptor} is not a Deep Zoom image descriptor")
    return DeepZoomImage(
        name=descriptor.stem,
        width=int(size.attrib["Width"]),
        height=int(size.attrib["Height"]),
        tile_size=int(root.attrib["TileSize"]),
        overlap=int(root.attrib["Overlap"]),
        fmt=root.attrib["Format"],
        folder=descriptor.parent,
    )


def write_deepzoom(
    image: Any,
    folder: Path,
    name: str,
    *,
    tile_size: int = 254,
    overlap: int = 1,
    fmt: str = "jpeg",
    quality: int = 85,
    threads: int | None = None,
) -> DeepZoomImage:
    """Write ``image`` as a Deep Zoom pyramid ``<folder>/<name>.dzi`` + ``<name>_files/``.

    ``image`` is an ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA) ``uint8`` array, or anything
    with a ``shape`` and numpy slicing (``image[y0:y1, x0:x1]``), such as an
    :class:`numpy.memmap`; it is read once, top to bottom, in stripes of ``tile_size`` rows
    of the full width (``image[y0:y1, 0:W]``). ``name`` is one file name (it may hold any
    character a file name may; the tile source percent-encodes it). ``fmt`` is ``"jpeg"``
    (RGB only; ``quality`` 1–95) or ``"png"`` (lossless; keeps transparency). Tiles are
    encoded by ``threads`` threads (default: up to 4, one per CPU) and every file is written
    atomically; the descriptor is written last, so a ``.dzi`` that exists describes a
    complete pyramid. Tiles of an earlier, larger pyramid of the same name are not removed
    (they are never requested). Returns the written image's description.
    """
    folder = Path(folder)
    extension = _check_arguments(image, name, tile_size, overlap, fmt, quality)
    height, width, channels = (int(value) for value in image.shape)
    result = DeepZoomImage(name, width, height, tile_size, overlap, extension, folder)
    if extension == "jpg" and channels == 4:
        raise ValueError("JPEG tiles have no transparency: write an RGBA image with fmt='png'")
    for level in range(result.levels):
        (result.tiles_folder / str(level)).mkdir(parents=True, exist_ok=True)

    workers = threads if threads is not None else min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:

        def save(level: int, column: int, row: int, pixels: np.ndarray) -> None:
            _save_tile(result.tile_path(level, column, row), pixels, extension, quality)

        def write_row(level: int, row: int, stripe: np.ndarray, top: int) -> None:
            """Write one row of tiles of ``level``; ``stripe`` holds its rows from ``top``."""
            columns, _ = result.tile_grid(level)
            jobs = []
            for column in range(columns):
                x0, y0, x1, y1 = result.tile_box(level, column, row)
                pixels = stripe[y0 - top : y1 - top, x0:x1]
                jobs.append(pool.submit(save, level, column, row, pixels))
            for job in jobs:  # wait (and raise) before the rows are dropped or changed
                job.result()

        below: _Level | None = None
        for level in range(result.levels):
            level_width, level_height = result.level_size(level)
            below = _Level(level, level_width, level_height, result, write_row, below)
        assert below is not None  # the full-size level: the top of the cascade
        for top in range(0, height, tile_size):
            bottom = min(height, top + tile_size)
            stripe = np.asarray(image[top:bottom, 0:width])
            if stripe.shape != (bottom - top, width, channels):
                raise ValueError(
                    f"image[{top}:{bottom}, 0:{width}] has shape {stripe.shape}; expected "
                    f"{(bottom - top, width, channels)}"
                )
            below.add(np.ascontiguousarray(stripe, dtype=np.uint8))
        below.finish()
    write_text(result.descriptor, result.descriptor_xml())
    return result


def _check_arguments(
    image: Any, name: str, tile_size: int, overlap: int, fmt: str, quality: int
) -> str:
    """Check the arguments of :func:`write_deepzoom`; the Deep Zoom format on success."""
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) != 3 or shape[2] not in (3, 4) or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"image must be (H, W, 3) or (H, W, 4) with H, W >= 1; got {shape}")
    dtype = getattr(image, "dtype", None)
    if dtype is not None and np.dtype(dtype) != np.uint8:
        raise ValueError(f"image must hold uint8 values; got {dtype}")
    if not name or name.startswith(".") or _NOT_IN_NAME.search(name):
        raise ValueError(
            f"name must be one file name (no folders, no control characters, not starting "
            f"with '.'); got {name!r}"
        )
    if tile_size < 1 or overlap < 0 or overlap >= tile_size:
        raise ValueError(
            f"need tile_size >= 1 and 0 <= overlap < tile_size; got {tile_size}, {overlap}"
        )
    if fmt.lower() not in _FORMATS:
        raise ValueError(f"fmt must be 'jpeg' or 'png'; got {fmt!r}")
    if not 1 <= quality <= 95:
        raise ValueError(f"quality must be in 1..95; got {quality}")
    return _FORMATS[fmt.lower()]


def _save_tile(path: Path, pixels: np.ndarray, extension: str, quality: int) -> None:
    """Encode one tile with Pillow and write it atomically."""
    tile = Image.fromarray(np.ascontiguousarray(pixels))
    with atomic_open(path, "wb") as handle:
        if extension == "png":
            tile.save(handle, format="PNG")
        else:
            tile.save(handle, format="JPEG", quality=quality)


#: Rows of a level halved at a time (even): keeps the ``uint32`` temporaries small.
_HALVE_ROWS = 32

RowWriter = Callable[[int, int, np.ndarray, int], None]


class _Level:
    """One level of the cascade: receives its rows in order, writes each row of tiles once it
    is complete, and feeds its rows, halved, to the level below."""

    def __init__(
        self,
        level: int,
        width: int,
        height: int,
        image: DeepZoomImage,
        write_row: RowWriter,
        below: _Level | None,
    ) -> None:
        self.level, self.width, self.height = level, width, height
        self.image, self.write_row, self.below = image, write_row, below
        self.rows: np.ndarray | None = None  # the rows still needed, from row ``top`` on
        self.top = 0
        self.received = 0
        self.next_row = 0  # the next row of tiles to write
        self.tile_rows = image.tile_grid(level)[1]
        self.carry: np.ndarray | None = None  # an odd row waiting for its pair

    def add(self, rows: np.ndarray) -> None:
        """Take the next ``rows`` of this level (``(n, width, channels)`` uint8)."""
        if rows.shape[0] == 0:
            return
        if rows.shape[1] != self.width or self.received + rows.shape[0] > self.height:
            raise AssertionError(f"level {self.level}: rows {rows.shape} do not fit")
        self.rows = rows if self.rows is None else np.concatenate([self.rows, rows])
        self.received += rows.shape[0]
        self._write_ready()
        if self.below is not None:
            if self.carry is not None:
                rows = np.concatenate([self.carry, rows])
            even = rows.shape[0] - rows.shape[0] % 2
            self.carry = rows[even:].copy() if even < rows.shape[0] else None
            for start in range(0, even, _HALVE_ROWS):  # in chunks: bounded temporaries
                self.below.add(halve(rows[start : min(even, start + _HALVE_ROWS)]))

    def finish(self) -> None:
        """All rows are in: write what is left and finish the levels below."""
        if self.received != self.height:
            raise AssertionError(f"level {self.level}: {self.received} of {self.height} rows")
        self._write_ready()
        if self.below is not None:
            if self.carry is not None:
                self.below.add(halve(self.carry))
                self.carry = None
            self.below.finish()

    def _write_ready(self) -> None:
        """Write every row of tiles whose pixels have all arrived, then drop rows no later
        row of tiles needs."""
        while self.next_row < self.tile_rows and self.rows is not None:
            *_, y1 = self.image.tile_box(self.level, 0, self.next_row)
            if self.received < y1:
                return
            self.write_row(self.level, self.next_row, self.rows, self.top)
            self.next_row += 1
            keep = max(0, self.next_row * self.image.tile_size - self.image.overlap)
            if keep > self.top:
                self.rows = self.rows[keep - self.top :]
                self.top = keep
        if self.next_row == self.tile_rows:
            self.rows = None


def halve(rows: np.ndarray) -> np.ndarray:
    """Halve ``rows`` (``(h, w, c)`` uint8, ``h`` even or 1) in both directions by area
    averaging: each output pixel is the mean of its 2 × 2 block (fewer at an odd last row or
    column), rounded half up. With ``c == 4``, colour is averaged with alpha as the weight
    (a fully transparent block keeps colour 0) and alpha is the plain mean."""
    height, width, channels = rows.shape
    if height != 1 and height % 2:
        raise ValueError(f"need an even number of rows or one row; got {height}")
    values = rows.astype(np.uint32)
    if channels == 4:
        values[..., :3] *= values[..., 3:]
    pairs = values if height == 1 else values[0::2] + values[1::2]
    sums = pairs[:, 0::2].copy()
    sums[:, : width // 2] += pairs[:, 1::2]
    count = np.full(sums.shape[1], 1 if height == 1 else 2, np.uint32)
    count[: width // 2] *= 2
    count = count[None, :, None]
    if channels != 4:
        return ((sums + count // 2) // count).astype(np.uint8)
    alpha = sums[..., 3:]
    weight = np.maximum(alpha, 1)
    colour = np.where(alpha > 0, (sums[..., :3] + weight // 2) // weight, 0)
    mean_alpha = (alpha + count // 2) // count
    return np.concatenate([colour, mean_alpha], axis=-1).astype(np.uint8)
