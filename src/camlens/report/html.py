"""A small, dependency-free writer for self-contained HTML reports.

A report is one ``report.html`` plus the PNGs it shows, in an ``images/`` folder next to
it, linked by relative paths: zip the folder, mail it, open it with ``file://`` and it
looks the same. The page loads nothing from the network (no fonts, scripts or style
sheets; the CSS, ``assets/report.css``, is inlined from :data:`STYLE`) and needs no
JavaScript.

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
  long report does not keep every picture in memory. Every file is written atomically.
* A section can be kept as JSON-ready data (:meth:`Section.to_data`) and rebuilt into
  another report on the same folder (:meth:`Report.add_section_data`), linking the images
  already written: a long job records each item's section as it finishes and assembles the
  page at the end, from one process or several.
* The output is a pure function of the calls made: no time stamps, no absolute paths, no
  random ids, sorted nothing that the caller ordered. The same calls give the same bytes,
  so reports can be diffed and cached.
* Every ``<img>`` carries ``width``/``height`` (the page does not jump while loading) and
  alt text, and every figure states the image's true size in pixels, since a figure is
  usually shown scaled.

Where things live (this module only gathers the public names; import them from here or
from :mod:`camlens.report`):

* :mod:`camlens.report.document`: :class:`Report`, its options and the page it writes;
* :mod:`camlens.report.section`: :class:`Section` and the methods that add blocks to it;
* :mod:`camlens.report.blocks`: paragraphs, call-outs, key/value lists, tables;
* :mod:`camlens.report.figures`: :class:`FigureRow` and :class:`Figure`;
* :mod:`camlens.report.images`: saving, converting, copying and naming image files;
* :mod:`camlens.report.markup`: escaping, attributes, :func:`slugify`, unique ids;
* :mod:`camlens.report.values`: :func:`format_value`, option checks, :class:`ReportError`;
* :mod:`camlens.report.data`: rebuilding sections from :meth:`Section.to_data` (a job's
  manifest) with :meth:`Report.add_section_data`;
* :mod:`camlens.report.atomic`: writing the page without ever leaving half a file (over
  :mod:`camlens.atomic`, which writes the images too);
* :mod:`camlens.report.static`: :data:`STYLE` and the page skeleton, read from
  ``assets/report.css`` and ``assets/page.html``.
"""

from __future__ import annotations

from camlens.report.blocks import CALLOUT_KINDS
from camlens.report.document import Report
from camlens.report.figures import Figure, FigureRow
from camlens.report.markup import slugify
from camlens.report.section import Section
from camlens.report.static import STYLE
from camlens.report.values import MISSING, ReportError, format_value

__all__ = [
    "CALLOUT_KINDS",
    "MISSING",
    "STYLE",
    "Figure",
    "FigureRow",
    "Report",
    "ReportError",
    "Section",
    "format_value",
    "slugify",
]
