"""Writing a file so that a reader sees either the old one or the whole new one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["partial_path", "write_text_atomic"]


def partial_path(path: Path) -> Path:
    """The temporary name :func:`write_text_atomic` uses: ``.<name>.partial``, same folder."""
    return path.with_name(f".{path.name}.partial")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8 (line ends as given), replacing it atomically.

    The bytes go to :func:`partial_path` first, which is then renamed over ``path``; the
    same folder keeps the rename atomic. If anything fails (the text cannot be encoded,
    the disk is full, ``path`` is a folder) the error propagates, ``path`` is untouched
    and no partial file is left behind.
    """
    data = text.encode("utf-8")  # fails, if it does, before any file is touched
    partial = partial_path(path)
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
