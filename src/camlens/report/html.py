"""A small, dependency-free writer for self-contained HTML reports.

A report is one ``report.html`` plus the PNGs it shows, in an ``images/`` folder next to
it, linked by relative paths: zip the folder, mail it, open it with ``file://`` and it
looks the same. The page loads nothing from the network (no fonts, scripts or style
sheets; the CSS is inlined from :data:`STYLE`) and needs no JavaScript.

The writer knows nothing about CAMs: it arranges sections, paragraphs, key/value lists,
rows of figures, tables and call-out boxes, and leaves the content to its callers::

    report = Report("camlens demo", subtitle="HiResCAM vs Grad-CAM", out_dir="out")
    tile = report.section("Tile 3: tile_3.png")
    tile.key_values({"image size": "512 × 512 px", "model": "unet-r18"})
    row = tile.figure_row(caption="Class: epidermis")
    row.figure(image, caption="input")
    row.figure(hirescam_overlay, caption="HiResCAM", note="mass in mask 0.83")
    tile.table(["method", "mass in mask"], [["HiResCAM", 0.83], ["Grad-CAM", float("nan")]])
    path = report.write()        # out/report.html

Design choices, and why:

* Everything a caller passes in is text, and is HTML-escaped on output: captions, titles,
  table cells, keys and file names can hold ``<``, ``&`` or quotes without breaking (or
  scripting) the page. There is deliberately no way to pass raw HTML.
* Image files are named by the writer (a running number and a slug of the name or
  caption, ``[a-z0-9-]`` only), so no label can write outside ``out_dir/images`` and two
  figures never overwrite each other. Arrays are saved as soon as they are added, so a
  long report does not keep every picture in memory.
* The output is a pure function of the calls made: no time stamps, no absolute paths, no
  random ids, sorted nothing that the caller ordered. The same calls give the same bytes,
  so reports can be diffed and cached.
* Every ``<img>`` carries ``width``/``height`` (the page does not jump while loading) and
  alt text, and every figure states the image's true size in pixels, since a figure is
  usually shown scaled.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
from PIL import Image, UnidentifiedImageError

from camlens.errors import CamlensError, ImageLoadError, InputShapeError, NonFiniteError

__all__ = [
    "CALLOUT_KINDS",
    "STYLE",
    "Figure",
    "FigureRow",
    "Report",
    "ReportError",
    "Section",
    "format_value",
    "slugify",
]

PathLike = str | os.PathLike
CalloutKind = Literal["info", "ok", "warning", "danger"]
NumberFormat = str | Sequence[str | None] | Mapping[str, str]

#: Call-out kinds and the label shown in front of their text.
CALLOUT_KINDS: dict[str, str] = {
    "info": "Note",
    "ok": "OK",
    "warning": "Warning",
    "danger": "Problem",
}

#: The text shown for a missing or not-a-number value in tables and key/value lists.
MISSING = "–"

#: Image formats every browser displays; a file in another format is converted to PNG.
_WEB_SUFFIXES = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".gif": ".gif", ".webp": ".webp"}

#: Ids the page uses itself, never handed to a section.
_RESERVED_IDS = frozenset({"top", "toc", "toc-h", "content"})

#: Longest slug used in an id or a file name; long captions are cut, not refused.
_MAX_SLUG = 48


class ReportError(CamlensError, ValueError):
    """A report was given something it cannot show (a bad option, a malformed table)."""


# --------------------------------------------------------------------------------------
# Style
# --------------------------------------------------------------------------------------

#: The report's whole style sheet, inlined into every page. A light, quiet theme: the
#: pictures carry the colour, the chrome stays grey. System fonts only (nothing to fetch).
STYLE = """\
:root {
  color-scheme: light;
  --bg: #f6f7f9;
  --card: #ffffff;
  --ink: #1d2330;
  --muted: #5d6675;
  --rule: #dde1e7;
  --rule-strong: #b9c0cb;
  --accent: #1f5f8b;
  --accent-soft: #e8f0f7;
  --zebra: #f8f9fb;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Liberation Sans",
    "DejaVu Sans", Arial, sans-serif;
  --mono: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono",
    "DejaVu Sans Mono", monospace;
}
*, *::before, *::after { box-sizing: border-box; }
html { scroll-behavior: smooth; }
body {
  margin: 0;
  background: var(--bg);
  color: var(--ink);
  font: 15px/1.55 var(--sans);
  -webkit-text-size-adjust: 100%;
}
a { color: var(--accent); }
header.page {
  background: var(--card);
  border-bottom: 1px solid var(--rule);
  padding: 28px 32px 22px;
}
header.page h1 { margin: 0; font-size: 1.75rem; line-height: 1.25; font-weight: 650; }
header.page .subtitle { margin: 6px 0 0; color: var(--muted); font-size: 1.02rem; }
.layout {
  display: grid;
  grid-template-columns: minmax(0, 1fr);
  gap: 24px;
  max-width: 1480px;
  margin: 0 auto;
  padding: 24px 32px 48px;
}
nav.toc {
  background: var(--card);
  border: 1px solid var(--rule);
  border-radius: 8px;
  padding: 14px 16px;
  font-size: 0.9rem;
}
nav.toc h2 {
  margin: 0 0 6px;
  font-size: 0.78rem;
  letter-spacing: 0.06em;
  text-transform: uppercase;
  color: var(--muted);
}
nav.toc ol { list-style: none; margin: 0; padding: 0; }
nav.toc ol ol { padding-left: 14px; border-left: 2px solid var(--rule); margin: 2px 0 4px 4px; }
nav.toc li { margin: 2px 0; }
nav.toc a { text-decoration: none; display: block; padding: 1px 4px; border-radius: 4px; }
nav.toc a:hover { background: var(--accent-soft); }
@media (min-width: 1000px) {
  .layout { grid-template-columns: 220px minmax(0, 1fr); }
  nav.toc {
    position: sticky;
    top: 16px;
    align-self: start;
    max-height: calc(100vh - 32px);
    overflow: auto;
  }
}
main { min-width: 0; }
main > section {
  background: var(--card);
  border: 1px solid var(--rule);
  border-radius: 8px;
  padding: 4px 24px 20px;
  margin: 0 0 24px;
}
section section { margin-top: 20px; padding-top: 4px; border-top: 1px solid var(--rule); }
h2, h3, h4, h5, h6 { line-height: 1.3; font-weight: 620; margin: 18px 0 10px; }
h2 { font-size: 1.35rem; }
h3 { font-size: 1.12rem; }
h4, h5, h6 { font-size: 1rem; }
h2 a.self, h3 a.self, h4 a.self, h5 a.self, h6 a.self {
  color: var(--rule-strong);
  text-decoration: none;
  margin-left: 6px;
  font-weight: 400;
  visibility: hidden;
}
:is(h2, h3, h4, h5, h6):hover a.self { visibility: visible; }
section, figure { scroll-margin-top: 16px; }
p { margin: 8px 0 12px; max-width: 80ch; }
pre {
  font: 0.85rem/1.45 var(--mono);
  background: var(--zebra);
  border: 1px solid var(--rule);
  border-radius: 6px;
  padding: 10px 12px;
  overflow-x: auto;
  white-space: pre;
}
dl.kv {
  display: grid;
  grid-template-columns: max-content minmax(0, 1fr);
  gap: 3px 18px;
  margin: 10px 0 16px;
  font-size: 0.93rem;
}
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
figure { margin: 0; }
figure.row { margin: 14px 0 20px; }
figure.row > figcaption {
  font-weight: 600;
  font-size: 0.98rem;
  margin: 0 0 8px;
  padding-bottom: 4px;
  border-bottom: 1px solid var(--rule);
}
.figs { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure.fig {
  width: var(--w, 256px);
  max-width: 100%;
  background: var(--card);
  border: 1px solid var(--rule);
  border-radius: 6px;
  padding: 6px;
}
figure.fig a.img { display: block; line-height: 0; }
figure.fig img {
  display: block;
  width: 100%;
  height: auto;
  background: #eceff3;
  border-radius: 3px;
}
figure.fig.pixelated img { image-rendering: pixelated; }
figure.fig figcaption { padding: 6px 2px 0; font-size: 0.88rem; line-height: 1.4; }
figure.fig .cap { display: block; font-weight: 600; overflow-wrap: anywhere; }
figure.fig .note { display: block; color: var(--ink); font-variant-numeric: tabular-nums; }
figure.fig .size {
  display: block;
  color: var(--muted);
  font-size: 0.78rem;
  font-variant-numeric: tabular-nums;
}
.table-wrap { overflow-x: auto; margin: 12px 0 18px; }
table {
  border-collapse: collapse;
  font-size: 0.9rem;
  font-variant-numeric: tabular-nums;
  background: var(--card);
}
caption {
  caption-side: top;
  text-align: left;
  font-weight: 600;
  padding: 0 0 6px;
}
th, td { padding: 5px 12px; text-align: left; vertical-align: top; }
thead th {
  border-bottom: 2px solid var(--rule-strong);
  color: var(--muted);
  font-weight: 600;
  white-space: nowrap;
}
tbody th { font-weight: 600; }
tbody tr { border-bottom: 1px solid var(--rule); }
tbody tr:nth-child(even) { background: var(--zebra); }
th.num, td.num { text-align: right; }
td.na, th.na { color: var(--muted); text-align: right; }
.callout {
  border: 1px solid var(--rule);
  border-left: 5px solid var(--c);
  background: var(--cbg);
  border-radius: 6px;
  padding: 10px 14px;
  margin: 12px 0 16px;
  max-width: 90ch;
}
.callout .label { font-weight: 700; color: var(--c); margin-right: 6px; }
.callout.info { --c: #1f5f8b; --cbg: #eef5fb; }
.callout.ok { --c: #1d7a3a; --cbg: #edf8f0; }
.callout.warning { --c: #9a5b00; --cbg: #fff6e5; }
.callout.danger { --c: #b42318; --cbg: #fdeeed; }
footer.page {
  color: var(--muted);
  font-size: 0.8rem;
  text-align: center;
  padding: 0 32px 32px;
}
@media (max-width: 640px) {
  header.page, .layout { padding-left: 12px; padding-right: 12px; }
  main > section { padding: 2px 12px 14px; }
}
@media print {
  body { background: #fff; }
  nav.toc { display: none; }
  .layout { display: block; padding: 0; }
  main > section { border: 0; padding: 0; }
  figure.fig, tr, .callout { break-inside: avoid; }
  h2, h3, h4 { break-after: avoid; }
}
"""


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _esc(text: object) -> str:
    """HTML-escape ``str(text)``, quotes included, so it is safe in text and attributes."""
    return html.escape(str(text), quote=True)


def slugify(text: str, fallback: str = "item", max_length: int = _MAX_SLUG) -> str:
    """Turn any label into ``[a-z0-9-]+``: safe in a URL fragment, an id and a file name.

    Accents are folded (``"Übersicht"`` → ``"ubersicht"``), every other run of characters
    becomes one ``-``; path separators and dots therefore cannot survive, which is what
    makes file names built from captions traversal-proof. ``fallback`` is returned when
    nothing is left (``"<>"``, ``"…"``, ``"../.."``).
    """
    folded = (
        unicodedata.normalize("NFKD", str(text).replace("×", "x"))
        .encode("ascii", "ignore")
        .decode("ascii")
    )
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    slug = slug[:max_length].rstrip("-")
    return slug or fallback


def format_value(value: Any, number_format: str = "{:.3f}") -> tuple[str, str]:
    """Format a table or key/value cell as ``(text, kind)``; ``kind`` picks the CSS class.

    ``kind`` is ``"num"`` for numbers (right-aligned), ``"na"`` for ``None`` and NaN (both
    shown as ``"–"``), ``"text"`` for everything else. Floats (numpy's included) go
    through ``number_format``; integers are printed exactly, booleans as text; infinities
    as ``"∞"`` / ``"−∞"``. The text is *not* escaped yet.
    """
    if value is None:
        return MISSING, "na"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)), "text"
    if isinstance(value, (Integral, np.integer)):
        return str(int(value)), "num"
    if isinstance(value, (Real, np.floating)):
        number = float(value)
        if math.isnan(number):
            return MISSING, "na"
        if math.isinf(number):
            return ("∞" if number > 0 else "−∞"), "num"
        return number_format.format(number), "num"
    return str(value), "text"


class _Ids:
    """Hands out unique ids for one page: ``slug``, ``slug-2``, ``slug-3``, ..."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._used: set[str] = set(reserved)

    def claim(self, wanted: str, fallback: str) -> str:
        base = slugify(wanted, fallback)
        if base[0].isdigit():  # valid in HTML5, but awkward in CSS selectors
            base = f"{fallback}-{base}"
        candidate, n = base, 1
        while candidate in self._used:
            n += 1
            candidate = f"{base}-{n}"
        self._used.add(candidate)
        return candidate


def _check_width(width: Any, what: str) -> Any:
    """``None`` or a positive whole number of CSS pixels, returned as ``int``."""
    if width is None:
        return None
    if isinstance(width, (bool, np.bool_)) or not isinstance(width, (Integral, np.integer)):
        raise ReportError(f"{what} must be a whole number of CSS pixels; got {width!r}")
    if int(width) <= 0:
        raise ReportError(f"{what} must be positive; got {width}")
    return int(width)


def _column_formats(headers: tuple[str, ...], number_format: NumberFormat) -> Any:
    """Resolve ``number_format`` to a function: column index → ``str.format`` pattern."""
    default = "{:.3f}"
    if isinstance(number_format, str):
        pattern = number_format
        return lambda i: pattern
    if isinstance(number_format, Mapping):
        unknown = set(number_format) - set(headers)
        if unknown:
            raise ReportError(
                f"number_format names columns that are not headers: {sorted(unknown)}"
            )
        by_column = [number_format.get(h, default) for h in headers]
    else:
        by_column = [f if f is not None else default for f in number_format]
        if len(by_column) != len(headers):
            raise ReportError(
                f"number_format has {len(by_column)} patterns for {len(headers)} columns"
            )
    return lambda i: by_column[i] if i < len(by_column) else default


def _to_uint8_pixels(array: Any) -> np.ndarray:
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


# --------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------


class _Block:
    """Something that renders itself into a list of HTML lines."""

    def _render(self, out: list[str], depth: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class _Paragraph(_Block):
    text: str

    def _render(self, out: list[str], depth: int) -> None:
        out.append(f"<p>{_esc(self.text)}</p>")


@dataclass(frozen=True)
class _Preformatted(_Block):
    text: str

    def _render(self, out: list[str], depth: int) -> None:
        out.append(f"<pre>{_esc(self.text)}</pre>")


@dataclass(frozen=True)
class _Callout(_Block):
    text: str
    kind: str
    title: str | None

    def _render(self, out: list[str], depth: int) -> None:
        label = self.title if self.title is not None else CALLOUT_KINDS[self.kind]
        head = f'<span class="label">{_esc(label)}</span>' if label else ""
        out.append(f'<div class="callout {self.kind}" role="note">{head}{_esc(self.text)}</div>')


@dataclass(frozen=True)
class _KeyValues(_Block):
    items: tuple[tuple[str, str, str], ...]  # (key, text, kind)

    def _render(self, out: list[str], depth: int) -> None:
        out.append('<dl class="kv">')
        for key, text, kind in self.items:
            cls = f' class="{kind}"' if kind != "text" else ""
            out.append(f"<dt>{_esc(key)}</dt><dd{cls}>{_esc(text)}</dd>")
        out.append("</dl>")


@dataclass(frozen=True)
class _Table(_Block):
    headers: tuple[str, ...]
    rows: tuple[tuple[tuple[str, str], ...], ...]  # cells as (text, kind)
    caption: str | None
    row_header: bool

    def _render(self, out: list[str], depth: int) -> None:
        numeric = [
            bool(self.rows) and all(row[i][1] in ("num", "na") for row in self.rows)
            for i in range(len(self.headers))
        ]
        out.append('<div class="table-wrap"><table>')
        if self.caption is not None:
            out.append(f"<caption>{_esc(self.caption)}</caption>")
        if self.headers:
            out.append("<thead><tr>")
            for i, header in enumerate(self.headers):
                cls = ' class="num"' if numeric[i] else ""
                out.append(f'<th scope="col"{cls}>{_esc(header)}</th>')
            out.append("</tr></thead>")
        out.append("<tbody>")
        for row in self.rows:
            cells = []
            for i, (text, kind) in enumerate(row):
                title = ' title="not available"' if kind == "na" else ""
                cls = f' class="{kind}"' if kind != "text" else ""
                if i == 0 and self.row_header:
                    cells.append(f'<th scope="row"{cls}{title}>{_esc(text)}</th>')
                else:
                    cells.append(f"<td{cls}{title}>{_esc(text)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table></div>")


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
        src = _esc(self.src)
        out.append(f'<figure class="{classes}" style="--w: {self.width}px">')
        out.append(
            f'<a class="img" href="{src}"><img src="{src}" alt="{_esc(self.alt)}" '
            f'width="{self.width}" height="{self.height}" loading="lazy" decoding="async"></a>'
        )
        out.append("<figcaption>")
        if self.caption is not None:
            out.append(f'<span class="cap">{_esc(self.caption)}</span>')
        if self.note is not None:
            out.append(f'<span class="note">{_esc(self.note)}</span>')
        out.append(f'<span class="size">{self.pixel_width}×{self.pixel_height} px</span>')
        out.append("</figcaption></figure>")


class FigureRow(_Block):
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
        width = _check_width(width if width is not None else self._width, "figure width")
        pixelated = self._pixelated if pixelated is None else bool(pixelated)
        label = name if name is not None else caption
        path, src, (pw, ph) = self._report._store_image(image, label, copy=copy)
        shown_w = width if width is not None else self._report.figure_width
        shown_h = max(1, round(shown_w * ph / pw))
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
            out.append(f"<figcaption>{_esc(self.caption)}</figcaption>")
        out.append('<div class="figs">')
        for figure in self.figures:
            figure._render(out)
        out.append("</div></figure>")


class Section(_Block):
    """A titled part of the report, listed in the table of contents.

    Made by :meth:`Report.section` or :meth:`Section.subsection`. Content appears in the
    order it is added. The block methods return the section, so calls can be chained;
    :meth:`figure_row` and :meth:`subsection` return the new child instead.
    """

    def __init__(self, report: Report, title: str, anchor: str) -> None:
        self._report = report
        self.title = title
        #: The section's id, unique in the page: link to it with ``report.html#<anchor>``.
        self.anchor = anchor
        self._blocks: list[_Block] = []

    # -- text ----------------------------------------------------------------------
    def paragraph(self, text: str) -> Section:
        """Add a paragraph of plain text (escaped; line breaks are not kept)."""
        self._blocks.append(_Paragraph(str(text)))
        return self

    def preformatted(self, text: str) -> Section:
        """Add text in a fixed-width box with line breaks kept (a command line, a log)."""
        self._blocks.append(_Preformatted(str(text)))
        return self

    def callout(
        self, text: str, kind: CalloutKind = "info", *, title: str | None = None
    ) -> Section:
        """Add a highlighted box: ``"info"``, ``"ok"``, ``"warning"`` or ``"danger"``.

        ``title`` replaces the bold label in front of the text (``"Note"``, ``"OK"``,
        ``"Warning"``, ``"Problem"``); pass ``""`` for none. The colour is never the only
        signal: the label says it too.
        """
        if kind not in CALLOUT_KINDS:
            raise ReportError(f"callout kind must be one of {sorted(CALLOUT_KINDS)}; got {kind!r}")
        self._blocks.append(_Callout(str(text), kind, None if title is None else str(title)))
        return self

    # -- data ----------------------------------------------------------------------
    def key_values(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], number_format: str = "{:.3f}"
    ) -> Section:
        """Add a two-column list of facts (``"image size"`` → ``"512 × 512 px"``).

        Values are formatted like table cells (see :func:`format_value`).
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        rows = tuple((str(k), *format_value(v, number_format)) for k, v in pairs)
        self._blocks.append(_KeyValues(rows))
        return self

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[Any]],
        caption: str | None = None,
        number_format: NumberFormat = "{:.3f}",
        *,
        row_header: bool = True,
    ) -> Section:
        """Add a table. Numbers are right-aligned, NaN and ``None`` show as ``"–"``.

        Args:
            headers: column titles; every row must have as many cells.
            rows: the cells: numbers (Python or numpy), strings, ``None``, anything with a
                ``str()``.
            caption: a title shown above the table.
            number_format: how floats are written: one ``str.format`` pattern for all
                columns, a sequence with one pattern (or ``None`` for the default) per
                column, or a mapping from header to pattern.
            row_header: mark the first cell of each row as the row's header (bold), as in
                a table of methods by metrics.
        """
        header_texts = tuple(str(h) for h in headers)
        formats = _column_formats(header_texts, number_format)
        formatted = []
        for r, row in enumerate(rows):
            cells = list(row)
            if header_texts and len(cells) != len(header_texts):
                raise ReportError(
                    f"table row {r} has {len(cells)} cells but there are "
                    f"{len(header_texts)} headers: {header_texts}"
                )
            if not header_texts and formatted and len(cells) != len(formatted[0]):
                raise ReportError(
                    f"table row {r} has {len(cells)} cells, row 0 has {len(formatted[0])}"
                )
            formatted.append(tuple(format_value(v, formats(i)) for i, v in enumerate(cells)))
        self._blocks.append(_Table(header_texts, tuple(formatted), caption, row_header))
        return self

    # -- structure -----------------------------------------------------------------
    def figure_row(
        self, caption: str | None = None, *, width: int | None = None, pixelated: bool = False
    ) -> FigureRow:
        """Add a row of figures (side by side, wrapping) and return it to fill.

        ``width`` and ``pixelated`` are the defaults for the row's figures.
        """
        row = FigureRow(self._report, caption, width, pixelated)
        self._blocks.append(row)
        return row

    def subsection(self, title: str, anchor: str | None = None) -> Section:
        """Add a nested section (also listed, indented, in the table of contents)."""
        child = self._report._new_section(title, anchor)
        self._blocks.append(child)
        return child

    @property
    def subsections(self) -> list[Section]:
        """The direct child sections, in order."""
        return [b for b in self._blocks if isinstance(b, Section)]

    # -- rendering -----------------------------------------------------------------
    def _render(self, out: list[str], depth: int) -> None:
        level = min(depth + 2, 6)  # sections are <h2>, the page title is <h1>
        out.append(f'<section id="{self.anchor}">')
        out.append(
            f"<h{level}>{_esc(self.title)}"
            f'<a class="self" href="#{self.anchor}" aria-label="link to this section">#</a>'
            f"</h{level}>"
        )
        for block in self._blocks:
            block._render(out, depth + 1)
        out.append("</section>")

    def _render_toc(self, out: list[str]) -> None:
        out.append(f'<li><a href="#{self.anchor}">{_esc(self.title)}</a>')
        children = self.subsections
        if children:
            out.append("<ol>")
            for child in children:
                child._render_toc(out)
            out.append("</ol>")
        out.append("</li>")


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


class Report:
    """A self-contained HTML report: ``out_dir/report.html`` plus ``out_dir/images/*``.

    Build it with :meth:`section` (and the section's methods), then call :meth:`write`.
    Images are written as they are added; the page is written by :meth:`write`, which may
    be called again after adding more.

    Args:
        title: the page title (``<h1>`` and the browser tab).
        subtitle: a line under the title (data set, model, date: the caller decides, so
            the output stays reproducible).
        out_dir: the folder to write into; created if missing. Files of an earlier
            report with the same names are overwritten.
        filename: the page's file name inside ``out_dir``.
        image_dir: the sub-folder for images, a single plain folder name.
        figure_width: default displayed width of figures, in CSS pixels.
        footer: the small print at the bottom; ``None`` for the default, ``""`` for none.
    """

    def __init__(
        self,
        title: str,
        subtitle: str | None = None,
        out_dir: PathLike = "report",
        *,
        filename: str = "report.html",
        image_dir: str = "images",
        figure_width: int = 256,
        footer: str | None = None,
    ) -> None:
        for what, value in (("filename", filename), ("image_dir", image_dir)):
            if (
                not value
                or value in (".", "..")
                or "/" in value
                or "\\" in value
                or value != value.strip()
            ):
                raise ReportError(f"{what} must be a plain file or folder name; got {value!r}")
        figure_width = _check_width(figure_width, "figure_width")
        self.title = str(title)
        self.subtitle = None if subtitle is None else str(subtitle)
        self.out_dir = Path(out_dir)
        self.filename = filename
        self.image_dir = image_dir
        self.figure_width = figure_width
        self.footer = "Made with camlens." if footer is None else str(footer)
        self.sections: list[Section] = []
        self._ids = _Ids(_RESERVED_IDS)
        self._image_count = 0

    @property
    def path(self) -> Path:
        """Where :meth:`write` puts the page."""
        return self.out_dir / self.filename

    def section(self, title: str, anchor: str | None = None) -> Section:
        """Add a top-level section and return it to fill.

        ``anchor`` is the wanted id (default: from the title); it is slugified and made
        unique (``tile-3``, ``tile-3-2``, ...), so any title is safe. The id in use is
        :attr:`Section.anchor`.
        """
        section = self._new_section(title, anchor)
        self.sections.append(section)
        return section

    def _new_section(self, title: str, anchor: str | None) -> Section:
        title = str(title)
        return Section(self, title, self._ids.claim(title if anchor is None else anchor, "s"))

    # -- images --------------------------------------------------------------------
    def _image_folder(self) -> Path:
        folder = self.out_dir / self.image_dir
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _next_name(self, label: str | None, suffix: str) -> str:
        self._image_count += 1
        return f"{self._image_count:03d}-{slugify(label or '', 'figure')}{suffix}"

    def _store_image(
        self, image: Any, label: str | None, *, copy: bool
    ) -> tuple[Path, str, tuple[int, int]]:
        """Save or place one image; return (file, relative URL, (width, height) in px)."""
        if isinstance(image, (str, os.PathLike)):
            return self._place_file(Path(image), label, copy=copy)
        if isinstance(image, Image.Image):
            picture = image
            if picture.mode not in ("1", "L", "LA", "RGB", "RGBA", "P"):
                picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
        else:
            picture = Image.fromarray(_to_uint8_pixels(image))
        target = self._image_folder() / self._next_name(label, ".png")
        picture.save(target, format="PNG")
        return target, self._url(target), picture.size

    def _place_file(
        self, source: Path, label: str | None, *, copy: bool
    ) -> tuple[Path, str, tuple[int, int]]:
        try:
            with Image.open(source) as opened:
                size = opened.size
                fmt_suffix = _WEB_SUFFIXES.get(source.suffix.lower())
                if fmt_suffix is None:  # not something a browser shows: convert
                    opened.load()
                    picture = opened
                    if picture.mode not in ("1", "L", "LA", "RGB", "RGBA", "P"):
                        picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
                    stem = label if label is not None else source.stem
                    target = self._image_folder() / self._next_name(stem, ".png")
                    picture.save(target, format="PNG")
                    return target, self._url(target), size
        except FileNotFoundError as err:
            raise ImageLoadError(f"figure image not found: {source}") from err
        except (UnidentifiedImageError, OSError) as err:
            raise ImageLoadError(f"figure file is not a readable image: {source} ({err})") from err

        resolved_out = self.out_dir.resolve()
        resolved = source.resolve()
        inside = resolved.is_relative_to(resolved_out)
        if inside or not copy:
            try:
                return source, self._url(resolved), size
            except ValueError:  # another drive (Windows): cannot link relatively
                pass
        stem = label if label is not None else source.stem
        target = self._image_folder() / self._next_name(stem, fmt_suffix)
        if not (target.exists() and target.resolve() == resolved):
            shutil.copyfile(source, target)
        return target, self._url(target), size

    def _url(self, file: Path) -> str:
        """The URL of ``file`` relative to the page: forward slashes, percent-encoded."""
        relative = os.path.relpath(Path(file).resolve(), self.out_dir.resolve())
        return quote(Path(relative).as_posix(), safe="/-._~")

    # -- output --------------------------------------------------------------------
    def render(self) -> str:
        """The page as a string (what :meth:`write` saves)."""
        out: list[str] = [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="camlens">',
            f"<title>{_esc(self.title)}</title>",
            "<style>",
            STYLE.rstrip("\n"),
            "</style>",
            "</head>",
            '<body id="top">',
            '<header class="page">',
            f"<h1>{_esc(self.title)}</h1>",
        ]
        if self.subtitle:
            out.append(f'<p class="subtitle">{_esc(self.subtitle)}</p>')
        out.append("</header>")
        out.append('<div class="layout">')
        if self.sections:
            out.append('<nav class="toc" id="toc" aria-labelledby="toc-h">')
            out.append('<h2 id="toc-h">Contents</h2>')
            out.append("<ol>")
            for section in self.sections:
                section._render_toc(out)
            out.append("</ol>")
            out.append("</nav>")
        out.append('<main id="content">')
        for section in self.sections:
            section._render(out, 0)
        out.append("</main>")
        out.append("</div>")
        if self.footer:
            out.append(f'<footer class="page">{_esc(self.footer)}</footer>')
        out.append("</body>")
        out.append("</html>")
        return "\n".join(out) + "\n"

    def write(self) -> Path:
        """Write ``out_dir/<filename>`` (UTF-8) and return its path.

        The page is written to a temporary name first and then renamed, so a reader never
        sees half a report.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        target = self.path
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(self.render(), encoding="utf-8", newline="\n")
        os.replace(partial, target)
        return target
