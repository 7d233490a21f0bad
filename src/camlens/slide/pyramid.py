"""Writing pyramidal TIFFs that OpenSlide and QuPath open, with bounded memory.

:func:`write_pyramidal_tiff` streams an image of any size (an array, a memory map, or any
object that renders regions on demand, such as :class:`camlens.demo.slide.SyntheticSlide`)
into a tiled BigTIFF: level 0 as given, then reduced levels, each half the size of the one
before (rounded up), until the longer side is at most ``min_size``. The file layout is the
one OpenSlide reads as ``generic-tiff``: one top-level tiled page per level, largest first,
the reduced ones marked as such (``NewSubfileType`` 1), the resolution in pixels per
centimetre on every level (OpenSlide's ``openslide.mpp-x`` / ``mpp-y``).

How the memory stays bounded, and why the levels are exact:

* The source is read once, one stripe of ``tile`` rows at a time (``image[y0:y1, 0:W]``),
  and each stripe is cut into tiles that tifffile compresses as they come: the memory of
  level 0 is a few stripes, ``O(width x tile)``, whatever the height.
* While a stripe goes to level 0, it also goes down a chain of reducers, one per reduced
  level: reducer ``k`` adds 2 x 2 blocks of level ``k - 1`` *sums* (never rounded values),
  so that level ``k`` is the exact area average of the source over ``2**k x 2**k`` blocks,
  rounded once (half up). Averaging rounded levels instead would let the error grow by up to
  half a grey level per level. At the right and bottom edges a block holds fewer source
  pixels, and the average is over those only. Every channel (alpha too) is averaged on its
  own.
* A reduced level cannot go into the file before level 0 is complete (TIFF pages are written
  one after another), so its rounded rows go to a temporary raw file next to the output
  (about a third of level 0's uncompressed size for all levels together), read back stripe
  by stripe afterwards and deleted at the end, also on failure.

RGBA input is written as RGB with one unassociated (straight) alpha sample. OpenSlide reads
such a file, but what ``read_region`` returns is not the stored colour: OpenSlide decodes
through libtiff's RGBA interface, which premultiplies the colour by alpha into 8 bits, and
openslide-python divides it out again. So alpha comes back exact, opaque pixels exact,
fully transparent pixels as ``(0, 0, 0, 0)``, and a pixel of alpha ``a`` has its colour
rounded to steps of about ``255 / a`` (for ``a = 128``: ``(200, 100, 50)`` reads as
``(199, 99, 49)``). tifffile reads the stored values unchanged.

The final file is written atomically (:func:`camlens.atomic.atomic_open`): nothing appears
under ``path`` unless the whole pyramid was written.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from camlens.atomic import PathLike, atomic_open, partial_path
from camlens.slide.extras import require

__all__ = ["ArrayLike", "level_sizes", "write_pyramidal_tiff"]


class ArrayLike(Protocol):
    """What :func:`write_pyramidal_tiff` reads from: a shape, a dtype and 2-D slicing."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...

    def __getitem__(self, key: Any) -> Any: ...


def level_sizes(width: int, height: int, min_size: int = 512) -> list[tuple[int, int]]:
    """The ``(width, height)`` of every level: halving (rounded up) from ``(width, height)``
    until the longer side is at most ``min_size``."""
    if width < 1 or height < 1:
        raise ValueError(f"an image must have at least one pixel; got {width} x {height}")
    if min_size < 1:
        raise ValueError(f"`min_size` must be at least 1; got {min_size}")
    sizes = [(width, height)]
    while max(sizes[-1]) > min_size:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


def write_pyramidal_tiff(
    path: PathLike,
    image: ArrayLike,
    *,
    mpp: float | None,
    tile: int = 256,
    compression: str = "zlib",
    compression_level: int | None = None,
    min_size: int = 512,
    description: str | None = None,
) -> list[tuple[int, int]]:
    """Write ``image`` to ``path`` as a tiled, pyramidal BigTIFF; return each level's
    ``(width, height)``, level 0 first.

    ``image`` is ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA uint8, read one stripe of ``tile``
    rows at a time with ``image[y0:y1, 0:W]``; it is never loaded whole, so an image larger
    than memory (a memory map, or an object rendering regions lazily) works. ``mpp`` is the
    size of a level-0 pixel in micrometres (written as the resolution of every level, scaled
    by its downsample; ``None`` writes no resolution). ``tile`` is the tile side in pixels (a
    multiple of 16, as TIFF requires); ``compression`` any tifffile compression name
    (``"zlib"`` is lossless and needs no extra codec) and ``compression_level`` its level
    (``None``: the codec's default; zlib's 6 compresses photographs only a few per cent
    smaller than its 1, at about a sixth of the speed); ``description`` goes into level 0's
    ImageDescription (OpenSlide's ``openslide.comment``).

    Needs a few stripes of memory (peak RSS about 400 MiB at a width of 50,000 px, 310 MiB at
    20,000 px) and, for a while, a third of the image's uncompressed size on disk next to
    ``path``. If anything fails (the image raising while it is read included), ``path`` is
    left as it was and no temporary file remains.
    """
    height, width, channels = _check_image(image)
    if tile < 16 or tile % 16:
        raise ValueError(f"`tile` must be a positive multiple of 16 (a TIFF rule); got {tile}")
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"`mpp` must be a positive number of micrometres or None; got {mpp}")
    sizes = level_sizes(width, height, min_size)
    tifffile = require("tifffile")
    path = Path(path)
    scratches: list[_Scratch] = []
    try:
        for k, size in enumerate(sizes[1:], start=1):
            scratch_path = partial_path(path.with_name(f"{path.name}.level{k}"))
            scratches.append(_Scratch(scratch_path, size, channels))
        reducers = _chain(sizes, scratches)
        codec_options = None if compression_level is None else {"level": compression_level}
        with atomic_open(path, "wb") as handle, tifffile.TiffWriter(handle, bigtiff=True) as tw:
            for k, (level_width, level_height) in enumerate(sizes):
                if k == 0:
                    stripes = _source_stripes(image, tile, reducers)
                else:
                    stripes = scratches[k - 1].stripes(tile)
                tw.write(
                    _tiles(stripes, level_width, tile),
                    shape=(level_height, level_width, channels),
                    dtype=np.uint8,
                    tile=(tile, tile),
                    compression=compression,
                    compressionargs=codec_options,
                    photometric="rgb",
                    extrasamples=["unassalpha"] if channels == 4 else None,
                    subfiletype=0 if k == 0 else 1,
                    description=description if k == 0 else None,
                    metadata=None,
                    software="camlens",
                    buffersize=2 * tile * level_width * channels,
                    **_resolution(mpp, width / level_width, height / level_height),
                )
    finally:
        for scratch in scratches:
            scratch.remove()
    return sizes


def _check_image(image: ArrayLike) -> tuple[int, int, int]:
    """``(height, width, channels)`` of an image :func:`write_pyramidal_tiff` can write."""
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) != 3 or shape[2] not in (3, 4) or min(shape) < 1:
        raise ValueError(
            f"`image` must be (H, W, 3) RGB or (H, W, 4) RGBA with H, W >= 1; got shape {shape}"
        )
    if np.dtype(getattr(image, "dtype", None)) != np.uint8:
        raise ValueError(
            f"`image` must be uint8; got {image.dtype} (scale and convert it first, "
            "e.g. np.round(x * 255).astype(np.uint8) for floats in [0, 1])"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def _resolution(mpp: float | None, down_x: float, down_y: float) -> dict[str, Any]:
    """tifffile's resolution arguments for a level ``down_x, down_y`` times smaller than
    level 0: pixels per centimetre (1 cm = 1e4 micrometres); nothing when ``mpp`` is None."""
    if mpp is None:
        return {}
    return {"resolution": (1e4 / (mpp * down_x), 1e4 / (mpp * down_y)), "resolutionunit": 3}


def _tiles(stripes: Iterator[np.ndarray], width: int, tile: int) -> Iterator[np.ndarray]:
    """The tiles of a level, row by row, cut from its stripes of ``tile`` rows (the last
    ones smaller: tifffile pads them with zeros)."""
    for stripe in stripes:
        for x0 in range(0, width, tile):
            yield stripe[:, x0 : x0 + tile]


def _source_stripes(image: ArrayLike, tile: int, reducers: _Reducer | None) -> Iterator[np.ndarray]:
    """Level 0 stripe by stripe, read from ``image``, each also handed to the reducers."""
    height, width, channels = (int(n) for n in image.shape)
    for y0 in range(0, height, tile):
        y1 = min(y0 + tile, height)
        stripe = np.ascontiguousarray(image[y0:y1, 0:width])
        if stripe.shape != (y1 - y0, width, channels) or stripe.dtype != np.uint8:
            raise ValueError(
                f"`image[{y0}:{y1}, 0:{width}]` gave {stripe.dtype} {stripe.shape}; expected "
                f"uint8 {(y1 - y0, width, channels)}"
            )
        if reducers is not None:
            reducers.push(stripe, last=y1 == height)
        yield stripe


class _Scratch:
    """A reduced level's rounded rows in a temporary raw file: appended in order while level
    0 is written, read back in stripes when the level's turn comes."""

    def __init__(self, path: Path, size: tuple[int, int], channels: int) -> None:
        self.path = path
        self.width, self.height = size
        self.row_bytes = self.width * channels
        self.channels = channels
        self.rows = 0
        self._handle = open(path, "xb+")  # noqa: SIM115 - closed by remove()

    def append(self, rows: np.ndarray) -> None:
        """Append rows (uint8, ``(n, width, channels)``) after those already written."""
        self._handle.write(np.ascontiguousarray(rows, dtype=np.uint8).data)
        self.rows += rows.shape[0]

    def stripes(self, tile: int) -> Iterator[np.ndarray]:
        """The level in stripes of ``tile`` rows, read from the file one at a time."""
        if self.rows != self.height:
            raise RuntimeError(f"level holds {self.rows} rows of {self.height}")
        self._handle.flush()
        descriptor = self._handle.fileno()
        for y0 in range(0, self.height, tile):
            n = min(tile, self.height - y0)
            data = os.pread(descriptor, n * self.row_bytes, y0 * self.row_bytes)
            yield np.frombuffer(data, np.uint8).reshape(n, self.width, self.channels)

    def remove(self) -> None:
        """Close and delete the file (whatever state it is in)."""
        with contextlib.suppress(OSError):
            self._handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class _Reducer:
    """Level ``k`` of the pyramid from level ``k - 1``: sums of 2 x 2 blocks of the sums it
    is given (pixels themselves for ``k = 1``), their rounded means appended to the level's
    scratch file, the sums passed on to level ``k + 1``.

    Rows arrive in stripes of any length; an odd row is kept until the next stripe brings its
    partner (or, at the bottom edge, added to nothing).
    """

    def __init__(
        self, level: int, full_size: tuple[int, int], scratch: _Scratch, below: _Reducer | None
    ) -> None:
        self.factor = 2**level
        self.full_width, self.full_height = full_size
        self.scratch = scratch
        self.below = below
        # a sum of 4**level pixels of at most 255, plus half that count for rounding
        self.dtype = np.min_scalar_type(256 * 4**level)
        self.row = 0
        self._carry: np.ndarray | None = None
        self.col_counts = self._counts(np.arange(scratch.width), self.full_width)

    def _counts(self, index: np.ndarray, full: int) -> np.ndarray:
        """How many level-0 pixels along one axis fall in each of the ``index`` positions."""
        f = self.factor
        return (np.minimum((index + 1) * f, full) - index * f).astype(self.dtype)

    def push(self, sums: np.ndarray, *, last: bool) -> None:
        """Take the next rows of level ``k - 1`` sums; ``last`` when no more will come."""
        if self._carry is not None:
            sums = np.concatenate([self._carry, sums])
            self._carry = None
        if sums.shape[0] % 2 and not last:
            self._carry = sums[-1:].copy()
            sums = sums[:-1]
        if sums.shape[0]:
            out = self._sum_blocks(sums)
            self.scratch.append(self._means(out))
            self.row += out.shape[0]
        else:
            out = np.zeros((0, self.scratch.width, self.scratch.channels), self.dtype)
        if self.below is not None and (out.shape[0] or last):
            self.below.push(out, last=last)

    def _sum_blocks(self, sums: np.ndarray) -> np.ndarray:
        """Sums of 2 x 2 blocks; a missing row or column at an odd edge counts as zero."""
        rows, cols = sums.shape[:2]
        if rows % 2 or cols % 2:
            sums = np.pad(sums, ((0, rows % 2), (0, cols % 2), (0, 0)))
        pairs = sums[0::2].astype(self.dtype)
        pairs += sums[1::2]
        return pairs[:, 0::2] + pairs[:, 1::2]

    def _means(self, sums: np.ndarray) -> np.ndarray:
        """Rounded means (half up) of block sums, over the level-0 pixels each block holds:
        ``factor**2`` inside, fewer in the last row and column when the size is odd."""
        area = self.factor**2
        means = (sums + area // 2) >> (2 * int(math.log2(self.factor)))
        rows = self._counts(np.arange(self.row, self.row + sums.shape[0]), self.full_height)
        partial_rows = rows != self.factor
        partial_cols = self.col_counts != self.factor
        if partial_rows.any():
            counts = rows[partial_rows, None, None] * self.col_counts[None, :, None]
            means[partial_rows] = (sums[partial_rows] + counts // 2) // counts
        if partial_cols.any():
            counts = rows[:, None, None] * self.col_counts[None, partial_cols, None]
            means[:, partial_cols] = (sums[:, partial_cols] + counts // 2) // counts
        return means.astype(np.uint8)


def _chain(sizes: list[tuple[int, int]], scratches: list[_Scratch]) -> _Reducer | None:
    """The reducers of levels 1, 2, ... linked in order; the first of them (or None)."""
    below: _Reducer | None = None
    for k in range(len(sizes) - 1, 0, -1):
        below = _Reducer(k, sizes[0], scratches[k - 1], below)
    return below
