"""The report itself: its options, its sections, its images, and the page it writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from camlens.report.atomic import write_text_atomic
from camlens.report.data import section_from_data
from camlens.report.images import ImageStore, Placed
from camlens.report.markup import Ids, esc
from camlens.report.section import Section
from camlens.report.static import PAGE, STYLE
from camlens.report.values import ReportError, check_width

__all__ = ["Report"]

PathLike = str | os.PathLike

#: Ids the page uses itself (see ``assets/page.html``), never handed to a section.
RESERVED_IDS = frozenset({"top", "toc", "toc-h", "content"})


def _check_plain_name(what: str, value: str) -> None:
    """Refuse anything but a single plain file or folder name (no path, no dots-only)."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or value != value.strip():
        raise ReportError(f"{what} must be a plain file or folder name; got {value!r}")


def _check_image_dir(value: str) -> None:
    """A relative folder of plain names separated by ``/`` (``images``, ``images/tile-3``)."""
    if not isinstance(value, str) or not value:
        raise ReportError(f"image_dir must be a relative folder; got {value!r}")
    for part in value.split("/"):
        _check_plain_name("image_dir", part)


def _lines(out: list[str]) -> str:
    """Lines as one string, each ending in a newline (``""`` for none)."""
    return "".join(f"{line}\n" for line in out)


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
        image_dir: the folder for images, relative to ``out_dir``: plain folder names
            separated by ``/`` (``"images"``, or ``"images/<key>"`` to keep one item's
            images apart), never ``..``. Images are named ``NNN-<slug>.<ext>``, numbered
            from ``001`` per report in the order they are added, so two reports built by
            the same calls name their files the same.
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
        _check_plain_name("filename", filename)
        _check_image_dir(image_dir)
        self.title = str(title)
        self.subtitle = None if subtitle is None else str(subtitle)
        self.out_dir = Path(out_dir)
        self.filename = filename
        self.image_dir = image_dir
        self.figure_width = check_width(figure_width, "figure_width")
        self.footer = "Made with camlens." if footer is None else str(footer)
        self.sections: list[Section] = []
        self._ids = Ids(RESERVED_IDS)
        self._images = ImageStore(self.out_dir, image_dir)

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

    def add_section_data(self, data: Any) -> Section:
        """Add a top-level section rebuilt from :meth:`Section.to_data`'s output and return it.

        ``data`` may have been through ``json.dumps`` / ``json.loads`` and come from another
        :class:`Report` (another process, a shard of a job) on the same ``out_dir``: the
        figures link the image files already there (relative to ``out_dir``), nothing is
        copied or re-encoded. Ids are kept where they are free in this page and made unique
        otherwise, as for :meth:`section`. Rebuilding every section of a report, in order,
        into a fresh report with the same options renders the same page, byte for byte.

        Raises:
            ReportError: ``data`` is malformed (the message says where) or of another version.
            ImageLoadError: a figure's image file does not exist.
        """
        section = section_from_data(self, data)
        self.sections.append(section)
        return section

    def _rebuilt_section(self, title: str, anchor: str) -> Section:
        """A section for rebuilt data: its old id, if still free in this page."""
        return Section(self, title, self._ids.claim_exact(anchor, "s"))

    def _store_image(self, image: Any, label: str | None, *, copy: bool) -> Placed:
        """Save or place one figure's image; see :meth:`ImageStore.store`."""
        return self._images.store(image, label, copy=copy)

    def _link_image(self, relative: str) -> tuple[Path, str]:
        """An image file already inside ``out_dir``, for a rebuilt figure; see
        :meth:`ImageStore.link`."""
        return self._images.link(relative)

    # -- output --------------------------------------------------------------------
    def render(self) -> str:
        """The page as a string (what :meth:`write` saves)."""
        subtitle = [f'<p class="subtitle">{esc(self.subtitle)}</p>'] if self.subtitle else []
        toc: list[str] = []
        if self.sections:
            toc += [
                '<nav class="toc" id="toc" aria-labelledby="toc-h">',
                '<h2 id="toc-h">Contents</h2>',
                "<ol>",
            ]
            for section in self.sections:
                section._render_toc(toc)
            toc += ["</ol>", "</nav>"]
        sections: list[str] = []
        for section in self.sections:
            section._render(sections, 0)
        footer = [f'<footer class="page">{esc(self.footer)}</footer>'] if self.footer else []
        return PAGE.substitute(
            title=esc(self.title),
            style=STYLE.rstrip("\n"),
            subtitle=_lines(subtitle),
            toc=_lines(toc),
            sections=_lines(sections),
            footer=_lines(footer),
        )

    def write(self) -> Path:
        """Write ``out_dir/<filename>`` (UTF-8) and return its path.

        The page is written to a temporary name first and then renamed, so a reader never
        sees half a report, and a failed write leaves no partial file behind.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        target = self.path
        write_text_atomic(target, self.render())
        return target
