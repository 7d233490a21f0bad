"""Writing the page so that a reader sees either the old one or the whole new one.

A thin layer over :mod:`camlens.atomic`, which every writer of camlens shares; the names
here are kept for :mod:`camlens.report.document` and older callers.
"""

from __future__ import annotations

import os

from camlens.atomic import partial_path, write_text

__all__ = ["partial_path", "write_text_atomic"]


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8 (line ends as given), replacing it atomically.

    The bytes go to a temporary file in the same folder (:func:`partial_path`), which is
    then renamed over ``path``. If anything fails (the text cannot be encoded, the disk is
    full, ``path`` is a folder) the error propagates, ``path`` is untouched and no partial
    file is left behind. See :func:`camlens.atomic.write_text`.
    """
    write_text(path, text)
