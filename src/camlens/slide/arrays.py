"""Large 2-D arrays on disk, read and written a band of rows at a time.

Slide canvases can be far larger than memory, and memory-mapping them would not help: the
pages a map touches count towards the process's resident size until the kernel evicts them.
So canvases are plain ``.npy`` files (readable by ``numpy.load``, memory-mapped or not),
written row band by row band (:func:`npy_rows_writer`) and read back with ``pread`` of just
the rows asked for (:class:`NpyRows`).

:class:`Colourised` and :class:`SlideView` are read-only views with numpy slicing that the
pyramid and Deep Zoom writers consume stripe by stripe: a signed map drawn with
:func:`camlens.image.signed_heatmap` on a fixed scale (transparent where no tile was
explained), and a slide read at a chosen scale.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from camlens.atomic import atomic_open
from camlens.image import signed_heatmap

__all__ = ["Colourised", "NpyRows", "SlideView", "npy_rows_writer"]


@contextlib.contextmanager
def npy_rows_writer(path: Path, shape: tuple[int, int], dtype: Any) -> Iterator[IO[bytes]]:
    """A ``.npy`` file of ``shape`` written atomically; the caller writes its rows in order
    (``handle.write(rows.astype(dtype).tobytes())``). Fewer rows than ``shape`` is an error."""
    dtype = np.dtype(dtype)
    with atomic_open(path, "wb") as handle:
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": tuple(shape),
        }
        np.lib.format.write_array_header_1_0(handle, header)
        start = handle.tell()
        yield handle
        written = handle.tell() - start
        expected = shape[0] * shape[1] * dtype.itemsize
        if written != expected:
            raise RuntimeError(f"{path.name}: wrote {written} bytes of {expected}")


class NpyRows:
    """A 2-D ``.npy`` file read by row bands; ``rows[y0:y1, x0:x1]`` reads rows y0..y1 only."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
            self.offset = handle.tell()
        if fortran or len(shape) != 2:
            raise ValueError(f"{self.path}: not a C-ordered 2-D array")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        y0, y1, _ = rows.indices(self.shape[0])
        width = self.shape[1]
        count = max(0, y1 - y0) * width
        with open(self.path, "rb") as handle:
            handle.seek(self.offset + y0 * width * self.dtype.itemsize)
            data = np.fromfile(handle, dtype=self.dtype, count=count)
        return data.reshape(-1, width)[:, cols]


class Colourised:
    """A signed map drawn blue–white–red on the fixed scale ``[-limit, limit]``, as RGBA
    uint8 (alpha 0 where the map is NaN: no tile there)."""

    def __init__(self, values: NpyRows, limit: float) -> None:
        self.values = values
        self.limit = float(limit)
        self.shape = (*values.shape, 4)
        self.dtype = np.dtype(np.uint8)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        values = self.values[key]
        known = np.isfinite(values)
        rgb = signed_heatmap(np.where(known, values, 0.0), limit=self.limit)
        alpha = np.where(known, 255, 0).astype(np.uint8)
        return np.concatenate([rgb, alpha[..., None]], axis=-1)


class SlideView:
    """The slide at ``scale`` level-0 pixels per pixel (RGB uint8, white outside), read from
    the finest level at least that fine and resized."""

    def __init__(self, slide: Any, scale: float) -> None:
        self.slide = slide
        self.scale = float(scale)
        self.level = slide.best_level(scale)
        width, height = slide.dimensions
        self.shape = (max(1, math.floor(height / scale)), max(1, math.floor(width / scale)), 3)
        self.dtype = np.dtype(np.uint8)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        y0, y1, _ = rows.indices(self.shape[0])
        x0, x1, _ = cols.indices(self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), dtype=np.uint8)
        level_scale = self.slide.downsamples[self.level]
        factor = self.scale / level_scale
        width = max(1, math.ceil((x1 - x0) * factor))
        height = max(1, math.ceil((y1 - y0) * factor))
        region = self.slide.read(
            round(x0 * self.scale), round(y0 * self.scale), self.level, width, height
        )
        if region.shape[:2] == (y1 - y0, x1 - x0):
            return region
        resized = Image.fromarray(region).resize((x1 - x0, y1 - y0), Image.Resampling.BOX)
        return np.asarray(resized)
