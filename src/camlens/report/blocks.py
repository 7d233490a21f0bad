"""The text and data blocks of a section: paragraphs, call-outs, key/value lists, tables.

Each block is an immutable record of already-formatted (but not yet escaped) text that
appends its HTML lines to a list; :class:`~camlens.report.section.Section` builds them.
Each also describes itself as JSON-ready data (``_to_data``: a dict with a ``"type"``), from
which :mod:`camlens.report.data` rebuilds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from camlens.report.markup import attr, esc
from camlens.report.values import ReportError

__all__ = [
    "CALLOUT_KINDS",
    "Block",
    "Callout",
    "CalloutKind",
    "KeyValues",
    "Paragraph",
    "Preformatted",
    "Table",
]

CalloutKind = Literal["info", "ok", "warning", "danger"]

#: The kinds of a formatted table or key/value cell (see ``values.format_value``).
CELL_KINDS = ("text", "num", "na")

#: Call-out kinds and the label shown in front of their text.
CALLOUT_KINDS: dict[str, str] = {
    "info": "Note",
    "ok": "OK",
    "warning": "Warning",
    "danger": "Problem",
}


def _kind_class(kind: str) -> str:
    """The ``class`` attribute for a formatted value's kind (none for plain text)."""
    return attr("class", None if kind == "text" else kind)


class Block:
    """Something that renders itself into a list of HTML lines."""

    def _render(self, out: list[str], depth: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _to_data(self, out_dir: Path) -> dict[str, Any]:  # pragma: no cover - abstract
        """The block as JSON-ready data; file paths relative to ``out_dir``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Paragraph(Block):
    text: str

    def _render(self, out: list[str], depth: int) -> None:
        out.append(f"<p>{esc(self.text)}</p>")

    def _to_data(self, out_dir: Path) -> dict[str, Any]:
        return {"type": "paragraph", "text": self.text}


def relative_href(href: str) -> str:
    """``href`` if it is a relative path; a :class:`ReportError` for a URL with a scheme."""
    text = str(href)
    if not text or ":" in text.split("/")[0] or text.startswith(("/", "\\")):
        raise ReportError(f"a report links only to files beside it (a relative path); got {text!r}")
    return text


@dataclass(frozen=True)
class Link(Block):
    """A paragraph that is one link to a page next to the report (a relative path)."""

    text: str
    href: str

    def _render(self, out: list[str], depth: int) -> None:
        out.append(f'<p><a href="{esc(self.href)}">{esc(self.text)}</a></p>')

    def _to_data(self, out_dir: Path) -> dict[str, Any]:
        return {"type": "link", "text": self.text, "href": self.href}


@dataclass(frozen=True)
class Preformatted(Block):
    text: str

    def _render(self, out: list[str], depth: int) -> None:
        out.append(f"<pre>{esc(self.text)}</pre>")

    def _to_data(self, out_dir: Path) -> dict[str, Any]:
        return {"type": "preformatted", "text": self.text}


@dataclass(frozen=True)
class Callout(Block):
    text: str
    kind: str  # a key of CALLOUT_KINDS, checked by Section.callout
    title: str | None

    def _render(self, out: list[str], depth: int) -> None:
        label = self.title if self.title is not None else CALLOUT_KINDS[self.kind]
        head = f'<span class="label">{esc(label)}</span>' if label else ""
        out.append(
            f'<div class="callout {esc(self.kind)}" role="note">{head}{esc(self.text)}</div>'
        )

    def _to_data(self, out_dir: Path) -> dict[str, Any]:
        return {"type": "callout", "kind": self.kind, "title": self.title, "text": self.text}


@dataclass(frozen=True)
class KeyValues(Block):
    items: tuple[tuple[str, str, str], ...]  # (key, text, kind)

    def _render(self, out: list[str], depth: int) -> None:
        out.append('<dl class="kv">')
        for key, text, kind in self.items:
            out.append(f"<dt>{esc(key)}</dt><dd{_kind_class(kind)}>{esc(text)}</dd>")
        out.append("</dl>")

    def _to_data(self, out_dir: Path) -> dict[str, Any]:
        return {"type": "key_values", "items": [list(item) for item in self.items]}


@dataclass(frozen=True)
class Table(Block):
    headers: tuple[str, ...]
    rows: tuple[tuple[tuple[str, str], ...], ...]  # cells as (text, kind)
    caption: str | None
    row_header: bool

    def _render(self, out: list[str], depth: int) -> None:
        # a column of numbers (and gaps) is right-aligned, its header too
        numeric = [
            bool(self.rows) and all(row[i][1] in ("num", "na") for row in self.rows)
            for i in range(len(self.headers))
        ]
        out.append('<div class="table-wrap"><table>')
        if self.caption is not None:
            out.append(f"<caption>{esc(self.caption)}</caption>")
        if self.headers:
            out.append("<thead><tr>")
            for i, header in enumerate(self.headers):
                cls = _kind_class("num" if numeric[i] else "text")
                out.append(f'<th scope="col"{cls}>{esc(header)}</th>')
            out.append("</tr></thead>")
        out.append("<tbody>")
        for row in self.rows:
            cells = []
            for i, (text, kind) in enumerate(row):
                extra = _kind_class(kind) + attr("title", "not available" if kind == "na" else None)
                if i == 0 and self.row_header:
                    cells.append(f'<th scope="row"{extra}>{esc(text)}</th>')
                else:
                    cells.append(f"<td{extra}>{esc(text)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table></div>")

    def _to_data(self, out_dir: Path) -> dict[str, Any]:
        return {
            "type": "table",
            "caption": self.caption,
            "row_header": self.row_header,
            "headers": list(self.headers),
            "rows": [[list(cell) for cell in row] for row in self.rows],
        }
