"""Escaping, attributes and ids: how caller text becomes safe HTML.

Everything a caller passes in is text and reaches the page only through :func:`esc` (or
:func:`attr`, which uses it); there is deliberately no way to pass raw HTML. Ids and file
names go through :func:`slugify`, which leaves ``[a-z0-9-]`` only.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

__all__ = ["MAX_SLUG", "Ids", "attr", "esc", "slugify"]

#: Longest slug used in an id or a file name; long captions are cut, not refused.
MAX_SLUG = 48

#: What an id made by :meth:`Ids.claim` looks like.
_ID = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def esc(text: object) -> str:
    """HTML-escape ``str(text)``, quotes included, so it is safe in text and attributes."""
    return html.escape(str(text), quote=True)


def attr(name: str, value: object | None) -> str:
    """`` name="value"`` with the value escaped, or ``""`` when ``value`` is ``None``."""
    return "" if value is None else f' {name}="{esc(value)}"'


def slugify(text: str, fallback: str = "item", max_length: int = MAX_SLUG) -> str:
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


class Ids:
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

    def claim_exact(self, anchor: str, fallback: str) -> str:
        """``anchor`` itself when it is a well-formed id (``[a-z][a-z0-9-]*``, as
        :meth:`claim` makes them) still free in this page, else ``claim(anchor, fallback)``.

        Rebuilding sections from their data claims their old ids this way, so that a page
        rebuilt in a fresh report keeps every id, whatever order they were first claimed in.
        """
        if len(anchor) <= MAX_SLUG + 8 and _ID.fullmatch(anchor) and anchor not in self._used:
            self._used.add(anchor)
            return anchor
        return self.claim(anchor, fallback)
