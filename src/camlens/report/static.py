"""The page's static parts, kept as package data in ``assets/``: style sheet and skeleton.

Both are read once, at import, with :mod:`importlib.resources`, so they are found in an
installed wheel as well as in a source checkout (``pyproject.toml`` lists ``assets/*`` as
package data).
"""

from __future__ import annotations

from importlib.resources import files
from string import Template

__all__ = ["PAGE", "STYLE"]


def _asset(name: str) -> str:
    return (files("camlens.report") / "assets" / name).read_text(encoding="utf-8")


#: The report's whole style sheet, inlined into every page. A light, quiet theme: the
#: pictures carry the colour, the chrome stays grey. System fonts only (nothing to fetch).
STYLE: str = _asset("report.css")

#: The page around the sections: a :class:`string.Template` whose slots (``$title``,
#: ``$style``, ``$subtitle``, ``$toc``, ``$sections``, ``$footer``) take finished markup.
#: It escapes nothing itself: :meth:`camlens.report.document.Report.render` fills every
#: slot with text that went through :func:`camlens.report.markup.esc`. The optional slots
#: sit at the start of a line and are either empty or whole lines ending in ``\n``.
PAGE: Template = Template(_asset("page.html"))
