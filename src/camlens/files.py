"""Find image files from command-line arguments: files, folders and glob patterns, in
natural order (``tile_2`` before ``tile_10``)."""

from __future__ import annotations

import errno
import glob
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "collect_images", "natural_key"]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm"}
)


def natural_key(path: str | Path) -> list[object]:
    """Sort key that orders digit runs by value: ``a2 < a10``, case-insensitive."""
    parts = re.split(r"(\d+)", str(path).lower())
    return [int(part) if part.isdigit() else part for part in parts]


def collect_images(arguments: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand ``arguments`` into image files, and list the arguments that matched nothing.

    Folders contribute their image files (by suffix, not recursive); glob patterns their
    matches; plain paths themselves (whatever the suffix: reading will tell). Duplicates are
    dropped; each argument's files come in natural order.
    """
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            matches = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
            if not matches:
                problems.append((argument, "folder holds no image files"))
        elif path.exists():
            matches = [path]
        elif glob.has_magic(argument):
            matches = [Path(p) for p in glob.glob(argument) if Path(p).is_file()]
            if not matches:
                problems.append((argument, "pattern matched no file"))
        else:
            matches = []
            problems.append((argument, "no such file or folder"))
        for match in sorted(matches, key=natural_key):
            try:
                resolved = match.resolve(strict=True)
            except (OSError, RuntimeError) as error:  # a broken link, a symlink loop
                reason = (
                    "symlink loop"
                    if isinstance(error, RuntimeError)
                    or (getattr(error, "errno", None) == errno.ELOOP)
                    else f"cannot be opened ({error.strerror or error})"
                )
                problems.append((str(match), reason))
                continue
            if resolved not in seen:
                seen.add(resolved)
                found.append(match)
    return found, problems
