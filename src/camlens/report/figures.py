"""Rows of figures: pictures side by side, each with its caption, note and true size.

Every ``<img>`` carries ``width``/``height`` (the page does not jump while loading) and alt
text, and every figure states the image's true size in pixels, since a figure is usually
shown scaled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camlens.report.blocks import Block
from camlens.report.markup import esc
from camlens.report.values import check_width

if TYPE_CHECKING:
    from camlens.report.document import Report

__all__ = ["Figure", "FigureRow", "shown_height"]


def shown_height(width: int, pixel_width: int, pixel_height: int) -> int:
    """The displayed height of a figure shown ``width`` CSS pixels wide (aspect ratio kept)."""
    return max(1, round(width * pixel_height / pixel_width))


@dataclass(frozen=True)
class Figure:
    """One image placed in a :class:`FigureRow`, as written to disk.

    Attributes:
        path: the image file the page shows (inside ``out_dir/images`` unless it was
            linked in place with ``copy=False``).
        src: the relative URL written into ``<img src>``, relative to the report page.
        pixel_width, pixel_height: the image's true size in pixels.
        width, height: the size it is displayed at, in CSS pixels (aspect ratio kept).
        caption, note, alt: the texts shown under (and behind) the image.
        pixelated: whether the browser scales it with ``image-rendering: pixelated``.
    """

    path: Path
    src: str
    pixel_width: int
    pixel_height: int
    width: int
    height: int
    caption: str | None
    note: str | None
    alt: str
    pixelated: bool

    def _render(self, out: list[str]) -> None:
        classes = "fig pixelated" if self.pixelated else "fig"
        src = esc(self.src)
        out.append(f'<figure class="{classes}" style="--w: {self.width}px">')
        out.append(
            f'<a class="img" href="{src}"><img src="{src}" alt="{esc(self.alt)}" '
            f'width="{self.width}" height="{self.height}" loading="lazy" decoding="async"></a>'
        )
        out.append("<figcaption>")
        if self.caption is not None:
            out.append(f'<span class="cap">{esc(self.caption)}</span>')
        if self.note is not None:
            out.append(f'<span class="note">{esc(self.note)}</span>')
        out.append(f'<span class="size">{self.pixel_width}×{self.pixel_height} px</span>')
        out.append("</figcaption></figure>")

    def _to_data(self, out_dir: Path) -> dict[str, Any]:
        """The figure as JSON-ready data: its file relative to ``out_dir`` (POSIX
        separators; ``..`` for a file linked in place outside it) and how it is shown."""
        relative = os.path.relpath(Path(self.path).resolve(), Path(out_dir).resolve())
        return {
            "path": Path(relative).as_posix(),
            "pixel_width": self.pixel_width,
            "pixel_height": self.pixel_height,
            "width": self.width,
            "caption": self.caption,
            "note": self.note,
            "alt": self.alt,
            "pixelated": self.pixelated,
        }


class FigureRow(Block):
    """A row of figures shown side by side, wrapping onto more lines on narrow screens.

    Made by :meth:`Section.figure_row`; add pictures with :meth:`figure`. Typical use is
    one row per class, one figure per CAM method, so methods compare at a glance.
    """

    def __init__(
        self, report: Report, caption: str | None, width: int | None, pixelated: bool
    ) -> None:
        self._report = report
        self.caption = caption
        self._width = width
        self._pixelated = pixelated
        self.figures: list[Figure] = []

    def figure(
        self,
        image: Any,
        caption: str | None = None,
        note: str | None = None,
        *,
        width: int | None = None,
        pixelated: bool | None = None,
        alt: str | None = None,
        name: str | None = None,
        copy: bool = True,
    ) -> Figure:
        """Add one picture to the row and return where and how it was placed.

        Args:
            image: an ``[H, W]`` / ``[H, W, 3]`` / ``[H, W, 4]`` array (``uint8``, floats
                in ``[0, 1]`` or ``bool``; numpy or torch), a :class:`PIL.Image.Image`, or
                the path of an image file. Arrays and PIL images are saved as PNG at once;
                files are copied next to the report (see ``copy``); formats browsers may
                not show (TIFF, BMP, ...) are converted to PNG.
            caption: bold text under the image (e.g. the method's name).
            note: a second line under the caption (e.g. ``"mass in mask 0.83"``).
            width: displayed width in CSS pixels; the height follows the aspect ratio.
                Defaults to the row's width, else the report's ``figure_width``. On
                narrow screens figures shrink to fit. Clicking opens the full image.
            pixelated: scale with hard pixel edges, for label maps and small CAMs shown
                large; defaults to the row's setting.
            alt: text for screen readers and broken images; defaults to the caption.
            name: a label for the file name (slugified, numbered); defaults to the
                caption. Only ever used after :func:`slugify`, so it cannot escape.
            copy: for a file in a web format, ``False`` links the file where it lies
                (relative to the report) instead of copying it; the report then is no
                longer self-contained. Files already inside ``out_dir`` are never copied.

        Raises:
            InputShapeError: the array has the wrong shape, is empty or out of range.
            NonFiniteError: a float array holds NaN or infinity.
            ImageLoadError: a path does not exist or is not an image.
            ReportError: ``width`` is not a positive integer.
        """
        width = check_width(width if width is not None else self._width, "figure width")
        pixelated = self._pixelated if pixelated is None else bool(pixelated)
        label = name if name is not None else caption
        path, src, (pw, ph) = self._report._store_image(image, label, copy=copy)
        shown_w = width if width is not None else self._report.figure_width
        shown_h = shown_height(shown_w, pw, ph)
        figure = Figure(
            path=path,
            src=src,
            pixel_width=pw,
            pixel_height=ph,
            width=shown_w,
            height=shown_h,
            caption=caption,
            note=note,
            alt=alt if alt is not None else (caption if caption is not None else path.name),
            pixelated=pixelated,
        )
        self.figures.append(figure)
        return figure

    def _render(self, out: list[str], depth: int) -> None:
        if not self.figures and self.caption is None:
            return
        out.append('<figure class="row">')
        if self.caption is not None:
            out.append(f"<figcaption>{esc(self.caption)}</figcaption>")
        out.append('<div class="figs">')
        for figure in self.figures:
            figure._render(out)
        out.append("</div></figure>")

    def _to_data(self, out_dir: Path) -> dict[str, Any]:
        return {
            "type": "figure_row",
            "caption": self.caption,
            "width": self._width,
            "pixelated": self._pixelated,
            "figures": [figure._to_data(out_dir) for figure in self.figures],
        }
