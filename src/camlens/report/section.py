"""Sections: the titled, nestable parts of a report, and the blocks they hold."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camlens.report.blocks import (
    CALLOUT_KINDS,
    Block,
    Callout,
    CalloutKind,
    KeyValues,
    Link,
    Paragraph,
    Preformatted,
    Table,
    relative_href,
)
from camlens.report.figures import FigureRow
from camlens.report.markup import esc
from camlens.report.values import (
    DEFAULT_NUMBER_FORMAT,
    NumberFormat,
    ReportError,
    column_formats,
    format_value,
)

if TYPE_CHECKING:
    from camlens.report.document import Report

__all__ = ["SECTION_DATA_VERSION", "Section"]

#: The ``"version"`` of :meth:`Section.to_data`'s output; bumped when its meaning changes.
SECTION_DATA_VERSION = 1


class Section(Block):
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
        self._blocks: list[Block] = []

    # -- text ----------------------------------------------------------------------
    def paragraph(self, text: str) -> Section:
        """Add a paragraph of plain text (escaped; line breaks are not kept)."""
        self._blocks.append(Paragraph(str(text)))
        return self

    def link(self, text: str, href: str) -> Section:
        """Add a link to a file beside the report (a relative path, e.g. a slide viewer);
        anything with a scheme (``http:``, ``javascript:``) is refused: reports are
        self-contained folders."""
        self._blocks.append(Link(str(text), relative_href(href)))
        return self

    def preformatted(self, text: str) -> Section:
        """Add text in a fixed-width box with line breaks kept (a command line, a log)."""
        self._blocks.append(Preformatted(str(text)))
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
        self._blocks.append(Callout(str(text), kind, None if title is None else str(title)))
        return self

    # -- data ----------------------------------------------------------------------
    def key_values(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        number_format: str = DEFAULT_NUMBER_FORMAT,
    ) -> Section:
        """Add a two-column list of facts (``"image size"`` → ``"512 × 512 px"``).

        Values are formatted like table cells (see :func:`format_value`).
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        rows = tuple((str(k), *format_value(v, number_format)) for k, v in pairs)
        self._blocks.append(KeyValues(rows))
        return self

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[Any]],
        caption: str | None = None,
        number_format: NumberFormat = DEFAULT_NUMBER_FORMAT,
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
        formats = column_formats(header_texts, number_format)
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
        self._blocks.append(Table(header_texts, tuple(formatted), caption, row_header))
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

    # -- as data -------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        """The section as JSON-ready data, to rebuild it later with
        :meth:`Report.add_section_data` (into this report's page or another one on the same
        ``out_dir``), e.g. from a job's manifest.

        ``{"version": 1, "title": ..., "anchor": ..., "blocks": [...]}``, the blocks in
        order, each a dict with a ``"type"``: ``"paragraph"`` and ``"preformatted"``
        (``text``), ``"callout"`` (``kind``, ``title``, ``text``), ``"key_values"``
        (``items``: ``[key, text, kind]``), ``"table"`` (``caption``, ``row_header``,
        ``headers``, ``rows`` of ``[text, kind]`` cells), ``"figure_row"`` (``caption``,
        ``width``, ``pixelated`` and ``figures``: ``path``, ``pixel_width``,
        ``pixel_height``, ``width``, ``caption``, ``note``, ``alt``, ``pixelated``) and
        ``"section"`` (a subsection: ``title``, ``anchor``, ``blocks``). Texts are stored
        as given (formatted, not escaped: the page escapes them when it is rendered);
        ``kind`` is ``"text"``, ``"num"`` or ``"na"``. A figure names its image file by its
        path relative to the report's ``out_dir``, with ``/`` separators; images are not
        embedded. ``anchor`` is the id the section has in this page.
        """
        return {"version": SECTION_DATA_VERSION, **self._fields()}

    def _fields(self) -> dict[str, Any]:
        out_dir = self._report.out_dir
        return {
            "title": self.title,
            "anchor": self.anchor,
            "blocks": [block._to_data(out_dir) for block in self._blocks],
        }

    def _to_data(self, out_dir: Path) -> dict[str, Any]:
        return {"type": "section", **self._fields()}

    # -- rendering -----------------------------------------------------------------
    def _render(self, out: list[str], depth: int) -> None:
        level = min(depth + 2, 6)  # sections are <h2>, the page title is <h1>
        anchor = esc(self.anchor)  # a slug already; escaped all the same
        out.append(f'<section id="{anchor}">')
        out.append(
            f"<h{level}>{esc(self.title)}"
            f'<a class="self" href="#{anchor}" aria-label="link to this section">#</a>'
            f"</h{level}>"
        )
        for block in self._blocks:
            block._render(out, depth + 1)
        out.append("</section>")

    def _render_toc(self, out: list[str]) -> None:
        out.append(f'<li><a href="#{esc(self.anchor)}">{esc(self.title)}</a>')
        children = self.subsections
        if children:
            out.append("<ol>")
            for child in children:
                child._render_toc(out)
            out.append("</ol>")
        out.append("</li>")
