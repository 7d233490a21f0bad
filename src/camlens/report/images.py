"""Putting figure images next to the page: arrays and PIL images saved as PNG, files copied.

Image files are named by the writer (a running number and a slug of the name or caption,
``[a-z0-9-]`` only), so no label can write outside ``out_dir/images`` and two figures never
overwrite each other. Arrays are saved as soon as they are added, so a long report does
not keep every picture in memory.

The running number counts per :class:`ImageStore`, that is per
:class:`~camlens.report.document.Report`: ``001-…``, ``002-…`` in the order figures are
added. A report's file names are therefore a function of its own calls only, which is what
lets a job give every input its own small report (``Report(out_dir,
image_dir=f"images/{key}")``) and get the same names for that input whether it ran alone, in
a shard or again after an interruption.

Every file is written atomically (:mod:`camlens.atomic`): a killed run never leaves a
truncated image under its final name.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image, UnidentifiedImageError

from camlens.atomic import atomic_open, save_png
from camlens.errors import ImageLoadError, InputShapeError, NonFiniteError
from camlens.report.markup import slugify
from camlens.report.values import ReportError

__all__ = ["ImageStore", "to_uint8_pixels"]

#: Image formats every browser displays; a file in another format is converted to PNG.
WEB_SUFFIXES = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".gif": ".gif", ".webp": ".webp"}

#: PIL modes saved to PNG as they are; others are converted to RGB(A) first.
_PNG_MODES = ("1", "L", "LA", "RGB", "RGBA", "P")

#: Where an image ended up: (file, URL relative to the page, (width, height) in pixels).
Placed = tuple[Path, str, tuple[int, int]]

#: zlib level of the report's PNG pictures: 1 encodes about twice as fast as Pillow's default
#: 6 (a job draws a dozen pictures per image; encoding was most of its non-model time) for
#: files about a third larger.
REPORT_PNG_LEVEL = 1


def to_uint8_pixels(array: Any) -> np.ndarray:
    """Any image-like array → contiguous ``uint8`` ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]``.

    Accepts numpy arrays, CPU/GPU torch tensors (``[H, W, C]``, channels last, as
    everywhere in :mod:`camlens.image`) and nested sequences. Floats are read as ``[0, 1]``
    and clipped, as :func:`camlens.image.save_image` does; booleans become 0/255;
    other integers must already lie in ``[0, 255]``.
    """
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    pixels = np.asarray(array)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        hint = (
            " (channels first? use array.transpose(1, 2, 0) or tensor.permute(1, 2, 0))"
            if pixels.ndim == 3 and pixels.shape[0] in (1, 3, 4)
            else ""
        )
        raise InputShapeError(
            f"a figure must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; got shape "
            f"{tuple(pixels.shape)}{hint}"
        )
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise InputShapeError(f"a figure must not be empty; got shape {tuple(pixels.shape)}")
    kind = pixels.dtype.kind
    if kind == "b":
        pixels = pixels.astype(np.uint8) * 255
    elif kind == "f":
        if not np.all(np.isfinite(pixels)):
            raise NonFiniteError(
                "a float figure contains NaN or infinity; replace them (np.nan_to_num) first"
            )
        pixels = np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif kind in "iu":
        if pixels.dtype != np.uint8:
            low, high = int(pixels.min()), int(pixels.max())
            if low < 0 or high > 255:
                raise InputShapeError(
                    f"an integer figure must hold values in [0, 255]; got [{low}, {high}] "
                    "(a label map? colour it with camlens.image.mask_to_rgb first)"
                )
            pixels = pixels.astype(np.uint8)
    else:
        raise InputShapeError(f"a figure must hold numbers; got dtype {pixels.dtype}")
    return np.ascontiguousarray(pixels)


def _png_ready(picture: Image.Image) -> Image.Image:
    """``picture``, converted to RGB(A) if PNG cannot hold its mode."""
    if picture.mode in _PNG_MODES:
        return picture
    return picture.convert("RGBA" if "A" in picture.getbands() else "RGB")


class ImageStore:
    """The images of one report: ``out_dir/image_dir/NNN-slug.ext``, numbered from 001.

    ``image_dir`` is relative to ``out_dir`` (``"images"``, or ``"images/<key>"`` for one
    item of a job); the number counts per store, so per report.
    """

    def __init__(self, out_dir: Path, image_dir: str) -> None:
        self.out_dir = out_dir
        self.image_dir = image_dir
        self._count = 0

    def store(self, image: Any, label: str | None, *, copy: bool) -> Placed:
        """Save or place one image (array, PIL image or file path); see ``FigureRow.figure``."""
        if isinstance(image, (str, os.PathLike)):
            return self._place_file(Path(image), label, copy=copy)
        if isinstance(image, Image.Image):
            picture = _png_ready(image)
        else:
            picture = Image.fromarray(to_uint8_pixels(image))
        target = self._folder() / self._next_name(label, ".png")
        save_png(target, picture, compress_level=REPORT_PNG_LEVEL)
        return target, self.url(target), picture.size

    def link(self, relative: str) -> tuple[Path, str]:
        """An image file already written, given by its path relative to ``out_dir`` (POSIX
        separators; ``..`` allowed for files linked in place): ``(path, url)``, with nothing
        copied or re-encoded. Used to rebuild figures from section data.

        A file of this store's own folder named ``NNN-…`` moves the running number past
        ``NNN``, so that figures added afterwards never overwrite it.

        Raises:
            ReportError: ``relative`` is not a relative path.
            ImageLoadError: there is no such file.
        """
        if (
            not isinstance(relative, str)
            or not relative
            or PurePosixPath(relative).is_absolute()
            or PureWindowsPath(relative).anchor
        ):
            raise ReportError(f"a figure's path must be relative to out_dir; got {relative!r}")
        path = self.out_dir / relative
        if not path.is_file():
            raise ImageLoadError(f"figure image not found: {path}")
        number = re.match(r"(\d+)-", path.name)
        if number and path.resolve().parent == (self.out_dir / self.image_dir).resolve():
            self._count = max(self._count, int(number.group(1)))
        return path, self.url(path)

    def url(self, file: Path) -> str:
        """The URL of ``file`` relative to the page: forward slashes, percent-encoded."""
        relative = os.path.relpath(Path(file).resolve(), self.out_dir.resolve())
        return quote(Path(relative).as_posix(), safe="/-._~")

    def _folder(self) -> Path:
        folder = self.out_dir / self.image_dir
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _next_name(self, label: str | None, suffix: str) -> str:
        self._count += 1
        return f"{self._count:03d}-{slugify(label or '', 'figure')}{suffix}"

    def _place_file(self, source: Path, label: str | None, *, copy: bool) -> Placed:
        stem = label if label is not None else source.stem
        try:
            with Image.open(source) as opened:
                size = opened.size
                fmt_suffix = WEB_SUFFIXES.get(source.suffix.lower())
                if fmt_suffix is None:  # not something a browser shows: convert
                    opened.load()
                    picture = _png_ready(opened)
                    target = self._folder() / self._next_name(stem, ".png")
                    save_png(target, picture, compress_level=REPORT_PNG_LEVEL)
                    return target, self.url(target), size
        except FileNotFoundError as err:
            raise ImageLoadError(f"figure image not found: {source}") from err
        except (UnidentifiedImageError, OSError) as err:
            raise ImageLoadError(f"figure file is not a readable image: {source} ({err})") from err

        resolved = source.resolve()
        if resolved.is_relative_to(self.out_dir.resolve()) or not copy:
            try:
                return source, self.url(resolved), size
            except ValueError:  # another drive (Windows): cannot link relatively
                pass
        target = self._folder() / self._next_name(stem, fmt_suffix)
        if not (target.exists() and target.resolve() == resolved):
            with open(source, "rb") as original, atomic_open(target, "wb") as copied:
                shutil.copyfileobj(original, copied)
        return target, self.url(target), size
