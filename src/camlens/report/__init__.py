"""Self-contained HTML reports: one ``report.html`` plus its PNGs, no network, no JavaScript.

::

    from camlens.report import Report

    report = Report("camlens demo", subtitle="HiResCAM vs Grad-CAM", out_dir="out")
    tile = report.section("Tile 3: tile_3.png")
    row = tile.figure_row(caption="Class: epidermis")
    row.figure(overlay_rgb, caption="HiResCAM", note="mass in mask 0.83")
    report.write()   # -> out/report.html, images in out/images/

See :mod:`camlens.report.html` for the design and every option.
"""

from camlens.report.html import (
    CALLOUT_KINDS,
    STYLE,
    Figure,
    FigureRow,
    Report,
    ReportError,
    Section,
    format_value,
    slugify,
)

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
