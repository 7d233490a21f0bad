"""Rebuilding sections from the data :meth:`Section.to_data` wrote (e.g. in a job's manifest).

The data comes from a file, so it is checked as it is read: a malformed entry raises
:class:`~camlens.report.values.ReportError` naming where it is (``blocks[2].figures[0].width``),
and a figure whose image file is gone raises :class:`~camlens.errors.ImageLoadError`. Texts
are taken as they are and escaped when the page is rendered, like any other text; ids are
re-claimed in the new page (kept when free, made unique otherwise). Image files are linked
where they lie (relative to ``out_dir``): nothing is copied or re-encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Integral
from typing import TYPE_CHECKING, Any

from camlens.report.blocks import (
    CALLOUT_KINDS,
    CELL_KINDS,
    Block,
    Callout,
    KeyValues,
    Link,
    Paragraph,
    Preformatted,
    Table,
    relative_href,
)
from camlens.report.figures import Figure, FigureRow, shown_height
from camlens.report.section import SECTION_DATA_VERSION, Section
from camlens.report.values import ReportError

if TYPE_CHECKING:
    from camlens.report.document import Report

__all__ = ["section_from_data"]


def section_from_data(report: Report, data: Any) -> Section:
    """A new section of ``report`` (not yet listed in its page) rebuilt from ``data``."""
    if not isinstance(data, Mapping):
        raise ReportError(f"section data must be a dict; got {type(data).__name__}")
    version = data.get("version")
    if version != SECTION_DATA_VERSION:
        raise ReportError(
            f"section data has version {version!r}; this camlens reads {SECTION_DATA_VERSION}"
        )
    return _section(report, data, "section")


# -- checked reading ------------------------------------------------------------------------
def _field(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ReportError(f"section data {where}: missing {key!r}")
    return data[key]


def _text(data: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = _field(data, key, where)
    if not (isinstance(value, str) or (optional and value is None)):
        wanted = "a string or null" if optional else "a string"
        raise ReportError(f"section data {where}.{key}: must be {wanted}; got {value!r}")
    return value


def _flag(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = _field(data, key, where)
    if not isinstance(value, bool):
        raise ReportError(f"section data {where}.{key}: must be true or false; got {value!r}")
    return value


def _size(data: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = _field(data, key, where)
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) <= 0:
        raise ReportError(f"section data {where}.{key}: must be a positive integer; got {value!r}")
    return int(value)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ReportError(f"section data {where}: must be a list; got {type(value).__name__}")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ReportError(f"section data {where}: must be a dict; got {type(value).__name__}")
    return value


def _cell(value: Any, where: str, size: int) -> tuple[str, ...]:
    """A formatted cell ``[text, kind]`` (``size`` 2) or key/value ``[key, text, kind]`` (3)."""
    if (
        not isinstance(value, list)
        or len(value) != size
        or not all(isinstance(part, str) for part in value)
        or value[-1] not in CELL_KINDS
    ):
        raise ReportError(
            f"section data {where}: must be {size} strings ending in a kind "
            f"({', '.join(CELL_KINDS)}); got {value!r}"[:400]
        )
    return tuple(value)


# -- blocks ---------------------------------------------------------------------------------
def _section(report: Report, data: Mapping[str, Any], where: str) -> Section:
    section = report._rebuilt_section(_text(data, "title", where), _text(data, "anchor", where))
    for i, item in enumerate(_list(_field(data, "blocks", where), f"{where}.blocks")):
        here = f"{where}.blocks[{i}]"
        item = _mapping(item, here)
        kind = _field(item, "type", here)
        build = _BUILDERS.get(kind) if isinstance(kind, str) else None
        if build is None:
            raise ReportError(f"section data {here}: unknown block type {kind!r}")
        section._blocks.append(build(report, item, here))
    return section


def _paragraph(report: Report, data: Mapping[str, Any], where: str) -> Block:
    return Paragraph(_text(data, "text", where))


def _link(report: Report, data: Mapping[str, Any], where: str) -> Block:
    try:
        href = relative_href(_text(data, "href", where))
    except ReportError as error:
        raise ReportError(f"section data {where}.href: {error}") from None
    return Link(_text(data, "text", where), href)


def _preformatted(report: Report, data: Mapping[str, Any], where: str) -> Block:
    return Preformatted(_text(data, "text", where))


def _callout(report: Report, data: Mapping[str, Any], where: str) -> Block:
    kind = _text(data, "kind", where)
    if kind not in CALLOUT_KINDS:
        raise ReportError(f"section data {where}.kind: must be one of {sorted(CALLOUT_KINDS)}")
    return Callout(_text(data, "text", where), kind, _text(data, "title", where, optional=True))


def _key_values(report: Report, data: Mapping[str, Any], where: str) -> Block:
    items = _list(_field(data, "items", where), f"{where}.items")
    return KeyValues(
        tuple(_cell(item, f"{where}.items[{i}]", 3) for i, item in enumerate(items))  # type: ignore[misc]
    )


def _table(report: Report, data: Mapping[str, Any], where: str) -> Block:
    headers = _list(_field(data, "headers", where), f"{where}.headers")
    if not all(isinstance(header, str) for header in headers):
        raise ReportError(f"section data {where}.headers: must be strings")
    rows = []
    for r, row in enumerate(_list(_field(data, "rows", where), f"{where}.rows")):
        cells = _list(row, f"{where}.rows[{r}]")
        width = len(headers) if headers else len(rows[0]) if rows else len(cells)
        here = f"{where}.rows[{r}]"
        if len(cells) != width:
            raise ReportError(f"section data {here}: has {len(cells)} cells, not {width}")
        rows.append(tuple(_cell(cell, f"{here}[{c}]", 2) for c, cell in enumerate(cells)))
    return Table(
        tuple(headers),
        tuple(rows),  # type: ignore[arg-type]
        _text(data, "caption", where, optional=True),
        _flag(data, "row_header", where),
    )


def _figure_row(report: Report, data: Mapping[str, Any], where: str) -> Block:
    row = FigureRow(
        report,
        _text(data, "caption", where, optional=True),
        _size(data, "width", where, optional=True),
        _flag(data, "pixelated", where),
    )
    for i, item in enumerate(_list(_field(data, "figures", where), f"{where}.figures")):
        here = f"{where}.figures[{i}]"
        item = _mapping(item, here)
        pixel_width = _size(item, "pixel_width", here)
        pixel_height = _size(item, "pixel_height", here)
        width = _size(item, "width", here)
        path, src = report._link_image(_text(item, "path", here))
        row.figures.append(
            Figure(
                path=path,
                src=src,
                pixel_width=pixel_width,
                pixel_height=pixel_height,
                width=width,
                height=shown_height(width, pixel_width, pixel_height),
                caption=_text(item, "caption", here, optional=True),
                note=_text(item, "note", here, optional=True),
                alt=_text(item, "alt", here),
                pixelated=_flag(item, "pixelated", here),
            )
        )
    return row


_BUILDERS: dict[str, Callable[[Report, Mapping[str, Any], str], Block]] = {
    "paragraph": _paragraph,
    "preformatted": _preformatted,
    "link": _link,
    "callout": _callout,
    "key_values": _key_values,
    "table": _table,
    "figure_row": _figure_row,
    "section": _section,
}
