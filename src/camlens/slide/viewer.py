"""The zoomable slide viewer: one self-contained HTML page over Deep Zoom pyramids.

:func:`write_viewer` writes ``<out>/viewer.html`` and copies its assets (a vendored
OpenSeadragon, the page's script and style sheet) to ``<out>/viewer-assets/``. The page
shows the slide with one heatmap on top, chosen by class and method, with an opacity slider
and a colour bar on the heatmap's symmetric scale, and lists the slide's statistics and
facts. It works opened straight from disk (``file://``): every tile source is inline (no
request for a ``.dzi`` file), the canvas drawer is used (WebGL refuses ``file://`` images),
and a content security policy allows no network access at all.

Every user string (class names come from users' label files) is escaped: as HTML text where
the page prints it, and as JSON with ``<``, ``>`` and ``&`` written as ``\\u003c`` ... in the
data block, so no value can end the ``<script>`` element. The page's script puts names into
the page only as text.

The view is in the URL hash (``viewer.html#class=tumour&method=hirescam&opacity=0.5``), read
when the page opens and updated on every change, so a link opens the same view. For tests,
``<body>`` says what is shown: ``data-layer`` (``class/method``), ``data-opacity``,
``data-tiles-loaded`` (tiles OpenSeadragon has loaded), ``data-tiles-failed``,
``data-layer-loaded`` and ``data-image-rect`` (the slide's box on the page, in CSS pixels).
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from camlens.atomic import atomic_open, write_text
from camlens.report import STYLE, format_value
from camlens.slide.deepzoom import DeepZoomImage

__all__ = ["ASSETS", "DEFAULT_OPACITY", "SCALE_UNIT", "HeatmapLayer", "script_json", "write_viewer"]

#: The files copied to ``<out>/viewer-assets/`` (OpenSeadragon with its licence, the page's
#: script and style sheet, the note on what is vendored).
ASSETS = (
    "openseadragon.min.js",
    "openseadragon-LICENSE.txt",
    "VENDORED.md",
    "viewer.js",
    "viewer.css",
)

#: What the colour bar's numbers are.
SCALE_UNIT = "logit units, scale fixed per slide and class"

#: The heatmap opacity a page opens with when its URL does not give one.
DEFAULT_OPACITY = 0.5

#: A CSS hex colour: the only colour syntax accepted (the colours go into a CSS gradient).
_HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")

#: No network and no inline script: only the page's own files. Inline styles are allowed
#: (OpenSeadragon's navigator sets some; styles cannot run code).
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class HeatmapLayer:
    """One heatmap of the viewer: a class explained by a method.

    ``image`` is the colourised heatmap (RGBA, transparent where there is nothing to show) as
    a Deep Zoom pyramid; it covers the whole slide, at any resolution. The map is signed and
    shown on the symmetric scale ``[-limit, +limit]`` in logit units; ``colors`` are the
    colour map's stops from ``-limit`` to ``+limit``, evenly spaced (CSS hex colours), for
    the colour bar. ``note`` is shown under the colour bar.
    """

    class_name: str
    method: str
    image: DeepZoomImage
    limit: float
    colors: list[str]
    note: str = ""


def write_viewer(
    out: Path,
    *,
    title: str,
    slide: DeepZoomImage,
    layers: list[HeatmapLayer],
    stats: list[dict[str, Any]],
    facts: dict[str, str],
) -> Path:
    """Write ``<out>/viewer.html`` and its assets in ``<out>/viewer-assets/``; return the page.

    ``slide`` and every layer's ``image`` must already be written (their tiles are found
    relative to ``out``, so they may be anywhere below or beside it). ``layers`` lists each
    class × method once; the first is shown when a link names none. ``stats`` are the rows
    of a table (the keys of all rows, in order of appearance, are its columns; a row with a
    ``class`` key, and a ``method`` key if any, is highlighted while its layer is shown);
    ``facts`` are shown as a list (slide name, resolution, model, ...).
    """
    out = Path(out)
    _check_layers(slide, layers)
    out.mkdir(parents=True, exist_ok=True)
    _copy_assets(out / "viewer-assets")
    data = {
        "slide": slide.tile_source(out),
        "opacity": DEFAULT_OPACITY,
        "layers": [
            {
                "class": layer.class_name,
                "method": layer.method,
                "source": layer.image.tile_source(out),
                "colors": list(layer.colors),
                "labels": _scale_labels(layer.limit),
                "note": layer.note,
            }
            for layer in layers
        ],
    }
    page = out / "viewer.html"
    write_text(page, _page(title, data, stats, facts))
    return page


def _check_layers(slide: DeepZoomImage, layers: Sequence[HeatmapLayer]) -> None:
    """Refuse what the page could not show: repeated layers, heatmaps that do not have the
    slide's shape (each is stretched to the slide's width), bad scales or colours."""
    seen: set[tuple[str, str]] = set()
    for layer in layers:
        pair = (layer.class_name, layer.method)
        if pair in seen:
            raise ValueError(f"two layers for class {pair[0]!r} and method {pair[1]!r}")
        seen.add(pair)
        # Each heatmap is stretched to the slide's width; its height must then fit too, to
        # the rounding of either size (a heatmap pixel, more for a tall slide).
        scale = slide.width / layer.image.width  # slide pixels per heatmap pixel
        tolerance = scale * max(1.0, slide.height / slide.width) + 2
        if abs(layer.image.height * scale - slide.height) > tolerance:
            raise ValueError(
                f"heatmap {pair} is {layer.image.width} x {layer.image.height} pixels: not the "
                f"shape of the slide ({slide.width} x {slide.height}) at any scale"
            )
        if not (math.isfinite(layer.limit) and layer.limit > 0):
            raise ValueError(f"limit must be finite and > 0; got {layer.limit!r} for {pair}")
        if len(layer.colors) < 2:
            raise ValueError(f"a colour bar needs at least 2 colours; got {layer.colors!r}")
        for colour in layer.colors:
            if not isinstance(colour, str) or not _HEX_COLOUR.fullmatch(colour):
                raise ValueError(f"colours must be CSS hex colours like '#1f5f8b'; got {colour!r}")


def _copy_assets(folder: Path) -> None:
    """Copy the page's assets (package data) into ``folder``, each file atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    source = resources.files("camlens.slide") / "assets"
    for name in ASSETS:
        with (source / name).open("rb") as reader, atomic_open(folder / name, "wb") as writer:
            shutil.copyfileobj(reader, writer)
    write_text(folder / "report.css", STYLE)  # the report's look, shared, not copied


def _scale_labels(limit: float) -> list[str]:
    """The colour bar's three labels: ``-limit``, ``0``, ``+limit`` (3 significant digits)."""
    text = f"{limit:.3g}"
    return [f"\u2212{text}", "0", f"+{text}"]


def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` become ``\\u003c``, ``\\u003e`` and ``\\u0026`` (so nothing can
    close the element or open a comment), and U+2028 / U+2029 are escaped too; ``JSON.parse``
    gives back the same value.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    for character, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(character, escaped)
    return text


def _text(value: Any) -> str:
    """Escape any value as HTML text (quotes too, so it is also safe in attributes)."""
    return html.escape(str(value), quote=True)


def _stats_table(stats: list[dict[str, Any]]) -> str:
    """The statistics as an HTML table; columns are the rows' keys in order of appearance."""
    if not stats:
        return '<p class="note">No statistics.</p>'
    columns: list[str] = []
    for row in stats:
        columns.extend(key for key in row if key not in columns)
    head = "".join(f"<th>{_text(column)}</th>" for column in columns)
    lines = []
    for row in stats:
        marks = ""
        if "class" in row:
            marks += f' data-class="{_text(row["class"])}"'
            if "method" in row:
                marks += f' data-method="{_text(row["method"])}"'
        cells = []
        for column in columns:
            text, kind = format_value(row.get(column))
            cells.append(f'<td class="{kind}">{_text(text)}</td>')
        lines.append(f"<tr{marks}>{''.join(cells)}</tr>")
    body = "\n".join(lines)
    return (
        '<div class="table-wrap"><table id="stats">\n'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def _facts_list(facts: dict[str, str]) -> str:
    """The facts as a definition list."""
    items = "\n".join(
        f"<dt>{_text(name)}</dt><dd>{_text(value)}</dd>" for name, value in facts.items()
    )
    return f'<dl class="kv" id="facts">\n{items}\n</dl>'


def _page(
    title: str, data: dict[str, Any], stats: list[dict[str, Any]], facts: dict[str, str]
) -> str:
    """The whole HTML page."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<meta name="referrer" content="no-referrer">
<title>{_text(title)}</title>
<link rel="stylesheet" href="viewer-assets/report.css">
<link rel="stylesheet" href="viewer-assets/viewer.css">
</head>
<body data-layer="" data-opacity="" data-tiles-loaded="0" data-tiles-failed="0">
<header class="page">
<h1>{_text(title)}</h1>
<p class="subtitle">Scroll or pinch to zoom, drag to pan; pick a class and a method to see its
heatmap over the slide.</p>
</header>
<div class="layout">
<main>
<section class="card viewer-card" aria-label="Slide viewer">
<div id="viewer"></div>
<noscript><p class="message">The viewer needs JavaScript.</p></noscript>
</section>
<p id="viewer-message" class="message" role="alert"></p>
<section class="card" aria-labelledby="stats-title">
<h2 id="stats-title">Statistics</h2>
{_stats_table(stats)}
</section>
</main>
<aside class="controls">
<section class="card" aria-labelledby="layer-title">
<h2 id="layer-title">Heatmap</h2>
<label for="class-select">Class</label>
<select id="class-select"></select>
<label for="method-select">Method</label>
<select id="method-select"></select>
<label for="opacity">Opacity <output id="opacity-value" for="opacity"></output></label>
<input type="range" id="opacity" min="0" max="1" step="0.05" value="{DEFAULT_OPACITY}">
<div class="colourbar">
<div id="colourbar" class="bar"></div>
<div class="ticks"><span id="tick-low"></span><span>0</span><span id="tick-high"></span></div>
<p class="unit">{_text(SCALE_UNIT)}</p>
</div>
<p id="layer-note" class="note"></p>
</section>
<section class="card" aria-labelledby="facts-title">
<h2 id="facts-title">Slide</h2>
{_facts_list(facts)}
</section>
</aside>
</div>
<script type="application/json" id="viewer-data">{script_json(data)}</script>
<script src="viewer-assets/openseadragon.min.js"></script>
<script src="viewer-assets/viewer.js"></script>
</body>
</html>
"""
