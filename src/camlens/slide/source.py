"""Reading a whole slide: its levels, its resolution in microns per pixel, regions of it.

:func:`open_slide` opens a slide with OpenSlide (``.svs``, ``.ndpi``, ``.mrxs``, ``.scn``,
pyramidal ``.tiff``, ...; the ``openslide-bin`` wheel ships the library), with tifffile for a
TIFF OpenSlide does not know (a plain, non-pyramidal TIFF: one level, read whole), and with
Pillow for small ordinary images (PNG, JPEG). All three answer the same questions:
:attr:`SlideSource.levels`, :attr:`SlideSource.mpp`, :meth:`SlideSource.read` and
:meth:`SlideSource.thumbnail`. Pixels come back as ``(h, w, 3)`` uint8 RGB; what lies outside
the scanned area (OpenSlide's transparent pixels) comes back white, like glass.

:func:`choose_resolution` turns the user's ``--mpp`` or ``--level`` into the *analysis
resolution* tiles are cut at: the level read (the closest one at or finer than the request)
and the scale from level-0 pixels to analysis pixels. A slide without MPP metadata cannot be
read "at 0.5 µm/px", so it needs ``--level`` or a declared ``--slide-mpp``, and says so.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from camlens.errors import CamlensError, ImageLoadError
from camlens.slide.extras import require

__all__ = ["Resolution", "SlideError", "SlideSource", "choose_resolution", "open_slide"]

#: Largest plain image (pixels) read whole when OpenSlide cannot tile it.
MAX_PLAIN_PIXELS = 2**30


class SlideError(CamlensError, ValueError):
    """The slide, or the resolution asked of it, cannot be used as asked."""


@dataclass(frozen=True)
class Resolution:
    """Where tiles are cut: the slide level read and the analysis grid's scale.

    ``scale`` is level-0 pixels per analysis pixel (≥ the level's downsample); ``mpp`` the
    analysis resolution in µm/px (``None`` when the slide has no MPP and none was declared).
    """

    level: int
    scale: float
    mpp: float | None
    size: tuple[int, int]  # analysis (width, height)

    def describe(self) -> str:
        """One line for outputs and logs."""
        where = f"{self.mpp:.3g} µm/px" if self.mpp else "no MPP metadata"
        return f"level {self.level}, {self.scale:.4g}× level 0 ({where})"


class SlideSource:
    """One opened slide (see the module docstring). Thread-safe reads; close when done."""

    def __init__(
        self,
        path: Path,
        backend: str,
        handle: Any,
        levels: list[tuple[int, int]],
        downsamples: list[float],
        mpp: float | None,
    ) -> None:
        self.path = path
        self.backend = backend
        self._handle = handle
        self.levels = levels
        self.downsamples = downsamples
        self.mpp = mpp
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)``."""
        return self.levels[0]

    def read(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """``(height, width, 3)`` uint8 RGB at ``level`` whose top-left corner is the level-0
        pixel ``(x, y)``; outside the slide is white."""
        if self.backend == "openslide":
            region = np.asarray(self._handle.read_region((x, y), level, (width, height)))
            return _over_white(region)
        scale = self.downsamples[level]
        x0, y0 = math.floor(x / scale), math.floor(y / scale)
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        plane = self._plane(level)
        h, w = plane.shape[:2]
        ys, xs = slice(max(y0, 0), min(y0 + height, h)), slice(max(x0, 0), min(x0 + width, w))
        if ys.start < ys.stop and xs.start < xs.stop:
            out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = plane[ys, xs]
        return out

    def _plane(self, level: int) -> np.ndarray:
        handle = self._handle
        if self.backend == "pillow":
            return handle
        with self._lock:  # tifffile: one decode of the level, kept
            cached = handle["planes"].get(level)
            if cached is None:
                cached = _rgb(handle["pages"][level].asarray())
                handle["planes"][level] = cached
        return cached

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, tuple[float, float]]:
        """The whole slide at most ``max_side`` pixels on its longer side, and its
        downsample ``(dx, dy)``: level-0 pixels per thumbnail pixel."""
        width, height = self.dimensions
        factor = max(width, height) / max_side
        size = (max(1, round(width / factor)), max(1, round(height / factor)))
        level = self.best_level(factor)
        lw, lh = self.levels[level]
        image = Image.fromarray(self.read(0, 0, level, lw, lh))
        thumb = np.asarray(image.resize(size, Image.Resampling.BOX))
        return thumb, (width / size[0], height / size[1])

    def best_level(self, downsample: float) -> int:
        """The coarsest level at least as fine as ``downsample`` (level-0 px per px)."""
        fine_enough = [i for i, d in enumerate(self.downsamples) if d <= downsample * 1.001]
        return max(fine_enough, key=lambda i: self.downsamples[i]) if fine_enough else 0

    def close(self) -> None:
        if self.backend == "openslide":
            self._handle.close()
        elif self.backend == "tifffile":
            self._handle["file"].close()

    def __enter__(self) -> SlideSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """OpenSlide's premultiplied RGBA composited over white."""
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    if bool((alpha == 255).all()):
        return np.ascontiguousarray(rgba[..., :3])
    return (rgb + (255 - alpha)).clip(0, 255).astype(np.uint8)


def _rgb(array: np.ndarray) -> np.ndarray:
    """A decoded plane as ``(h, w, 3)`` uint8 (grey repeated, alpha dropped)."""
    if array.dtype != np.uint8:
        raise SlideError(f"only 8-bit slides are supported, this one is {array.dtype}")
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def open_slide(path: str | Path, *, mpp: float | None = None) -> SlideSource:
    """Open ``path`` (see the module docstring); ``mpp`` declares level 0's µm/px for a
    slide without it (or overrides a wrong one)."""
    path = Path(path)
    if not path.is_file():
        raise SlideError(f"{path}: no such slide file")
    openslide = require("openslide")
    if openslide.OpenSlide.detect_format(str(path)) is not None:
        try:
            handle = openslide.OpenSlide(str(path))
        except openslide.OpenSlideError as error:
            raise ImageLoadError(f"{path}: OpenSlide cannot read it ({error})") from None
        properties = handle.properties
        found = _float(properties.get("openslide.mpp-x")) or _float(
            properties.get("openslide.mpp-y")
        )
        return SlideSource(
            path,
            "openslide",
            handle,
            [tuple(d) for d in handle.level_dimensions],
            [float(d) for d in handle.level_downsamples],
            mpp or found,
        )
    if path.suffix.lower() in (".tif", ".tiff"):
        return _open_tiff(path, mpp)
    return _open_plain(path, mpp)


def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _open_tiff(path: Path, mpp: float | None) -> SlideSource:
    tifffile = require("tifffile")
    try:
        handle = tifffile.TiffFile(path)
        pages = list(handle.series[0].levels)
    except Exception as error:  # tifffile raises many kinds for a bad file
        raise ImageLoadError(f"{path}: not a readable TIFF ({error})") from None
    sizes = []
    for page in pages:
        shape = page.shape
        height, width = (
            (shape[0], shape[1]) if shape[-1] in (1, 3, 4) or len(shape) == 2 else shape[1:3]
        )
        sizes.append((int(width), int(height)))
    if sizes[0][0] * sizes[0][1] > MAX_PLAIN_PIXELS:
        raise SlideError(
            f"{path}: a {sizes[0][0]}×{sizes[0][1]} TIFF that OpenSlide cannot tile is too "
            "large to read whole; convert it to a tiled pyramidal TIFF"
        )
    downsamples = [sizes[0][0] / w for w, _ in sizes]
    found = _tiff_mpp(pages[0])
    return SlideSource(
        path,
        "tifffile",
        {"pages": pages, "planes": {}, "file": handle},
        sizes,
        downsamples,
        mpp or found,
    )


def _tiff_mpp(page: Any) -> float | None:
    """µm/px from a TIFF page's resolution tags (centimetre or inch units)."""
    try:
        tags = page.tags
        numerator, denominator = tags["XResolution"].value
        unit = int(tags["ResolutionUnit"].value)
    except (KeyError, TypeError, ValueError):
        return None
    per_unit = numerator / denominator if denominator else 0
    microns = {3: 1e4, 2: 25400.0}.get(unit)
    return _float(microns / per_unit) if microns and per_unit > 0 else None


def _open_plain(path: Path, mpp: float | None) -> SlideSource:
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PLAIN_PIXELS:
                raise SlideError(
                    f"{path}: {image.width}×{image.height} is too large for a plain image; "
                    "use a pyramidal TIFF"
                )
            plane = np.asarray(image.convert("RGB"))
    except OSError as error:
        raise ImageLoadError(
            f"{path}: not a slide OpenSlide knows, nor an image ({error})"
        ) from None
    size = (plane.shape[1], plane.shape[0])
    return SlideSource(path, "pillow", plane, [size], [1.0], mpp)


def choose_resolution(slide: SlideSource, *, mpp: float | None, level: int | None) -> Resolution:
    """The analysis resolution for ``--mpp`` or ``--level`` (see the module docstring)."""
    if mpp is not None and level is not None:
        raise SlideError("--mpp and --level both choose the resolution: pass one")
    width, height = slide.dimensions
    if mpp is not None:
        if slide.mpp is None:
            raise SlideError(
                f"{slide.path.name} has no MPP metadata, so --mpp {mpp} cannot be honoured; "
                "pass --level N, or declare level 0's resolution with --slide-mpp"
            )
        scale = mpp / slide.mpp
        if scale < 0.999:
            raise SlideError(
                f"--mpp {mpp} is finer than the slide's level 0 ({slide.mpp:.4g} µm/px); "
                "camlens does not upsample slides"
            )
        chosen = slide.best_level(scale)
        if abs(scale - round(scale)) < 1e-3:
            scale = float(round(scale))
        return Resolution(chosen, scale, mpp, _scaled(width, height, scale))
    if level is None:
        if slide.mpp is None:
            raise SlideError(
                f"{slide.path.name} has no MPP metadata: choose the resolution with --level N "
                "(0 = full) or declare it with --slide-mpp"
            )
        level = 0
    if not 0 <= level < len(slide.levels):
        raise SlideError(
            f"--level {level}: {slide.path.name} has levels 0..{len(slide.levels) - 1}"
        )
    scale = slide.downsamples[level]
    resolution = slide.mpp * scale if slide.mpp else None
    return Resolution(level, scale, resolution, slide.levels[level])


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, math.floor(width / scale)), max(1, math.floor(height / scale))


def read_analysis(
    slide: SlideSource, resolution: Resolution, x: int, y: int, size: int
) -> np.ndarray:
    """The ``size × size`` RGB region of the analysis grid at analysis pixel ``(x, y)``: read
    at the resolution's level and resized when the scale is not the level's own."""
    scale = resolution.scale
    level_scale = slide.downsamples[resolution.level]
    x0, y0 = round(x * scale), round(y * scale)
    if abs(scale - level_scale) < 1e-6 * scale:
        return slide.read(x0, y0, resolution.level, size, size)
    side = max(1, math.ceil(size * scale / level_scale))
    region = slide.read(x0, y0, resolution.level, side, side)
    return np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.LANCZOS))
